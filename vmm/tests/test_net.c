/*
 * test_net.c - virtio-net on a fake VM (heap RAM, real event loop, no KVM)
 * with a SOCK_SEQPACKET socket pair standing in for a TAP without
 * IFF_VNET_HDR: frames keep their boundaries and the device must strip /
 * prepend the 12-byte virtio_net_hdr itself.
 */
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../lib/tests/test.h"
#include "fake_guest.h"

static int host_end = -1;
static struct gq rxq = {.index = 0}, txq = {.index = 1};

/* Adds one buffer and notifies the device. */
static void post(struct gq *q, const void *data, uint32_t len, bool writable)
{
	gq_add(q, data, len, writable);
	gq_kick(q);
}

TEST(setup_and_config)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	host_end = sv[1];
	fake_vm_init();
	struct net_config cfg = {.tap_fd = sv[0], .mac = {0x02, 0xcb, 0, 0, 0, 7}};
	char err[256];
	if (!CHECK_EQ_INT(virtio_net_create(&vm, &cfg, 0, err, sizeof(err)), 0)) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	CHECK_EQ_INT(mmio_r(0x008), 1);
	mmio_w(0x070, 3);
	uint32_t f = mmio_r(0x010);
	CHECK(f & (1u << 5));	  /* MAC */
	CHECK(!(f & (1u << 0)));  /* no checksum offload */
	CHECK(!(f & (1u << 28))); /* no INDIRECT_DESC */
	CHECK(!(f & (1u << 29))); /* no EVENT_IDX */
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		bus_access(&vm.mmio, VIRTIO_MMIO_BASE + 0x100 + (uint64_t)i, &mac[i], 1, false);
	CHECK_MEMEQ(mac, 6, cfg.mac, 6);
	/* A driver that accepts a feature we never offered fails FEATURES_OK. */
	mmio_w(0x024, 0);
	mmio_w(0x020, 1u << 28);
	mmio_w(0x024, 1);
	mmio_w(0x020, 1);
	mmio_w(0x070, 11);
	CHECK_EQ_INT(mmio_r(0x070), 3);
	mmio_w(0x070, 0);
	mmio_w(0x070, 3);
	driver_accept_version_1();
	CHECK_EQ_INT(mmio_r(0x070), 11);
	gq_setup(&rxq);
	gq_setup(&txq);
	mmio_w(0x070, 15);
	spin(5);
}

TEST(transmit_strips_header)
{
	uint8_t pkt[64] = {0};
	memcpy(pkt + 12, "hello-frame", 11);
	post(&txq, pkt, 23, false);
	uint32_t id, len;
	CHECK(gq_used(&txq, 100, &id, &len));
	char got[64] = {0};
	CHECK_EQ_INT(recv(host_end, got, sizeof(got), MSG_DONTWAIT), 11);
	CHECK_STREQ(got, "hello-frame");
	CHECK(mmio_r(0x060) & 1); /* interrupt status */
	mmio_w(0x064, 1);
	CHECK_EQ_INT(mmio_r(0x060), 0);
}

TEST(receive_waits_for_buffers_and_prepends_header)
{
	CHECK(send(host_end, "incoming", 8, 0) == 8);
	uint32_t id, len;
	CHECK(!gq_used(&rxq, 5, &id, &len)); /* no buffer posted: the frame waits */
	memset(gq_buf(&rxq, 0), 0xff, 64);
	post(&rxq, NULL, 2048, true);
	if (!CHECK(gq_used(&rxq, 100, &id, &len)))
		return;
	CHECK_EQ_INT(len, 12 + 8);
	uint8_t *b = gq_buf(&rxq, id);
	CHECK_EQ_INT(b[0], 0);	/* flags */
	CHECK_EQ_INT(b[10], 1); /* num_buffers */
	CHECK_MEMEQ(b + 12, 8, "incoming", 8);
}

TEST(paused_device_does_not_receive)
{
	struct vm_device *d = &vm.devices[0];
	post(&rxq, NULL, 2048, true);
	spin(5);
	d->pause(d->dev);
	CHECK(send(host_end, "later", 5, 0) == 5);
	uint32_t id, len;
	CHECK(!gq_used(&rxq, 5, &id, &len));
	d->resume(d->dev);
	CHECK(gq_used(&rxq, 100, &id, &len));
	CHECK_EQ_INT(len, 12 + 5);
}

TEST(malformed_transmit_is_returned)
{
	post(&txq, "short", 5, false); /* less than a header */
	uint32_t id, len;
	CHECK(gq_used(&txq, 100, &id, &len));
	char got[16];
	CHECK_EQ_INT(recv(host_end, got, sizeof(got), MSG_DONTWAIT), -1);
}

TEST(teardown)
{
	virtio_device_destroy(vm.devices[0].dev);
	close(host_end);
	fake_vm_free();
}
