/*
 * http.c - HTTP/1.1 server and blocking client; see http.h.
 *
 * A connection is a small state machine:
 *
 *   HEAD  -> reading a request head (idle timer armed)
 *   BODY  -> reading its body into memory or a spool file
 *   BUSY  -> the handler owns the request until its response completes
 *
 * Closing never happens synchronously inside an API call: a failed write only
 * marks the connection failed and schedules the teardown on the loop. So a
 * handler (or a process streaming output) can keep calling http_stream_write
 * on a dead connection harmlessly until its abort callback tells it to stop.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "json.h"
#include "log.h"

#define READ_CHUNK 65536
#define FILE_CHUNK (256 * 1024)

enum conn_state { CONN_HEAD, CONN_BODY, CONN_BUSY };

struct http_server {
	struct loop *loop;
	struct http_server_config cfg;
	http_handler_fn fn;
	void *arg;
	struct listener *listeners;
};

struct listener {
	struct http_server *srv;
	struct loop_io io;
	struct loop_timer pause; /* accepting paused while out of fds */
	struct listener *next;
};

struct http_conn {
	struct http_server *srv;
	struct loop_io io;
	char peer[64];
	enum conn_state state;
	struct buf in;
	struct buf out;
	bool failed; /* teardown scheduled; every call is a no-op */
	bool read_eof;
	bool discard;	/* input is read and dropped (after an error answer) */
	bool lingering; /* write side shut; waiting for the peer's EOF */
	struct loop_timer idle_timer;
	struct loop_timer kick_timer; /* teardown or resume parsing, on the loop */

	/* request being received / handled */
	struct http_req req;
	bool have_req;
	uint64_t body_limit;
	struct http_chunked chunk;
	struct buf body; /* in-memory body */
	int spool_fd;	 /* -1 unless spooled */
	uint64_t spool_len;
	void *spool_map;
	size_t spool_map_len;

	/* response */
	bool resp_started;
	bool resp_chunked;
	bool resp_done;
	bool close_after;
	struct buf extra_headers;
	int file_fd;
	uint64_t file_left;
	void (*abort_fn)(void *);
	void *abort_arg;
};

static void conn_on_io(void *arg, uint32_t events);
static void conn_process_input(struct http_conn *c);

/* --- lifecycle --------------------------------------------------------------- */

static void req_release(struct http_conn *c)
{
	if (!c->have_req)
		return;
	http_head_free(&c->req.head);
	free(c->req.path);
	free(c->req.query);
	if (c->spool_map)
		munmap(c->spool_map, c->spool_map_len);
	if (c->spool_fd >= 0)
		close(c->spool_fd);
	c->spool_fd = -1;
	c->spool_map = NULL;
	c->spool_len = 0;
	buf_free(&c->body);
	memset(&c->req, 0, sizeof c->req);
	c->have_req = false;
}

static void conn_destroy(void *arg)
{
	struct http_conn *c = arg;
	if (c->abort_fn) {
		void (*fn)(void *) = c->abort_fn;
		c->abort_fn = NULL;
		fn(c->abort_arg);
	}
	loop_timer_disarm(c->srv->loop, &c->idle_timer);
	loop_timer_disarm(c->srv->loop, &c->kick_timer);
	loop_io_del(c->srv->loop, &c->io);
	close(c->io.fd);
	if (c->file_fd >= 0)
		close(c->file_fd);
	req_release(c);
	buf_free(&c->in);
	buf_free(&c->out);
	buf_free(&c->extra_headers);
	free(c);
}

/* Schedules the teardown. Safe anywhere, any number of times. */
static void conn_fail(struct http_conn *c)
{
	if (c->failed)
		return;
	c->failed = true;
	loop_io_mod(c->srv->loop, &c->io, 0);
	loop_timer_arm(c->srv->loop, &c->kick_timer, 0, conn_destroy, c);
}

static void conn_on_idle(void *arg)
{
	struct http_conn *c = arg;
	conn_fail(c);
}

static void conn_arm_idle(struct http_conn *c)
{
	loop_timer_arm(c->srv->loop, &c->idle_timer, c->srv->cfg.idle_timeout_ms, conn_on_idle, c);
}

/* --- output -------------------------------------------------------------------- */

