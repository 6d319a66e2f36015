/*
 * fake_api.h - a stand-in for cube-api's HTTP listener, for the proxy tests
 * of Host api.<domain> (test_proxy_api.c, test_proxy_tls.c).
 *
 * A TCP listener on 127.0.0.1 (ephemeral port), one thread per connection,
 * HTTP/1.1 keep-alive. Every request is read whole (Content-Length or
 * chunked body, counted and summed) and answered with JSON saying what
 * arrived: method, target, body length and sum, the connection's serial
 * and request number, and the headers the proxy must pass or set (Host,
 * X-API-Key, X-Forwarded-For and -Proto, and how many of each of those two
 * came). Special targets: /stream (a chunked answer released by the test,
 * fake_stream), /hangup (closes without an answer), /chunked-answer (a
 * chunked JSON answer, as Node servers send).
 *
 * Include after fake_sandbox.h (send_all, fill, fake_stream). Test-only.
 */
#ifndef CUBE_API_TESTS_FAKE_API_H
#define CUBE_API_TESTS_FAKE_API_H

#include "../../lib/http.h"
#include "../../lib/json.h"
#include "fake_sandbox.h"

static atomic_int fake_api_serial; /* connections the stand-in api accepted */
static sem_t *fake_api_stream_go;

/* Reads one request and its body; false on EOF or a broken request. */
static bool fake_api_read(int fd, struct buf *in, struct http_head *h, uint64_t *len, uint64_t *sum)
{
	int status;
	ssize_t used;
	while ((used = http_parse_head(in->data ? in->data : "", in->len, true, 65536, h, &status)) == 0)
		if (!fill(fd, in))
			return false;
	if (used < 0)
		return false;
	buf_consume(in, (size_t)used);
	*len = *sum = 0;
	struct http_chunked ck = {0};
	struct buf dec = BUF_INIT;
	uint64_t left = h->content_length > 0 ? (uint64_t)h->content_length : 0;
	bool done = !h->chunked && left == 0;
	while (!done) {
		if (!in->len && !fill(fd, in))
			break;
		size_t take;
		if (h->chunked) {
			ssize_t k = http_chunked_feed(&ck, in->data, in->len, &dec, &done);
			if (k < 0)
				break;
			take = (size_t)k;
		} else {
			take = in->len < left ? in->len : (size_t)left;
			buf_append(&dec, in->data, take);
			left -= take;
			done = left == 0;
		}
		for (size_t i = 0; i < dec.len; i++)
			*sum = *sum * 31 + (unsigned char)dec.data[i];
		*len += dec.len;
		buf_reset(&dec);
		buf_consume(in, take);
	}
	buf_free(&dec);
	if (!done)
		http_head_free(h);
	return done;
}

static int fake_api_count(const struct http_head *h, const char *name)
{
	int n = 0;
	for (size_t i = 0; i < h->nheaders; i++)
		n += strcasecmp(h->headers[i].name, name) == 0;
	return n;
}

static void fake_api_answer(int fd, const struct http_head *h, uint64_t len, uint64_t sum, int serial, int nreq)
{
	struct buf body = BUF_INIT;
	struct jw w;
	jw_init(&w, &body);
	jw_obj(&w);
	jw_kstr(&w, "method", h->method);
	jw_kstr(&w, "target", h->target);
	jw_kint(&w, "len", (int64_t)len);
	jw_kint(&w, "sum", (int64_t)(sum & 0x7fffffffffffffff));
	jw_kint(&w, "conn", serial);
	jw_kint(&w, "nreq", nreq);
	const char *names[][2] = {
	    {"host", "Host"}, {"apiKey", "X-API-Key"}, {"xff", "X-Forwarded-For"}, {"xfp", "X-Forwarded-Proto"}};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const char *v = http_header_get(h, names[i][1]);
		jw_kstr(&w, names[i][0], v ? v : "");
	}
	jw_kint(&w, "xffCount", fake_api_count(h, "X-Forwarded-For"));
	jw_kint(&w, "xfpCount", fake_api_count(h, "X-Forwarded-Proto"));
	jw_end(&w);
	struct buf out = BUF_INIT;
	if (strcmp(h->target, "/chunked-answer") == 0) {
		buf_printf(&out,
			   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
		buf_printf(&out, "%zx\r\n", body.len);
		buf_append(&out, body.data, body.len);
		buf_puts(&out, "\r\n0\r\n\r\n");
	} else {
		buf_printf(&out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			   body.len);
		buf_append(&out, body.data, body.len);
	}
	send_all(fd, out.data, out.len);
	buf_free(&out);
	buf_free(&body);
}

static void *fake_api_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	int serial = ++fake_api_serial;
	struct buf in = BUF_INIT;
	for (int nreq = 1;; nreq++) {
		struct http_head h;
		uint64_t len, sum;
		if (!fake_api_read(fd, &in, &h, &len, &sum))
			break;
		bool stop = !h.keep_alive || strcmp(h.target, "/hangup") == 0;
		if (strcmp(h.target, "/stream") == 0)
			fake_stream(fd, fake_api_stream_go);
		else if (strcmp(h.target, "/hangup") != 0)
			fake_api_answer(fd, &h, len, sum, serial, nreq);
		http_head_free(&h);
		if (stop)
			break;
	}
	buf_free(&in);
	close(fd);
	return NULL;
}

static void *fake_api_accept(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		pthread_t t;
		pthread_create(&t, NULL, fake_api_conn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

/* Starts the stand-in api; returns its port. go releases /stream's second
 * chunk. */
static int fake_api_listen(sem_t *go)
{
	fake_api_stream_go = go;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 256) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
		abort();
	pthread_t t;
	pthread_create(&t, NULL, fake_api_accept, (void *)(intptr_t)lfd);
	pthread_detach(t);
	return ntohs(a.sin_port);
}

#endif
