/*
 * test_http.c - lib/http*.c: the head parser, the chunked decoder, query
 * helpers, and a loopback server driven by the blocking client.
 *
 * The server runs in a forked child on its own event loop; the parent is the
 * client. The child exits through /quit, so LeakSanitizer checks the server
 * side too, and the parent checks the child's exit status.
 */
#include "../http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../fileio.h"
#include "../json.h"
#include "../log.h"
#include "../loop.h"
#include "test.h"

/* --- head parser ------------------------------------------------------------ */

/* Parses s as a complete head; returns the status (0 when accepted). */
static int head_status(const char *s, bool is_request)
{
	struct http_head h;
	int status = 0;
	ssize_t n = http_parse_head(s, strlen(s), is_request, 32 * 1024, &h, &status);
	if (n > 0) {
		http_head_free(&h);
		return 0;
	}
	return n == 0 ? -1 : status;
}

#define CHECK_REQ_STATUS(s, want)                                                                                      \
	do {                                                                                                           \
		int got_ = head_status(s, true);                                                                       \
		if (got_ != (want))                                                                                    \
			test_fail(__FILE__, __LINE__, "request %s: status %d, wanted %d", #s, got_, (want));           \
	} while (0)

TEST(valid_request_head)
{
	const char *s = "POST /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: example\r\nX-Multi: a\r\nx-multi: b\r\n"
			"Content-Length: 5\r\nX-Empty:\r\nX-Spaces: \t value with spaces \t\r\n\r\nhello";
	struct http_head h;
	int status = 0;
	ssize_t n = http_parse_head(s, strlen(s), true, 4096, &h, &status);
	if (!CHECK_EQ_INT(n, strlen(s) - 5))
		return;
	CHECK_STREQ(h.method, "POST");
	CHECK_STREQ(h.target, "/a/b%20c?x=1&y=2");
	CHECK_EQ_INT(h.minor, 1);
	CHECK_EQ_INT(h.nheaders, 6);
	CHECK_EQ_INT(h.content_length, 5);
	CHECK(!h.chunked);
	CHECK(h.keep_alive);
	/* Names are case-insensitive; the first of repeated headers wins. */
	CHECK_STREQ(http_header_get(&h, "host"), "example");
	CHECK_STREQ(http_header_get(&h, "HOST"), "example");
	CHECK_STREQ(http_header_get(&h, "X-MULTI"), "a");
	CHECK_STREQ(http_header_get(&h, "x-empty"), "");
	CHECK_STREQ(http_header_get(&h, "X-Spaces"), "value with spaces");
	CHECK(http_header_get(&h, "Missing") == NULL);
	http_head_free(&h);
}

TEST(incomplete_head_needs_more)
{
	const char *s = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	size_t len = strlen(s);
	for (size_t i = 0; i < len; i++) {
		struct http_head h;
		int status = 0;
		if (!CHECK_EQ_INT(http_parse_head(s, i, true, 4096, &h, &status), 0))
			return;
	}
	CHECK_EQ_INT(head_status(s, true), 0);
}

TEST(connection_and_version_rules)
{
	struct http_head h;
	int status;
	const char *s = "GET / HTTP/1.0\r\n\r\n";
	CHECK(http_parse_head(s, strlen(s), true, 4096, &h, &status) > 0 && !h.keep_alive && h.minor == 0);
	http_head_free(&h);
	s = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
	CHECK(http_parse_head(s, strlen(s), true, 4096, &h, &status) > 0 && h.keep_alive);
	http_head_free(&h);
	s = "GET / HTTP/1.1\r\nconnection: upgrade, CLOSE\r\n\r\n";
	CHECK(http_parse_head(s, strlen(s), true, 4096, &h, &status) > 0 && !h.keep_alive);
	http_head_free(&h);
	s = "GET / HTTP/1.1\r\nTRANSFER-ENCODING: Chunked\r\n\r\n";
	CHECK(http_parse_head(s, strlen(s), true, 4096, &h, &status) > 0 && h.chunked && h.content_length == -1);
	http_head_free(&h);
	/* Repeated identical Content-Length is one length. */
	s = "PUT / HTTP/1.1\r\ncontent-length: 7\r\nContent-Length: 7\r\n\r\n";
	CHECK(http_parse_head(s, strlen(s), true, 4096, &h, &status) > 0 && h.content_length == 7);
	http_head_free(&h);
	CHECK_REQ_STATUS("OPTIONS * HTTP/1.1\r\n\r\n", 0);
	CHECK_REQ_STATUS("GET http://host/p?q HTTP/1.1\r\n\r\n", 0);
}

TEST(response_heads)
{
	struct http_head h;
	int status = 0;
	const char *s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n";
	CHECK(http_parse_head(s, strlen(s), false, 4096, &h, &status) == (ssize_t)strlen(s));
	CHECK_EQ_INT(h.status, 200);
	CHECK(h.chunked);
	CHECK_STREQ(http_header_get(&h, "content-type"), "text/plain");
	http_head_free(&h);
	s = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
	CHECK(http_parse_head(s, strlen(s), false, 4096, &h, &status) > 0 && h.status == 404 && !h.keep_alive);
	http_head_free(&h);
	CHECK_EQ_INT(head_status("HTTP/1.1 204\r\n\r\n", false), 0);
	CHECK_EQ_INT(head_status("HTTP/1.1 2000 OK\r\n\r\n", false), 400);
	CHECK_EQ_INT(head_status("HTTP/1.1 abc OK\r\n\r\n", false), 400);
	CHECK_EQ_INT(head_status("HTTP/1.1 099 Low\r\n\r\n", false), 400);
	CHECK_EQ_INT(head_status("HTTP/2.0 200 OK\r\n\r\n", false), 505);
	CHECK_EQ_INT(head_status("ICY 200 OK\r\n\r\n", false), 400);
}

TEST(malformed_request_line_400)
{
	CHECK_REQ_STATUS("GET /\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET  / HTTP/1.1\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / HTTP/1.1 x\r\n\r\n", 400);
	CHECK_REQ_STATUS(" / HTTP/1.1\r\n\r\n", 400);
	CHECK_REQ_STATUS("G(T / HTTP/1.1\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET /a\x01 HTTP/1.1\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET /a\x7f HTTP/1.1\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / HTTX/1.1\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / HTTP/1.10\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / HTTP/1\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / http/1.1\r\n\r\n", 400);
	CHECK_REQ_STATUS("GARBAGE\r\n\r\n", 400);
	CHECK_REQ_STATUS("\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / HTTP/1.1\nHost: x\r\n\r\n", 400); /* bare LF */
	CHECK_REQ_STATUS("GET / HTTP/1.1\rHost: x\r\n\r\n", 400); /* bare CR */
	const char nul[] = "GET /\0 HTTP/1.1\r\n\r\n";
	struct http_head h;
	int status = 0;
	CHECK(http_parse_head(nul, sizeof(nul) - 1, true, 4096, &h, &status) == -1 && status == 400);
}

TEST(malformed_headers_400)
{
	CHECK_REQ_STATUS("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / HTTP/1.1\r\n: empty-name\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / HTTP/1.1\r\nBad\x01Name: x\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", 400);
	/* obs-fold: a continuation line is refused, not joined. */
	CHECK_REQ_STATUS("GET / HTTP/1.1\r\nX-Long: a\r\n b\r\n\r\n", 400);
	CHECK_REQ_STATUS("GET / HTTP/1.1\r\nX-Long: a\r\n\tb\r\n\r\n", 400);
	/* Framing conflicts: the classic request-smuggling shapes. */
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n", 400);
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 400);
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400);
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nContent-Length: 5a\r\n\r\n", 400);
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400);
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400);
	CHECK_REQ_STATUS("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

TEST(too_large_431)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "GET / HTTP/1.1\r\nX-Big: ");
	for (int i = 0; i < 5000; i++)
		buf_putc(&b, 'a');
	struct http_head h;
	int status = 0;
	/* Unfinished and already over the limit: no point waiting for more. */
	CHECK(http_parse_head(b.data, b.len, true, 4096, &h, &status) == -1 && status == 431);
	/* Finished, but the end lies beyond the limit. */
	buf_puts(&b, "\r\n\r\n");
	status = 0;
	CHECK(http_parse_head(b.data, b.len, true, 4096, &h, &status) == -1 && status == 431);
	/* Under the limit it is fine. */
	CHECK(http_parse_head(b.data, b.len, true, 8192, &h, &status) > 0);
	http_head_free(&h);
	/* Too many header lines. */
	buf_reset(&b);
	buf_puts(&b, "GET / HTTP/1.1\r\n");
	for (int i = 0; i <= HTTP_MAX_HEADERS; i++)
		buf_printf(&b, "X-%d: v\r\n", i);
	buf_puts(&b, "\r\n");
	status = 0;
	CHECK(http_parse_head(b.data, b.len, true, 32768, &h, &status) == -1 && status == 431);
	buf_free(&b);
}

