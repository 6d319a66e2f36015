/*
 * http_client.c - a blocking HTTP/1.1 client for tools, tests and the host's
 * calls into a guest (after the vsock CONNECT handshake the socket is plain
 * HTTP). One request at a time per fd; keep-alive works by reusing the fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "http.h"
#include "loop.h"

static int wait_fd(int fd, short ev, uint64_t deadline)
{
	for (;;) {
		uint64_t now = mono_ms();
		if (deadline && now >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd p = {.fd = fd, .events = ev};
		int r = poll(&p, 1, deadline ? (int)(deadline - now) : -1);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

int http_connect_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sa.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int http_connect_tcp(const char *host, int port, int timeout_ms)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%d", port);
	if (getaddrinfo(host, portstr, &hints, &res) != 0) {
		errno = EHOSTUNREACH;
		return -1;
	}
	int fd = -1;
	uint64_t deadline = timeout_ms > 0 ? mono_ms() + (uint64_t)timeout_ms : 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* requests are whole messages */
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0) {
			int err = 0;
			socklen_t el = sizeof err;
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
			if (err == 0)
				break;
			errno = err;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static int send_all(int fd, const char *p, size_t n, uint64_t deadline)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLOUT, deadline) < 0)
				return -1;
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else {
			return -1;
		}
	}
	return 0;
}

/* Reads more bytes into in: the count, 0 at the end of the stream, -1. */
static ssize_t read_more(const struct http_reader *r, struct buf *in)
{
	char *p = buf_reserve(in, 65536);
	ssize_t n = r->read(r->ctx, p, 65536);
	if (n > 0)
		buf_commit(in, (size_t)n);
	return n;
}

static int more_or_fail(const struct http_reader *r, struct buf *in)
{
	ssize_t n = read_more(r, in);
	if (n > 0)
		return 0;
	if (n == 0)
		errno = ENODATA;
	return -1;
}

static int deliver(const struct http_reader *r, const char *p, size_t n)
{
	return n ? r->on_body(r->arg, p, n) : 0;
}

static int read_chunked(const struct http_reader *r, struct buf *in)
{
	struct http_chunked ck = {0};
	struct buf dec = BUF_INIT;
	int rc = 0;
	for (;;) {
		bool done = false;
		ssize_t used = http_chunked_feed(&ck, in->data ? in->data : "", in->len, &dec, &done);
		if (used < 0) {
			errno = EPROTO;
			rc = -1;
			break;
		}
		buf_consume(in, (size_t)used);
		if ((rc = deliver(r, dec.data, dec.len)) != 0 || done)
			break;
		buf_reset(&dec);
		if ((rc = more_or_fail(r, in)) != 0)
			break;
	}
	buf_free(&dec);
	return rc;
}

static int read_body(const struct http_reader *r, struct buf *in, const struct http_head *h, bool head_only)
{
	if (head_only || h->status == 204 || h->status == 304 || h->status < 200)
		return 0;
	if (h->chunked)
		return read_chunked(r, in);
	bool bounded = h->content_length >= 0;
	uint64_t left = bounded ? (uint64_t)h->content_length : UINT64_MAX;
	int rc;
	while (left) {
		if (!in->len) {
			ssize_t n = read_more(r, in);
			if (n == 0 && !bounded)
				return 0; /* no length: the server closes to end the body */
			if (n <= 0) {
				if (n == 0)
					errno = ENODATA;
				return -1;
			}
		}
		size_t take = in->len < left ? in->len : (size_t)left;
		if ((rc = deliver(r, in->data, take)) != 0)
			return rc;
		buf_consume(in, take);
		left -= take;
	}
	return 0;
}

int http_read_response(const struct http_reader *r, bool head_only, size_t max_head, struct http_head *head)
{
	struct buf in = BUF_INIT;
	int rc = 0;
	memset(head, 0, sizeof *head);
	for (;;) {
		int status = 0;
		ssize_t used = in.len ? http_parse_head(in.data, in.len, false, max_head, head, &status) : 0;
		if (used < 0) {
			errno = status == 431 ? EMSGSIZE : EPROTO;
			rc = -1;
			break;
		}
		if (used > 0) {
			buf_consume(&in, (size_t)used);
			if (head->status >= 100 && head->status < 200 && head->status != 101) {
				http_head_free(head); /* 100 Continue: the real answer follows */
				continue;
			}
			rc = read_body(r, &in, head, head_only);
			break;
		}
		if (in.len > max_head) {
			errno = EMSGSIZE;
			rc = -1;
			break;
		}
		if ((rc = more_or_fail(r, &in)) != 0)
			break;
	}
	buf_free(&in);
	return rc;
}

