/*
 * disk.h - a virtual disk as a stack of copy-on-write layers over a
 * read-only base image, using nothing but ordinary sparse files.
 *
 *   top layer     writable, one per VM (or an unlinked temporary file)
 *   lower layers  0..4 read-only layers, top first (a snapshot's frozen layer)
 *   base image    read-only, never written; reads past its end give zeros
 *
 * A layer file:
 *
 *   0       header  "CUBELAYR", version, cluster size, virtual size, offsets
 *   4096    bitmap  one bit per 4 KiB cluster: set = the layer holds it
 *   data_off        cluster c at data_off + c * 4096 (holes where unset)
 *
 * A read takes each cluster from the topmost layer whose bit is set, else
 * from the base. A write goes to the top layer (a partial cluster is first
 * filled from below) and sets the bit only after the data is written.
 */
#ifndef CUBE_DISK_H
#define CUBE_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../vmm.h"

#define DISK_LAYER_MAGIC   "CUBELAYR"
#define DISK_LAYER_VERSION 1
#define DISK_CLUSTER_SIZE  4096u
#define DISK_MAX_LOWER	   4
#define DISK_MAX_SIZE	   (1ull << 42) /* 4 TiB: keeps the bitmap in memory small */

struct disk_layer {
	int fd; /* -1 when absent */
	uint8_t *bitmap;
};

struct disk {
	uint64_t size; /* virtual size in bytes = the base image's size */
	uint64_t nr_clusters;
	uint64_t bitmap_bytes;
	uint64_t data_off;
	int base_fd;
	uint64_t base_size;
	bool read_only; /* no top layer: writes fail */
	struct disk_layer top;
	struct disk_layer lower[DISK_MAX_LOWER];
	int nr_lower;
};

/* Opens the base, the lower layers and the top layer (created if missing or
 * empty, an unlinked file in $TMPDIR or /tmp if cfg->layer is NULL). 0, or
 * -1 with a message naming the file and what is wrong with it. */
int disk_open(struct disk *d, const struct disk_config *cfg, char *err, size_t errsz);
/* [off, off + len) must lie within d->size. 0, or -1 with errno set. */
int disk_read(struct disk *d, uint64_t off, uint64_t len, void *buf);
int disk_write(struct disk *d, uint64_t off, uint64_t len, const void *buf);
/* Makes completed writes durable (data, then bitmap, of the top layer). */
int disk_flush(struct disk *d);
/* Writes the disk's current contents above the base - every cluster held by
 * the top or a lower layer - to the new layer file <dir>/<name> (sparse:
 * header, bitmap and the allocated clusters only; written to a temporary
 * name, fsync'd and renamed). A clone then opens that file as its
 * lower[0] over the same base. The running disk is unchanged. */
int disk_freeze(struct disk *d, const char *dir, const char *name, char *err, size_t errsz);
void disk_close(struct disk *d);

#endif