static void conn_update_events(struct http_conn *c)
{
	if (c->failed)
		return;
	uint32_t ev = EPOLLRDHUP;
	/* Read while waiting for a request, and while busy too: that is how a
	 * client that went away is noticed during a long stream. */
	if (!c->read_eof)
		ev |= EPOLLIN;
	if (c->out.len || (c->file_left && c->resp_started))
		ev |= EPOLLOUT;
	loop_io_mod(c->srv->loop, &c->io, ev);
}

static void response_finished(struct http_conn *c);

/* Writes as much queued output as the socket takes. */
static void conn_flush(struct http_conn *c)
{
	while (!c->failed) {
		if (c->out.len) {
			ssize_t n = write(c->io.fd, c->out.data, c->out.len);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN)
					conn_fail(c);
				break;
			}
			buf_consume(&c->out, (size_t)n);
			continue;
		}
		if (c->file_left) {
			size_t want = c->file_left > FILE_CHUNK ? FILE_CHUNK : (size_t)c->file_left;
			ssize_t n = sendfile(c->io.fd, c->file_fd, NULL, want);
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
				/* fd type without sendfile: copy through the buffer */
				char *p = buf_reserve(&c->out, want);
				n = read(c->file_fd, p, want);
				if (n > 0)
					buf_commit(&c->out, (size_t)n);
			}
			if (n <= 0) { /* file shrank or broke: the length is promised, give up */
				conn_fail(c);
				break;
			}
			c->file_left -= (uint64_t)n;
			continue;
		}
		if (c->resp_done && c->state == CONN_BUSY)
			response_finished(c);
		break;
	}
	conn_update_events(c);
}

static void conn_send(struct http_conn *c, const void *p, size_t n)
{
	if (c->failed)
		return;
	buf_append(&c->out, p, n);
}

size_t http_conn_pending(const struct http_conn *c)
{
	return c->out.len + (size_t)c->file_left;
}

struct loop *http_conn_loop(const struct http_conn *c)
{
	return c->srv->loop;
}

void http_conn_on_abort(struct http_conn *c, void (*fn)(void *arg), void *arg)
{
	c->abort_fn = fn;
	c->abort_arg = arg;
}

void http_add_header(struct http_conn *c, const char *name, const char *value)
{
	buf_printf(&c->extra_headers, "%s: %s\r\n", name, value);
}

static void kick_input(void *arg)
{
	struct http_conn *c = arg;
	conn_process_input(c);
}

/* The response is on the wire: go back to reading requests, or close. */
static void response_finished(struct http_conn *c)
{
	bool close_after = c->close_after;
	req_release(c);
	c->resp_started = c->resp_done = c->resp_chunked = c->close_after = false;
	c->abort_fn = NULL;
	buf_reset(&c->extra_headers);
	c->state = CONN_HEAD;
	if (close_after || c->read_eof) {
		shutdown(c->io.fd, SHUT_WR);
		if (c->read_eof) {
			conn_fail(c);
			return;
		}
		/* Lingering close: closing with unread input would make the kernel
		 * send a reset that can destroy the answer before the client reads
		 * it (think 413 while the client still uploads). Drain for a while. */
		c->lingering = c->discard = true;
		loop_timer_arm(c->srv->loop, &c->idle_timer, 2000, conn_on_idle, c);
		return;
	}
	conn_arm_idle(c);
	if (c->in.len) /* a pipelined request is waiting; parse it from the loop */
		loop_timer_arm(c->srv->loop, &c->kick_timer, 0, kick_input, c);
}

