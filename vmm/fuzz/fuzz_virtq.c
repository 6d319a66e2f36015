/*
 * fuzz_virtq.c - libFuzzer target for vmm/virtio/virtq.c.
 *
 * The input is a guest: its first bytes choose the queue size, the ring
 * addresses and our starting indices, the rest fills a small fake guest RAM
 * (descriptor table, avail ring, buffers). We pop chains until the queue is
 * empty, touching every byte of every buffer and completing each chain. The
 * fake RAM is one exact-size heap block, so any access outside guest RAM is
 * an ASan report; a chain that is not bounded would hang (timeout).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/log.h"
#include "../virtio/virtq.h"

#define RAM_SIZE 0x4000

static uint64_t take(const uint8_t **p, size_t *n, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes && *n; i++, (*p)++, (*n)--)
		v |= (uint64_t) * *p << (8 * i);
	return v;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR); /* malformed chains are the point, not news */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_chain ch;
	struct guest_mem mem = {.size = RAM_SIZE, .low_size = RAM_SIZE, .backing_fd = -1};
	mem.host = malloc(RAM_SIZE);
	memset(mem.host, 0, RAM_SIZE);

	uint16_t num = (uint16_t)(1u << (take(&data, &size, 1) % 10)); /* 1..512: 512 must be refused */
	uint64_t desc = take(&data, &size, 2) % RAM_SIZE;
	uint64_t avail = take(&data, &size, 2) % RAM_SIZE;
	uint64_t used = take(&data, &size, 2) % RAM_SIZE;
	uint16_t start = (uint16_t)take(&data, &size, 2);
	memcpy(mem.host, data, size < RAM_SIZE ? size : RAM_SIZE);

	struct virtq vq;
	if (virtq_init(&vq, &mem, num, desc & ~15ull, avail & ~1ull, used & ~3ull) == 0) {
		vq.last_avail_idx = vq.used_idx = start;
		int chains = 0;
		while (virtq_pop(&vq, &ch) == 1) {
			uint8_t sink[64];
			uint64_t off = 0;
			while (off < ch.readable_len)
				off += virtq_chain_read(&ch, off, sink, sizeof(sink));
			memset(sink, 0xa5, sizeof(sink));
			off = 0;
			while (off < ch.writable_len)
				off += virtq_chain_write(&ch, off, sink, sizeof(sink));
			struct iovec iov[VIRTQ_MAX_SIZE];
			int n = virtq_chain_iov(&ch, true, 1, ch.writable_len, iov, VIRTQ_MAX_SIZE);
			for (int i = 0; i < n; i++)
				memset(iov[i].iov_base, 0x5a, iov[i].iov_len);
			virtq_push(&vq, ch.head, (uint32_t)ch.writable_len);
			(void)virtq_should_interrupt(&vq);
			/* A ring that overlaps another can refill itself as we
			 * complete chains (our used idx lands on its avail idx),
			 * so there is no bound here; devices cap each pass for
			 * that reason. The walk itself must stay bounded. */
			if (++chains > 4 * VIRTQ_MAX_SIZE)
				break;
		}
	}
	free(mem.host);
	return 0;
}
