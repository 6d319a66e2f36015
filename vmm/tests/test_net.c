/*
 * test_net.c - virtio-net on a fake VM (heap RAM, real event loop, no KVM)
 * with a SOCK_SEQPACKET socket pair standing in for a TAP without
 * IFF_VNET_HDR: frames keep their boundaries and the device must strip /
 * prepend the 12-byte virtio_net_hdr itself.
 */
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/loop.h"
#include "../virtio/virtio.h"

#include "../../lib/tests/test.h"

#define RAM_SIZE (1 << 20)
#define QN	 16

static struct vm vm;
static struct vm_config vcfg;
static int host_end = -1;

struct gq {
	int index;
	uint64_t desc, avail, used, bufs;
	uint16_t avail_idx, used_seen, next_desc;
};
static struct gq rxq = {.index = 0}, txq = {.index = 1};

static void mmio_w(uint64_t off, uint32_t v)
{
	bus_access(&vm.mmio, VIRTIO_MMIO_BASE + off, (uint8_t *)&v, 4, true);
}

static uint32_t mmio_r(uint64_t off)
{
	uint32_t v = 0;
	bus_access(&vm.mmio, VIRTIO_MMIO_BASE + off, (uint8_t *)&v, 4, false);
	return v;
}

static void stop_cb(void *arg)
{
	loop_stop(arg);
}

static void spin(int ms)
{
	struct loop_timer t = {0};
	loop_timer_arm(vm.loop, &t, (uint64_t)ms, stop_cb, vm.loop);
	loop_run(vm.loop);
}

static uint16_t rd16(uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, vm.mem.host + gpa, 2);
	return v;
}

static void gq_add(struct gq *q, const void *data, uint32_t len, bool writable)
{
	uint16_t d = q->next_desc++ % QN;
	uint64_t buf = q->bufs + (uint64_t)d * 0x1000;
	if (data)
		memcpy(vm.mem.host + buf, data, len);
	struct virtq_desc desc = {.addr = buf, .len = len, .flags = writable ? VIRTQ_DESC_F_WRITE : 0};
	memcpy(vm.mem.host + q->desc + 16 * d, &desc, 16);
	memcpy(vm.mem.host + q->avail + 4 + 2 * (q->avail_idx % QN), &d, 2);
	q->avail_idx++;
	memcpy(vm.mem.host + q->avail + 2, &q->avail_idx, 2);
	mmio_w(0x050, (uint32_t)q->index);
}

static bool gq_used(struct gq *q, int tries, uint32_t *id, uint32_t *len)
{
	for (int i = 0; i < tries && rd16(q->used + 2) == q->used_seen; i++)
		spin(5);
	if (rd16(q->used + 2) == q->used_seen)
		return false;
	uint64_t e = q->used + 4 + 8ull * (q->used_seen % QN);
	memcpy(id, vm.mem.host + e, 4);
	memcpy(len, vm.mem.host + e + 4, 4);
	q->used_seen++;
	return true;
}

static void queue_setup(struct gq *q)
{
	q->desc = 0x10000 + (uint64_t)q->index * 0x1000;
	q->avail = q->desc + 0x400;
	q->used = q->desc + 0x800;
	q->bufs = 0x40000 + (uint64_t)q->index * 0x10000;
	mmio_w(0x030, (uint32_t)q->index);
	mmio_w(0x038, QN);
	mmio_w(0x080, (uint32_t)q->desc);
	mmio_w(0x090, (uint32_t)q->avail);
	mmio_w(0x0a0, (uint32_t)q->used);
	mmio_w(0x044, 1);
}

TEST(setup_and_config)
{
	log_set_level(LOG_ERROR);
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	host_end = sv[1];
	vm.mem.host = calloc(1, RAM_SIZE);
	vm.mem.size = vm.mem.low_size = RAM_SIZE;
	vm.mem.backing_fd = -1;
	vm.vm_fd = vm.kvm_fd = -1;
	vm.loop = loop_new();
	vm.cfg = &vcfg;
	pthread_mutex_init(&vm.lock, NULL);
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
	mmio_w(0x024, 1);
	mmio_w(0x020, 1);
	mmio_w(0x070, 11);
	CHECK_EQ_INT(mmio_r(0x070), 11);
	queue_setup(&rxq);
	queue_setup(&txq);
	mmio_w(0x070, 15);
	spin(5);
}

TEST(transmit_strips_header)
{
	uint8_t pkt[64] = {0};
	memcpy(pkt + 12, "hello-frame", 11);
	gq_add(&txq, pkt, 23, false);
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
	memset(vm.mem.host + rxq.bufs, 0xff, 64);
	gq_add(&rxq, NULL, 2048, true);
	if (!CHECK(gq_used(&rxq, 100, &id, &len)))
		return;
	CHECK_EQ_INT(len, 12 + 8);
	uint8_t *b = vm.mem.host + rxq.bufs + (uint64_t)id * 0x1000;
	CHECK_EQ_INT(b[0], 0);	/* flags */
	CHECK_EQ_INT(b[10], 1); /* num_buffers */
	CHECK_MEMEQ(b + 12, 8, "incoming", 8);
}

TEST(paused_device_does_not_receive)
{
	struct vm_device *d = &vm.devices[0];
	gq_add(&rxq, NULL, 2048, true);
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
	gq_add(&txq, "short", 5, false); /* less than a header */
	uint32_t id, len;
	CHECK(gq_used(&txq, 100, &id, &len));
	char got[16];
	CHECK_EQ_INT(recv(host_end, got, sizeof(got), MSG_DONTWAIT), -1);
}

TEST(teardown)
{
	virtio_device_destroy(vm.devices[0].dev);
	close(host_end);
	loop_free(vm.loop);
	free(vm.mem.host);
}
