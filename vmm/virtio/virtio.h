/*
 * virtio.h - the virtio-mmio transport (version 2, virtio 1.x only) shared by
 * the blk, net and vsock devices, and the devices' creation functions.
 *
 * A device embeds a struct virtio_dev and fills in its ops; the transport
 * owns the register block, feature negotiation, queue configuration,
 * notifications (an ioeventfd on QueueNotify, watched on the event loop)
 * and interrupts (an irqfd on the slot's GSI). Device callbacks always run
 * with vm->lock held: notify() on the loop thread, the register accesses on
 * vCPU threads.
 */
#ifndef CUBE_VIRTIO_H
#define CUBE_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../lib/loop.h"
#include "../vmm.h"
#include "virtq.h"

#define VIRTIO_MAX_QUEUES      3
#define VIRTIO_CONFIG_MAX      64 /* bytes of device config space we expose at 0x100 */
#define VIRTIO_F_VERSION_1_BIT 32
#define VIRTIO_VENDOR_ID       0x45425543 /* "CUBE" */

/* Device ids (virtio spec 5.x). */
#define VIRTIO_ID_NET_DEV   1
#define VIRTIO_ID_BLK_DEV   2
#define VIRTIO_ID_VSOCK_DEV 19

struct virtio_dev;

struct virtio_dev_ops {
	/* The queue has new available buffers (or may have: notifications are
	 * coalesced, so a device must tolerate a spurious call). */
	void (*notify)(struct virtio_dev *vd, int queue);
	/* The driver wrote 0 to Status: forget in-flight device state. Runs
	 * on the loop thread (the register write only schedules it), so it
	 * may close host fds and drop loop watchers. */
	void (*reset)(struct virtio_dev *vd);
	/* The driver set DRIVER_OK. May be NULL. */
	void (*driver_ok)(struct virtio_dev *vd);
	/* Releases the device's own resources (not the struct). May be NULL. */
	void (*destroy)(struct virtio_dev *vd);
};

struct virtio_queue {
	uint16_t num_max;
	uint16_t num;
	bool ready;
	uint64_t desc, avail, used; /* guest physical addresses */
	struct virtq vq;	    /* valid while ready */
};

struct virtio_dev {
	struct vm *vm; /* NULL in unit tests */
	const struct guest_mem *mem;
	const struct virtio_dev_ops *ops;
	const char *name; /* for logs: "virtio-blk0" */
	char name_buf[24];
	uint32_t device_id;

	uint64_t base; /* MMIO window */
	int gsi;
	int irqfd;     /* -1: no interrupt delivery (tests) */
	int notify_fd; /* ioeventfd (or a plain eventfd when KVM refused one) */
	struct loop_io notify_io;

	uint64_t host_features;
	uint64_t driver_features;
	uint32_t host_features_sel, driver_features_sel;
	uint32_t queue_sel;
	uint32_t status;
	uint32_t isr;
	uint32_t config_generation;
	uint8_t config[VIRTIO_CONFIG_MAX];
	uint32_t config_size;

	int nr_queues;
	struct virtio_queue q[VIRTIO_MAX_QUEUES];

	bool paused;		    /* pause hook ran: do not touch guest memory */
	bool kick_pending;	    /* a notification arrived while paused */
	bool reset_pending;	    /* ops->reset still to run on the loop thread */
	uint64_t bad_access_log_ms; /* rate limit for guest-caused warnings */
	uint32_t bad_access_suppressed;
};

/* --- transport (mmio.c) ------------------------------------------------- */
/* Fills in the transport part; no VM needed (unit tests use this alone). */
void virtio_dev_init(struct virtio_dev *vd, const struct guest_mem *mem, uint32_t device_id, const char *name,
		     uint64_t device_features, int nr_queues, uint16_t queue_max);
/* Takes an MMIO slot, registers the region, the irqfd and the ioeventfd. */
int virtio_dev_attach(struct virtio_dev *vd, struct vm *vm, char *err, size_t errsz);
/* The MMIO handler (bus_access_fn). */
void virtio_mmio_access(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write);
/* Sets the used-buffer interrupt bit and raises the GSI. */
void virtio_irq_queue(struct virtio_dev *vd);
void virtio_irq_config(struct virtio_dev *vd);
/* Raises an interrupt for the queue unless the driver suppressed it. */
void virtio_queue_done(struct virtio_dev *vd, int queue);
/* The queue's virtq if the driver made it ready and the device is live. */
struct virtq *virtio_queue_get(struct virtio_dev *vd, int queue);
/* Asks the loop thread for another pass over every queue (a device that
 * stopped early to let other work run, or may run from a vCPU thread). */
void virtio_request_kick(struct virtio_dev *vd);
/* Runs notify() for every ready queue (after resume or restore, in case a
 * notification was lost). */
void virtio_kick_all(struct virtio_dev *vd);
/* Guest-caused problem: logged, but at most once a second per device. */
void virtio_warn(struct virtio_dev *vd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Pause/resume bookkeeping shared by the devices' hooks. */
void virtio_pause(struct virtio_dev *vd);
void virtio_resume(struct virtio_dev *vd);

/* Transport state for snapshots: status, features, queue configuration and
 * indices, interrupt status. load() re-validates everything against guest
 * memory; -1 with a message in err if the payload is corrupt. */
#define VIRTIO_TRANSPORT_STATE_VERSION 1
void virtio_transport_save(const struct virtio_dev *vd, struct snap_w *w);
struct snap_cur;
int virtio_transport_load(struct virtio_dev *vd, struct snap_cur *c, char *err, size_t errsz);
/* After a restore: re-raise a pending interrupt and re-run the queues. */
void virtio_transport_restored(struct virtio_dev *vd);

/* --- devices ------------------------------------------------------------ */
/* Each creates the device, attaches it to a virtio-mmio slot and registers
 * it with vm_add_device. 0, or -1 with a message in err. */
int virtio_blk_create(struct vm *vm, struct disk_config *cfg, int index, char *err, size_t errsz);
int virtio_net_create(struct vm *vm, struct net_config *cfg, int index, char *err, size_t errsz);
int virtio_vsock_create(struct vm *vm, struct vsock_config *cfg, char *err, size_t errsz);

/* The frozen layer virtio-blk writes into the snapshot directory for disk
 * <index>: restore lists "<dir>/<this name>" as cfg->lower[0]. */
#define VIRTIO_BLK_LAYER_NAME_FMT "disk%d.layer"

/* Tears down any of the three devices above given its vm_device.dev (the
 * VM must be stopped): host fds, watchers, memory. The MMIO region stays
 * registered, so call it only when the VM itself goes away. */
void virtio_device_destroy(void *dev);

/* --- vsock pieces exposed for unit tests (vsock.c) ----------------------- */
/* Credit the peer still grants us: buf_alloc - (tx_cnt - fwd_cnt), never
 * negative, with 32-bit wraparound of the counters. */
uint32_t vsock_peer_credit(uint32_t peer_buf_alloc, uint32_t peer_fwd_cnt, uint32_t tx_cnt);
/* Parses "CONNECT <port>\n" (the newline already stripped). 0 or -1. */
int vsock_parse_connect(const char *line, size_t len, uint32_t *port);

#endif
