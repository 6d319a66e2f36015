/* connect.c - Connect protocol envelopes (connect.h). */
#include "connect.h"

void connect_envelope(struct buf *out, unsigned flags, const void *msg, size_t len)
{
	unsigned char hdr[CONNECT_HEADER_LEN] = {(unsigned char)flags, (unsigned char)(len >> 24),
						 (unsigned char)(len >> 16), (unsigned char)(len >> 8),
						 (unsigned char)len};
	buf_append(out, hdr, sizeof hdr);
	buf_append(out, msg, len);
}

size_t connect_header_length(const void *header)
{
	const unsigned char *h = header;
	return (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
}

void connect_reader_feed(struct connect_reader *r, const char *p, size_t n)
{
	if (r->failed)
		return;
	buf_append(&r->in, p, n);
	size_t at = 0;
	while (r->in.len - at >= CONNECT_HEADER_LEN) {
		const char *h = r->in.data + at;
		size_t mlen = connect_header_length(h);
		if (mlen > CONNECT_MESSAGE_MAX) {
			r->failed = true;
			break;
		}
		if (r->in.len - at - CONNECT_HEADER_LEN < mlen)
			break;
		r->on_message(r->arg, (unsigned char)h[0], h + CONNECT_HEADER_LEN, mlen);
		at += CONNECT_HEADER_LEN + mlen;
	}
	buf_consume(&r->in, r->failed ? r->in.len : at);
}

void connect_reader_free(struct connect_reader *r)
{
	buf_free(&r->in);
}
