/* snapfile.c - the snapshot state file: writer, validating reader and payload cursor; see snapfile.h. */
#include "snapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/le.h"
#include "../lib/sha256.h"

/* --- writer --------------------------------------------------------------- */

/* The buffer always starts with the header; snap_w_write fills in the count
 * and the length, so the bytes hashed are exactly the bytes written. */
void snap_w_init(struct snap_w *w)
{
	memset(w, 0, sizeof(*w));
	w->section_start = SIZE_MAX;
	uint8_t hdr[SNAP_HEADER_LEN] = {0};
	memcpy(hdr, SNAP_MAGIC, 8);
	put_le32(hdr + 8, SNAP_VERSION);
	buf_append(&w->b, hdr, sizeof(hdr));
}

void snap_w_begin(struct snap_w *w, uint32_t tag, uint32_t index)
{
	/* Sections do not nest: a begin without an end closes the open one
	 * rather than producing a file that can never be read. */
	if (w->section_start != SIZE_MAX)
		snap_w_end(w);
	uint8_t hdr[SNAP_SECTION_HDR] = {0};
	put_le32(hdr, tag);
	put_le32(hdr + 4, index);
	w->section_start = w->b.len;
	buf_append(&w->b, hdr, sizeof(hdr));
}

void snap_w_put(struct snap_w *w, const void *p, size_t n)
{
	if (n)
		buf_append(&w->b, p, n);
}

void snap_w_u32(struct snap_w *w, uint32_t v)
{
	uint8_t b[4];
	put_le32(b, v);
	snap_w_put(w, b, sizeof(b));
}

void snap_w_u64(struct snap_w *w, uint64_t v)
{
	uint8_t b[8];
	put_le64(b, v);
	snap_w_put(w, b, sizeof(b));
}

void snap_w_end(struct snap_w *w)
{
	if (w->section_start == SIZE_MAX)
		return;
	uint8_t *hdr = (uint8_t *)w->b.data + w->section_start;
	put_le64(hdr + 8, w->b.len - w->section_start - SNAP_SECTION_HDR);
	w->section_start = SIZE_MAX;
	w->nr_sections++;
}

int snap_w_write(struct snap_w *w, const char *path)
{
	snap_w_end(w);
	uint8_t *hdr = (uint8_t *)w->b.data;
	put_le32(hdr + 12, w->nr_sections);
	put_le64(hdr + 16, (uint64_t)w->b.len + SNAP_TRAILER_LEN);
	uint8_t digest[SHA256_DIGEST_LEN];
	sha256(w->b.data, w->b.len, digest);

	/* The trailer goes on for the write only: the writer stays reusable. */
	buf_append(&w->b, digest, sizeof(digest));
	int rc = file_replace(path, w->b.data, w->b.len, 0644, true);
	w->b.len -= sizeof(digest);
	return rc;
}

void snap_w_free(struct snap_w *w)
{
	buf_free(&w->b);
	w->section_start = SIZE_MAX;
	w->nr_sections = 0;
}

/* --- reader --------------------------------------------------------------- */

