/*
 * test_vsock.c - virtio-vsock end to end without a guest: the fake VM and
 * driver of fake_guest.h (guest RAM in the heap, the real event loop, no
 * KVM) set the device up through its MMIO registers, post buffers and read
 * completions, while real Unix sockets play the host side.
 */
#include <fcntl.h>
#include <linux/virtio_vsock.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../lib/tests/test.h"
#include "fake_guest.h"

#define GUEST_CID 3
#define HDR	  ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define TRIES	  200 /* gq_used waits up to ~1 s */

static char dir[] = "/tmp/test_vsock.XXXXXX";
static char uds[200];
static struct gq rxq = {.index = 0}, txq = {.index = 1}, evq = {.index = 2};

/* --- the guest side of vsock --------------------------------------------------- */

/* Receives one packet from the device and reposts the buffer. */
static bool rx(struct virtio_vsock_hdr *h, char *payload)
{
	uint32_t id, len;
	if (!gq_used(&rxq, TRIES, &id, &len))
		return false;
	uint8_t *buf = gq_buf(&rxq, id);
	memcpy(h, buf, HDR);
	if (payload) {
		memcpy(payload, buf + HDR, h->len);
		payload[h->len] = 0;
	}
	CHECK_EQ_INT(len, HDR + h->len);
	gq_add(&rxq, NULL, GQ_BUF_SIZE, true);
	gq_kick(&rxq);
	return true;
}

static uint32_t guest_buf_alloc = 65536, guest_fwd_cnt;

static void tx(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t flags, const char *data)
{
	uint8_t pkt[0x1000];
	struct virtio_vsock_hdr h = {.src_cid = GUEST_CID,
				     .dst_cid = 2,
				     .src_port = src_port,
				     .dst_port = dst_port,
				     .len = data ? (uint32_t)strlen(data) : 0,
				     .type = VIRTIO_VSOCK_TYPE_STREAM,
				     .op = op,
				     .flags = flags,
				     .buf_alloc = guest_buf_alloc,
				     .fwd_cnt = guest_fwd_cnt};
	memcpy(pkt, &h, HDR);
	if (data)
		memcpy(pkt + HDR, data, h.len);
	gq_add(&txq, pkt, HDR + h.len, false);
	gq_kick(&txq);
	spin(5);
}

/* Sets queue q up, checking the size the device offers and the ready bit. */
static void queue_setup(struct gq *q)
{
	gq_setup(q);
	CHECK_EQ_INT(mmio_r(0x034), 256);
	CHECK_EQ_INT(mmio_r(0x044), 1);
}

static bool device_up;

static void setup(void)
{
	if (device_up)
		return;
	device_up = true;
	if (!mkdtemp(dir))
		abort();
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);
	fake_vm_init();
	struct vsock_config cfg = {.guest_cid = GUEST_CID, .uds_path = uds};
	char err[256];
	if (!CHECK_EQ_INT(virtio_vsock_create(&vm, &cfg, err, sizeof(err)), 0)) {
		fprintf(stderr, "%s\n", err);
		abort();
	}

	CHECK_EQ_INT(mmio_r(0x000), 0x74726976);
	CHECK_EQ_INT(mmio_r(0x004), 2);
	CHECK_EQ_INT(mmio_r(0x008), 19);
	mmio_w(0x070, 1);
	mmio_w(0x070, 3);
	mmio_w(0x014, 1);
	CHECK_EQ_INT(mmio_r(0x010), 1); /* VERSION_1 */
	driver_accept_version_1();
	CHECK_EQ_INT(mmio_r(0x070), 11);
	queue_setup(&rxq);
	queue_setup(&txq);
	queue_setup(&evq);
	mmio_w(0x070, 15);
	for (int i = 0; i < 8; i++)
		gq_add(&rxq, NULL, GQ_BUF_SIZE, true);
	for (int i = 0; i < 2; i++)
		gq_add(&evq, NULL, 4, true);
	gq_kick(&rxq);
	spin(5);
}

