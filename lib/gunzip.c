/*
 * gunzip.c - gzip decoding (RFC 1952, RFC 1951), see gunzip.h.
 *
 * Canonical Huffman codes are decoded one bit at a time by comparing with the
 * first code of each length (the approach of zlib's puff.c): no lookup tables
 * to build, so a block header costs little and the code stays short. Output
 * collects in a window that starts at 64 KiB (small inputs stay cheap) and
 * doubles up to 1 MiB; when a full-size window is full it goes to the sink and
 * the last 32 KiB (the furthest a deflate distance reaches) move to its start.
 */
#include "gunzip.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"

#define WINDOW_MIN (64u << 10)
#define WINDOW_MAX (1u << 20)
#define HISTORY	   32768u /* the largest deflate distance */

struct huffman {
	uint16_t count[16];   /* codes per length */
	uint16_t symbol[288]; /* symbols ordered by code */
};

struct gunzip {
	const uint8_t *in;
	size_t len, pos;
	uint64_t bits;
	unsigned nbits;
	uint8_t *out; /* output window: [0, wpos) produced, [0, flushed) already given to the sink */
	size_t wpos, flushed, cap;
	uint64_t total; /* bytes produced by this member (for distance checks) */
	uint64_t all;	/* bytes produced by all members */
	uint64_t max_out;
	uint32_t crc;
	gunzip_sink sink;
	void *ctx;
	const char *err; /* set on the first error; decoding stops */
	int rc;		 /* the GUNZIP_* code that goes with err */
	int sink_errno;
};

static void fail(struct gunzip *g, int rc, const char *why)
{
	if (!g->err) {
		g->err = why;
		g->rc = rc;
	}
}

/* --- CRC-32 (the ISO 3309 / ITU-T V.42 one gzip uses) ------------------------ */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[n] = c;
	}
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* --- input bits and output window -------------------------------------------- */

/* The next n (<= 16) bits, least significant first; 0 and an error at the end. */
static unsigned get_bits(struct gunzip *g, unsigned n)
{
	while (g->nbits < n) {
		if (g->pos >= g->len) {
			fail(g, GUNZIP_EDATA, "compressed body is truncated");
			return 0;
		}
		g->bits |= (uint64_t)g->in[g->pos++] << g->nbits;
		g->nbits += 8;
	}
	unsigned v = (unsigned)(g->bits & ((1u << n) - 1));
	g->bits >>= n;
	g->nbits -= n;
	return v;
}

/* Hands the produced but not yet delivered bytes to the sink; with
 * keep_history, moves the last 32 KiB to the start of the window. */
static void flush(struct gunzip *g, bool keep_history)
{
	if (g->err)
		return;
	size_t n = g->wpos - g->flushed;
	g->crc = crc_update(g->crc, g->out + g->flushed, n);
	if (n && g->sink(g->ctx, g->out + g->flushed, n) < 0) {
		g->sink_errno = errno;
		fail(g, GUNZIP_ESINK, "cannot write the inflated body");
		return;
	}
	g->flushed = g->wpos;
	if (keep_history && g->wpos > HISTORY) {
		memmove(g->out, g->out + g->wpos - HISTORY, HISTORY);
		g->wpos = g->flushed = HISTORY;
	}
}

/* Makes room in a full window: doubles it, or once it has its full size,
 * flushes it down to the history. */
static void make_room(struct gunzip *g)
{
	if (g->cap < WINDOW_MAX) {
		uint8_t *grown = realloc(g->out, g->cap * 2);
		if (!grown) {
			fail(g, GUNZIP_ENOMEM, "cannot allocate the inflate window");
			return;
		}
		g->out = grown;
		g->cap *= 2;
	} else {
		flush(g, true);
	}
}

/* Room for up to want (> 0) more bytes at out + wpos: returns how many may go
 * there now, 0 after an error. If the bytes would pass max_out, it is just
 * enough for one byte too many, which commit() then turns into the error; the
 * sink never sees that byte, so it gets at most max_out bytes. */
static size_t reserve(struct gunzip *g, size_t want)
{
	if (g->err)
		return 0;
	if (g->wpos == g->cap) {
		make_room(g);
		if (g->err)
			return 0;
	}
	size_t n = g->cap - g->wpos < want ? g->cap - g->wpos : want;
	if (n > g->max_out - g->all)
		n = (size_t)(g->max_out - g->all) + 1;
	return n;
}