static int fail(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errsz, const char *fmt, ...)
{
	if (errsz) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Magic, version and total length: what can be said before hashing. */
static int check_header(const uint8_t *d, size_t len, char *err, size_t errsz)
{
	if (len < 8 || memcmp(d, SNAP_MAGIC, 8) != 0) {
		if (len < 8 && memcmp(d, SNAP_MAGIC, len) == 0)
			return fail(err, errsz, "truncated state file: %zu bytes, shorter than its header (%d)", len,
				    SNAP_HEADER_LEN);
		return fail(err, errsz, "not a snapshot state file (bad magic, expected \"%s\")", SNAP_MAGIC);
	}
	if (len < SNAP_HEADER_LEN)
		return fail(err, errsz, "truncated state file: %zu bytes, shorter than its header (%d)", len,
			    SNAP_HEADER_LEN);
	uint32_t version = get_le32(d + 8);
	if (version != SNAP_VERSION)
		return fail(err, errsz, "snapshot format version %" PRIu32 ", this VMM reads version %d", version,
			    SNAP_VERSION);
	uint64_t want = get_le64(d + 16);
	if (want < SNAP_HEADER_LEN + SNAP_TRAILER_LEN)
		return fail(err, errsz, "corrupt state file: header gives a length of %" PRIu64 " bytes", want);
	if (len < want)
		return fail(err, errsz, "truncated state file: %zu of %" PRIu64 " bytes", len, want);
	if (len > want)
		return fail(err, errsz,
			    "trailing garbage: %zu bytes after the end of the state file (%" PRIu64 " bytes)",
			    len - (size_t)want, want);
	return 0;
}

static int check_digest(const uint8_t *d, size_t len, char *err, size_t errsz)
{
	uint8_t digest[SHA256_DIGEST_LEN];
	sha256(d, len - SNAP_TRAILER_LEN, digest);
	if (memcmp(digest, d + len - SNAP_TRAILER_LEN, SHA256_DIGEST_LEN) != 0)
		return fail(err, errsz, "checksum mismatch: the state file is corrupt");
	return 0;
}

/* Walks the section headers. Only a file whose checksum holds gets here, so
 * a failure means a buggy or hostile writer, not a bad disk. */
static int parse_sections(struct snap_r *r, char *err, size_t errsz)
{
	const uint8_t *d = r->data;
	uint32_t count = get_le32(d + 12);
	size_t end = r->len - SNAP_TRAILER_LEN;
	size_t room = (end - SNAP_HEADER_LEN) / SNAP_SECTION_HDR;
	if (count > SNAP_MAX_SECTIONS)
		return fail(err, errsz, "header says %" PRIu32 " sections, more than the %d allowed", count,
			    SNAP_MAX_SECTIONS);
	if (count > room)
		return fail(err, errsz, "section count mismatch: header says %" PRIu32 ", the file has room for %zu",
			    count, room);
	r->sections = calloc(count ? count : 1, sizeof(*r->sections));
	if (!r->sections)
		return fail(err, errsz, "out of memory for %" PRIu32 " sections", count);
	size_t pos = SNAP_HEADER_LEN;
	for (uint32_t i = 0; i < count; i++) {
		if (end - pos < SNAP_SECTION_HDR)
			return fail(err, errsz,
				    "section count mismatch: header says %" PRIu32 ", the file ends after %" PRIu32,
				    count, i);
		struct snap_section *s = &r->sections[i];
		s->tag = get_le32(d + pos);
		s->index = get_le32(d + pos + 4);
		s->len = get_le64(d + pos + 8);
		pos += SNAP_SECTION_HDR;
		if (s->len > end - pos)
			return fail(err, errsz,
				    "section %" PRIu32 " (tag %" PRIu32 ", index %" PRIu32 ") is %" PRIu64
				    " bytes, runs past the end of the file (%zu left)",
				    i, s->tag, s->index, s->len, end - pos);
		s->data = d + pos;
		pos += (size_t)s->len;
		for (uint32_t j = 0; j < i; j++)
			if (r->sections[j].tag == s->tag && r->sections[j].index == s->index)
				return fail(err, errsz, "duplicate section (tag %" PRIu32 ", index %" PRIu32 ")",
					    s->tag, s->index);
	}
	if (pos != end)
		return fail(err, errsz,
			    "section count mismatch: %zu bytes follow the %" PRIu32 " sections the header counts",
			    end - pos, count);
	r->nr_sections = count;
	return 0;
}

int snap_r_open(struct snap_r *r, const void *data, size_t len, char *err, size_t errsz)
{
	memset(r, 0, sizeof(*r));
	if (errsz)
		err[0] = '\0';
	if (!data && len)
		return fail(err, errsz, "no data");
	const uint8_t *d = data ? data : (const uint8_t *)"";
	if (check_header(d, len, err, errsz) < 0 || check_digest(d, len, err, errsz) < 0)
		return -1;
	r->data = d;
	r->len = len;
	if (parse_sections(r, err, errsz) < 0) {
		snap_r_free(r);
		return -1;
	}
	return 0;
}

const struct snap_section *snap_r_find(const struct snap_r *r, uint32_t tag, uint32_t index)
{
	for (uint32_t i = 0; i < r->nr_sections; i++)
		if (r->sections[i].tag == tag && r->sections[i].index == index)
			return &r->sections[i];
	return NULL;
}

uint32_t snap_r_count(const struct snap_r *r, uint32_t tag)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < r->nr_sections; i++)
		n += r->sections[i].tag == tag;
	return n;
}

void snap_r_free(struct snap_r *r)
{
	free(r->sections);
	memset(r, 0, sizeof(*r));
}

/* --- payload cursor ------------------------------------------------------- */

void snap_cur_init(struct snap_cur *c, const void *p, uint64_t len)
{
	c->p = p;
	c->left = p ? len : 0;
	c->bad = 0;
}

const void *snap_cur_ptr(struct snap_cur *c, uint64_t n)
{
	if (c->bad || n > c->left) {
		c->bad = 1;
		return NULL;
	}
	const void *p = c->p;
	c->p += n;
	c->left -= n;
	return p;
}

int snap_cur_get(struct snap_cur *c, void *out, uint64_t n)
{
	const void *p = snap_cur_ptr(c, n);
	if (!p) {
		if (out && n)
			memset(out, 0, (size_t)n);
		return -1;
	}
	if (out && n)
		memcpy(out, p, (size_t)n);
	return 0;
}

uint32_t snap_cur_u32(struct snap_cur *c)
{
	uint8_t b[4];
	snap_cur_get(c, b, sizeof(b));
	return get_le32(b);
}

uint64_t snap_cur_u64(struct snap_cur *c)
{
	uint8_t b[8];
	snap_cur_get(c, b, sizeof(b));
	return get_le64(b);
}