static void write_head(struct http_conn *c, int status, const char *ctype, int64_t length)
{
	struct buf h = BUF_INIT;
	buf_printf(&h, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
	if (c->srv->cfg.server_name)
		buf_printf(&h, "Server: %s\r\n", c->srv->cfg.server_name);
	if (ctype)
		buf_printf(&h, "Content-Type: %s\r\n", ctype);
	if (length >= 0 && status != 204 && status != 304)
		buf_printf(&h, "Content-Length: %lld\r\n", (long long)length);
	if (c->resp_chunked)
		buf_puts(&h, "Transfer-Encoding: chunked\r\n");
	if (c->close_after)
		buf_puts(&h, "Connection: close\r\n");
	if (c->extra_headers.len)
		buf_append(&h, c->extra_headers.data, c->extra_headers.len);
	buf_puts(&h, "\r\n");
	conn_send(c, h.data, h.len);
	buf_free(&h);
	c->resp_started = true;
}

static bool response_allowed(struct http_conn *c)
{
	/* A second response to one request is a bug in the caller; refuse it
	 * rather than corrupt the stream. */
	return c->state == CONN_BUSY && !c->resp_started && !c->failed;
}

static bool is_head_request(struct http_conn *c)
{
	return c->have_req && strcmp(c->req.head.method, "HEAD") == 0;
}

void http_respond(struct http_conn *c, int status, const char *ctype, const void *body, size_t len)
{
	if (!response_allowed(c))
		return;
	bool no_body = status == 204 || status == 304 || is_head_request(c);
	write_head(c, status, (status == 204 || status == 304) ? NULL : ctype, (int64_t)len);
	if (!no_body && len)
		conn_send(c, body, len);
	c->resp_done = true;
	conn_flush(c);
}

void http_respond_error(struct http_conn *c, int status, const char *fmt, ...)
{
	struct buf msg = BUF_INIT, body = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	struct jw w;
	jw_init(&w, &body);
	jw_obj(&w);
	jw_kint(&w, "code", status);
	jw_kstr(&w, "message", msg.data ? msg.data : "");
	jw_end(&w);
	http_respond(c, status, "application/json", body.data, body.len);
	buf_free(&msg);
	buf_free(&body);
}

void http_respond_fd(struct http_conn *c, int status, const char *ctype, int fd, uint64_t size)
{
	if (!response_allowed(c)) {
		close(fd);
		return;
	}
	write_head(c, status, ctype, (int64_t)size);
	if (is_head_request(c)) {
		close(fd);
	} else {
		c->file_fd = fd;
		c->file_left = size;
	}
	c->resp_done = true;
	conn_flush(c);
}

void http_stream_start(struct http_conn *c, int status, const char *ctype)
{
	if (!response_allowed(c))
		return;
	if (c->req.head.minor >= 1)
		c->resp_chunked = true;
	else
		c->close_after = true; /* HTTP/1.0: the end of the body is the close */
	write_head(c, status, ctype, -1);
	conn_flush(c);
}

void http_stream_write(struct http_conn *c, const void *p, size_t n)
{
	if (c->failed || !c->resp_started || c->resp_done || n == 0)
		return;
	if (c->resp_chunked) {
		char hdr[32];
		int hl = snprintf(hdr, sizeof hdr, "%zx\r\n", n);
		conn_send(c, hdr, (size_t)hl);
		conn_send(c, p, n);
		conn_send(c, "\r\n", 2);
	} else {
		conn_send(c, p, n);
	}
	conn_flush(c);
}

void http_stream_end(struct http_conn *c)
{
	if (c->failed || !c->resp_started || c->resp_done)
		return;
	if (c->resp_chunked)
		conn_send(c, "0\r\n\r\n", 5);
	c->resp_done = true;
	c->abort_fn = NULL;
	conn_flush(c);
}

/* --- input ------------------------------------------------------------------------ */

/* Answers a malformed request and closes: nothing after it can be trusted. */
static void reject(struct http_conn *c, int status, const char *msg)
{
	log_info("http.reject", "peer=%s status=%d reason=%s", c->peer, status, msg);
	c->state = CONN_BUSY;
	c->close_after = true;
	c->discard = true; /* the rest of the input cannot be trusted */
	buf_reset(&c->in);
	http_respond_error(c, status, "%s", msg);
}

static int spool_open(struct http_conn *c)
{
	const char *dir = c->srv->cfg.spool_dir;
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		char path[4096];
		snprintf(path, sizeof path, "%s/http-spool-XXXXXX", dir);
		fd = mkstemp(path);
		if (fd >= 0)
			unlink(path);
	}
	c->spool_fd = fd;
	return fd;
}

static bool spool_write(struct http_conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(c->spool_fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
		c->spool_len += (uint64_t)w;
	}
	return true;
}

/* Moves body bytes either to memory or, past the threshold, to the spool. */
static bool body_store(struct http_conn *c, const char *p, size_t n)
{
	if (c->spool_fd < 0 && c->body.len + n > c->srv->cfg.body_spool_bytes) {
		if (spool_open(c) < 0 || !spool_write(c, c->body.data ? c->body.data : "", c->body.len))
			return false;
		buf_free(&c->body);
	}
	if (c->spool_fd >= 0)
		return spool_write(c, p, n);
	buf_append(&c->body, p, n);
	return true;
}

static uint64_t body_stored(struct http_conn *c)
{
	return c->spool_fd >= 0 ? c->spool_len : c->body.len;
}

