/*
 * virtq.c - split virtqueue parsing and completion; see virtq.h.
 *
 * Ordering: the driver writes descriptors and ring entries, then avail->idx;
 * we load avail->idx with acquire semantics before reading what it
 * publishes. We write the used element, then store used->idx with release
 * semantics; a full fence then separates that store from reading the
 * driver's NO_INTERRUPT flag so a driver that re-enables interrupts right
 * after we look cannot miss a completion.
 */
#include "virtq.h"

#include <string.h>

#include "../../lib/log.h"

uint64_t virtq_desc_bytes(uint16_t num)
{
	return 16ull * num;
}

uint64_t virtq_avail_bytes(uint16_t num)
{
	return 6ull + 2ull * num; /* flags, idx, ring[num], used_event */
}

uint64_t virtq_used_bytes(uint16_t num)
{
	return 6ull + 8ull * num; /* flags, idx, ring[num], avail_event */
}

static bool is_pow2(uint32_t n)
{
	return n && (n & (n - 1)) == 0;
}

int virtq_init(struct virtq *vq, const struct guest_mem *mem, uint16_t num, uint64_t desc, uint64_t avail,
	       uint64_t used)
{
	memset(vq, 0, sizeof(*vq));
	if (!is_pow2(num) || num > VIRTQ_MAX_SIZE)
		return -1;
	if ((desc & 15) || (avail & 1) || (used & 3))
		return -1;
	if (!gpa_ptr(mem, desc, virtq_desc_bytes(num)) || !gpa_ptr(mem, avail, virtq_avail_bytes(num)) ||
	    !gpa_ptr(mem, used, virtq_used_bytes(num)))
		return -1;
	vq->mem = mem;
	vq->num = num;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	return 0;
}

/* A u16 of a ring. The rings were checked at init, but guest RAM is the
 * authority, so look again: it costs a compare. */
static uint16_t *ring_u16(struct virtq *vq, uint64_t gpa)
{
	uint16_t *p = gpa_ptr(vq->mem, gpa, 2);
	if (!p)
		vq->broken = true;
	return p;
}

static void warn_once(struct virtq *vq, const char *what, uint16_t head)
{
	if (vq->warned)
		return;
	vq->warned = true;
	log_warn("virtio.bad_chain",
		 "guest queue at 0x%llx: %s (head %u); completed with 0 bytes, further reports suppressed",
		 (unsigned long long)vq->desc, what, head);
}