static int host_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads what is there from a host socket after letting the device run. */
static ssize_t host_read(int fd, char *buf, size_t len)
{
	for (int i = 0; i < 100; i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 0) == 1)
			return read(fd, buf, len);
		spin(5);
	}
	return -2;
}

/* --- pure helpers ------------------------------------------------------------ */

TEST(credit_math)
{
	CHECK_EQ_INT(vsock_peer_credit(1000, 0, 0), 1000);
	CHECK_EQ_INT(vsock_peer_credit(1000, 100, 600), 500);
	CHECK_EQ_INT(vsock_peer_credit(1000, 0, 1000), 0);
	CHECK_EQ_INT(vsock_peer_credit(1000, 0, 1500), 0);	       /* peer over-granted: never negative */
	CHECK_EQ_INT(vsock_peer_credit(1000, 0xfffffff0u, 0x10), 968); /* counters wrapped */
	CHECK_EQ_INT(vsock_peer_credit(1000, 500, 100), 0);	       /* fwd_cnt ahead of what we sent: bogus */
	CHECK_EQ_INT(vsock_peer_credit(0, 0, 0), 0);
}

TEST(connect_line_parsing)
{
	uint32_t port = 0;
	CHECK(vsock_parse_connect("CONNECT 49983", 13, &port) == 0 && port == 49983);
	CHECK(vsock_parse_connect("CONNECT 1\r", 10, &port) == 0 && port == 1);
	CHECK(vsock_parse_connect("CONNECT 4294967295", 18, &port) == 0 && port == 4294967295u);
	CHECK_EQ_INT(vsock_parse_connect("CONNECT 4294967296", 18, &port), -1);
	CHECK_EQ_INT(vsock_parse_connect("CONNECT ", 8, &port), -1);
	CHECK_EQ_INT(vsock_parse_connect("CONNECT x1", 10, &port), -1);
	CHECK_EQ_INT(vsock_parse_connect("connect 1", 9, &port), -1);
	CHECK_EQ_INT(vsock_parse_connect("CONNECT 1 2", 11, &port), -1);
}

/* --- the device -------------------------------------------------------------- */

TEST(config_space_and_bad_accesses)
{
	setup();
	uint64_t cid = 0;
	bus_access(&vm.mmio, VIRTIO_MMIO_BASE + 0x100, (uint8_t *)&cid, 8, false);
	CHECK_EQ_INT(cid, GUEST_CID);
	uint8_t b = 0xff;
	bus_access(&vm.mmio, VIRTIO_MMIO_BASE + 0x108, &b, 1, false); /* beyond the 8 bytes */
	CHECK_EQ_INT(b, 0);
	uint16_t w = 0xffff;
	bus_access(&vm.mmio, VIRTIO_MMIO_BASE + 0x070, (uint8_t *)&w, 2, false); /* registers are 32-bit */
	CHECK_EQ_INT(w, 0);
	mmio_w(0x030, 7); /* no queue 7 */
	CHECK_EQ_INT(mmio_r(0x034), 0);
	mmio_w(0x038, 8); /* ignored */
	mmio_w(0x030, 0);
	mmio_w(0x038, 8); /* ready queue: reconfiguration ignored */
	CHECK_EQ_INT(mmio_r(0x044), 1);
	mmio_w(0x070, 1); /* status cannot go backwards */
	CHECK_EQ_INT(mmio_r(0x070), 15);
}

