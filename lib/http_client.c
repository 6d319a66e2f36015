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

/* Reads more bytes into in. Returns bytes read, 0 on EOF, -1 on error. */
static ssize_t read_more(int fd, struct buf *in, uint64_t deadline)
{
	for (;;) {
		char *p = buf_reserve(in, 65536);
		ssize_t n = recv(fd, p, 65536, 0);
		if (n >= 0) {
			buf_commit(in, (size_t)n);
			return n;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (wait_fd(fd, POLLIN, deadline) < 0)
			return -1;
	}
}

struct body_sink {
	struct http_response *out;
	void (*on_data)(void *, const char *, size_t);
	void *arg;
};

static void sink(struct body_sink *s, const char *p, size_t n)
{
	if (!n)
		return;
	if (s->on_data)
		s->on_data(s->arg, p, n);
	else
		buf_append(&s->out->body, p, n);
}

static int read_body(int fd, struct buf *in, bool head_only, struct body_sink *s, uint64_t deadline)
{
	struct http_head *h = &s->out->head;
	if (head_only || h->status == 204 || h->status == 304 || h->status < 200)
		return 0;
	if (h->chunked) {
		struct http_chunked ck = {0};
		struct buf dec = BUF_INIT;
		for (;;) {
			bool done = false;
			ssize_t used = http_chunked_feed(&ck, in->data ? in->data : "", in->len, &dec, &done);
			if (used < 0) {
				buf_free(&dec);
				errno = EPROTO;
				return -1;
			}
			buf_consume(in, (size_t)used);
			sink(s, dec.data, dec.len);
			buf_reset(&dec);
			if (done)
				break;
			ssize_t n = read_more(fd, in, deadline);
			if (n <= 0) {
				buf_free(&dec);
				errno = n == 0 ? EPROTO : errno;
				return -1;
			}
		}
		buf_free(&dec);
		return 0;
	}
	if (h->content_length >= 0) {
		uint64_t left = (uint64_t)h->content_length;
		while (left) {
			if (!in->len) {
				ssize_t n = read_more(fd, in, deadline);
				if (n <= 0) {
					errno = n == 0 ? EPROTO : errno;
					return -1;
				}
			}
			size_t take = in->len < left ? in->len : (size_t)left;
			sink(s, in->data, take);
			buf_consume(in, take);
			left -= take;
		}
		return 0;
	}
	/* No length: the body runs until the server closes. */
	for (;;) {
		sink(s, in->data, in->len);
		buf_reset(in);
		ssize_t n = read_more(fd, in, deadline);
		if (n == 0)
			return 0;
		if (n < 0)
			return -1;
	}
}

/* Reads one response head and body from fd. */
static int read_response(int fd, const char *method, struct http_response *out, uint64_t deadline,
			 void (*on_data)(void *arg, const char *p, size_t n), void *arg)
{
	int rc;
	struct buf in = BUF_INIT;
	for (;;) {
		int status = 0;
		ssize_t used = in.len ? http_parse_head(in.data, in.len, false, 64 * 1024, &out->head, &status) : 0;
		if (used < 0) {
			buf_free(&in);
			errno = EPROTO;
			return -1;
		}
		if (used > 0) {
			buf_consume(&in, (size_t)used);
			if (out->head.status >= 100 && out->head.status < 200 && out->head.status != 101) {
				http_head_free(&out->head); /* 100 Continue: the real answer follows */
				continue;
			}
			break;
		}
		ssize_t n = read_more(fd, &in, deadline);
		if (n <= 0) {
			buf_free(&in);
			if (n == 0)
				errno = EPROTO;
			return -1;
		}
	}
	out->status = out->head.status;
	struct body_sink s = {out, on_data, arg};
	rc = read_body(fd, &in, strcmp(method, "HEAD") == 0, &s, deadline);
	buf_free(&in);
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
