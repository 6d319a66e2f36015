/*
 * blk.c - virtio-blk (device id 2) over a layered copy-on-write disk.
 *
 * One request queue, processed synchronously on the loop thread: the disk
 * is a local file, and a microVM's I/O is small next to a snapshot's cost.
 * Each request is header (readable), data, status byte (the last writable
 * byte); anything else is answered with an error status, never trusted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/log.h"
#include "../snapfile.h"
#include "disk.h"
#include "virtio.h"

#define BLK_QUEUE_SIZE	  256
#define BLK_SEG_MAX	  (BLK_QUEUE_SIZE - 2) /* header and status take a descriptor each */
#define BLK_BATCH	  256		       /* requests per pass before yielding to the loop */
#define BLK_STATE_VERSION 1

/* Feature bits, request types and status values (virtio 1.x, 5.2). */
#define BLK_F_SEG_MAX  (1ull << 2)
#define BLK_F_RO       (1ull << 5)
#define BLK_F_BLK_SIZE (1ull << 6)
#define BLK_F_FLUSH    (1ull << 9)
#define BLK_T_IN       0
#define BLK_T_OUT      1
#define BLK_T_FLUSH    4
#define BLK_T_GET_ID   8
#define BLK_S_OK       0
#define BLK_S_IOERR    1
#define BLK_S_UNSUPP   2
#define BLK_ID_BYTES   20
#define SECTOR	       512u

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk {
	struct virtio_dev vd; /* first: the transport hands us back this pointer */
	struct disk disk;
	struct disk_config *cfg;
	int index;
	char serial[BLK_ID_BYTES + 1];
	bool io_error_logged;
	struct virtq_chain ch;
};

static void io_error(struct blk *b, const char *what, uint64_t sector)
{
	if (b->io_error_logged)
		return;
	b->io_error_logged = true;
	log_error("virtio_blk.io_error", "%s: %s at sector %llu: %s (further errors not logged)", b->vd.name, what,
		  (unsigned long long)sector, strerror(errno));
}

static bool range_ok(struct blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t capacity = b->disk.size / SECTOR;
	return bytes % SECTOR == 0 && sector <= capacity && bytes / SECTOR <= capacity - sector;
}

/* Reads or writes the data part of a request segment by segment, straight
 * between the disk and guest memory. */
static uint8_t transfer(struct blk *b, const struct virtq_chain *ch, bool to_guest, uint64_t sector, uint64_t len)
{
	struct iovec iov[VIRTQ_MAX_SIZE];
	int n = virtq_chain_iov(ch, to_guest, to_guest ? 0 : sizeof(struct blk_req_hdr), len, iov, VIRTQ_MAX_SIZE);
	uint64_t off = sector * SECTOR;
	for (int i = 0; i < n; i++) {
		int rc = to_guest ? disk_read(&b->disk, off, iov[i].iov_len, iov[i].iov_base)
				  : disk_write(&b->disk, off, iov[i].iov_len, iov[i].iov_base);
		if (rc < 0) {
			io_error(b, to_guest ? "read" : "write", sector);
			return BLK_S_IOERR;
		}
		off += iov[i].iov_len;
	}
	return BLK_S_OK;
}

