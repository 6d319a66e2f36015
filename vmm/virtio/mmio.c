/*
 * mmio.c - the virtio-mmio transport, version 2 registers only (virtio 1.x;
 * legacy version 1 devices are not emulated).
 *
 * Every guest access is checked: registers are 32-bit and aligned, config
 * space takes any width inside its size, queue numbers and sizes are
 * bounded, status only moves forward (or resets), and a queue is only made
 * ready once its rings lie in guest RAM. A bad access is ignored and
 * logged, rate limited, so a guest can neither crash the VMM nor flood its
 * log. Queue processing never runs on a vCPU thread: notifications arrive
 * on an eventfd watched by the event loop (KVM's ioeventfd, or the MMIO
 * write path signalling the same eventfd when KVM has none).
 */
#include "virtio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../snapfile.h"

#define MMIO_MAGIC   0x74726976 /* "virt" */
#define MMIO_VERSION 2

/* Register offsets (virtio 1.x, 4.2.2). */
enum {
	REG_MAGIC = 0x000,
	REG_VERSION = 0x004,
	REG_DEVICE_ID = 0x008,
	REG_VENDOR_ID = 0x00c,
	REG_DEVICE_FEATURES = 0x010,
	REG_DEVICE_FEATURES_SEL = 0x014,
	REG_DRIVER_FEATURES = 0x020,
	REG_DRIVER_FEATURES_SEL = 0x024,
	REG_QUEUE_SEL = 0x030,
	REG_QUEUE_NUM_MAX = 0x034,
	REG_QUEUE_NUM = 0x038,
	REG_QUEUE_READY = 0x044,
	REG_QUEUE_NOTIFY = 0x050,
	REG_INTERRUPT_STATUS = 0x060,
	REG_INTERRUPT_ACK = 0x064,
	REG_STATUS = 0x070,
	REG_QUEUE_DESC_LOW = 0x080,
	REG_QUEUE_DESC_HIGH = 0x084,
	REG_QUEUE_DRIVER_LOW = 0x090,
	REG_QUEUE_DRIVER_HIGH = 0x094,
	REG_QUEUE_DEVICE_LOW = 0x0a0,
	REG_QUEUE_DEVICE_HIGH = 0x0a4,
	REG_SHM_SEL = 0x0ac,
	REG_SHM_LEN_LOW = 0x0b0,
	REG_SHM_LEN_HIGH = 0x0b4,
	REG_SHM_BASE_LOW = 0x0b8,
	REG_SHM_BASE_HIGH = 0x0bc,
	REG_CONFIG_GENERATION = 0x0fc,
	REG_CONFIG = 0x100,
};

/* Device status bits (2.1). */
#define S_ACKNOWLEDGE 1u
#define S_DRIVER      2u
#define S_DRIVER_OK   4u
#define S_FEATURES_OK 8u
#define S_NEEDS_RESET 64u
#define S_FAILED      128u
#define S_KNOWN	      (S_ACKNOWLEDGE | S_DRIVER | S_DRIVER_OK | S_FEATURES_OK | S_FAILED)

#define F_VERSION_1 (1ull << VIRTIO_F_VERSION_1_BIT)

static void queue_clear(struct virtio_queue *q)
{
	q->num = q->num_max;
	q->ready = false;
	q->desc = q->avail = q->used = 0;
	memset(&q->vq, 0, sizeof(q->vq));
}

void virtio_dev_init(struct virtio_dev *vd, const struct guest_mem *mem, uint32_t device_id, const char *name,
		     uint64_t device_features, int nr_queues, uint16_t queue_max)
{
	memset(vd, 0, sizeof(*vd));
	vd->mem = mem;
	vd->device_id = device_id;
	snprintf(vd->name_buf, sizeof(vd->name_buf), "%s", name);
	vd->name = vd->name_buf;
	/* Only VERSION_1 from the transport features: no INDIRECT_DESC, no
	 * EVENT_IDX (the parser stays small), no ACCESS_PLATFORM. */
	vd->host_features = device_features | F_VERSION_1;
	vd->irqfd = vd->notify_fd = -1;
	vd->notify_io.fd = -1;
	vd->nr_queues = nr_queues;
	for (int i = 0; i < nr_queues; i++) {
		vd->q[i].num_max = queue_max;
		queue_clear(&vd->q[i]);
	}
}