/* Makes req.body one NUL-terminated range, mapping the spool file if any. */
static bool body_finish(struct http_conn *c)
{
	if (c->spool_fd < 0) {
		if (!c->body.data)
			buf_reserve(&c->body, 0);
		c->req.body = c->body.data;
		c->req.body_len = c->body.len;
		return true;
	}
	/* One extra zero byte at the end gives the terminator for free. */
	if (ftruncate(c->spool_fd, (off_t)c->spool_len + 1) < 0)
		return false;
	c->spool_map_len = (size_t)c->spool_len + 1;
	c->spool_map = mmap(NULL, c->spool_map_len, PROT_READ, MAP_SHARED, c->spool_fd, 0);
	if (c->spool_map == MAP_FAILED) {
		c->spool_map = NULL;
		return false;
	}
	c->req.body = c->spool_map;
	c->req.body_len = (size_t)c->spool_len;
	return true;
}

int http_req_body_save(struct http_conn *c, const char *path, mode_t mode)
{
	if (c->spool_fd >= 0) {
		char fdpath[64];
		snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", c->spool_fd);
		if (linkat(AT_FDCWD, fdpath, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0) {
			/* The file is the body now: without the terminator body_finish added. */
			if (ftruncate(c->spool_fd, (off_t)c->spool_len) == 0 && fchmod(c->spool_fd, mode) == 0)
				return 0;
			int e = errno;
			unlink(path);
			if (ftruncate(c->spool_fd, (off_t)c->spool_len + 1) < 0)
				log_warn("http.spool", "cannot restore the body's terminator: %s", strerror(errno));
			errno = e;
			return -1;
		}
		/* Another file system, or no /proc: copied below. */
		if (errno != EXDEV && errno != ENOENT && errno != EPERM)
			return -1;
	}
	if (access(path, F_OK) == 0) {
		errno = EEXIST;
		return -1;
	}
	return file_replace(path, c->req.body, c->req.body_len, mode, false);
}

static void dispatch(struct http_conn *c)
{
	if (!body_finish(c)) {
		reject(c, 507, "cannot store the request body");
		return;
	}
	c->state = CONN_BUSY;
	c->close_after = !c->req.head.keep_alive;
	loop_timer_disarm(c->srv->loop, &c->idle_timer);
	c->srv->fn(c, &c->req, c->srv->arg);
}

/* Splits the request-target into a decoded path and a raw query. */
static bool split_target(struct http_conn *c)
{
	const char *t = c->req.head.target;
	if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
		t = strchr(strchr(t, ':') + 3, '/'); /* absolute-form: drop scheme and authority */
		if (!t)
			t = "/";
	}
	if (t[0] != '/' && strcmp(c->req.head.method, "OPTIONS") != 0)
		return false;
	const char *q = strchr(t, '?');
	size_t plen = q ? (size_t)(q - t) : strlen(t);
	/* A %00 would cut the decoded path short and hide what follows. */
	if (memmem(t, plen, "%00", 3))
		return false;
	c->req.path = http_url_decode(t, plen, false);
	c->req.query = strdup(q ? q + 1 : "");
	return c->req.path && c->req.query;
}

static void start_request(struct http_conn *c, size_t head_len)
{
	c->have_req = true;
	c->req.method = c->req.head.method;
	c->req.peer = c->peer;
	buf_consume(&c->in, head_len);
	if (!split_target(c)) {
		reject(c, 400, "malformed request target");
		return;
	}
	uint64_t limit = c->srv->cfg.max_body_bytes;
	if (c->srv->cfg.body_limit)
		limit = c->srv->cfg.body_limit(&c->req.head, c->srv->arg);
	c->body_limit = limit;
	if (c->req.head.content_length >= 0 && (uint64_t)c->req.head.content_length > limit) {
		reject(c, 413, "request body too large");
		return;
	}
	const char *expect = http_req_header(&c->req, "Expect");
	if (expect) {
		if (strcasecmp(expect, "100-continue") != 0) {
			reject(c, 417, "unsupported expectation");
			return;
		}
		if (c->req.head.minor >= 1 && (c->req.head.chunked || c->req.head.content_length > 0)) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			conn_send(c, cont, sizeof cont - 1);
			conn_flush(c);
		}
	}
	memset(&c->chunk, 0, sizeof c->chunk);
	c->state = CONN_BODY;
}

