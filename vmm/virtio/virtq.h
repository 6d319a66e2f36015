/*
 * virtq.h - split virtqueues (virtio 1.x, 2.7) over guest memory.
 *
 * The guest owns the rings and may change them at any time, so every index
 * and address read from them is checked before use, and every buffer is
 * mapped through gpa_ptr(): a hostile or buggy guest can make a request
 * fail but can never make the VMM touch memory outside guest RAM or spin
 * forever. Indirect descriptors and EVENT_IDX are never offered, which keeps
 * the parser small.
 */
#ifndef CUBE_VIRTQ_H
#define CUBE_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../vmm.h"

#define VIRTQ_MAX_SIZE	      256		  /* largest queue we offer */
#define VIRTQ_MAX_CHAIN_BYTES (64u * 1024 * 1024) /* sanity limit per request */

/* Ring layout (little-endian; the host is x86). */
#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_DESC_F_INDIRECT	   4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq {
	const struct guest_mem *mem;
	uint16_t num; /* power of two, <= VIRTQ_MAX_SIZE */
	uint64_t desc, avail, used;
	uint16_t last_avail_idx; /* next avail ring entry to take */
	uint16_t used_idx;	 /* our copy of used->idx */
	bool broken;		 /* the guest moved avail->idx impossibly: stop */
	bool warned;		 /* one log line per queue for malformed chains */
	bool pushed;		 /* used ring changed since the last interrupt decision */
};

/* One guest buffer, mapped. */
struct virtq_seg {
	uint8_t *p;
	uint32_t len;
	bool writable;
};

struct virtq_chain {
	uint16_t head;
	int nr_segs;
	int nr_readable; /* segs[0..nr_readable) are readable, the rest writable */
	uint64_t readable_len, writable_len;
	struct virtq_seg segs[VIRTQ_MAX_SIZE];
};

/* Bytes of guest memory each ring needs for a queue of num entries. */
uint64_t virtq_desc_bytes(uint16_t num);
uint64_t virtq_avail_bytes(uint16_t num);
uint64_t virtq_used_bytes(uint16_t num);

/* Sets the queue up; -1 if num is not a power of two <= VIRTQ_MAX_SIZE or a
 * ring is misaligned or not entirely in guest RAM. */
int virtq_init(struct virtq *vq, const struct guest_mem *mem, uint16_t num, uint64_t desc, uint64_t avail,
	       uint64_t used);

/* Takes the next available chain. 1: ch holds a valid chain; 0: nothing
 * available (or the queue is broken, or more than a queue's worth of
 * malformed chains in a row). A malformed chain is completed with 0 bytes
 * and skipped, so the caller only ever sees good ones. */
int virtq_pop(struct virtq *vq, struct virtq_chain *ch);
/* Puts the last popped chain back (a device that found no work for it). */
void virtq_unpop(struct virtq *vq);
/* True if a chain is available (does not validate it). */
bool virtq_has_avail(struct virtq *vq);

/* The guest's avail->idx (0 on a broken queue): it moves whenever the guest posts a buffer. */
uint16_t virtq_avail_idx(struct virtq *vq);
/* Returns a chain to the guest with len bytes written into it. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t len);
/* True once after chains were pushed, unless the driver set
 * VIRTQ_AVAIL_F_NO_INTERRUPT. */
bool virtq_should_interrupt(struct virtq *vq);

/* Copies between a chain's readable / writable bytes and a flat buffer,
 * starting at byte off of that part. Return the bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *ch, uint64_t off, void *dst, size_t len);
size_t virtq_chain_write(const struct virtq_chain *ch, uint64_t off, const void *src, size_t len);
/* Fills iov with the readable (or writable) bytes [off, off + len) of the
 * chain; returns the iovec count (<= max). */
int virtq_chain_iov(const struct virtq_chain *ch, bool writable, uint64_t off, uint64_t len, struct iovec *iov,
		    int max);

#endif