TEST(host_initiated_connection)
{
	setup();
	int fd = host_connect(uds);
	if (!CHECK(fd >= 0))
		return;
	CHECK(write(fd, "CONNECT 5000\nearly", 18) == 18);
	struct virtio_vsock_hdr h;
	char data[0x1000];
	if (!CHECK(rx(&h, NULL)))
		return;
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_REQUEST);
	CHECK_EQ_INT(h.src_cid, 2);
	CHECK_EQ_INT(h.dst_cid, GUEST_CID);
	CHECK_EQ_INT(h.dst_port, 5000);
	uint32_t local = h.src_port;
	tx(VIRTIO_VSOCK_OP_RESPONSE, 5000, local, 0, NULL);
	char line[64] = {0};
	ssize_t n = host_read(fd, line, sizeof(line) - 1);
	char want[32];
	snprintf(want, sizeof(want), "OK %u\n", local);
	CHECK(n > 0 && strcmp(line, want) == 0);
	/* Bytes the client sent before OK come through. */
	CHECK(rx(&h, data));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_RW);
	CHECK_STREQ(data, "early");
	guest_fwd_cnt += 5;

	tx(VIRTIO_VSOCK_OP_RW, 5000, local, 0, "pong");
	memset(line, 0, sizeof(line));
	CHECK(host_read(fd, line, sizeof(line) - 1) == 4 && strcmp(line, "pong") == 0);

	CHECK(write(fd, "ping", 4) == 4);
	CHECK(rx(&h, data));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_RW);
	CHECK_STREQ(data, "ping");
	guest_fwd_cnt += 4;

	/* The guest closes: the host reads EOF, the guest hears RST. */
	tx(VIRTIO_VSOCK_OP_SHUTDOWN, 5000, local, VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND, NULL);
	CHECK_EQ_INT(host_read(fd, line, sizeof(line)), 0);
	CHECK(rx(&h, NULL));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_RST);
	close(fd);
	guest_fwd_cnt = 0;
}

TEST(host_connect_refused_by_guest)
{
	setup();
	int fd = host_connect(uds);
	CHECK(write(fd, "CONNECT 7\n", 10) == 10);
	struct virtio_vsock_hdr h;
	if (!CHECK(rx(&h, NULL)))
		return;
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_REQUEST);
	tx(VIRTIO_VSOCK_OP_RST, 7, h.src_port, 0, NULL);
	char c;
	CHECK_EQ_INT(host_read(fd, &c, 1), 0); /* closed without OK */
	close(fd);
}

TEST(bad_connect_line_closes_client)
{
	setup();
	int fd = host_connect(uds);
	CHECK(write(fd, "HELLO\n", 6) == 6);
	char c;
	CHECK_EQ_INT(host_read(fd, &c, 1), 0);
	close(fd);
}

static int host_listen(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
		return -1;
	return fd;
}

TEST(guest_initiated_connection_with_credit)
{
	setup();
	char path[256];
	snprintf(path, sizeof(path), "%s_6000", uds);
	int lfd = host_listen(path);
	if (!CHECK(lfd >= 0))
		return;
	guest_buf_alloc = 8; /* tiny: the host must respect it */
	tx(VIRTIO_VSOCK_OP_REQUEST, 1234, 6000, 0, NULL);
	struct virtio_vsock_hdr h;
	char data[0x1000];
	if (!CHECK(rx(&h, NULL)))
		return;
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_RESPONSE);
	CHECK_EQ_INT(h.src_port, 6000);
	CHECK_EQ_INT(h.dst_port, 1234);
	CHECK(h.buf_alloc > 0);
	int fd = accept(lfd, NULL, NULL);
	if (!CHECK(fd >= 0))
		return;

	CHECK(write(fd, "0123456789abcdefghij", 20) == 20);
	CHECK(rx(&h, data));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_RW);
	CHECK_STREQ(data, "01234567"); /* exactly the credit */
	/* Out of credit: the device asks instead of sending. */
	CHECK(rx(&h, NULL));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_CREDIT_REQUEST);
	guest_fwd_cnt = 8;
	tx(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 1234, 6000, 0, NULL);
	CHECK(rx(&h, data));
	CHECK_STREQ(data, "89abcdef");
	CHECK(rx(&h, NULL));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_CREDIT_REQUEST); /* stalled again, "ghij" waiting */
	guest_buf_alloc = 65536;
	tx(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 1234, 6000, 0, NULL);
	CHECK(rx(&h, data));
	CHECK_STREQ(data, "ghij");
	guest_fwd_cnt += 12;

	/* A CREDIT_REQUEST from the guest gets our counters back. */
	tx(VIRTIO_VSOCK_OP_RW, 1234, 6000, 0, "hello");
	tx(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 1234, 6000, 0, NULL);
	CHECK(rx(&h, NULL));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
	CHECK_EQ_INT(h.fwd_cnt, 5);
	char line[16] = {0};
	CHECK(host_read(fd, line, sizeof(line)) == 5 && strcmp(line, "hello") == 0);

	/* Host half-closes: the guest gets SHUTDOWN(SEND) and can still send. */
	shutdown(fd, SHUT_WR);
	CHECK(rx(&h, NULL));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_SHUTDOWN);
	CHECK_EQ_INT(h.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
	tx(VIRTIO_VSOCK_OP_RW, 1234, 6000, 0, "after");
	memset(line, 0, sizeof(line));
	CHECK(host_read(fd, line, sizeof(line)) == 5 && strcmp(line, "after") == 0);
	/* The guest finishes too: connection over. */
	tx(VIRTIO_VSOCK_OP_SHUTDOWN, 1234, 6000, VIRTIO_VSOCK_SHUTDOWN_SEND, NULL);
	CHECK_EQ_INT(host_read(fd, line, sizeof(line)), 0);
	CHECK(rx(&h, NULL));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_RST);
	close(fd);
	close(lfd);
	unlink(path);
	guest_fwd_cnt = 0;
}

