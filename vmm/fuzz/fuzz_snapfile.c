/*
 * fuzz_snapfile.c - libFuzzer target for the state-file reader
 * (vmm/snapfile.c) and the payload decoders behind it (snapshot_validate:
 * vCPU, VM and device payloads, and the configuration JSON).
 *
 * Every input is tried twice:
 *
 *   1. as a whole file, which exercises the header checks (magic, version,
 *      length, checksum);
 *   2. "sealed": the input becomes the body of a file whose magic, version
 *      and length are set right and whose SHA-256 trailer is computed here.
 *      A random input essentially never carries a valid SHA-256 of itself,
 *      so without this step the fuzzer would stop at the checksum and never
 *      reach the section framing, snap_cur or the payload decoders - the
 *      parts a hostile but well-checksummed file would attack.
 *
 * Properties checked: no crash or sanitizer report, and every section an
 * opened file reports lies inside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/sha256.h"
#include "../snapfile.h"
#include "../snapshot.h"

static void walk(const uint8_t *data, size_t len)
{
	struct snap_r r;
	char err[256];
	if (snap_r_open(&r, data, len, err, sizeof(err)) < 0)
		return;
	for (uint32_t i = 0; i < r.nr_sections; i++) {
		const struct snap_section *s = &r.sections[i];
		if (s->data < data || s->len > len || s->data + s->len > data + len)
			abort();
		struct snap_cur c;
		snap_cur_init(&c, s->data, s->len);
		while (!c.bad)
			snap_cur_u32(&c); /* the cursor must stop at the payload's end */
	}
	snapshot_validate(&r, err, sizeof(err));
	snap_r_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	walk(data, size);

	size_t body = size < SNAP_HEADER_LEN ? SNAP_HEADER_LEN : size;
	uint8_t *f = calloc(1, body + SNAP_TRAILER_LEN);
	if (!f)
		return 0;
	memcpy(f, data, size);
	memcpy(f, SNAP_MAGIC, 8);
	f[8] = SNAP_VERSION;
	f[9] = f[10] = f[11] = 0;
	uint64_t total = body + SNAP_TRAILER_LEN;
	for (int i = 0; i < 8; i++)
		f[16 + i] = (uint8_t)(total >> (8 * i));
	sha256(f, body, f + body);
	walk(f, body + SNAP_TRAILER_LEN);
	free(f);
	return 0;
}