/* The client's own stream: a socket, each wait bounded by the deadline. */
struct fd_stream {
	int fd;
	uint64_t deadline;
	struct http_response *out;
	void (*on_data)(void *, const char *, size_t);
	void *arg;
};

static ssize_t fd_read(void *ctx, char *p, size_t n)
{
	struct fd_stream *s = ctx;
	for (;;) {
		ssize_t r = recv(s->fd, p, n, 0);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (wait_fd(s->fd, POLLIN, s->deadline) < 0)
			return -1;
	}
}

static int fd_body(void *arg, const char *p, size_t n)
{
	struct fd_stream *s = arg;
	if (s->on_data)
		s->on_data(s->arg, p, n);
	else
		buf_append(&s->out->body, p, n);
	return 0;
}

/* Reads one response head and body from fd. */
static int read_response(int fd, const char *method, struct http_response *out, uint64_t deadline,
			 void (*on_data)(void *arg, const char *p, size_t n), void *arg)
{
	struct fd_stream s = {fd, deadline, out, on_data, arg};
	struct http_reader r = {.read = fd_read, .ctx = &s, .on_body = fd_body, .arg = &s};
	int rc = http_read_response(&r, strcmp(method, "HEAD") == 0, 64 * 1024, &out->head);
	out->status = out->head.status;
	return rc;
}

int http_request(int fd, const char *method, const char *target, const char *const *headers, const void *body,
		 size_t len, struct http_response *out, int timeout_ms,
		 void (*on_data)(void *arg, const char *p, size_t n), void *arg)
{
	memset(out, 0, sizeof *out);
	uint64_t deadline = timeout_ms > 0 ? mono_ms() + (uint64_t)timeout_ms : 0;
	struct buf req = BUF_INIT;
	bool have_host = false, chunked = false;
	buf_printf(&req, "%s %s HTTP/1.1\r\n", method, target);
	for (const char *const *h = headers; h && *h; h++) {
		if (strncasecmp(*h, "Host:", 5) == 0)
			have_host = true;
		if (strncasecmp(*h, "Transfer-Encoding:", 18) == 0)
			chunked = true; /* the caller asked for a chunked body */
		buf_printf(&req, "%s\r\n", *h);
	}
	if (!have_host)
		buf_puts(&req, "Host: localhost\r\n");
	if (!chunked && (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0))
		buf_printf(&req, "Content-Length: %zu\r\n", len);
	buf_puts(&req, "\r\n");
	if (chunked) {
		/* One chunk (if any) and the terminator. */
		if (len)
			buf_printf(&req, "%zx\r\n", len);
		struct buf tail = BUF_INIT;
		buf_puts(&tail, len ? "\r\n0\r\n\r\n" : "0\r\n\r\n");
		int rc = send_all(fd, req.data, req.len, deadline);
		if (rc == 0 && len)
			rc = send_all(fd, body, len, deadline);
		if (rc == 0)
			rc = send_all(fd, tail.data, tail.len, deadline);
		buf_free(&tail);
		buf_free(&req);
		if (rc < 0)
			return -1;
		return read_response(fd, method, out, deadline, on_data, arg);
	}
	/* Head and a small body leave in one segment: a second small write
	 * would wait for the peer's delayed ACK (Nagle), some 40 ms. */
	bool inline_body = len && len <= 65536;
	if (inline_body)
		buf_append(&req, body, len);
	int rc = send_all(fd, req.data, req.len, deadline);
	buf_free(&req);
	if (rc == 0 && len && !inline_body)
		rc = send_all(fd, body, len, deadline);
	if (rc < 0)
		return -1;

	return read_response(fd, method, out, deadline, on_data, arg);
}

void http_response_free(struct http_response *r)
{
	http_head_free(&r->head);
	buf_free(&r->body);
}