TEST(bad_version_505)
{
	CHECK_REQ_STATUS("GET / HTTP/2.0\r\n\r\n", 505);
	CHECK_REQ_STATUS("GET / HTTP/0.9\r\n\r\n", 505);
	CHECK_REQ_STATUS("GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505);
}

TEST(unsupported_501)
{
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
	CHECK_REQ_STATUS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
	CHECK_REQ_STATUS("ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n\r\n", 501);
}

/* --- chunked decoder -------------------------------------------------------- */

static const char chunked_msg[] = "5\r\nhello\r\n"
				  "6;name=value;quoted=\"a b\"\r\n world\r\n"
				  "000A\r\n0123456789\r\n"
				  "1 ; ext\r\n!\r\n"
				  "0\r\nTrailer-One: x\r\ntrailer-two: y\r\n\r\n";
static const char chunked_plain[] = "hello world0123456789!";

TEST(chunked_whole)
{
	struct http_chunked c = {0};
	struct buf out = BUF_INIT;
	bool done = false;
	char msg[sizeof(chunked_msg) + 16];
	size_t len = sizeof(chunked_msg) - 1;
	memcpy(msg, chunked_msg, len);
	memcpy(msg + len, "NEXT", 4); /* the next request: must not be consumed */
	ssize_t n = http_chunked_feed(&c, msg, len + 4, &out, &done);
	CHECK_EQ_INT(n, len);
	CHECK(done);
	CHECK_STREQ(out.data, chunked_plain);
	/* Once done, nothing more is taken. */
	CHECK_EQ_INT(http_chunked_feed(&c, "NEXT", 4, &out, &done), 0);
	CHECK(done);
	buf_free(&out);

	/* The minimal body. */
	struct http_chunked c2 = {0};
	done = false;
	CHECK_EQ_INT(http_chunked_feed(&c2, "0\r\n\r\n", 5, &out, &done), 5);
	CHECK(done && out.len == 0);
	buf_free(&out);
}

/* Feeds msg in two pieces split at k; returns the decoded text or NULL on error. */
static bool feed_split(const char *msg, size_t len, size_t k, struct buf *out, bool *done)
{
	struct http_chunked c = {0};
	ssize_t a = http_chunked_feed(&c, msg, k, out, done);
	if (a != (ssize_t)k || *done)
		return false;
	ssize_t b = http_chunked_feed(&c, msg + k, len - k, out, done);
	return b == (ssize_t)(len - k);
}

TEST(chunked_split_at_every_byte)
{
	size_t len = sizeof(chunked_msg) - 1;
	for (size_t k = 0; k < len; k++) {
		struct buf out = BUF_INIT;
		bool done = false;
		bool ok = feed_split(chunked_msg, len, k, &out, &done);
		if (!CHECK(ok && done) || !CHECK_STREQ(out.data ? out.data : "", chunked_plain)) {
			fprintf(stderr, "    split at %zu\n", k);
			buf_free(&out);
			return;
		}
		buf_free(&out);
	}
	/* And one byte at a time. */
	struct http_chunked c = {0};
	struct buf out = BUF_INIT;
	bool done = false;
	for (size_t i = 0; i < len; i++) {
		CHECK(!done);
		if (!CHECK_EQ_INT(http_chunked_feed(&c, chunked_msg + i, 1, &out, &done), 1))
			break;
	}
	CHECK(done);
	CHECK_STREQ(out.data, chunked_plain);
	buf_free(&out);
}

static bool chunked_rejects(const char *s)
{
	struct http_chunked c = {0};
	struct buf out = BUF_INIT;
	bool done = false;
	ssize_t n = http_chunked_feed(&c, s, strlen(s), &out, &done);
	buf_free(&out);
	if (n != -1)
		fprintf(stderr, "    accepted chunked \"%s\"\n", s);
	return n == -1;
}

TEST(chunked_malformed)
{
	CHECK(chunked_rejects("x\r\n"));
	CHECK(chunked_rejects("\r\n"));
	CHECK(chunked_rejects("5\n"));
	CHECK(chunked_rejects("5\r\r\n"));
	CHECK(chunked_rejects("-5\r\n"));
	CHECK(chunked_rejects("0x5\r\n"));
	CHECK(chunked_rejects(";ext\r\n"));
	CHECK(chunked_rejects("5\r\nhelloXX"));
	CHECK(chunked_rejects("5\r\nhello\n0\r\n\r\n"));
	CHECK(chunked_rejects("fffffffffffffffff\r\n")); /* 2^68: overflows */
	CHECK(chunked_rejects("0\r\n\n"));
	/* Trailer lines follow the head's rules: CRLF only, no control bytes. */
	CHECK(chunked_rejects("0\r\nX: y\n\r\n"));
	CHECK(chunked_rejects("0\r\nX: y\r\r\n\r\n"));
	CHECK(chunked_rejects("0\r\nX: \001\r\n\r\n"));
	CHECK(chunked_rejects("0\r\n\rX\r\n"));
	struct buf longline = BUF_INIT;
	buf_puts(&longline, "1;");
	for (int i = 0; i < 10000; i++)
		buf_putc(&longline, 'e');
	CHECK(chunked_rejects(longline.data));
	buf_free(&longline);
	/* Huge but well-formed sizes are the server's limit to enforce, not a framing error. */
	struct http_chunked c = {0};
	struct buf out = BUF_INIT;
	bool done = false;
	CHECK_EQ_INT(http_chunked_feed(&c, "ffffffffffffffff\r\nab", 20, &out, &done), 20);
	CHECK(!done && out.len == 2);
	buf_free(&out);
}

/* --- query helpers ------------------------------------------------------------ */

TEST(query_get)
{
	const char *q = "a=1&path=%2Fhome%2Fuser%2Ff%20g.txt&c=x+y&flag&e=%zz&f=&k%20x=sp&a=2&u=%C3%A9";
	char *v;
	CHECK_STREQ(v = http_query_get(q, "a"), "1"); /* first wins */
	free(v);
	CHECK_STREQ(v = http_query_get(q, "path"), "/home/user/f g.txt");
	free(v);
	CHECK_STREQ(v = http_query_get(q, "c"), "x y");
	free(v);
	CHECK_STREQ(v = http_query_get(q, "flag"), "");
	free(v);
	CHECK_STREQ(v = http_query_get(q, "e"), "%zz"); /* malformed escapes stay literal */
	free(v);
	CHECK_STREQ(v = http_query_get(q, "f"), "");
	free(v);
	CHECK_STREQ(v = http_query_get(q, "k x"), "sp");
	free(v);
	CHECK_STREQ(v = http_query_get(q, "u"), "\xC3\xA9");
	free(v);
	CHECK(http_query_get(q, "missing") == NULL);
	CHECK(http_query_get(q, "pat") == NULL);
	CHECK(http_query_get("", "a") == NULL);
	CHECK(http_query_get(NULL, "a") == NULL);
	CHECK_STREQ(v = http_query_get("&&a=b&", "a"), "b");
	free(v);
}

TEST(url_decode)
{
	char *v;
	CHECK_STREQ(v = http_url_decode("a%41+b%2", 8, false), "aA+b%2");
	free(v);
	CHECK_STREQ(v = http_url_decode("a%41+b%2", 8, true), "aA b%2");
	free(v);
	CHECK_STREQ(v = http_url_decode("%2f%2F%", 7, false), "//%");
	free(v);
	v = http_url_decode("x%00y", 5, false);
	CHECK(v && v[0] == 'x' && v[1] == '\0' && v[2] == 'y');
	free(v);
	CHECK_STREQ(http_status_text(404), "Not Found");
	CHECK_STREQ(http_status_text(431), "Request Header Fields Too Large");
}

/* --- loopback server ------------------------------------------------------------ */

static int server_port;
static pid_t server_pid;

struct server_state {
	struct loop *loop;
	struct http_server *srv;
	struct loop_timer stream_timer, quit_timer;
	struct http_conn *stream_conn;
	int stream_step;
	int aborts;
};
static struct server_state S;

static void stream_tick(void *arg)
{
	static const char *const parts[] = {"one", "two", "three"};
	struct http_conn *c = S.stream_conn;
	http_stream_write(c, parts[S.stream_step], strlen(parts[S.stream_step]));
	if (++S.stream_step == 3) {
		http_stream_end(c);
		S.stream_conn = NULL;
		return;
	}
	loop_timer_arm(S.loop, &S.stream_timer, 60, stream_tick, NULL);
}

static void forever_tick(void *arg)
{
	http_stream_write(S.stream_conn, "tick\n", 5);
	loop_timer_arm(S.loop, &S.stream_timer, 10, forever_tick, NULL);
}

static void stream_aborted(void *arg)
{
	S.aborts++;
	S.stream_conn = NULL;
	loop_timer_disarm(S.loop, &S.stream_timer);
}

static void quit_now(void *arg)
{
	loop_stop(S.loop);
}

static void handle(struct http_conn *c, struct http_req *req, void *arg)
{
	if (strcmp(req->path, "/echo") == 0 || strcmp(req->path, "/echo/x y") == 0) {
		/* The request comes back: body as the body, the rest as headers. */
		char *q = http_query_get(req->query, "q");
		char len[32];
		snprintf(len, sizeof(len), "%zu", req->body_len);
		http_add_header(c, "X-Method", req->method);
		http_add_header(c, "X-Path", req->path);
		http_add_header(c, "X-Query", q ? q : "(none)");
		http_add_header(c, "X-Peer", req->peer);
		http_add_header(c, "X-Body-Len", len);
		const char *ua = http_req_header(req, "user-agent");
		http_add_header(c, "X-UA", ua ? ua : "(none)");
		http_respond(c, 200, "application/octet-stream", req->body, req->body_len);
		free(q);
	} else if (strcmp(req->path, "/stream") == 0) {
		S.stream_conn = c;
		S.stream_step = 0;
		http_conn_on_abort(c, stream_aborted, NULL);
		http_stream_start(c, 200, "text/plain");
		stream_tick(NULL);
	} else if (strcmp(req->path, "/forever") == 0) {
		S.stream_conn = c;
		http_conn_on_abort(c, stream_aborted, NULL);
		http_stream_start(c, 200, "text/plain");
		forever_tick(NULL);
	} else if (strcmp(req->path, "/aborts") == 0) {
		char n[16];
		snprintf(n, sizeof(n), "%d", S.aborts);
		http_respond(c, 200, "text/plain", n, strlen(n));
	} else if (strcmp(req->path, "/json") == 0) {
		char err[128];
		struct json *j = json_parse(req->body, req->body_len, err, sizeof(err));
		if (!j) {
			http_respond_error(c, 400, "bad JSON: %s", err);
			return;
		}
		http_respond(c, 200, "application/json", "{}", 2);
		json_free(j);
	} else if (strcmp(req->path, "/fdlimit") == 0) {
		/* Leave room for only a few more descriptors, to test EMFILE. */
		int open_fds = 0;
		for (int fd = 0; fd < 4096; fd++)
			if (fcntl(fd, F_GETFD) >= 0)
				open_fds++;
		struct rlimit rl = {.rlim_cur = (rlim_t)open_fds + 2, .rlim_max = RLIM_INFINITY};
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = (rlim_t)open_fds + 2;
		setrlimit(RLIMIT_NOFILE, &rl);
		http_respond(c, 200, "text/plain", "ok", 2);
	} else if (strcmp(req->path, "/save") == 0) {
		char *path = http_query_get(req->query, "path");
		if (path && http_req_body_save(c, path, 0600) == 0)
			http_respond(c, 201, "text/plain", "saved", 5);
		else
			http_respond_error(c, 500, "save: %s", strerror(errno));
		free(path);
	} else if (strcmp(req->path, "/quit") == 0) {
		http_respond(c, 200, "text/plain", "bye", 3);
		/* Give every connection time to be torn down, then stop. */
		loop_timer_arm(S.loop, &S.quit_timer, 300, quit_now, NULL);
	} else {
		http_respond_error(c, 404, "no route for %s", req->path);
	}
}

/* If a test run stops early (or runs a selection), do not leave the child behind. */
static void server_kill(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = 0;
	}
}