/* Walks the chain at head into ch. NULL if it is well-formed, else why not. */
static const char *walk_chain(struct virtq *vq, uint16_t head, struct virtq_chain *ch)
{
	uint64_t total = 0;
	uint16_t idx = head;

	ch->head = head;
	ch->nr_segs = ch->nr_readable = 0;
	ch->readable_len = ch->writable_len = 0;
	for (unsigned count = 0;; count++) {
		if (idx >= vq->num)
			return "descriptor index out of range";
		if (count >= vq->num)
			return "descriptor chain loops or is longer than the queue";
		const void *dp = gpa_ptr(vq->mem, vq->desc + 16ull * idx, 16);
		if (!dp)
			return "descriptor table outside guest RAM";
		struct virtq_desc d;
		memcpy(&d, dp, sizeof(d)); /* one snapshot: the guest may rewrite it under us */
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return "indirect descriptor (not negotiated)";
		bool writable = d.flags & VIRTQ_DESC_F_WRITE;
		if (!writable && ch->nr_segs > ch->nr_readable)
			return "readable descriptor after a writable one";
		if (d.len) {
			total += d.len;
			if (total > VIRTQ_MAX_CHAIN_BYTES)
				return "chain too long in bytes";
			uint8_t *p = gpa_ptr(vq->mem, d.addr, d.len);
			if (!p)
				return "buffer outside guest RAM";
			ch->segs[ch->nr_segs++] = (struct virtq_seg){.p = p, .len = d.len, .writable = writable};
			if (writable) {
				ch->writable_len += d.len;
			} else {
				ch->nr_readable++;
				ch->readable_len += d.len;
			}
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return NULL;
		idx = d.next;
	}
}

/* The guest's avail->idx; false on a broken or unset queue. */
static bool read_avail_idx(struct virtq *vq, uint16_t *idx)
{
	if (vq->broken || !vq->num)
		return false;
	uint16_t *p = ring_u16(vq, vq->avail + 2);
	if (!p)
		return false;
	*idx = __atomic_load_n(p, __ATOMIC_ACQUIRE);
	return true;
}

bool virtq_has_avail(struct virtq *vq)
{
	uint16_t idx;
	return read_avail_idx(vq, &idx) && idx != vq->last_avail_idx;
}

uint16_t virtq_avail_idx(struct virtq *vq)
{
	uint16_t idx;
	return read_avail_idx(vq, &idx) ? idx : 0;
}

int virtq_pop(struct virtq *vq, struct virtq_chain *ch)
{
	/* Bounded even if completing bad chains refills the ring (a used
	 * ring laid over the avail ring): the rest waits for the next call. */
	for (unsigned skipped = 0; skipped <= vq->num; skipped++) {
		if (vq->broken || !vq->num)
			return 0;
		uint16_t *idxp = ring_u16(vq, vq->avail + 2);
		if (!idxp)
			return 0;
		uint16_t avail_idx = __atomic_load_n(idxp, __ATOMIC_ACQUIRE);
		uint16_t pending = (uint16_t)(avail_idx - vq->last_avail_idx);
		if (pending == 0)
			return 0;
		if (pending > vq->num) {
			/* The driver claims more buffers than the ring holds:
			 * nothing in it can be trusted any more. */
			vq->broken = true;
			log_warn(
			    "virtio.bad_queue",
			    "guest queue at 0x%llx: avail idx moved from %u to %u (size %u); queue stopped until reset",
			    (unsigned long long)vq->desc, vq->last_avail_idx, avail_idx, vq->num);
			return 0;
		}
		uint16_t *slot = ring_u16(vq, vq->avail + 4 + 2ull * (vq->last_avail_idx % vq->num));
		if (!slot)
			return 0;
		uint16_t head = __atomic_load_n(slot, __ATOMIC_RELAXED);
		vq->last_avail_idx++;
		const char *bad = walk_chain(vq, head, ch);
		if (!bad)
			return 1;
		warn_once(vq, bad, head);
		/* Complete it so the driver gets its buffer back; a head
		 * outside the table cannot be named, so it is only consumed. */
		if (head < vq->num)
			virtq_push(vq, head, 0);
	}
	return 0;
}

void virtq_unpop(struct virtq *vq)
{
	vq->last_avail_idx--;
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	if (vq->broken || !vq->num)
		return;
	uint8_t *elem = gpa_ptr(vq->mem, vq->used + 4 + 8ull * (vq->used_idx % vq->num), 8);
	uint16_t *idxp = ring_u16(vq, vq->used + 2);
	if (!elem || !idxp) {
		vq->broken = true;
		return;
	}
	uint32_t id = head;
	memcpy(elem, &id, 4);
	memcpy(elem + 4, &len, 4);
	vq->used_idx++;
	__atomic_store_n(idxp, vq->used_idx, __ATOMIC_RELEASE);
	vq->pushed = true;
}

bool virtq_should_interrupt(struct virtq *vq)
{
	if (!vq->pushed)
		return false;
	vq->pushed = false;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t *flags = ring_u16(vq, vq->avail);
	if (!flags)
		return false;
	return !(__atomic_load_n(flags, __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

/* Walks the readable or writable part of a chain from byte off, calling the
 * copy for each piece. */
static size_t chain_copy(const struct virtq_chain *ch, bool writable, uint64_t off, uint8_t *flat, size_t len)
{
	int first = writable ? ch->nr_readable : 0;
	int end = writable ? ch->nr_segs : ch->nr_readable;
	size_t done = 0;
	for (int i = first; i < end && done < len; i++) {
		const struct virtq_seg *s = &ch->segs[i];
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		size_t n = s->len - off;
		if (n > len - done)
			n = len - done;
		if (writable)
			memcpy(s->p + off, flat + done, n);
		else
			memcpy(flat + done, s->p + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_chain_read(const struct virtq_chain *ch, uint64_t off, void *dst, size_t len)
{
	return chain_copy(ch, false, off, dst, len);
}

size_t virtq_chain_write(const struct virtq_chain *ch, uint64_t off, const void *src, size_t len)
{
	return chain_copy(ch, true, off, (uint8_t *)src, len);
}

int virtq_chain_iov(const struct virtq_chain *ch, bool writable, uint64_t off, uint64_t len, struct iovec *iov, int max)
{
	int first = writable ? ch->nr_readable : 0;
	int end = writable ? ch->nr_segs : ch->nr_readable;
	int n = 0;
	for (int i = first; i < end && len && n < max; i++) {
		const struct virtq_seg *s = &ch->segs[i];
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		uint64_t take = s->len - off;
		if (take > len)
			take = len;
		iov[n].iov_base = s->p + off;
		iov[n].iov_len = take;
		n++;
		len -= take;
		off = 0;
	}
	return n;
}