/* Handles one request; returns the bytes written into the chain. */
static uint32_t blk_request(struct blk *b, const struct virtq_chain *ch)
{
	struct blk_req_hdr h;
	if (ch->writable_len < 1) {
		virtio_warn(&b->vd, "request without a status byte");
		return 0;
	}
	uint64_t data_in = ch->writable_len - 1; /* writable bytes before the status byte */
	uint8_t status = BLK_S_IOERR;
	uint32_t written = 0;
	if (virtq_chain_read(ch, 0, &h, sizeof(h)) != sizeof(h)) {
		virtio_warn(&b->vd, "request header shorter than %zu bytes", sizeof(h));
		goto out;
	}
	switch (h.type) {
	case BLK_T_IN:
		if (!range_ok(b, h.sector, data_in)) {
			virtio_warn(&b->vd, "read of %llu bytes at sector %llu beyond the disk or not whole sectors",
				    (unsigned long long)data_in, (unsigned long long)h.sector);
			break;
		}
		status = transfer(b, ch, true, h.sector, data_in);
		if (status == BLK_S_OK)
			written = (uint32_t)data_in;
		break;
	case BLK_T_OUT: {
		uint64_t data_out = ch->readable_len - sizeof(h);
		if (b->disk.read_only) {
			virtio_warn(&b->vd, "write to a read-only disk");
			break;
		}
		if (!range_ok(b, h.sector, data_out)) {
			virtio_warn(&b->vd, "write of %llu bytes at sector %llu beyond the disk or not whole sectors",
				    (unsigned long long)data_out, (unsigned long long)h.sector);
			break;
		}
		status = transfer(b, ch, false, h.sector, data_out);
		break;
	}
	case BLK_T_FLUSH:
		status = BLK_S_OK;
		if (disk_flush(&b->disk) < 0) {
			io_error(b, "flush", 0);
			status = BLK_S_IOERR;
		}
		break;
	case BLK_T_GET_ID: {
		char id[BLK_ID_BYTES] = {0};
		memcpy(id, b->serial, strlen(b->serial)); /* NUL-padded, not terminated when 20 long */
		written = (uint32_t)virtq_chain_write(ch, 0, id, data_in < BLK_ID_BYTES ? data_in : BLK_ID_BYTES);
		status = BLK_S_OK;
		break;
	}
	default: status = BLK_S_UNSUPP; break;
	}
out:
	virtq_chain_write(ch, data_in, &status, 1);
	return written + 1;
}

static void blk_notify(struct virtio_dev *vd, int queue)
{
	struct blk *b = (struct blk *)vd;
	struct virtq *vq = virtio_queue_get(vd, 0);
	if (!vq || queue != 0)
		return;
	int done = 0;
	while (done < BLK_BATCH && virtq_pop(vq, &b->ch) == 1) {
		virtq_push(vq, b->ch.head, blk_request(b, &b->ch));
		done++;
	}
	virtio_queue_done(vd, 0);
	if (done == BLK_BATCH)
		virtio_request_kick(vd); /* more may be waiting: let the loop breathe first */
}

static void blk_destroy(struct virtio_dev *vd)
{
	disk_close(&((struct blk *)vd)->disk);
}

/* Requests complete synchronously, so a reset finds nothing in flight. */
static const struct virtio_dev_ops blk_ops = {.notify = blk_notify, .destroy = blk_destroy};

static void blk_config_fill(struct blk *b)
{
	uint64_t capacity = b->disk.size / SECTOR;
	uint32_t seg_max = BLK_SEG_MAX, blk_size = SECTOR;
	memcpy(b->vd.config + 0, &capacity, 8);
	memcpy(b->vd.config + 12, &seg_max, 4);
	memcpy(b->vd.config + 20, &blk_size, 4);
	b->vd.config_size = VIRTIO_CONFIG_MAX; /* fields we do not offer read as 0 */
}

/* --- snapshot hooks ------------------------------------------------------- */