/* Consumes body bytes from c->in. Returns true when the body is complete. */
static bool take_body(struct http_conn *c)
{
	if (!c->req.head.chunked) {
		uint64_t want = c->req.head.content_length > 0 ? (uint64_t)c->req.head.content_length : 0;
		uint64_t have = body_stored(c);
		size_t take = c->in.len;
		if (take > want - have)
			take = (size_t)(want - have);
		if (take && !body_store(c, c->in.data, take)) {
			reject(c, 507, "cannot store the request body: no space");
			return false;
		}
		buf_consume(&c->in, take);
		return body_stored(c) == want;
	}
	struct buf decoded = BUF_INIT;
	bool done = false;
	ssize_t used = http_chunked_feed(&c->chunk, c->in.data, c->in.len, &decoded, &done);
	if (used < 0) {
		buf_free(&decoded);
		reject(c, 400, "malformed chunked body");
		return false;
	}
	buf_consume(&c->in, (size_t)used);
	if (body_stored(c) + decoded.len > c->body_limit) {
		buf_free(&decoded);
		reject(c, 413, "request body too large");
		return false;
	}
	if (decoded.len && !body_store(c, decoded.data, decoded.len)) {
		buf_free(&decoded);
		reject(c, 507, "cannot store the request body: no space");
		return false;
	}
	buf_free(&decoded);
	return done;
}

static void conn_process_input(struct http_conn *c)
{
	while (!c->failed && !c->discard && c->state != CONN_BUSY) {
		if (c->state == CONN_HEAD) {
			if (!c->in.len)
				break;
			int status = 400;
			ssize_t n = http_parse_head(c->in.data, c->in.len, true, c->srv->cfg.max_head_bytes,
						    &c->req.head, &status);
			if (n == 0)
				break;
			if (n < 0) {
				c->have_req = true;
				reject(c, status,
				       status == 431   ? "request head too large"
				       : status == 505 ? "HTTP version not supported"
				       : status == 501 ? "transfer coding not supported"
						       : "malformed request head");
				break;
			}
			start_request(c, (size_t)n);
			continue;
		}
		if (!take_body(c))
			break;
		dispatch(c);
	}
	if (!c->failed && c->state != CONN_BUSY && c->read_eof)
		conn_fail(c); /* client closed mid-request */
}

static void conn_read(struct http_conn *c)
{
	while (c->discard) {
		char tmp[16384];
		ssize_t n = read(c->io.fd, tmp, sizeof tmp);
		if (n > 0)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			c->read_eof = true;
		if (n < 0 && errno == EINTR)
			continue;
		return;
	}
	for (;;) {
		/* While a handler owns the conn, buffer at most one more head:
		 * enough to notice pipelining, not a way to exhaust memory. */
		if (c->state == CONN_BUSY && c->in.len > c->srv->cfg.max_head_bytes) {
			char tmp[4096];
			ssize_t n = read(c->io.fd, tmp, sizeof tmp);
			if (n == 0) {
				c->read_eof = true;
			} else if (n > 0) {
				continue; /* discard: the client is misbehaving */
			}
			break;
		}
		char *p = buf_reserve(&c->in, READ_CHUNK);
		ssize_t n = read(c->io.fd, p, READ_CHUNK);
		if (n > 0) {
			buf_commit(&c->in, (size_t)n);
			if (c->state != CONN_BUSY)
				return; /* process what we have; the loop brings the rest */
			continue;
		}
		if (n == 0) {
			c->read_eof = true;
		} else if (errno == EINTR) {
			continue;
		} else if (errno != EAGAIN) {
			c->read_eof = true;
			conn_fail(c);
		}
		return;
	}
}

static void conn_on_io(void *arg, uint32_t events)
{
	struct http_conn *c = arg;
	if (c->failed)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		conn_read(c);
	if (c->lingering && c->read_eof) {
		conn_fail(c);
		return;
	}
	if (events & (EPOLLERR | EPOLLHUP)) {
		conn_fail(c);
		return;
	}
	if (c->state == CONN_BUSY && c->read_eof && !c->resp_done) {
		/* The client went away while we still owed it a response. */
		conn_fail(c);
		return;
	}
	if (events & EPOLLOUT)
		conn_flush(c);
	if (c->state != CONN_BUSY && !c->lingering) {
		loop_timer_disarm(c->srv->loop, &c->idle_timer);
		conn_process_input(c);
		if (c->state == CONN_HEAD && !c->failed)
			conn_arm_idle(c);
	}
	conn_update_events(c);
}

/* --- server --------------------------------------------------------------------- */