static void commit(struct gunzip *g, size_t n)
{
	g->wpos += n;
	g->total += n;
	g->all += n;
	if (g->all > g->max_out)
		fail(g, GUNZIP_ETOOBIG, "inflated body is larger than the upload limit");
}

static void put_byte(struct gunzip *g, uint8_t byte)
{
	if (reserve(g, 1)) {
		g->out[g->wpos] = byte;
		commit(g, 1);
	}
}

/* Appends len bytes copied from d bytes back (d <= bytes produced by this
 * member, checked by the caller), so the copy may overlap what it produces. */
static void put_match(struct gunzip *g, size_t len, size_t d)
{
	while (len) {
		/* before taking pointers: it may move the window; a flush keeps 32 KiB, so d still reaches */
		size_t n = reserve(g, len);
		if (!n)
			return;
		uint8_t *dst = g->out + g->wpos;
		const uint8_t *src = dst - d;
		if (n < 64) { /* most matches: a call to memcpy costs more than it saves */
			for (size_t i = 0; i < n; i++)
				dst[i] = src[i];
		} else {
			/* [src, dst + done) repeats with period d, so copying from src
			 * continues the pattern, in ever longer pieces that do not
			 * overlap their source */
			for (size_t done = 0; done < n;) {
				size_t piece = d + done < n - done ? d + done : n - done;
				memcpy(dst + done, src, piece);
				done += piece;
			}
		}
		commit(g, n);
		len -= n;
	}
}

/* Appends n bytes from the input at g->pos (a stored block). */
static void put_input(struct gunzip *g, size_t n)
{
	while (n) {
		size_t k = reserve(g, n);
		if (!k)
			return;
		memcpy(g->out + g->wpos, g->in + g->pos, k);
		g->pos += k;
		commit(g, k);
		n -= k;
	}
}

/* --- Huffman codes ----------------------------------------------------------- */

/* Builds the decoding table from code lengths (each <= 15). Returns false if
 * the lengths describe an over-subscribed code (incomplete codes are accepted). */
static bool huffman_build(struct huffman *h, const uint8_t *lengths, unsigned n)
{
	memset(h->count, 0, sizeof(h->count));
	for (unsigned i = 0; i < n; i++)
		h->count[lengths[i]]++;
	int left = 1;
	for (unsigned len = 1; len < 16; len++) {
		left = left * 2 - h->count[len];
		if (left < 0)
			return false;
	}
	uint16_t offset[16] = {0};
	for (unsigned len = 1; len < 15; len++)
		offset[len + 1] = (uint16_t)(offset[len] + h->count[len]);
	for (unsigned i = 0; i < n; i++)
		if (lengths[i])
			h->symbol[offset[lengths[i]]++] = (uint16_t)i;
	return true;
}

/* Canonical codes of one length are consecutive numbers, so a code can be
 * decoded one bit at a time by comparing with the first code of its length.
 * Returns the symbol, or -1 with an error. */
static int huffman_decode(struct gunzip *g, const struct huffman *h)
{
	int code = 0, first = 0, index = 0;
	for (unsigned len = 1; len < 16 && !g->err; len++) {
		code |= (int)get_bits(g, 1);
		int count = h->count[len];
		if (code - first < count)
			return h->symbol[index + code - first];
		index += count;
		first = (first + count) << 1;
		code <<= 1;
	}
	fail(g, GUNZIP_EDATA, "invalid Huffman code in compressed body");
	return -1;
}

/* --- deflate blocks ------------------------------------------------------------ */

