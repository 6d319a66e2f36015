/*
 * fake_guest.h - a fake VM and a minimal virtio driver for the virtio device
 * tests (test_net.c, test_vsock.c, the virtio-blk part of test_disk.c).
 *
 * The VM is a real struct vm with guest RAM in the heap and the real event
 * loop but no KVM: the test plays the guest, writing the device's MMIO
 * registers through the bus, building virtqueues in guest RAM and running
 * the loop while it waits for completions. The device under test is the
 * only one, so it sits at VIRTIO_MMIO_BASE.
 *
 * Each queue gets a fixed place in guest RAM: its rings in the page at
 * 0x10000 + index * 0x1000 and GQ_SIZE buffers of GQ_BUF_SIZE bytes at
 * 0x40000 + index * 0x10000, one per descriptor. Everything is static, like
 * lib/tests/test.h: include this header from exactly one file per binary.
 */
#ifndef CUBE_FAKE_GUEST_H
#define CUBE_FAKE_GUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/log.h"
#include "../../lib/loop.h"
#include "../snapfile.h"
#include "../virtio/virtio.h"

#define FAKE_RAM_SIZE (1 << 20)
#define GQ_SIZE	      16
#define GQ_BUF_SIZE   0x1000

static struct vm vm;
static struct vm_config vcfg;

/* A fresh VM with zeroed RAM and its own loop; devices are added by the test. */
static inline void fake_vm_init(void)
{
	log_set_level(LOG_ERROR);
	memset(&vm, 0, sizeof(vm));
	vm.mem.host = calloc(1, FAKE_RAM_SIZE);
	vm.mem.size = vm.mem.low_size = FAKE_RAM_SIZE;
	vm.mem.backing_fd = -1;
	vm.vm_fd = vm.kvm_fd = -1;
	vm.loop = loop_new();
	vm.cfg = &vcfg;
	pthread_mutex_init(&vm.lock, NULL);
}

/* Frees the VM; the test destroys its device first. */
static inline void fake_vm_free(void)
{
	loop_free(vm.loop);
	free(vm.mem.host);
	pthread_mutex_destroy(&vm.lock);
}

static inline void mmio_w(uint64_t off, uint32_t v)
{
	bus_access(&vm.mmio, VIRTIO_MMIO_BASE + off, (uint8_t *)&v, 4, true);
}

static inline uint32_t mmio_r(uint64_t off)
{
	uint32_t v = 0;
	bus_access(&vm.mmio, VIRTIO_MMIO_BASE + off, (uint8_t *)&v, 4, false);
	return v;
}

static inline void wr16(uint64_t gpa, uint16_t v)
{
	memcpy(vm.mem.host + gpa, &v, 2);
}

static inline uint16_t rd16(uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, vm.mem.host + gpa, 2);
	return v;
}

static inline void stop_cb(void *arg)
{
	loop_stop(arg);
}

/* Lets the device run for ms milliseconds. */
static inline void spin(int ms)
{
	struct loop_timer t = {0};
	loop_timer_arm(vm.loop, &t, (uint64_t)ms, stop_cb, vm.loop);
	loop_run(vm.loop);
}

/* A virtqueue as the guest driver sees it. */
struct gq {
	int index;
	uint64_t desc, avail, used, bufs;
	uint16_t avail_idx, used_seen, next_desc;
};

/* Places queue q in guest RAM and hands it to the device (during DRIVER
 * setup, after FEATURES_OK): it starts empty. */
static inline void gq_setup(struct gq *q)
{
	q->desc = 0x10000 + (uint64_t)q->index * 0x1000;
	q->avail = q->desc + 0x400;
	q->used = q->desc + 0x800;
	q->bufs = 0x40000 + (uint64_t)q->index * 0x10000;
	q->avail_idx = q->used_seen = q->next_desc = 0;
	mmio_w(0x030, (uint32_t)q->index);
	mmio_w(0x038, GQ_SIZE);
	mmio_w(0x080, (uint32_t)q->desc);
	mmio_w(0x084, 0);
	mmio_w(0x090, (uint32_t)q->avail);
	mmio_w(0x094, 0);
	mmio_w(0x0a0, (uint32_t)q->used);
	mmio_w(0x0a4, 0);
	mmio_w(0x044, 1);
}

/* The host address of the buffer that belongs to descriptor id. */
static inline uint8_t *gq_buf(const struct gq *q, uint32_t id)
{
	return vm.mem.host + q->bufs + (uint64_t)id * GQ_BUF_SIZE;
}

static inline void gq_put_desc(struct gq *q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
	memcpy(vm.mem.host + q->desc + 16 * i, &d, 16);
}

/* Makes the chain that starts at descriptor head available (no notification). */
static inline void gq_publish(struct gq *q, uint16_t head)
{
	wr16(q->avail + 4 + 2 * (q->avail_idx % GQ_SIZE), head);
	q->avail_idx++;
	wr16(q->avail + 2, q->avail_idx);
}

/* Adds a one-descriptor chain over the next buffer, filled from data when
 * data is not NULL; returns the buffer's guest address. */
static inline uint64_t gq_add(struct gq *q, const void *data, uint32_t len, bool writable)
{
	uint16_t d = q->next_desc++ % GQ_SIZE;
	uint64_t buf = q->bufs + (uint64_t)d * GQ_BUF_SIZE;
	if (data)
		memcpy(vm.mem.host + buf, data, len);
	gq_put_desc(q, d, buf, len, writable ? VIRTQ_DESC_F_WRITE : 0, 0);
	gq_publish(q, d);
	return buf;
}

static inline void gq_kick(struct gq *q)
{
	mmio_w(0x050, (uint32_t)q->index);
}

/* The next completed chain of q, letting the device run 5 ms at a time for
 * up to tries times. */
static inline bool gq_used(struct gq *q, int tries, uint32_t *id, uint32_t *len)
{
	for (int i = 0; i < tries && rd16(q->used + 2) == q->used_seen; i++)
		spin(5);
	if (rd16(q->used + 2) == q->used_seen)
		return false;
	uint64_t e = q->used + 4 + 8ull * (q->used_seen % GQ_SIZE);
	memcpy(id, vm.mem.host + e, 4);
	memcpy(len, vm.mem.host + e + 4, 4);
	q->used_seen++;
	return true;
}

/* The driver accepts VIRTIO_F_VERSION_1 and nothing else and sets
 * FEATURES_OK (status ACKNOWLEDGE | DRIVER | FEATURES_OK). */
static inline void driver_accept_version_1(void)
{
	mmio_w(0x024, 1);
	mmio_w(0x020, 1);
	mmio_w(0x070, 11);
}

/* Runs device d's save as a snapshot would: one SNAP_DEVICE section in w,
 * a fresh writer whose side files go to snap_dir. The payload is the *len
 * bytes at w->b.data + *start. Returns what save returned. */
static inline int fake_save_device(struct vm_device *d, struct snap_w *w, const char *snap_dir, size_t *start,
				   size_t *len)
{
	snap_w_init(w);
	w->dir = snap_dir;
	snap_w_begin(w, SNAP_DEVICE, 0);
	*start = w->b.len;
	int rc = d->save(d->dev, w);
	*len = w->b.len - *start;
	return rc;
}

#endif