/* Starts the server in a child; the parent picks the port. */
static bool server_start(void)
{
	if (server_pid)
		return true;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 64) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
		return false;
	server_port = ntohs(a.sin_port);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		log_set_level(LOG_ERROR); /* rejects are logged at info; keep the test output clean */
		S.loop = loop_new();
		struct http_server_config cfg = {
		    .max_head_bytes = 4096,
		    .max_body_bytes = 64 * 1024,
		    .body_spool_bytes = 1024, /* so medium bodies take the spool path */
		    .idle_timeout_ms = 500,
		    .server_name = "test",
		};
		S.srv = http_server_new(S.loop, &cfg, handle, NULL);
		if (!S.loop || !S.srv || http_server_listen_fd(S.srv, lfd) < 0)
			_exit(3);
		loop_run(S.loop);
		http_server_free(S.srv);
		loop_free(S.loop);
		exit(0); /* not _exit: LeakSanitizer runs at exit */
	}
	close(lfd);
	server_pid = pid;
	atexit(server_kill);
	return true;
}

static int connect_server(void)
{
	return http_connect_tcp("127.0.0.1", server_port, 2000);
}

/* Reads until the server closes (or 3 s pass). */
static void read_to_eof(int fd, struct buf *b)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 3000) <= 0)
			return;
		char *dst = buf_reserve(b, 65536);
		ssize_t n = recv(fd, dst, 65536, 0);
		if (n <= 0)
			return;
		buf_commit(b, (size_t)n);
	}
}