void virtio_warn(struct virtio_dev *vd, const char *fmt, ...)
{
	uint64_t now = mono_ms();
	if (vd->bad_access_log_ms && now - vd->bad_access_log_ms < 1000) {
		vd->bad_access_suppressed++;
		return;
	}
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (vd->bad_access_suppressed)
		log_warn("virtio.guest_error", "%s: %s (%u similar reports suppressed)", vd->name, msg,
			 vd->bad_access_suppressed);
	else
		log_warn("virtio.guest_error", "%s: %s", vd->name, msg);
	vd->bad_access_log_ms = now ? now : 1;
	vd->bad_access_suppressed = 0;
}

static void signal_fd(int fd)
{
	if (fd >= 0 && eventfd_write(fd, 1) < 0 && errno != EAGAIN)
		log_warn("virtio.eventfd", "eventfd write: %s", strerror(errno));
}

void virtio_irq_queue(struct virtio_dev *vd)
{
	vd->isr |= 1; /* VIRTIO_MMIO_INT_VRING */
	signal_fd(vd->irqfd);
}

void virtio_irq_config(struct virtio_dev *vd)
{
	vd->isr |= 2; /* VIRTIO_MMIO_INT_CONFIG */
	signal_fd(vd->irqfd);
}

struct virtq *virtio_queue_get(struct virtio_dev *vd, int queue)
{
	if (queue < 0 || queue >= vd->nr_queues || vd->paused)
		return NULL;
	if ((vd->status & (S_DRIVER_OK | S_FAILED)) != S_DRIVER_OK || !vd->q[queue].ready)
		return NULL;
	return &vd->q[queue].vq;
}

void virtio_queue_done(struct virtio_dev *vd, int queue)
{
	struct virtq *vq = virtio_queue_get(vd, queue);
	if (vq && virtq_should_interrupt(vq))
		virtio_irq_queue(vd);
}

static void run_pending_reset(struct virtio_dev *vd);

void virtio_kick_all(struct virtio_dev *vd)
{
	if (vd->paused) {
		vd->kick_pending = true;
		return;
	}
	vd->kick_pending = false;
	run_pending_reset(vd);
	for (int i = 0; i < vd->nr_queues; i++)
		if (virtio_queue_get(vd, i))
			vd->ops->notify(vd, i);
}

/* Asks the loop thread to look at every queue (never process them here: a
 * vCPU thread must not touch the devices' host-side watchers). */
void virtio_request_kick(struct virtio_dev *vd)
{
	if (vd->notify_fd >= 0)
		signal_fd(vd->notify_fd);
	else
		virtio_kick_all(vd); /* no event loop: unit tests */
}

static void on_notify(void *arg, uint32_t events)
{
	struct virtio_dev *vd = arg;
	eventfd_t v;
	(void)eventfd_read(vd->notify_fd, &v);
	pthread_mutex_lock(&vd->vm->lock);
	virtio_kick_all(vd);
	pthread_mutex_unlock(&vd->vm->lock);
}

void virtio_pause(struct virtio_dev *vd)
{
	vd->paused = true;
}

void virtio_resume(struct virtio_dev *vd)
{
	vd->paused = false;
	virtio_request_kick(vd); /* whatever the guest queued while we looked away */
}

static void device_reset(struct virtio_dev *vd)
{
	vd->status = 0;
	vd->driver_features = 0;
	vd->host_features_sel = vd->driver_features_sel = 0;
	vd->queue_sel = 0;
	vd->isr = 0;
	for (int i = 0; i < vd->nr_queues; i++)
		queue_clear(&vd->q[i]);
	/* The device's own reset touches loop watchers, which belong to the
	 * loop thread: a vCPU thread only schedules it. The queues are already
	 * gone, so nothing reaches guest memory in between. */
	vd->reset_pending = true;
	virtio_request_kick(vd);
}

static void run_pending_reset(struct virtio_dev *vd)
{
	if (!vd->reset_pending)
		return;
	vd->reset_pending = false;
	if (vd->ops && vd->ops->reset)
		vd->ops->reset(vd);
}

