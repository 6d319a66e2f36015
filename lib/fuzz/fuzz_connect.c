/*
 * fuzz_connect.c - libFuzzer target for lib/connect.c.
 *
 * The input is a response body: fed whole and fed in pieces (the first byte
 * picks the piece size), the reader must deliver the same messages, each
 * within the input, and the concatenation of what it delivered, re-framed,
 * must be a prefix of the input.
 */
#include <stdint.h>
#include <string.h>

#include "../connect.h"

struct collect {
	struct buf framed; /* every delivered message, framed again */
};

static void on_message(void *arg, unsigned flags, const char *msg, size_t len)
{
	struct collect *c = arg;
	connect_envelope(&c->framed, flags, msg, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t step = (size_t)data[0] % 17 + 1;
	const char *body = (const char *)data + 1;
	size_t n = size - 1;

	struct collect whole = {BUF_INIT}, pieces = {BUF_INIT};
	struct connect_reader a = {.on_message = on_message, .arg = &whole};
	struct connect_reader b = {.on_message = on_message, .arg = &pieces};
	connect_reader_feed(&a, body, n);
	for (size_t at = 0; at < n; at += step)
		connect_reader_feed(&b, body + at, n - at < step ? n - at : step);

	if (whole.framed.len != pieces.framed.len ||
	    (whole.framed.len && memcmp(whole.framed.data, pieces.framed.data, whole.framed.len) != 0))
		__builtin_trap();
	if (whole.framed.len > n || (whole.framed.len && memcmp(whole.framed.data, body, whole.framed.len) != 0))
		__builtin_trap();
	if (a.failed != b.failed)
		__builtin_trap();
	connect_reader_free(&a);
	connect_reader_free(&b);
	buf_free(&whole.framed);
	buf_free(&pieces.framed);
	return 0;
}