/* Sends raw bytes on a new connection and returns what came back until close. */
static void raw_exchange(const char *req, size_t len, struct buf *resp)
{
	int fd = connect_server();
	if (!CHECK(fd >= 0))
		return;
	CHECK_EQ_INT(send(fd, req, len, MSG_NOSIGNAL), len);
	read_to_eof(fd, resp);
	close(fd);
}

/* Status of the first response in raw bytes, -1 if there is none. */
static int raw_status(const struct buf *resp, struct http_head *h, size_t *head_len)
{
	int status = 0;
	ssize_t n = resp->len ? http_parse_head(resp->data, resp->len, false, 65536, h, &status) : 0;
	if (n <= 0)
		return -1;
	*head_len = (size_t)n;
	return h->status;
}

TEST(server_keep_alive)
{
	if (!CHECK(server_start()))
		return;
	int fd = connect_server();
	if (!CHECK(fd >= 0))
		return;
	struct http_response r1, r2;
	const char *hdrs[] = {"User-Agent: cube-test", NULL};
	CHECK_EQ_INT(http_request(fd, "GET", "/echo?q=a%20b", hdrs, NULL, 0, &r1, 5000, NULL, NULL), 0);
	CHECK_EQ_INT(r1.status, 200);
	CHECK_STREQ(http_header_get(&r1.head, "X-Method"), "GET");
	CHECK_STREQ(http_header_get(&r1.head, "X-Query"), "a b");
	CHECK_STREQ(http_header_get(&r1.head, "X-UA"), "cube-test");
	CHECK_STREQ(http_header_get(&r1.head, "Server"), "test");
	CHECK(r1.head.keep_alive);
	/* Second request on the same socket: the server sees the same peer port. */
	CHECK_EQ_INT(http_request(fd, "POST", "/echo/x%20y", NULL, "body", 4, &r2, 5000, NULL, NULL), 0);
	CHECK_EQ_INT(r2.status, 200);
	CHECK_STREQ(http_header_get(&r2.head, "X-Path"), "/echo/x y");
	CHECK_STREQ(r2.body.data, "body");
	const char *p1 = http_header_get(&r1.head, "X-Peer"), *p2 = http_header_get(&r2.head, "X-Peer");
	CHECK(p1 && p2 && strncmp(p1, "127.0.0.1:", 10) == 0);
	CHECK_STREQ(p1, p2);
	http_response_free(&r1);
	http_response_free(&r2);
	close(fd);
}