static int blk_save(void *dev, struct snap_w *w)
{
	struct blk *b = dev;
	char name[32] = "";
	if (!b->disk.read_only) {
		char err[512];
		snprintf(name, sizeof(name), VIRTIO_BLK_LAYER_NAME_FMT, b->index);
		if (disk_freeze(&b->disk, w->dir, name, err, sizeof(err)) < 0) {
			log_error("virtio_blk.freeze", "%s: %s", b->vd.name, err);
			return -1;
		}
	}
	snap_w_u32(w, BLK_STATE_VERSION);
	virtio_transport_save(&b->vd, w);
	snap_w_u64(w, b->disk.size);
	snap_w_u32(w, (uint32_t)strlen(name));
	snap_w_put(w, name, strlen(name));
	return 0;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static int blk_load(void *dev, const void *data, size_t len, char *err, size_t errsz)
{
	struct blk *b = dev;
	struct snap_cur c;
	snap_cur_init(&c, data, len);
	uint32_t version = snap_cur_u32(&c);
	if (c.bad || version != BLK_STATE_VERSION) {
		snprintf(err, errsz, "%s state: layout %u, this VMM reads %u", b->vd.name, version, BLK_STATE_VERSION);
		return -1;
	}
	if (virtio_transport_load(&b->vd, &c, err, errsz) < 0)
		return -1;
	uint64_t size = snap_cur_u64(&c);
	uint32_t name_len = snap_cur_u32(&c);
	char name[32] = "";
	if (!c.bad && name_len < sizeof(name))
		snap_cur_get(&c, name, name_len);
	if (c.bad || name_len >= sizeof(name) || c.left || memchr(name, '/', name_len)) {
		snprintf(err, errsz, "%s state: truncated or corrupt", b->vd.name);
		return -1;
	}
	if (size != b->disk.size) {
		snprintf(err, errsz, "%s: saved disk had %llu bytes, the restored one has %llu", b->vd.name,
			 (unsigned long long)size, (unsigned long long)b->disk.size);
		return -1;
	}
	/* The disk contents the guest's page cache matches are in the frozen
	 * layer: restoring over anything else would corrupt its filesystem. */
	if (name[0] && (b->cfg->nr_lower < 1 || strcmp(base_name(b->cfg->lower[0]), name) != 0)) {
		snprintf(err, errsz, "%s: restore must open the snapshot's frozen layer %s as lower[0] (have %s)",
			 b->vd.name, name, b->cfg->nr_lower ? b->cfg->lower[0] : "none");
		return -1;
	}
	return 0;
}

static void blk_pause(void *dev)
{
	virtio_pause(&((struct blk *)dev)->vd);
}

static void blk_resume(void *dev)
{
	virtio_resume(&((struct blk *)dev)->vd);
}

static void blk_restored(void *dev)
{
	virtio_transport_restored(&((struct blk *)dev)->vd);
}

int virtio_blk_create(struct vm *vm, struct disk_config *cfg, int index, char *err, size_t errsz)
{
	struct blk *b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errsz, "virtio-blk%d: out of memory", index);
		return -1;
	}
	char name[24];
	snprintf(name, sizeof(name), "virtio-blk%d", index);
	char derr[512];
	if (disk_open(&b->disk, cfg, derr, sizeof(derr)) < 0) {
		snprintf(err, errsz, "%s: %s", name, derr);
		free(b);
		return -1;
	}
	uint64_t features = BLK_F_SEG_MAX | BLK_F_BLK_SIZE | BLK_F_FLUSH | (b->disk.read_only ? BLK_F_RO : 0);
	virtio_dev_init(&b->vd, &vm->mem, VIRTIO_ID_BLK_DEV, name, features, 1, BLK_QUEUE_SIZE);
	b->vd.ops = &blk_ops;
	b->cfg = cfg;
	b->index = index;
	snprintf(b->serial, sizeof(b->serial), "cube-vd%d", index);
	blk_config_fill(b);
	if (virtio_dev_attach(&b->vd, vm, err, errsz) < 0)
		goto fail;
	struct vm_device d = {.kind = "virtio-blk",
			      .dev = b,
			      .save = blk_save,
			      .load = blk_load,
			      .pause = blk_pause,
			      .resume = blk_resume,
			      .restored = blk_restored};
	if (vm_add_device(vm, &d) < 0) {
		snprintf(err, errsz, "%s: too many devices", name);
		goto fail;
	}
	return 0;
fail:
	/* The slot and fds stay with the VM, which is being torn down anyway. */
	disk_close(&b->disk);
	return -1;
}