void http_server_adopt(struct http_server *s, int fd, const char *peer)
{
	struct http_conn *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		return;
	}
	c->srv = s;
	c->spool_fd = -1;
	c->file_fd = -1;
	snprintf(c->peer, sizeof c->peer, "%s", peer ? peer : "?");
	fd_nonblock(fd);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on non-TCP */
	if (loop_io_add(s->loop, &c->io, fd, EPOLLIN | EPOLLRDHUP, conn_on_io, c) < 0) {
		close(fd);
		free(c);
		return;
	}
	conn_arm_idle(c);
}

void http_peer_name(const struct sockaddr_storage *ss, char *out, size_t n)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		port = ntohs(a->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		port = ntohs(a->sin6_port);
	} else {
		snprintf(out, n, "%s", ss->ss_family == AF_UNIX ? "unix" : "vsock");
		return;
	}
	snprintf(out, n, "%s:%d", ip, port);
}

static void listener_resume(void *arg)
{
	struct listener *ln = arg;
	loop_io_mod(ln->srv->loop, &ln->io, EPOLLIN);
}

static void listener_on_io(void *arg, uint32_t events)
{
	struct listener *ln = arg;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		int fd = accept4(ln->io.fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* The pending connection stays readable: without a pause
				 * the level-triggered loop would spin on it. */
				log_warn("http.accept", "out of file descriptors; pausing accept for 100 ms");
				loop_io_mod(ln->srv->loop, &ln->io, 0);
				loop_timer_arm(ln->srv->loop, &ln->pause, 100, listener_resume, ln);
			}
			return;
		}
		char peer[64];
		http_peer_name(&ss, peer, sizeof peer);
		http_server_adopt(ln->srv, fd, peer);
	}
}

int http_server_listen_fd(struct http_server *s, int fd)
{
	struct listener *ln = calloc(1, sizeof *ln);
	if (!ln)
		return -1;
	ln->srv = s;
	fd_nonblock(fd);
	if (loop_io_add(s->loop, &ln->io, fd, EPOLLIN, listener_on_io, ln) < 0) {
		free(ln);
		return -1;
	}
	ln->next = s->listeners;
	s->listeners = ln;
	return 0;
}

int http_listen_socket(const char *addr, int port)
{
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr *sa = (void *)&a6;
	socklen_t sl = sizeof a6;
	bool any = !addr || !*addr || strcmp(addr, "::") == 0;
	if (any) {
		a6.sin6_addr = in6addr_any;
	} else if (inet_pton(AF_INET, addr, &a4.sin_addr) == 1) {
		sa = (void *)&a4;
		sl = sizeof a4;
	} else if (inet_pton(AF_INET6, addr, &a6.sin6_addr) != 1) {
		errno = EINVAL;
		return -1;
	}
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 && any) { /* a kernel without IPv6: any IPv4 address */
		a4.sin_addr.s_addr = htonl(INADDR_ANY);
		sa = (void *)&a4;
		sl = sizeof a4;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	}
	if (fd < 0)
		return -1;
	int one = 1, zero = 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
	if (bind(fd, sa, sl) < 0 || listen(fd, 1024) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int http_server_listen_tcp(struct http_server *s, const char *addr, int port)
{
	int fd = http_listen_socket(addr, port);
	return fd < 0 ? -1 : http_server_listen_fd(s, fd);
}

struct http_server *http_server_new(struct loop *l, const struct http_server_config *cfg, http_handler_fn fn, void *arg)
{
	struct http_server *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->loop = l;
	if (cfg)
		s->cfg = *cfg;
	if (!s->cfg.max_head_bytes)
		s->cfg.max_head_bytes = 32 * 1024;
	if (!s->cfg.max_body_bytes)
		s->cfg.max_body_bytes = 16 * 1024 * 1024;
	if (!s->cfg.body_spool_bytes)
		s->cfg.body_spool_bytes = 1024 * 1024;
	if (!s->cfg.spool_dir)
		s->cfg.spool_dir = "/tmp";
	if (!s->cfg.idle_timeout_ms)
		s->cfg.idle_timeout_ms = 120000;
	s->fn = fn;
	s->arg = arg;
	return s;
}

void http_server_free(struct http_server *s)
{
	if (!s)
		return;
	while (s->listeners) {
		struct listener *ln = s->listeners;
		s->listeners = ln->next;
		loop_timer_disarm(s->loop, &ln->pause);
		loop_io_del(s->loop, &ln->io);
		close(ln->io.fd);
		free(ln);
	}
	free(s);
}