TEST(guest_connect_to_nothing_and_stray_packets)
{
	setup();
	struct virtio_vsock_hdr h;
	tx(VIRTIO_VSOCK_OP_REQUEST, 99, 6001, 0, NULL); /* nobody listens on _6001 */
	CHECK(rx(&h, NULL));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_RST);
	CHECK_EQ_INT(h.dst_port, 99);
	tx(VIRTIO_VSOCK_OP_RW, 99, 6001, 0, "lost"); /* no such connection */
	CHECK(rx(&h, NULL));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_RST);
	uint16_t before = rd16(rxq.used + 2);
	tx(VIRTIO_VSOCK_OP_RST, 99, 6001, 0, NULL); /* never answered */
	spin(20);
	CHECK_EQ_INT(rd16(rxq.used + 2), before);
}

TEST(restore_sends_transport_reset_and_state_roundtrips)
{
	setup();
	struct vm_device *d = &vm.devices[vm.nr_devices - 1];
	struct snap_w w;
	size_t start, plen;
	CHECK_EQ_INT(fake_save_device(d, &w, dir, &start, &plen), 0);
	char err[256] = "";
	CHECK_EQ_INT(d->load(d->dev, w.b.data + start, plen, err, sizeof(err)), 0);
	CHECK_EQ_INT(d->load(d->dev, w.b.data + start, plen - 3, err, sizeof(err)), -1);
	CHECK(err[0] != 0);
	/* A queue size that is not a power of two is refused. */
	uint8_t *p = (uint8_t *)w.b.data + start;
	uint32_t bad = 12;
	memcpy(p + 4 + 4 + 4 + 4 + 8 + 8 + 6 * 4, &bad, 4); /* first queue's num */
	CHECK_EQ_INT(d->load(d->dev, p, plen, err, sizeof(err)), -1);
	CHECK(strstr(err, "queue 0") != NULL);
	snap_w_free(&w);

	d->restored(d->dev);
	/* A host client that comes before the guest has handled the reset is
	 * held: the reset would drop its connection. */
	int fd = host_connect(uds);
	CHECK(write(fd, "CONNECT 5002\n", 13) == 13);
	uint32_t id, len;
	if (CHECK(gq_used(&evq, TRIES, &id, &len))) {
		uint32_t ev;
		memcpy(&ev, gq_buf(&evq, id), 4);
		CHECK_EQ_INT(ev, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
		CHECK_EQ_INT(len, 4);
	}
	gq_kick(&evq); /* a kick alone is not the sign */
	spin(20);
	CHECK_EQ_INT(gq_used(&rxq, 20, &id, &len), false);
	/* The guest hands the event buffer back: the REQUEST goes out. */
	gq_add(&evq, NULL, 4, true);
	gq_kick(&evq);
	struct virtio_vsock_hdr h = {0};
	if (CHECK(rx(&h, NULL))) {
		CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_REQUEST);
		CHECK_EQ_INT(h.dst_port, 5002);
		tx(VIRTIO_VSOCK_OP_RST, 5002, h.src_port, 0, NULL);
	}
	close(fd);
}