static struct virtio_queue *selected_queue(struct virtio_dev *vd)
{
	return vd->queue_sel < (uint32_t)vd->nr_queues ? &vd->q[vd->queue_sel] : NULL;
}

static uint32_t reg_read(struct virtio_dev *vd, uint64_t off)
{
	struct virtio_queue *q = selected_queue(vd);
	switch (off) {
	case REG_MAGIC: return MMIO_MAGIC;
	case REG_VERSION: return MMIO_VERSION;
	case REG_DEVICE_ID: return vd->device_id;
	case REG_VENDOR_ID: return VIRTIO_VENDOR_ID;
	case REG_DEVICE_FEATURES:
		if (vd->host_features_sel > 1)
			return 0;
		return (uint32_t)(vd->host_features >> (32 * vd->host_features_sel));
	case REG_QUEUE_NUM_MAX: return q ? q->num_max : 0;
	case REG_QUEUE_READY: return q ? q->ready : 0;
	case REG_INTERRUPT_STATUS: return vd->isr;
	case REG_STATUS: return vd->status;
	case REG_CONFIG_GENERATION: return vd->config_generation;
	case REG_SHM_LEN_LOW:
	case REG_SHM_LEN_HIGH: return 0xffffffff; /* no shared memory regions */
	case REG_SHM_BASE_LOW:
	case REG_SHM_BASE_HIGH: return 0xffffffff;
	case REG_QUEUE_DESC_LOW: return q ? (uint32_t)q->desc : 0;
	case REG_QUEUE_DESC_HIGH: return q ? (uint32_t)(q->desc >> 32) : 0;
	case REG_QUEUE_DRIVER_LOW: return q ? (uint32_t)q->avail : 0;
	case REG_QUEUE_DRIVER_HIGH: return q ? (uint32_t)(q->avail >> 32) : 0;
	case REG_QUEUE_DEVICE_LOW: return q ? (uint32_t)q->used : 0;
	case REG_QUEUE_DEVICE_HIGH: return q ? (uint32_t)(q->used >> 32) : 0;
	}
	virtio_warn(vd, "read of write-only or unknown register 0x%03llx", (unsigned long long)off);
	return 0;
}

static bool features_acceptable(struct virtio_dev *vd)
{
	if (vd->driver_features & ~vd->host_features) {
		virtio_warn(vd, "driver accepted features 0x%llx we never offered",
			    (unsigned long long)(vd->driver_features & ~vd->host_features));
		return false;
	}
	if (!(vd->driver_features & F_VERSION_1)) {
		virtio_warn(vd, "driver did not accept VERSION_1 (legacy drivers are not supported)");
		return false;
	}
	return true;
}

/* Status may only gain bits, in the order of 3.1.1; 0 resets. */
static void write_status(struct virtio_dev *vd, uint32_t v)
{
	if (v == 0) {
		device_reset(vd);
		return;
	}
	if ((v & ~S_KNOWN) || (vd->status & ~v) || ((v & S_DRIVER) && !(v & S_ACKNOWLEDGE)) ||
	    ((v & S_FEATURES_OK) && !(v & S_DRIVER)) || ((v & S_DRIVER_OK) && !(v & S_FEATURES_OK))) {
		virtio_warn(vd, "status 0x%x -> 0x%x is not a valid transition", vd->status, v);
		return;
	}
	uint32_t added = v & ~vd->status;
	if ((added & S_FEATURES_OK) && !features_acceptable(vd))
		v &= ~(S_FEATURES_OK | S_DRIVER_OK); /* the driver reads it back and gives up */
	vd->status = v;
	if ((added & S_DRIVER_OK) && (v & S_DRIVER_OK)) {
		if (vd->ops && vd->ops->driver_ok)
			vd->ops->driver_ok(vd);
		virtio_request_kick(vd); /* buffers posted before DRIVER_OK */
	}
}

