/*
 * bus.c - port-I/O and MMIO dispatch.
 *
 * A bus is a short list of non-overlapping regions (a handful of legacy
 * ports and at most VMM_MAX_MMIO_SLOTS virtio windows), so a linear search
 * is both simplest and fast enough: the cost of an exit dwarfs it.
 */
#include <string.h>

#include "vmm.h"

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

int bus_add(struct bus *b, uint64_t base, uint64_t len, bus_access_fn fn, void *dev)
{
	if (len == 0 || base + len < base || b->n == BUS_MAX_REGIONS)
		return -1;
	for (int i = 0; i < b->n; i++)
		if (ranges_overlap(base, len, b->r[i].base, b->r[i].len))
			return -1;
	b->r[b->n++] = (struct bus_region){.base = base, .len = len, .fn = fn, .dev = dev};
	return 0;
}

static struct bus_region *bus_find(struct bus *b, uint64_t addr, uint32_t len)
{
	for (int i = 0; i < b->n; i++) {
		struct bus_region *r = &b->r[i];
		/* The whole access must lie inside: a device never sees bytes
		 * beyond its window. Written to avoid overflow near 2^64. */
		if (addr >= r->base && addr - r->base < r->len && len <= r->len - (addr - r->base))
			return r;
	}
	return NULL;
}

bool bus_access(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	struct bus_region *r = bus_find(b, addr, len);
	if (!r) {
		if (!is_write)
			memset(data, 0xff, len);
		return false;
	}
	r->fn(r->dev, addr - r->base, data, len, is_write);
	return true;
}
