/*
 * snapfile.h - the snapshot state file: a versioned, checksummed list of
 * sections.
 *
 *   header   "CUBESNAP" magic (8 bytes), format version (u32), section
 *            count (u32), file length including the trailer (u64)
 *   section  tag (u32), index (u32), length (u64), payload
 *   ...
 *   trailer  SHA-256 of everything before it
 *
 * All integers are little-endian. The reader checks magic, version, length,
 * checksum and then framing before anyone looks at a payload, so a
 * truncated, corrupt or foreign file is refused with a message that says
 * which. The file length in the header is what tells "truncated" and
 * "trailing garbage" apart from "corrupt": without it a cut-off file would
 * only show up as a checksum mismatch. Payload layouts
 * belong to their owners (vCPU state in snapshot.c, device state in each
 * device); each starts with its own small version where it can change.
 */
#ifndef CUBE_SNAPFILE_H
#define CUBE_SNAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

#define SNAP_MAGIC   "CUBESNAP"
#define SNAP_VERSION 1

#define SNAP_HEADER_LEN	  24
#define SNAP_SECTION_HDR  16
#define SNAP_TRAILER_LEN  32
#define SNAP_MAX_SECTIONS 1024 /* a VM has 2 + vCPUs + devices; anything far beyond is not ours */

enum snap_tag {
	SNAP_CONFIG = 1, /* the VM's configuration as JSON (kernel, disks, vsock...) */
	SNAP_VM,	 /* irqchip (PIC x2, IOAPIC), PIT, kvmclock */
	SNAP_VCPU,	 /* one per vCPU, index = vCPU id */
	SNAP_DEVICE,	 /* one per device, index = position in vm->devices */
};

/* Writer: sections are built in memory, then written to a temporary file,
 * fsync'd and renamed into place. */
struct snap_w {
	struct buf b;
	const char *dir;      /* the snapshot directory, for devices that write side files (a frozen disk layer) */
	size_t section_start; /* offset of the open section's header, or SIZE_MAX */
	uint32_t nr_sections;
};

void snap_w_init(struct snap_w *w);
void snap_w_begin(struct snap_w *w, uint32_t tag, uint32_t index);
void snap_w_put(struct snap_w *w, const void *p, size_t n);
void snap_w_u32(struct snap_w *w, uint32_t v);
void snap_w_u64(struct snap_w *w, uint64_t v);
void snap_w_end(struct snap_w *w);
/* Writes header + sections + checksum to path atomically. 0 or -1 (errno). */
int snap_w_write(struct snap_w *w, const char *path);
void snap_w_free(struct snap_w *w);

/* Reader over an in-memory copy of the file. */
struct snap_section {
	uint32_t tag, index;
	const uint8_t *data;
	uint64_t len;
};

struct snap_r {
	const uint8_t *data;
	size_t len;
	uint32_t nr_sections;
	struct snap_section *sections;
};

/* Validates the whole file; -1 with a message ("truncated", "checksum
 * mismatch", "version 7, this VMM reads 1"...) in err. */
int snap_r_open(struct snap_r *r, const void *data, size_t len, char *err, size_t errsz);
/* NULL if absent. snap_r_open refuses duplicate (tag, index) pairs, so the
 * answer is unique. */
const struct snap_section *snap_r_find(const struct snap_r *r, uint32_t tag, uint32_t index);
/* Number of sections with this tag. */
uint32_t snap_r_count(const struct snap_r *r, uint32_t tag);
void snap_r_free(struct snap_r *r);

/* Cursor for decoding one payload with bounds checks: every get fails (and
 * keeps failing) once the payload is exhausted. */
struct snap_cur {
	const uint8_t *p;
	uint64_t left;
	int bad;
};
void snap_cur_init(struct snap_cur *c, const void *p, uint64_t len);
/* Copies n bytes to out (out may be NULL to skip them); 0, or -1 with out
 * zero-filled when fewer than n bytes are left. */
int snap_cur_get(struct snap_cur *c, void *out, uint64_t n);
uint32_t snap_cur_u32(struct snap_cur *c);
uint64_t snap_cur_u64(struct snap_cur *c);
/* Returns a pointer to the next n bytes inside the payload and skips them,
 * or NULL (and marks the cursor bad) if fewer are left. */
const void *snap_cur_ptr(struct snap_cur *c, uint64_t n);

#endif