TEST(server_content_length_body)
{
	if (!CHECK(server_start()))
		return;
	int fd = connect_server();
	if (!CHECK(fd >= 0))
		return;
	/* 40 KB of every byte value: over the 1 KB spool threshold, under the 64 KB limit. */
	size_t n = 40000;
	char *body = malloc(n);
	for (size_t i = 0; i < n; i++)
		body[i] = (char)(i * 31 + i / 256);
	struct http_response r;
	CHECK_EQ_INT(http_request(fd, "PUT", "/echo", NULL, body, n, &r, 5000, NULL, NULL), 0);
	CHECK_EQ_INT(r.status, 200);
	CHECK_STREQ(http_header_get(&r.head, "X-Body-Len"), "40000");
	CHECK_MEMEQ(r.body.data, r.body.len, body, n);
	http_response_free(&r);
	/* A small one after it, on the same connection (spool state was reset). */
	CHECK_EQ_INT(http_request(fd, "POST", "/echo", NULL, "ab\0c", 4, &r, 5000, NULL, NULL), 0);
	CHECK_MEMEQ(r.body.data, r.body.len, "ab\0c", 4);
	http_response_free(&r);
	/* Empty POST body. */
	CHECK_EQ_INT(http_request(fd, "POST", "/echo", NULL, NULL, 0, &r, 5000, NULL, NULL), 0);
	CHECK_STREQ(http_header_get(&r.head, "X-Body-Len"), "0");
	http_response_free(&r);
	free(body);
	close(fd);
}