static void write_queue_ready(struct virtio_dev *vd, struct virtio_queue *q, uint32_t v)
{
	if (v == 0) {
		q->ready = false;
		return;
	}
	if (q->ready)
		return;
	if (virtq_init(&q->vq, vd->mem, q->num, q->desc, q->avail, q->used) < 0) {
		virtio_warn(vd, "queue %u: size %u or rings 0x%llx/0x%llx/0x%llx invalid; not made ready",
			    vd->queue_sel, q->num, (unsigned long long)q->desc, (unsigned long long)q->avail,
			    (unsigned long long)q->used);
		return;
	}
	q->ready = true;
}

static void set_half(uint64_t *field, uint32_t v, bool high)
{
	*field = high ? (*field & 0xffffffffull) | ((uint64_t)v << 32) : (*field & ~0xffffffffull) | v;
}

static void reg_write(struct virtio_dev *vd, uint64_t off, uint32_t v)
{
	struct virtio_queue *q = selected_queue(vd);
	switch (off) {
	case REG_DEVICE_FEATURES_SEL: vd->host_features_sel = v; return;
	case REG_DRIVER_FEATURES_SEL: vd->driver_features_sel = v; return;
	case REG_DRIVER_FEATURES:
		if ((vd->status & (S_DRIVER | S_FEATURES_OK)) != S_DRIVER || vd->driver_features_sel > 1)
			break;
		set_half(&vd->driver_features, v, vd->driver_features_sel == 1);
		return;
	case REG_QUEUE_SEL: vd->queue_sel = v; return; /* checked when used */
	case REG_QUEUE_NOTIFY:
		if (v >= (uint32_t)vd->nr_queues)
			break;
		virtio_request_kick(vd);
		return;
	case REG_INTERRUPT_ACK: vd->isr &= ~v; return;
	case REG_STATUS: write_status(vd, v); return;
	case REG_SHM_SEL: return;
	}
	if (off >= REG_QUEUE_NUM && off <= REG_QUEUE_DEVICE_HIGH && off != REG_QUEUE_NOTIFY) {
		if (!q) {
			virtio_warn(vd, "queue register 0x%03llx with QueueSel %u out of range",
				    (unsigned long long)off, vd->queue_sel);
			return;
		}
		if (off == REG_QUEUE_READY) {
			write_queue_ready(vd, q, v);
			return;
		}
		if (q->ready) {
			virtio_warn(vd, "queue %u reconfigured while ready", vd->queue_sel);
			return;
		}
		switch (off) {
		case REG_QUEUE_NUM:
			if (v == 0 || v > q->num_max || (v & (v - 1))) {
				virtio_warn(vd, "queue %u: size %u (max %u, power of two)", vd->queue_sel, v,
					    q->num_max);
				return;
			}
			q->num = (uint16_t)v;
			return;
		case REG_QUEUE_DESC_LOW:
		case REG_QUEUE_DESC_HIGH: set_half(&q->desc, v, off == REG_QUEUE_DESC_HIGH); return;
		case REG_QUEUE_DRIVER_LOW:
		case REG_QUEUE_DRIVER_HIGH: set_half(&q->avail, v, off == REG_QUEUE_DRIVER_HIGH); return;
		case REG_QUEUE_DEVICE_LOW:
		case REG_QUEUE_DEVICE_HIGH: set_half(&q->used, v, off == REG_QUEUE_DEVICE_HIGH); return;
		}
	}
	virtio_warn(vd, "write 0x%x to register 0x%03llx ignored (read-only, unknown or wrong state)", v,
		    (unsigned long long)off);
}

