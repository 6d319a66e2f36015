/*
 * connect.h - the envelopes of the Connect protocol's streaming calls.
 *
 * A streaming request or response body is a sequence of envelopes:
 *
 *   flags (1 byte) | length (4 bytes, big-endian) | message (length bytes)
 *
 * flags 0x01 marks a compressed message (nobody here sends one), 0x02 the
 * end-stream envelope that closes a response ({} or {"error":{...}}).
 * Used by the agent (server side) and by the host tools that start guest
 * processes (client side).
 */
#ifndef CUBE_CONNECT_H
#define CUBE_CONNECT_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define CONNECT_FLAG_COMPRESSED 0x01
#define CONNECT_FLAG_END_STREAM 0x02
#define CONNECT_HEADER_LEN	5
/* The largest message a reader accepts: far above any process event. */
#define CONNECT_MESSAGE_MAX (16u << 20)

/* Appends one envelope holding msg[0..len) to out. */
void connect_envelope(struct buf *out, unsigned flags, const void *msg, size_t len);

/* The message length an envelope header (CONNECT_HEADER_LEN bytes) gives. */
size_t connect_header_length(const void *header);

/* Splits a byte stream into envelopes. Feed it the body as it arrives;
 * on_message gets each complete one. A message over CONNECT_MESSAGE_MAX
 * makes the reader fail: it then ignores the rest. */
struct connect_reader {
	struct buf in; /* bytes of an incomplete envelope */
	bool failed;
	void (*on_message)(void *arg, unsigned flags, const char *msg, size_t len);
	void *arg;
};
void connect_reader_feed(struct connect_reader *r, const char *p, size_t n);
void connect_reader_free(struct connect_reader *r);

#endif