static const uint16_t len_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,	15,  17,  19,  23, 27,
				      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
				      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {1,    2,	   3,	 4,    5,    7,	   9,	 13,	17,    25,
				       33,   49,   65,	 97,   129,  193,  257,	 385,	513,   769,
				       1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,	3,  3,	4,  4,	5,  5,	6,
				       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* Literals and length/distance pairs up to the end-of-block symbol. */
static void inflate_codes(struct gunzip *g, const struct huffman *lit, const struct huffman *dist)
{
	while (!g->err) {
		int sym = huffman_decode(g, lit);
		if (sym < 0 || sym == 256)
			return;
		if (sym < 256) {
			put_byte(g, (uint8_t)sym);
			continue;
		}
		sym -= 257;
		if (sym >= 29) {
			fail(g, GUNZIP_EDATA, "invalid length code in compressed body");
			return;
		}
		unsigned len = len_base[sym] + get_bits(g, len_extra[sym]);
		int dsym = huffman_decode(g, dist);
		if (dsym < 0 || dsym >= 30) {
			fail(g, GUNZIP_EDATA, "invalid distance code in compressed body");
			return;
		}
		unsigned d = dist_base[dsym] + get_bits(g, dist_extra[dsym]);
		if (d > g->total) {
			fail(g, GUNZIP_EDATA, "distance too far back in compressed body");
			return;
		}
		put_match(g, len, d);
	}
}

static void inflate_stored(struct gunzip *g)
{
	g->bits = 0; /* to a byte boundary: at most 7 bits are buffered here */
	g->nbits = 0;
	if (g->len - g->pos < 4) {
		fail(g, GUNZIP_EDATA, "compressed body is truncated");
		return;
	}
	unsigned n = g->in[g->pos] | g->in[g->pos + 1] << 8;
	unsigned nn = g->in[g->pos + 2] | g->in[g->pos + 3] << 8;
	g->pos += 4;
	if (n != (~nn & 0xffff)) {
		fail(g, GUNZIP_EDATA, "bad stored block length");
		return;
	}
	if (g->len - g->pos < n) {
		fail(g, GUNZIP_EDATA, "compressed body is truncated");
		return;
	}
	put_input(g, n);
}

static void inflate_fixed(struct gunzip *g)
{
	static struct huffman lit, dist;
	static bool built;
	if (!built) {
		uint8_t l[288];
		for (unsigned i = 0; i < 288; i++)
			l[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
		huffman_build(&lit, l, 288);
		memset(l, 5, 30);
		huffman_build(&dist, l, 30);
		built = true;
	}
	inflate_codes(g, &lit, &dist);
}

static void inflate_dynamic(struct gunzip *g)
{
	static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
	unsigned nlen = get_bits(g, 5) + 257, ndist = get_bits(g, 5) + 1, ncode = get_bits(g, 4) + 4;
	uint8_t lengths[320] = {0};
	struct huffman lit, dist;
	if (nlen > 286 || ndist > 30) {
		fail(g, GUNZIP_EDATA, "bad dynamic block header");
		return;
	}
	for (unsigned i = 0; i < ncode; i++)
		lengths[order[i]] = (uint8_t)get_bits(g, 3);
	if (!huffman_build(&lit, lengths, 19)) {
		fail(g, GUNZIP_EDATA, "bad code lengths in compressed body");
		return;
	}
	memset(lengths, 0, sizeof(lengths));
	for (unsigned i = 0; i < nlen + ndist && !g->err;) {
		int sym = huffman_decode(g, &lit);
		if (sym < 0)
			return;
		if (sym < 16) {
			lengths[i++] = (uint8_t)sym;
			continue;
		}
		unsigned repeat, value = 0;
		if (sym == 16) {
			if (i == 0) {
				fail(g, GUNZIP_EDATA, "bad code lengths in compressed body");
				return;
			}
			value = lengths[i - 1];
			repeat = 3 + get_bits(g, 2);
		} else {
			repeat = sym == 17 ? 3 + get_bits(g, 3) : 11 + get_bits(g, 7);
		}
		if (i + repeat > nlen + ndist) {
			fail(g, GUNZIP_EDATA, "bad code lengths in compressed body");
			return;
		}
		while (repeat--)
			lengths[i++] = (uint8_t)value;
	}
	if (g->err)
		return;
	if (!lengths[256] || !huffman_build(&lit, lengths, nlen) || !huffman_build(&dist, lengths + nlen, ndist)) {
		fail(g, GUNZIP_EDATA, "bad code lengths in compressed body");
		return;
	}
	inflate_codes(g, &lit, &dist);
}

/* --- gzip members ------------------------------------------------------------- */

/* Skips the member header at g->pos (RFC 1952 2.3). */
static void member_header(struct gunzip *g)
{
	const uint8_t *p = g->in + g->pos;
	size_t left = g->len - g->pos;
	if (left < 10 || p[0] != 0x1f || p[1] != 0x8b || p[2] != 8 || (p[3] & 0xe0)) {
		fail(g, GUNZIP_EDATA, "body is not gzip data");
		return;
	}
	unsigned flags = p[3];
	size_t pos = g->pos + 10;
	if (flags & 4) { /* FEXTRA */
		if (g->len - pos < 2 || g->len - pos - 2 < (size_t)(g->in[pos] | g->in[pos + 1] << 8)) {
			fail(g, GUNZIP_EDATA, "compressed body is truncated");
			return;
		}
		pos += 2 + (size_t)(g->in[pos] | g->in[pos + 1] << 8);
	}
	for (unsigned f = 8; f <= 16; f <<= 1) { /* FNAME, FCOMMENT: NUL-terminated */
		if (!(flags & f))
			continue;
		const uint8_t *nul = pos < g->len ? memchr(g->in + pos, 0, g->len - pos) : NULL;
		if (!nul) {
			fail(g, GUNZIP_EDATA, "compressed body is truncated");
			return;
		}
		pos = (size_t)(nul - g->in) + 1;
	}
	if (flags & 2) /* FHCRC: present, not checked */
		pos += 2;
	if (pos > g->len) {
		fail(g, GUNZIP_EDATA, "compressed body is truncated");
		return;
	}
	g->pos = pos;
}

/* One gzip member: header, deflate blocks, trailer. */
static void member(struct gunzip *g)
{
	g->wpos = g->flushed = 0; /* no distance reaches into an earlier member */
	member_header(g);
	if (g->err)
		return;
	g->bits = 0;
	g->nbits = 0;
	g->total = 0;
	g->crc = 0;
	for (bool last = false; !last && !g->err;) {
		last = get_bits(g, 1);
		unsigned type = get_bits(g, 2);
		if (type == 0)
			inflate_stored(g);
		else if (type == 1)
			inflate_fixed(g);
		else if (type == 2)
			inflate_dynamic(g);
		else
			fail(g, GUNZIP_EDATA, "invalid block type in compressed body");
	}
	flush(g, false);
	if (g->err)
		return;
	if (g->len - g->pos < 8) { /* the bits left in the last byte are padding */
		fail(g, GUNZIP_EDATA, "compressed body is truncated");
		return;
	}
	const uint8_t *t = g->in + g->pos;
	uint32_t crc = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
	uint32_t size = (uint32_t)t[4] | (uint32_t)t[5] << 8 | (uint32_t)t[6] << 16 | (uint32_t)t[7] << 24;
	g->pos += 8;
	if (crc != g->crc || size != (uint32_t)g->total)
		fail(g, GUNZIP_EDATA, "compressed body fails its CRC or length check");
}

int gunzip(const void *in, size_t n, gunzip_sink sink, void *ctx, uint64_t max_out, uint64_t *out_len, char *err,
	   size_t errsz)
{
	static bool crc_ready;
	if (!crc_ready) {
		crc_init();
		crc_ready = true;
	}
	struct gunzip g = {.in = in, .len = n, .max_out = max_out, .sink = sink, .ctx = ctx};
	g.cap = WINDOW_MIN;
	g.out = malloc(g.cap);
	if (!g.out)
		fail(&g, GUNZIP_ENOMEM, "cannot allocate the inflate window");
	else
		do {
			member(&g);
		} while (!g.err && g.pos < g.len);
	free(g.out);
	if (out_len)
		*out_len = g.err ? 0 : g.all;
	if (g.err) {
		snprintf(err, errsz, "%s", g.err);
		if (g.rc == GUNZIP_ESINK)
			errno = g.sink_errno;
		return g.rc;
	}
	return GUNZIP_OK;
}

/* --- to a file descriptor ----------------------------------------------------- */

static int fd_sink(void *ctx, const void *p, size_t n)
{
	return write_full(*(int *)ctx, p, n);
}

int gunzip_to_fd(const void *in, size_t n, int fd, uint64_t max_out, uint64_t *out_len, char *err, size_t errsz)
{
	return gunzip(in, n, fd_sink, &fd, max_out, out_len, err, errsz);
}