TEST(server_chunked_request_body)
{
	if (!CHECK(server_start()))
		return;
	struct buf req = BUF_INIT, resp = BUF_INIT;
	buf_puts(&req, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
	buf_append(&req, chunked_msg, sizeof(chunked_msg) - 1);
	raw_exchange(req.data, req.len, &resp);
	struct http_head h;
	size_t hl = 0;
	if (CHECK_EQ_INT(raw_status(&resp, &h, &hl), 200)) {
		CHECK_STREQ(http_header_get(&h, "Connection"), "close");
		CHECK_EQ_INT(h.content_length, strlen(chunked_plain));
		CHECK_MEMEQ(resp.data + hl, resp.len - hl, chunked_plain, strlen(chunked_plain));
		http_head_free(&h);
	}
	buf_free(&req);
	buf_free(&resp);

	/* A large chunked body crosses the spool threshold chunk by chunk. */
	buf_puts(&req, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
	for (int i = 0; i < 50; i++) {
		buf_printf(&req, "%x\r\n", 1000);
		for (int k = 0; k < 1000; k++)
			buf_putc(&req, (char)('a' + (i + k) % 26));
		buf_puts(&req, "\r\n");
	}
	buf_puts(&req, "0\r\n\r\n");
	raw_exchange(req.data, req.len, &resp);
	if (CHECK_EQ_INT(raw_status(&resp, &h, &hl), 200)) {
		CHECK_EQ_INT(resp.len - hl, 50000);
		CHECK_STREQ(http_header_get(&h, "X-Body-Len"), "50000");
		http_head_free(&h);
	}
	buf_free(&req);
	buf_free(&resp);

	/* The client sends a chunked body when asked to, and an empty one too. */
	int fd = connect_server();
	const char *hdrs[] = {"Transfer-Encoding: chunked", NULL};
	struct http_response r;
	if (CHECK_EQ_INT(http_request(fd, "POST", "/echo", hdrs, "hello chunks", 12, &r, 5000, NULL, NULL), 0)) {
		CHECK_EQ_INT(r.status, 200);
		CHECK_MEMEQ(r.body.data, r.body.len, "hello chunks", 12);
		http_response_free(&r);
	}
	if (CHECK_EQ_INT(http_request(fd, "POST", "/echo", hdrs, NULL, 0, &r, 5000, NULL, NULL), 0)) {
		CHECK_STREQ(http_header_get(&r.head, "X-Body-Len"), "0");
		http_response_free(&r);
	}
	close(fd);
}

TEST(server_pipelined_requests)
{
	if (!CHECK(server_start()))
		return;
	const char *two = "GET /echo?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
			  "GET /echo?q=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	struct buf resp = BUF_INIT;
	raw_exchange(two, strlen(two), &resp);
	struct http_head h;
	size_t hl = 0;
	if (CHECK_EQ_INT(raw_status(&resp, &h, &hl), 200)) {
		CHECK_STREQ(http_header_get(&h, "X-Query"), "1");
		http_head_free(&h);
		buf_consume(&resp, hl);
		if (CHECK_EQ_INT(raw_status(&resp, &h, &hl), 200)) {
			CHECK_STREQ(http_header_get(&h, "X-Query"), "2");
			http_head_free(&h);
		}
	}
	buf_free(&resp);
}

struct pieces {
	int count;
	struct buf all;
	uint64_t first_ms, last_ms;
};

static void on_piece(void *arg, const char *p, size_t n)
{
	struct pieces *pc = arg;
	if (pc->count++ == 0)
		pc->first_ms = mono_ms();
	pc->last_ms = mono_ms();
	buf_append(&pc->all, p, n);
}

TEST(server_streaming_response)
{
	if (!CHECK(server_start()))
		return;
	int fd = connect_server();
	if (!CHECK(fd >= 0))
		return;
	struct pieces pc = {0, BUF_INIT, 0, 0};
	struct http_response r;
	CHECK_EQ_INT(http_request(fd, "GET", "/stream", NULL, NULL, 0, &r, 5000, on_piece, &pc), 0);
	CHECK_EQ_INT(r.status, 200);
	CHECK(r.head.chunked);
	/* Three writes 60 ms apart arrive as three pieces: each was flushed at once. */
	CHECK_EQ_INT(pc.count, 3);
	CHECK_STREQ(pc.all.data, "onetwothree");
	CHECK(pc.last_ms - pc.first_ms >= 100);
	CHECK_EQ_INT(r.body.len, 0);
	http_response_free(&r);
	/* The connection is still usable after a streamed response. */
	CHECK_EQ_INT(http_request(fd, "GET", "/echo?q=after", NULL, NULL, 0, &r, 5000, NULL, NULL), 0);
	CHECK_STREQ(http_header_get(&r.head, "X-Query"), "after");
	http_response_free(&r);
	buf_free(&pc.all);
	close(fd);
}

TEST(server_http10_stream_is_close_delimited)
{
	if (!CHECK(server_start()))
		return;
	const char *req = "GET /stream HTTP/1.0\r\n\r\n";
	struct buf resp = BUF_INIT;
	raw_exchange(req, strlen(req), &resp);
	struct http_head h;
	size_t hl = 0;
	if (CHECK_EQ_INT(raw_status(&resp, &h, &hl), 200)) {
		CHECK(!h.chunked && h.content_length == -1);
		CHECK_MEMEQ(resp.data + hl, resp.len - hl, "onetwothree", 11);
		http_head_free(&h);
	}
	buf_free(&resp);
}

TEST(server_client_abort_is_reported)
{
	if (!CHECK(server_start()))
		return;
	struct http_response r;
	int fd = connect_server();
	if (!CHECK(fd >= 0))
		return;
	CHECK_EQ_INT(http_request(fd, "GET", "/aborts", NULL, NULL, 0, &r, 5000, NULL, NULL), 0);
	int before = atoi(r.body.data ? r.body.data : "-1");
	http_response_free(&r);
	close(fd);

	/* Start an endless stream, read a bit of it, hang up. */
	fd = connect_server();
	const char *req = "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ_INT(send(fd, req, strlen(req), MSG_NOSIGNAL), strlen(req));
	char tmp[256];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	CHECK(poll(&p, 1, 3000) == 1 && recv(fd, tmp, sizeof(tmp), 0) > 0);
	close(fd);
	usleep(200 * 1000);

	fd = connect_server();
	CHECK_EQ_INT(http_request(fd, "GET", "/aborts", NULL, NULL, 0, &r, 5000, NULL, NULL), 0);
	CHECK_EQ_INT(atoi(r.body.data ? r.body.data : "-1"), before + 1);
	http_response_free(&r);
	close(fd);
}

/* Expects a JSON error {"code":status,...} and the connection closed. */
static void check_error_response(const struct buf *resp, int status)
{
	struct http_head h;
	size_t hl = 0;
	if (!CHECK_EQ_INT(raw_status(resp, &h, &hl), status))
		return;
	CHECK_STREQ(http_header_get(&h, "Content-Type"), "application/json");
	CHECK_STREQ(http_header_get(&h, "Connection"), "close");
	struct json *j = json_parse(resp->data + hl, resp->len - hl, NULL, 0);
	CHECK(j && json_get_int(j, "code", 0) == status && json_get_str(j, "message"));
	json_free(j);
	http_head_free(&h);
}

TEST(server_rejects_garbage_400)
{
	if (!CHECK(server_start()))
		return;
	struct buf resp = BUF_INIT;
	raw_exchange("GARBAGE\r\n\r\n", 11, &resp);
	check_error_response(&resp, 400);
	buf_reset(&resp);
	const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n";
	raw_exchange(tls, sizeof(tls) - 1, &resp);
	check_error_response(&resp, 400);
	buf_reset(&resp);
	const char *smuggle = "POST /echo HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
	raw_exchange(smuggle, strlen(smuggle), &resp);
	check_error_response(&resp, 400);
	buf_reset(&resp);
	const char *badchunk = "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
	raw_exchange(badchunk, strlen(badchunk), &resp);
	check_error_response(&resp, 400);
	buf_reset(&resp);
	const char *nulpath = "GET /a%00b HTTP/1.1\r\n\r\n";
	raw_exchange(nulpath, strlen(nulpath), &resp);
	check_error_response(&resp, 400);
	buf_reset(&resp);
	raw_exchange("GET / HTTP/2.0\r\n\r\n", 18, &resp);
	check_error_response(&resp, 505);
	buf_reset(&resp);
	const char *gzip = "POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
	raw_exchange(gzip, strlen(gzip), &resp);
	check_error_response(&resp, 501);
	buf_free(&resp);
	/* Malformed JSON reaches the handler, which answers with the parser's reason. */
	int fd = connect_server();
	struct http_response r;
	CHECK_EQ_INT(http_request(fd, "POST", "/json", NULL, "{\"a\":", 5, &r, 5000, NULL, NULL), 0);
	CHECK_EQ_INT(r.status, 400);
	CHECK(r.body.data && strstr(r.body.data, "at offset 5"));
	http_response_free(&r);
	CHECK_EQ_INT(http_request(fd, "GET", "/nowhere", NULL, NULL, 0, &r, 5000, NULL, NULL), 0);
	CHECK_EQ_INT(r.status, 404);
	http_response_free(&r);
	close(fd);
}

TEST(server_body_too_large_413)
{
	if (!CHECK(server_start()))
		return;
	/* Declared length over the 64 KB limit: refused before the body is read. */
	int fd = connect_server();
	struct http_response r;
	char *big = calloc(1, 70000);
	CHECK_EQ_INT(http_request(fd, "POST", "/echo", NULL, big, 70000, &r, 5000, NULL, NULL), 0);
	CHECK_EQ_INT(r.status, 413);
	http_response_free(&r);
	close(fd);
	free(big);
	/* Chunked: the limit is found while decoding. */
	struct buf req = BUF_INIT, resp = BUF_INIT;
	buf_puts(&req, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 70; i++) {
		buf_printf(&req, "%x\r\n", 1024);
		for (int k = 0; k < 1024; k++)
			buf_putc(&req, 'z');
		buf_puts(&req, "\r\n");
	}
	buf_puts(&req, "0\r\n\r\n");
	raw_exchange(req.data, req.len, &resp);
	check_error_response(&resp, 413);
	buf_free(&req);
	buf_free(&resp);
}

TEST(server_head_too_large_431)
{
	if (!CHECK(server_start()))
		return;
	struct buf big = BUF_INIT;
	buf_puts(&big, "X-Big: ");
	for (int i = 0; i < 8000; i++)
		buf_putc(&big, 'h');
	const char *hdrs[] = {big.data, NULL};
	int fd = connect_server();
	struct http_response r;
	CHECK_EQ_INT(http_request(fd, "GET", "/echo", hdrs, NULL, 0, &r, 5000, NULL, NULL), 0);
	CHECK_EQ_INT(r.status, 431);
	http_response_free(&r);
	close(fd);
	buf_free(&big);
}

TEST(server_closes_idle_connection)
{
	if (!CHECK(server_start()))
		return;
	int fd = connect_server();
	if (!CHECK(fd >= 0))
		return;
	uint64_t t0 = mono_ms();
	struct buf b = BUF_INIT;
	read_to_eof(fd, &b); /* returns on the server's FIN */
	uint64_t waited = mono_ms() - t0;
	CHECK_EQ_INT(b.len, 0);
	CHECK(waited >= 300 && waited < 2900);
	buf_free(&b);
	close(fd);
}

/* CPU time (user + system, clock ticks) the server child has used. */
static long server_cpu_ticks(void)
{
	char path[64], line[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)server_pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long ticks = -1;
	if (fgets(line, sizeof line, f)) {
		const char *p = strrchr(line, ')'); /* comm may contain spaces */
		unsigned long ut = 0, st = 0;
		if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
			ticks = (long)(ut + st);
	}
	fclose(f);
	return ticks;
}

/* Out of file descriptors, the server must neither spin on the pending
 * connections nor stop serving once descriptors are free again. */
TEST(server_survives_fd_exhaustion)
{
	if (!CHECK(server_start()))
		return;
	int fd = connect_server();
	struct http_response r;
	const char *hdrs[] = {"Connection: close", NULL};
	CHECK_EQ_INT(http_request(fd, "GET", "/fdlimit", hdrs, NULL, 0, &r, 5000, NULL, NULL), 0);
	http_response_free(&r);
	close(fd);
	int held[12];
	for (int i = 0; i < 12; i++)
		held[i] = connect_server(); /* the kernel queues them; the server cannot accept most */
	usleep(200 * 1000);
	long before = server_cpu_ticks();
	usleep(500 * 1000);
	long used = server_cpu_ticks() - before;
	/* A spinning accept loop burns the whole half second (about 50 ticks). */
	if (!CHECK(before >= 0 && used < 20))
		fprintf(stderr, "    server used %ld ticks in 0.5 s while out of descriptors\n", used);
	for (int i = 0; i < 12; i++)
		if (held[i] >= 0)
			close(held[i]);
	bool served = false;
	for (int i = 0; i < 40 && !served; i++) {
		usleep(100 * 1000);
		fd = connect_server();
		if (fd >= 0 && http_request(fd, "GET", "/aborts", hdrs, NULL, 0, &r, 3000, NULL, NULL) == 0) {
			served = r.status == 200;
			http_response_free(&r);
		}
		if (fd >= 0)
			close(fd);
	}
	CHECK(served);
}

/* Runs last (tests run in file order): stops the child and checks it exited
 * cleanly, without sanitizer reports. */
TEST(server_shuts_down_cleanly)
{
	if (!CHECK(server_start()))
		return;
	int fd = connect_server();
	struct http_response r;
	const char *hdrs[] = {"Connection: close", NULL};
	CHECK_EQ_INT(http_request(fd, "POST", "/quit", hdrs, NULL, 0, &r, 5000, NULL, NULL), 0);
	CHECK_STREQ(r.body.data, "bye");
	http_response_free(&r);
	close(fd);
	int st = 0;
	for (int i = 0; i < 100 && waitpid(server_pid, &st, WNOHANG) == 0; i++)
		usleep(50 * 1000);
	if (!CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		fprintf(stderr, "    server status 0x%x\n", st);
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
	}
	server_pid = 0;
}

TEST(connect_unix_reaches_a_listener_and_names_what_fails)
{
	char path[108];
	snprintf(path, sizeof path, "/tmp/test_http.%d.sock", (int)getpid());
	unlink(path);
	CHECK(http_connect_unix(path) < 0 && errno == ENOENT);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!CHECK(l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(l, 1) == 0))
		return;
	int fd = http_connect_unix(path);
	CHECK(fd >= 0);
	CHECK(fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC) && write(fd, "x", 1) == 1);
	int c = accept(l, NULL, NULL);
	char b = 0;
	CHECK(c >= 0 && read(c, &b, 1) == 1 && b == 'x');
	close(c);
	close(fd);
	close(l);
	unlink(path);
	char longpath[200];
	memset(longpath, 'a', sizeof longpath - 1);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = '\0';
	CHECK(http_connect_unix(longpath) < 0 && errno == ENAMETOOLONG);
}

