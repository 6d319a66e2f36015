/*
 * fuzz_http_response.c - libFuzzer target for http_read_response (the
 * client's reader of a server's answer).
 *
 * The input is what a server sends. It is read twice, once in one piece and
 * once in pieces (the first byte picks their size); both reads must agree on
 * the result and the status, a complete read on every body byte, and a body
 * is never longer than the input. (A response found broken may have given
 * part of its body first, more or less depending on the pieces.)
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "../buf.h"
#include "../http.h"

struct stream {
	const char *p;
	size_t left, step;
	struct buf body;
};

static ssize_t stream_read(void *ctx, char *p, size_t n)
{
	struct stream *s = ctx;
	size_t take = s->left < n ? s->left : n;
	if (s->step && take > s->step)
		take = s->step;
	memcpy(p, s->p, take);
	s->p += take;
	s->left -= take;
	return (ssize_t)take;
}

static int stream_body(void *arg, const char *p, size_t n)
{
	buf_append(&((struct stream *)arg)->body, p, n);
	return 0;
}

static int read_all(const char *data, size_t size, size_t step, struct stream *s, struct http_head *h, int *err)
{
	*s = (struct stream){data, size, step, BUF_INIT};
	struct http_reader r = {.read = stream_read, .ctx = s, .on_body = stream_body, .arg = s};
	errno = 0;
	int rc = http_read_response(&r, false, 4096, h);
	*err = rc < 0 ? errno : 0;
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t step = (size_t)data[0] % 13 + 1;
	const char *in = (const char *)data + 1;
	size_t n = size - 1;
	struct stream a, b;
	struct http_head ha, hb;
	int ea, eb;
	int ra = read_all(in, n, 0, &a, &ha, &ea), rb = read_all(in, n, step, &b, &hb, &eb);
	if (ra != rb || ea != eb || ha.status != hb.status || a.body.len > n || b.body.len > n)
		__builtin_trap();
	if (ra == 0 && (a.body.len != b.body.len || (a.body.len && memcmp(a.body.data, b.body.data, a.body.len) != 0)))
		__builtin_trap();
	http_head_free(&ha);
	http_head_free(&hb);
	buf_free(&a.body);
	buf_free(&b.body);
	return 0;
}
