/* test_connect.c - Connect envelopes: written, then read back in any split. */
#include "../connect.h"
#include "test.h"

struct seen {
	int n;
	unsigned flags[8];
	char msg[8][64];
};

static void on_message(void *arg, unsigned flags, const char *msg, size_t len)
{
	struct seen *s = arg;
	if (s->n < 8) {
		s->flags[s->n] = flags;
		snprintf(s->msg[s->n], sizeof s->msg[0], "%.*s", (int)len, msg);
	}
	s->n++;
}

TEST(envelope_header_is_flags_then_big_endian_length)
{
	struct buf b = BUF_INIT;
	connect_envelope(&b, CONNECT_FLAG_END_STREAM, "{}", 2);
	CHECK_MEMEQ(b.data, b.len, "\x02\x00\x00\x00\x02{}", 7);
	CHECK_EQ_INT(connect_header_length("\x00\x01\x02\x03\x04"), 0x01020304);
	buf_free(&b);
}

TEST(reader_splits_envelopes_fed_a_byte_at_a_time)
{
	struct buf b = BUF_INIT;
	connect_envelope(&b, 0, "{\"a\":1}", 7);
	connect_envelope(&b, 0, "", 0);
	connect_envelope(&b, CONNECT_FLAG_END_STREAM, "{}", 2);
	struct seen s = {0};
	struct connect_reader r = {.on_message = on_message, .arg = &s};
	for (size_t i = 0; i < b.len; i++) {
		connect_reader_feed(&r, b.data + i, 1);
		if (i + 1 < 12) /* the first envelope ends at byte 12 */
			CHECK_EQ_INT(s.n, 0);
	}
	CHECK_EQ_INT(s.n, 3);
	CHECK_STREQ(s.msg[0], "{\"a\":1}");
	CHECK_STREQ(s.msg[1], "");
	CHECK_EQ_INT(s.flags[2], CONNECT_FLAG_END_STREAM);
	CHECK_EQ_INT(r.in.len, 0);
	CHECK(!r.failed);
	connect_reader_free(&r);
	buf_free(&b);
}

TEST(reader_refuses_a_message_over_the_limit)
{
	struct seen s = {0};
	struct connect_reader r = {.on_message = on_message, .arg = &s};
	connect_reader_feed(&r, "\x00\x7f\xff\xff\xff", 5);
	CHECK(r.failed);
	CHECK_EQ_INT(r.in.len, 0); /* nothing kept, nothing more buffered */
	connect_reader_feed(&r, "\x00\x00\x00\x00\x02{}", 7);
	CHECK_EQ_INT(s.n, 0);
	CHECK_EQ_INT(r.in.len, 0);
	connect_reader_free(&r);
}