/* A body saved as a file: a spooled one (over 1 KB here) by naming its spool
 * file, a small one by a copy; either way exactly the body, mode 0600, and
 * never over an existing file. */
TEST(server_saves_a_request_body_as_a_file)
{
	if (!CHECK(server_start()))
		return;
	static const size_t sizes[] = {10, 8192, 40000}; /* memory; spooled, page-aligned; spooled */
	for (size_t k = 0; k < 3; k++) {
		size_t n = sizes[k];
		char *body = malloc(n), path[128], target[200];
		for (size_t i = 0; i < n; i++)
			body[i] = (char)(i * 7 + k);
		snprintf(path, sizeof path, "/tmp/test_http.%d.save%zu", (int)getpid(), k);
		unlink(path);
		snprintf(target, sizeof target, "/save?path=%s", path);
		int fd = connect_server();
		struct http_response r;
		CHECK_EQ_INT(http_request(fd, "POST", target, NULL, body, n, &r, 5000, NULL, NULL), 0);
		CHECK_EQ_INT(r.status, 201);
		http_response_free(&r);
		size_t len = 0;
		char *saved = file_read_all(path, 1 << 20, &len);
		CHECK(saved && len == n && memcmp(saved, body, n) == 0);
		struct stat st;
		CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
		free(saved);
		/* The connection goes on after it. */
		CHECK_EQ_INT(http_request(fd, "POST", "/echo", NULL, "ok", 2, &r, 5000, NULL, NULL), 0);
		CHECK_MEMEQ(r.body.data, r.body.len, "ok", 2);
		http_response_free(&r);
		/* Not over a file that is there. */
		CHECK_EQ_INT(http_request(fd, "POST", target, NULL, body, n, &r, 5000, NULL, NULL), 0);
		CHECK_EQ_INT(r.status, 500);
		http_response_free(&r);
		close(fd);
		unlink(path);
		free(body);
	}
}