/* Opens a host connection to guest port, reads its REQUEST and refuses it;
 * returns the host port the device picked. */
static uint32_t host_port_of_next_connect(uint32_t port)
{
	int fd = host_connect(uds);
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	CHECK(write(fd, line, (size_t)n) == n);
	struct virtio_vsock_hdr h = {0};
	CHECK(rx(&h, NULL));
	CHECK_EQ_INT(h.op, VIRTIO_VSOCK_OP_REQUEST);
	tx(VIRTIO_VSOCK_OP_RST, port, h.src_port, 0, NULL);
	close(fd);
	return h.src_port;
}

/* Saves the device and loads the payload back at once (the queues stay
 * where they are), with its layout and last u32 (next_port) replaced when
 * not 0; drop_last loads it without that u32. */
static int reload_vsock(uint32_t layout, uint32_t next_port, bool drop_last)
{
	struct vm_device *d = &vm.devices[vm.nr_devices - 1];
	struct snap_w w;
	size_t start, plen;
	CHECK_EQ_INT(fake_save_device(d, &w, dir, &start, &plen), 0);
	uint8_t *p = (uint8_t *)w.b.data + start;
	if (layout)
		memcpy(p, &layout, 4);
	if (next_port)
		memcpy(p + plen - 4, &next_port, 4);
	char err[256] = "";
	int rc = d->load(d->dev, p, drop_last ? plen - 4 : plen, err, sizeof(err));
	snap_w_free(&w);
	return rc;
}

/* A clone must not reuse the host ports of the snapshotted process: until
 * the guest handles the transport reset it may still hold an established
 * socket with those ports, and it drops a REQUEST that matches one. */
TEST(restore_goes_on_numbering_host_ports)
{
	setup();
	uint32_t last = host_port_of_next_connect(6000);
	CHECK_EQ_INT(reload_vsock(0, 0, false), 0);
	CHECK_EQ_INT(host_port_of_next_connect(6000), last + 1);
	CHECK_EQ_INT(reload_vsock(0, 40000, false), 0);
	CHECK_EQ_INT(host_port_of_next_connect(6000), 40000);
	/* Layout 1 has no port: numbering starts over. */
	CHECK_EQ_INT(reload_vsock(1, 0, true), 0);
	CHECK_EQ_INT(host_port_of_next_connect(6000), 1024);
	CHECK_EQ_INT(reload_vsock(3, 0, false), -1); /* a layout from the future */
}

TEST(device_reset_drops_connections)
{
	setup();
	int fd = host_connect(uds);
	CHECK(write(fd, "CONNECT 5001\n", 13) == 13);
	struct virtio_vsock_hdr h;
	CHECK(rx(&h, NULL));
	mmio_w(0x070, 0);
	CHECK_EQ_INT(mmio_r(0x070), 0);
	mmio_w(0x030, 0);
	CHECK_EQ_INT(mmio_r(0x044), 0);
	char c;
	CHECK_EQ_INT(host_read(fd, &c, 1), 0);
	close(fd);
}

TEST(teardown)
{
	setup();
	int fd = host_connect(uds); /* a connection still open at the end */
	CHECK(write(fd, "CONNECT 1\n", 10) == 10);
	spin(10);
	virtio_device_destroy(vm.devices[vm.nr_devices - 1].dev);
	CHECK(access(uds, F_OK) != 0); /* the listening socket is gone */
	char c;
	CHECK_EQ_INT(read(fd, &c, 1), 0);
	close(fd);
	fake_vm_free();
	rmdir(dir);
}