void virtio_mmio_access(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_dev *vd = dev;
	if (off >= REG_CONFIG) {
		uint64_t c = off - REG_CONFIG;
		if (c >= vd->config_size || len > vd->config_size - c) {
			virtio_warn(vd, "config access %u bytes at 0x%llx beyond its %u bytes", len,
				    (unsigned long long)c, vd->config_size);
			if (!is_write)
				memset(data, 0, len);
			return;
		}
		if (is_write)
			virtio_warn(vd, "config space is read-only; write at 0x%llx ignored", (unsigned long long)c);
		else
			memcpy(data, vd->config + c, len);
		return;
	}
	if (len != 4 || (off & 3)) {
		virtio_warn(vd, "%u-byte access at register 0x%03llx (must be 32-bit, aligned)", len,
			    (unsigned long long)off);
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	uint32_t v;
	if (is_write) {
		memcpy(&v, data, 4);
		reg_write(vd, off, v);
	} else {
		v = reg_read(vd, off);
		memcpy(data, &v, 4);
	}
}

int virtio_dev_attach(struct virtio_dev *vd, struct vm *vm, char *err, size_t errsz)
{
	vd->vm = vm;
	vd->mem = &vm->mem;
	if (vm_alloc_mmio_slot(vm, &vd->base, &vd->gsi) < 0) {
		snprintf(err, errsz, "%s: no free virtio-mmio slot (at most %d)", vd->name, VMM_MAX_MMIO_SLOTS);
		return -1;
	}
	if (bus_add(&vm->mmio, vd->base, VIRTIO_MMIO_SIZE, virtio_mmio_access, vd) < 0) {
		snprintf(err, errsz, "%s: MMIO window 0x%llx is taken", vd->name, (unsigned long long)vd->base);
		return -1;
	}
	vd->irqfd = vm_irqfd(vm, vd->gsi);
	if (vd->irqfd < 0) {
		snprintf(err, errsz, "%s: irqfd for GSI %d: %s", vd->name, vd->gsi, strerror(errno));
		return -1;
	}
	vd->notify_fd = vm_ioeventfd(vm, vd->base + REG_QUEUE_NOTIFY, 4, -1);
	if (vd->notify_fd < 0) {
		/* Still works: QueueNotify exits to us and signals this fd. */
		log_warn("virtio.ioeventfd", "%s: no ioeventfd, queue notifications take the MMIO exit path", vd->name);
		vd->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (vd->notify_fd < 0) {
			snprintf(err, errsz, "%s: eventfd: %s", vd->name, strerror(errno));
			return -1;
		}
	}
	if (vm->loop && loop_io_add(vm->loop, &vd->notify_io, vd->notify_fd, EPOLLIN, on_notify, vd) < 0) {
		snprintf(err, errsz, "%s: watch notifications: %s", vd->name, strerror(errno));
		return -1;
	}
	log_info("virtio.attach", "%s at 0x%llx, GSI %d", vd->name, (unsigned long long)vd->base, vd->gsi);
	return 0;
}

void virtio_device_destroy(void *dev)
{
	struct virtio_dev *vd = dev;
	struct loop *l = vd->vm ? vd->vm->loop : NULL;
	if (vd->ops && vd->ops->destroy)
		vd->ops->destroy(vd);
	if (l)
		loop_io_del(l, &vd->notify_io);
	if (vd->notify_fd >= 0)
		close(vd->notify_fd);
	if (vd->irqfd >= 0)
		close(vd->irqfd);
	free(vd);
}

/* --- snapshots ------------------------------------------------------------ */

void virtio_transport_save(const struct virtio_dev *vd, struct snap_w *w)
{
	snap_w_u32(w, VIRTIO_TRANSPORT_STATE_VERSION);
	snap_w_u32(w, vd->device_id);
	snap_w_u32(w, (uint32_t)vd->nr_queues);
	snap_w_u64(w, vd->host_features);
	snap_w_u64(w, vd->driver_features);
	snap_w_u32(w, vd->host_features_sel);
	snap_w_u32(w, vd->driver_features_sel);
	snap_w_u32(w, vd->queue_sel);
	snap_w_u32(w, vd->status);
	snap_w_u32(w, vd->isr);
	snap_w_u32(w, vd->config_generation);
	for (int i = 0; i < vd->nr_queues; i++) {
		const struct virtio_queue *q = &vd->q[i];
		snap_w_u32(w, q->num);
		snap_w_u32(w, q->ready);
		snap_w_u64(w, q->desc);
		snap_w_u64(w, q->avail);
		snap_w_u64(w, q->used);
		snap_w_u32(w, q->vq.last_avail_idx);
		snap_w_u32(w, q->vq.used_idx);
		snap_w_u32(w, q->vq.broken);
	}
}

static int load_fail(char *err, size_t errsz, const struct virtio_dev *vd, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int load_fail(char *err, size_t errsz, const struct virtio_dev *vd, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errsz, "%s state: %s", vd->name, msg);
	return -1;
}

static int load_queue(struct virtio_dev *vd, int i, struct snap_cur *c, struct virtio_queue *out, char *err,
		      size_t errsz)
{
	uint32_t num = snap_cur_u32(c), ready = snap_cur_u32(c);
	uint64_t desc = snap_cur_u64(c), avail = snap_cur_u64(c), used = snap_cur_u64(c);
	uint32_t last_avail = snap_cur_u32(c), used_idx = snap_cur_u32(c), broken = snap_cur_u32(c);
	if (c->bad)
		return load_fail(err, errsz, vd, "truncated");
	*out = vd->q[i];
	if (num == 0 || num > out->num_max || (num & (num - 1)) || ready > 1 || broken > 1 || last_avail > 0xffff ||
	    used_idx > 0xffff)
		return load_fail(err, errsz, vd, "queue %d: size %u / ready %u / indices %u,%u invalid", i, num, ready,
				 last_avail, used_idx);
	out->num = (uint16_t)num;
	out->ready = ready;
	out->desc = desc;
	out->avail = avail;
	out->used = used;
	memset(&out->vq, 0, sizeof(out->vq));
	if (ready) {
		if (virtq_init(&out->vq, vd->mem, out->num, desc, avail, used) < 0)
			return load_fail(err, errsz, vd, "queue %d: rings 0x%llx/0x%llx/0x%llx not in guest RAM", i,
					 (unsigned long long)desc, (unsigned long long)avail, (unsigned long long)used);
		out->vq.last_avail_idx = (uint16_t)last_avail;
		out->vq.used_idx = (uint16_t)used_idx;
		out->vq.broken = broken;
	}
	return 0;
}

int virtio_transport_load(struct virtio_dev *vd, struct snap_cur *c, char *err, size_t errsz)
{
	uint32_t version = snap_cur_u32(c);
	if (c->bad)
		return load_fail(err, errsz, vd, "truncated");
	if (version != VIRTIO_TRANSPORT_STATE_VERSION)
		return load_fail(err, errsz, vd, "transport layout %u, this VMM reads %u", version,
				 VIRTIO_TRANSPORT_STATE_VERSION);
	uint32_t device_id = snap_cur_u32(c), nr_queues = snap_cur_u32(c);
	uint64_t host_features = snap_cur_u64(c), driver_features = snap_cur_u64(c);
	uint32_t hsel = snap_cur_u32(c), dsel = snap_cur_u32(c), qsel = snap_cur_u32(c);
	uint32_t status = snap_cur_u32(c), isr = snap_cur_u32(c), gen = snap_cur_u32(c);
	if (c->bad)
		return load_fail(err, errsz, vd, "truncated");
	if (device_id != vd->device_id || nr_queues != (uint32_t)vd->nr_queues)
		return load_fail(err, errsz, vd, "saved device id %u with %u queues, this is id %u with %d", device_id,
				 nr_queues, vd->device_id, vd->nr_queues);
	if (host_features != vd->host_features)
		return load_fail(err, errsz, vd, "saved with features 0x%llx, this device offers 0x%llx",
				 (unsigned long long)host_features, (unsigned long long)vd->host_features);
	if ((driver_features & ~host_features) || (status & ~S_KNOWN) || isr > 3)
		return load_fail(err, errsz, vd, "driver features 0x%llx / status 0x%x / isr 0x%x invalid",
				 (unsigned long long)driver_features, status, isr);
	struct virtio_queue q[VIRTIO_MAX_QUEUES];
	for (int i = 0; i < vd->nr_queues; i++)
		if (load_queue(vd, i, c, &q[i], err, errsz) < 0)
			return -1;
	/* Everything checked: only now change the device. */
	vd->driver_features = driver_features;
	vd->host_features_sel = hsel;
	vd->driver_features_sel = dsel;
	vd->queue_sel = qsel;
	vd->status = status;
	vd->isr = isr;
	vd->config_generation = gen;
	memcpy(vd->q, q, sizeof(q[0]) * (size_t)vd->nr_queues);
	return 0;
}

void virtio_transport_restored(struct virtio_dev *vd)
{
	if (vd->isr)
		signal_fd(vd->irqfd); /* an interrupt the guest had not acknowledged yet */
	virtio_request_kick(vd);
}