struct mem_stream {
	const char *p;
	size_t left;
	struct buf body;
	int stop_after; /* on_body returns 7 once this many bytes came; 0: never */
};

static ssize_t mem_read(void *ctx, char *p, size_t n)
{
	struct mem_stream *s = ctx;
	size_t take = s->left < n ? s->left : n;
	if (take > 3)
		take = 3; /* small pieces: every state is crossed */
	memcpy(p, s->p, take);
	s->p += take;
	s->left -= take;
	return (ssize_t)take;
}

static int mem_body(void *arg, const char *p, size_t n)
{
	struct mem_stream *s = arg;
	buf_append(&s->body, p, n);
	return s->stop_after && s->body.len >= (size_t)s->stop_after ? 7 : 0;
}

/* One response read from any stream: each way a body ends, each way a
 * response is broken, and a stop asked by the body function. */
static int read_mem(const char *text, int stop_after, struct mem_stream *s, struct http_head *h)
{
	*s = (struct mem_stream){text, strlen(text), BUF_INIT, stop_after};
	struct http_reader r = {.read = mem_read, .ctx = s, .on_body = mem_body, .arg = s};
	errno = 0;
	return http_read_response(&r, false, 256, h);
}

TEST(read_response_from_any_stream)
{
	struct mem_stream s;
	struct http_head h;
	CHECK_EQ_INT(read_mem("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA", 0, &s, &h), 0);
	CHECK_EQ_INT(h.status, 200);
	CHECK_MEMEQ(s.body.data, s.body.len, "hello", 5);
	http_head_free(&h);
	buf_free(&s.body);
	CHECK_EQ_INT(read_mem("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
			      0, &s, &h),
		     0);
	CHECK_EQ_INT(h.status, 201);
	CHECK_MEMEQ(s.body.data, s.body.len, "abcde", 5);
	http_head_free(&h);
	buf_free(&s.body);
	CHECK_EQ_INT(read_mem("HTTP/1.0 200 OK\r\n\r\nto the end", 0, &s, &h), 0);
	CHECK_MEMEQ(s.body.data, s.body.len, "to the end", 10);
	http_head_free(&h);
	buf_free(&s.body);
	/* Cut short, broken, too big, or stopped by the body function. */
	CHECK(read_mem("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", 0, &s, &h) == -1 && errno == ENODATA);
	http_head_free(&h);
	buf_free(&s.body);
	CHECK(read_mem("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, &s, &h) == -1 &&
	      errno == EPROTO);
	http_head_free(&h);
	buf_free(&s.body);
	char big[600];
	snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nX: %0500d\r\n\r\n", 0);
	CHECK(read_mem(big, 0, &s, &h) == -1 && errno == EMSGSIZE);
	http_head_free(&h);
	buf_free(&s.body);
	CHECK(read_mem("HTTP/1.1", 0, &s, &h) == -1 && errno == ENODATA);
	http_head_free(&h);
	buf_free(&s.body);
	CHECK_EQ_INT(read_mem("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabcdefghi", 4, &s, &h), 7);
	CHECK(s.body.len >= 4 && s.body.len < 9);
	http_head_free(&h);
	buf_free(&s.body);
}
