/*
 * proxy.c - the sandbox proxy's connection relay; see proxy.h.
 *
 * One struct pconn per client connection, with two endpoints: the client
 * (through a transport, plain or TLS) and, while a request is in flight or
 * kept for the next one, the upstream: the sandbox's vsock Unix socket, or
 * for Host api.<domain> a TCP connection to cube-api.
 *
 *   HEAD    reading a request head from the client; an upstream to the same
 *           sandbox and port (or to cube-api) may be kept open from the
 *           previous request
 *   CONNECT "CONNECT <port>\n" sent to cube-vmm, waiting for "OK <n>\n"; for
 *           a port the agent does not serve itself, that is the agent's
 *           port bridge, then "PORT <port>\n" to it, waiting for "OK\n".
 *           To cube-api: waiting for the TCP connect to complete
 *   RELAY   request body client -> sandbox and response sandbox -> client,
 *           both at once (a server may answer before the body ends)
 *   TUNNEL  after a 101: bytes both ways until both sides are done
 *   CLOSING the last answer is queued; flush it, shut our side, drain
 *           the client's input until it closes (so it reads our answer
 *           instead of a reset)
 *
 * Everything is level-triggered and driven from pump(), which moves bytes
 * until nothing moves any more and then tells epoll what it waits for. A
 * direction reads from its source only while the destination's queue is
 * below HIGH_WATER: that is the backpressure, end to end.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/json.h"
#include "../lib/log.h"
#include "registry.h"

#define READ_CHUNK    65536
#define HIGH_WATER    (256 * 1024) /* queued towards one side before its source pauses */
#define KEEP_CAP      4096	   /* empty buffers larger than this are released */
#define LINGER_MS     2000
#define PUMP_ROUNDS   64 /* then yield to other connections */
#define HANDSHAKE_MAX 64

enum conn_state { ST_HEAD, ST_CONNECT, ST_RELAY, ST_TUNNEL, ST_CLOSING };
enum framing { FR_NONE, FR_LENGTH, FR_CHUNKED, FR_EOF };

struct endpoint {
	struct loop_io io;
	int fd; /* -1: none */
	const struct proxy_transport_ops *ops;
	void *ctx;
	struct buf in, out;
	bool eof;	  /* read side finished (EOF or error) */
	bool wfail;	  /* a write failed: nothing more goes out */
	bool hup;	  /* unwatched after HUP/ERR: nothing blocks any more */
	bool shut_wanted; /* shut our write side once out is empty */
	bool shut;
	bool connecting; /* a TCP connect in progress: wait for EPOLLOUT, move nothing */
	bool can_read, can_write;
	uint32_t read_want, write_want;
};

/* One message body passing through, framed as its head says. */
struct body {
	enum framing fr;
	uint64_t left;
	struct http_chunked ck;
	bool done;
};

struct pconn {
	struct proxy *px;
	struct pconn *prev, *next;
	char peer[64];
	char peer_ip[64]; /* peer without its port: X-Forwarded-For */
	struct endpoint cl, up;
	enum conn_state st;
	bool dead;
	struct loop_timer timer;
	struct loop_timer kick; /* resume a pump that yielded */
	uint64_t last_activity; /* any byte moved */
	uint64_t state_since;	/* entering CONNECT / CLOSING, first byte of a head */
	bool head_started;

	/* the request in flight */
	bool in_request;
	struct buf req_raw; /* its head, forwarded once the upstream is ready */
	char method[16];
	char path[128]; /* for the log; the query may hold secrets */
	struct proxy_route route;
	bool req_keep_alive, is_head;
	struct body rq, rs;
	bool resp_head_done; /* final (non-1xx) head seen */
	bool resp_started;   /* some byte of the answer went to the client */
	bool resp_keep_alive;
	bool close_after;
	int status;
	uint64_t rq_bytes, rs_bytes, started_ms;

	/* the upstream kept for reuse */
	char up_id[PROXY_ID_MAX + 1];
	int up_port;
	uint64_t up_idle_since;
	bool up_api;	   /* the upstream is cube-api, not a sandbox */
	bool up_reused;	   /* the request in flight went to a kept upstream */
	bool via_bridge;   /* the upstream goes through the agent's port bridge */
	bool bridge_asked; /* cube-vmm said OK; "PORT <p>" went to the bridge */
	char vsock[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct listener {
	struct proxy *px;
	struct loop_io io;
	struct loop_timer pause;
	proxy_wrap_fn wrap;
	void *wrap_arg;
	struct listener *next;
};

struct proxy {
	struct loop *loop;
	struct proxy_config cfg;
	struct listener *listeners;
	struct pconn *conns;
	size_t nconns;
	struct buf scratch; /* decoded chunk data, discarded */
};

static void conn_run(struct pconn *c);

/* --- plain transport ------------------------------------------------------------ */

static ssize_t plain_read(void *ctx, int fd, void *p, size_t n, uint32_t *want)
{
	(void)ctx;
	*want = EPOLLIN;
	return read(fd, p, n);
}

static ssize_t plain_write(void *ctx, int fd, const void *p, size_t n, uint32_t *want)
{
	(void)ctx;
	*want = EPOLLOUT;
	return send(fd, p, n, MSG_NOSIGNAL);
}

static int plain_shutdown(void *ctx, int fd)
{
	(void)ctx;
	return shutdown(fd, SHUT_WR);
}

static size_t plain_pending(void *ctx)
{
	(void)ctx;
	return 0;
}

static void plain_free(void *ctx)
{
	(void)ctx;
}

const struct proxy_transport_ops proxy_plain_ops = {
    .read = plain_read,
    .write = plain_write,
    .shutdown = plain_shutdown,
    .pending = plain_pending,
    .free = plain_free,
};

/* --- endpoints -------------------------------------------------------------------- */

static void buf_trim(struct buf *b)
{
	if (!b->len && b->cap > KEEP_CAP)
		buf_free(b);
}

static void on_client_io(void *arg, uint32_t events);
static void on_upstream_io(void *arg, uint32_t events);

static int ep_open(struct pconn *c, struct endpoint *ep, int fd, const struct proxy_transport_ops *ops, void *ctx,
		   loop_io_fn fn)
{
	*ep = (struct endpoint){.fd = fd, .ops = ops, .ctx = ctx, .can_read = true, .can_write = true};
	ep->read_want = EPOLLIN;
	ep->write_want = EPOLLOUT;
	if (loop_io_add(c->px->loop, &ep->io, fd, EPOLLIN, fn, c) < 0) {
		ep->fd = -1;
		return -1;
	}
	return 0;
}

static void ep_close(struct pconn *c, struct endpoint *ep)
{
	if (ep->fd < 0)
		return;
	loop_io_del(c->px->loop, &ep->io);
	ep->ops->free(ep->ctx);
	close(ep->fd);
	buf_free(&ep->in);
	buf_free(&ep->out);
	*ep = (struct endpoint){.fd = -1};
}

static void ep_events(struct pconn *c, struct endpoint *ep, uint32_t ev)
{
	if (ev & (EPOLLHUP | EPOLLERR)) {
		/* Level-triggered HUP cannot be masked; stop watching. From
		 * now on reads return data or EOF and writes fail: nothing can
		 * block, so pump() finishes the endpoint without events. */
		ep->hup = true;
		loop_io_del(c->px->loop, &ep->io);
		ep->can_read = ep->can_write = true;
	}
	if (ev & ep->read_want)
		ep->can_read = true;
	if (ev & ep->write_want)
		ep->can_write = true;
}

/* Reads once into ep->in. True if something changed. */
static bool ep_fill(struct pconn *c, struct endpoint *ep, bool want)
{
	if (!want || ep->fd < 0 || ep->eof || !ep->can_read || ep->connecting)
		return false;
	char tmp[READ_CHUNK];
	uint32_t w = EPOLLIN;
	ssize_t n = ep->ops->read(ep->ctx, ep->fd, tmp, sizeof tmp, &w);
	if (n > 0) {
		buf_append(&ep->in, tmp, (size_t)n);
		c->last_activity = loop_now(c->px->loop);
		/* A short read drained the socket; skip the EAGAIN round trip. */
		if ((size_t)n < sizeof tmp && !ep->hup && ep->ops->pending(ep->ctx) == 0)
			ep->can_read = false;
		return true;
	}
	if (n < 0 && errno == EINTR)
		return true;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !ep->hup) {
		ep->can_read = false;
		ep->read_want = w;
		return false;
	}
	ep->eof = true; /* EOF, or a reset: the same for the relay */
	return true;
}

/* Writes what is queued; shuts the write side when asked and empty. */
static bool ep_flush(struct pconn *c, struct endpoint *ep)
{
	bool progress = false;
	if (ep->connecting)
		return false;
	while (ep->fd >= 0 && !ep->wfail && ep->out.len && ep->can_write) {
		uint32_t w = EPOLLOUT;
		ssize_t n = ep->ops->write(ep->ctx, ep->fd, ep->out.data, ep->out.len, &w);
		if (n > 0) {
			buf_consume(&ep->out, (size_t)n);
			c->last_activity = loop_now(c->px->loop);
			progress = true;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !ep->hup) {
			ep->can_write = false;
			ep->write_want = w;
		} else {
			ep->wfail = true;
			buf_reset(&ep->out);
			progress = true;
		}
	}
	buf_trim(&ep->out);
	if (ep->fd >= 0 && !ep->out.len && ep->shut_wanted && !ep->shut) {
		ep->ops->shutdown(ep->ctx, ep->fd);
		ep->shut = true;
		progress = true;
	}
	return progress;
}

/* Moves at most the room left below HIGH_WATER from src to dst. */
static size_t room_in(const struct buf *dst, size_t avail)
{
	size_t room = dst->len < HIGH_WATER ? HIGH_WATER - dst->len : 0;
	return avail < room ? avail : room;
}

static void move_bytes(struct buf *src, struct buf *dst, size_t n, uint64_t *count)
{
	buf_append(dst, src->data, n);
	buf_consume(src, n);
	buf_trim(src);
	*count += n;
}

/* Forwards the part of src that belongs to body b. Returns 1 if bytes moved
 * or the body ended, 0 if nothing could move, -1 on broken chunked framing. */
static int move_body(struct proxy *px, struct body *b, struct buf *src, struct buf *dst, uint64_t *count)
{
	if (b->done)
		return 0;
	size_t n = room_in(dst, src->len);
	if (!n)
		return 0;
	switch (b->fr) {
	case FR_NONE: b->done = true; return 1;
	case FR_LENGTH:
		if (n > b->left)
			n = (size_t)b->left;
		b->left -= n;
		b->done = b->left == 0;
		break;
	case FR_CHUNKED: {
		/* Decode only to find where the body ends; the bytes go on as
		 * they came. */
		ssize_t k = http_chunked_feed(&b->ck, src->data, n, &px->scratch, &b->done);
		buf_reset(&px->scratch);
		buf_trim(&px->scratch);
		if (k < 0)
			return -1;
		n = (size_t)k;
		break;
	}
	case FR_EOF: break;
	}
	move_bytes(src, dst, n, count);
	return 1;
}

static void body_init(struct body *b, enum framing fr, uint64_t len)
{
	*b = (struct body){.fr = fr, .left = len};
	b->done = fr == FR_NONE || (fr == FR_LENGTH && len == 0);
}

/* --- answers of our own ---------------------------------------------------------- */

static void log_request(struct pconn *c, const char *outcome)
{
	if (!c->in_request)
		return;
	uint64_t ms = loop_now(c->px->loop) - c->started_ms;
	log_info("proxy.request",
		 "sandbox=%s port=%d method=%s path=%s status=%d req_bytes=%llu resp_bytes=%llu ms=%llu peer=%s "
		 "route=%s outcome=%s",
		 c->route.id[0] ? c->route.id : "-", c->route.port, c->method, c->path, c->status,
		 (unsigned long long)c->rq_bytes, (unsigned long long)c->rs_bytes, (unsigned long long)ms, c->peer,
		 c->route.api	      ? "api"
		 : c->route.by_header ? "header"
				      : "host",
		 outcome);
	c->in_request = false;
}

static void close_upstream(struct pconn *c)
{
	ep_close(c, &c->up);
	c->up_id[0] = '\0';
	c->up_port = 0;
	c->up_api = false;
}

/* Drops the connection now (the client sees a close or a cut answer). */
static void conn_close(struct pconn *c, const char *why)
{
	if (c->dead)
		return;
	log_request(c, why);
	c->dead = true;
	close_upstream(c);
	ep_close(c, &c->cl);
	loop_timer_disarm(c->px->loop, &c->timer);
	loop_timer_disarm(c->px->loop, &c->kick);
}

/* Our answer is queued: deliver it, then close. */
static void begin_closing(struct pconn *c)
{
	close_upstream(c);
	c->st = ST_CLOSING;
	c->state_since = loop_now(c->px->loop);
	c->cl.shut_wanted = true;
}

/* Answers the request in flight with a JSON error and closes. Only valid
 * before any byte of an upstream answer reached the client. */
static void respond_json(struct pconn *c, int status, const char *message, bool with_id, int port)
{
	struct buf body = BUF_INIT;
	struct jw w;
	jw_init(&w, &body);
	jw_obj(&w);
	jw_kstr(&w, "message", message);
	if (with_id)
		jw_kstr(&w, "sandboxId", c->route.id);
	if (port)
		jw_kint(&w, "port", port);
	jw_kint(&w, "code", status);
	jw_end(&w);
	buf_printf(&c->cl.out,
		   "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		   "Connection: close\r\n\r\n",
		   status, http_status_text(status), body.len);
	if (!c->is_head)
		buf_append(&c->cl.out, body.data, body.len);
	c->status = status;
	c->rs_bytes += body.len;
	buf_free(&body);
	log_request(c, message);
	begin_closing(c);
}

static void respond_not_found(struct pconn *c)
{
	respond_json(c, 502, "The sandbox was not found", true, 0);
}

#define API_NOT_REACHABLE "the appliance API is not reachable"

/* The upstream broke: answer 502 if we still can, else cut. For cube-api
 * every such failure is the one answer: the client cannot tell the steps
 * apart, and the api's own log says why it went away. */
static void upstream_failed(struct pconn *c, const char *message)
{
	if (c->route.api)
		message = API_NOT_REACHABLE;
	if (c->resp_started)
		conn_close(c, message);
	else
		respond_json(c, 502, message, !c->route.api, c->route.port);
}

/* --- starting a request ---------------------------------------------------------- */

static size_t header_count(const struct http_head *h, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < h->nheaders; i++)
		n += strcasecmp(h->headers[i].name, name) == 0;
	return n;
}

/* Constant-time on the token's length, so its bytes cannot be timed. */
static bool token_equal(const char *want, const char *got)
{
	if (!got)
		return false;
	size_t wl = strlen(want), gl = strlen(got);
	unsigned char diff = wl != gl;
	for (size_t i = 0; i < wl; i++)
		diff |= (unsigned char)(want[i] ^ (i < gl ? got[i] : 0));
	return diff == 0;
}

static void record_request(struct pconn *c, const struct http_head *h, size_t head_len)
{
	c->in_request = true;
	c->started_ms = loop_now(c->px->loop);
	c->rq_bytes = c->rs_bytes = 0;
	c->status = 0;
	c->resp_head_done = c->resp_started = c->close_after = false;
	c->route = (struct proxy_route){0};
	snprintf(c->method, sizeof c->method, "%s", h->method);
	size_t pl = strcspn(h->target, "?");
	snprintf(c->path, sizeof c->path, "%.*s", (int)(pl < sizeof c->path ? pl : sizeof c->path - 1), h->target);
	c->is_head = strcmp(h->method, "HEAD") == 0;
	c->req_keep_alive = h->keep_alive;
	buf_reset(&c->req_raw);
	buf_append(&c->req_raw, c->cl.in.data, head_len);
	buf_consume(&c->cl.in, head_len);
	buf_trim(&c->cl.in);
	if (h->chunked)
		body_init(&c->rq, FR_CHUNKED, 0);
	else if (h->content_length > 0)
		body_init(&c->rq, FR_LENGTH, (uint64_t)h->content_length);
	else
		body_init(&c->rq, FR_NONE, 0); /* no framing header: no body (RFC 9112 6.3) */
	body_init(&c->rs, FR_NONE, 0);
	c->rs.done = false;
}

static int open_upstream(struct pconn *c, const char *vsock)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(vsock) >= sizeof sa.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, vsock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (ep_open(c, &c->up, fd, &proxy_plain_ops, NULL, on_upstream_io) < 0) {
		close(fd);
		return -1;
	}
	c->via_bridge = !proxy_port_is_direct(c->route.port);
	c->bridge_asked = false;
	buf_printf(&c->up.out, "CONNECT %d\n", c->via_bridge ? PROXY_BRIDGE_PORT : c->route.port);
	snprintf(c->up_id, sizeof c->up_id, "%s", c->route.id);
	c->up_port = c->route.port;
	c->st = ST_CONNECT;
	c->state_since = loop_now(c->px->loop);
	return 0;
}

/* cube-api's address as a sockaddr; -1 if api_addr is not an IP literal. */
static int api_sockaddr(const struct proxy_config *cfg, struct sockaddr_storage *ss, socklen_t *sl)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, cfg->api_addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)cfg->api_port);
		*sl = sizeof *a4;
		return 0;
	}
	if (inet_pton(AF_INET6, cfg->api_addr, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)cfg->api_port);
		*sl = sizeof *a6;
		return 0;
	}
	errno = EINVAL;
	return -1;
}

/* Starts a non-blocking TCP connect to cube-api; process_api_connect()
 * finishes it. */
static int open_api_upstream(struct pconn *c)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (api_sockaddr(&c->px->cfg, &ss, &sl) < 0)
		return -1;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1; /* streamed bodies are many small writes */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	int rc = connect(fd, (struct sockaddr *)&ss, sl);
	if (rc < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (ep_open(c, &c->up, fd, &proxy_plain_ops, NULL, on_upstream_io) < 0) {
		close(fd);
		return -1;
	}
	c->up.connecting = rc < 0;
	c->up.can_write = !c->up.connecting; /* EPOLLOUT says when it is done */
	c->up_api = true;
	c->via_bridge = c->bridge_asked = false;
	c->st = ST_CONNECT;
	c->state_since = loop_now(c->px->loop);
	return 0;
}

static int open_route_upstream(struct pconn *c)
{
	return c->route.api ? open_api_upstream(c) : open_upstream(c, c->vsock);
}

/* The request head as cube-api gets it: the client's, with the proxy's own
 * X-Forwarded-For (the client's address) and X-Forwarded-Proto (http or
 * https) in place of any the client sent, which nothing could vouch for. */
static void rewrite_api_head(struct pconn *c, const struct http_head *h)
{
	const char *scheme = c->cl.ops->scheme ? c->cl.ops->scheme : "http";
	buf_reset(&c->req_raw);
	buf_printf(&c->req_raw, "%s %s HTTP/1.%d\r\n", h->method, h->target, h->minor);
	for (size_t i = 0; i < h->nheaders; i++) {
		const struct http_header *hd = &h->headers[i];
		if (strcasecmp(hd->name, "X-Forwarded-For") == 0 || strcasecmp(hd->name, "X-Forwarded-Proto") == 0)
			continue;
		buf_printf(&c->req_raw, "%s: %s\r\n", hd->name, hd->value);
	}
	buf_printf(&c->req_raw, "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n\r\n", c->peer_ip, scheme);
}

/* Finds the sandbox and checks the traffic token; answers the request
 * itself (and returns false) when it cannot go through. */
static bool admit_request(struct pconn *c, const struct http_head *h, char *vsock, size_t vsock_sz)
{
	struct sandbox rec;
	if (registry_load(c->px->cfg.state_dir, c->route.id, &rec) < 0) {
		respond_not_found(c);
		return false;
	}
	bool ok = false;
	if (rec.state != SANDBOX_RUNNING || !rec.vsock || !rec.vsock[0]) {
		respond_not_found(c);
	} else if (rec.traffic_access_token && rec.traffic_access_token[0] &&
		   !token_equal(rec.traffic_access_token, http_header_get(h, "e2b-traffic-access-token"))) {
		respond_json(c, 403, "Invalid or missing traffic access token (header e2b-traffic-access-token)", true,
			     0);
	} else {
		snprintf(vsock, vsock_sz, "%s", rec.vsock);
		ok = true;
	}
	sandbox_clear(&rec);
	return ok;
}

static void start_request(struct pconn *c, struct http_head *h, size_t head_len)
{
	record_request(c, h, head_len);
	if (header_count(h, "Host") > 1) {
		respond_json(c, 400, "More than one Host header", false, 0);
		return;
	}
	if (strcmp(h->method, "CONNECT") == 0) {
		respond_json(c, 405, "CONNECT is not supported by the sandbox proxy", false, 0);
		return;
	}
	switch (proxy_route_request(h, c->px->cfg.domain, &c->route)) {
	case PROXY_ROUTE_OK: break;
	case PROXY_ROUTE_BAD_HDR:
		respond_json(c, 400, "Malformed E2b-Sandbox-Id or E2b-Sandbox-Port header", false, 0);
		return;
	case PROXY_ROUTE_NONE:
		respond_json(c, 400,
			     "No sandbox in the request: use Host <port>-<sandboxID>.<domain> or the "
			     "E2b-Sandbox-Id and E2b-Sandbox-Port headers",
			     false, 0);
		return;
	}
	if (c->route.api)
		rewrite_api_head(c, h);
	else if (!admit_request(c, h, c->vsock, sizeof c->vsock))
		return;
	bool same =
	    c->route.api ? c->up_api : !c->up_api && strcmp(c->up_id, c->route.id) == 0 && c->up_port == c->route.port;
	bool reuse = c->up.fd >= 0 && !c->up.eof && !c->up.wfail && !c->up.in.len && same;
	c->up_reused = reuse;
	if (reuse) {
		buf_append(&c->up.out, c->req_raw.data, c->req_raw.len);
		c->rq_bytes += c->req_raw.len;
		c->st = ST_RELAY;
		return;
	}
	close_upstream(c);
	if (c->route.api) {
		if (open_api_upstream(c) < 0) {
			log_warn("proxy.upstream", "api %s:%d connect: %s", c->px->cfg.api_addr, c->px->cfg.api_port,
				 strerror(errno));
			upstream_failed(c, API_NOT_REACHABLE);
		}
		return;
	}
	if (open_upstream(c, c->vsock) < 0) {
		log_info("proxy.upstream", "sandbox=%s vsock=%s connect: %s", c->route.id, c->vsock, strerror(errno));
		if (errno == EAGAIN)
			respond_json(c, 503, "The sandbox is busy, retry", true, 0);
		else
			respond_not_found(c);
	}
}

/* --- the state machine -------------------------------------------------------------- */

static bool process_head(struct pconn *c)
{
	bool progress = false;
	/* A kept upstream says nothing between requests; if it does, or
	 * closes, it is of no further use. */
	if (c->up.fd >= 0 && (c->up.eof || c->up.in.len || c->up.wfail)) {
		close_upstream(c);
		progress = true;
	}
	if (!c->cl.in.len) {
		if (c->cl.eof)
			conn_close(c, "client closed");
		return progress || c->cl.eof;
	}
	if (!c->head_started) {
		c->head_started = true;
		c->state_since = loop_now(c->px->loop);
	}
	struct http_head h;
	int status = 400;
	ssize_t used = http_parse_head(c->cl.in.data, c->cl.in.len, true, c->px->cfg.max_head_bytes, &h, &status);
	if (used == 0 && !c->cl.eof)
		return progress;
	if (used <= 0) {
		c->in_request = true;
		c->started_ms = loop_now(c->px->loop);
		snprintf(c->method, sizeof c->method, "-");
		snprintf(c->path, sizeof c->path, "-");
		c->route = (struct proxy_route){0};
		respond_json(c, used == 0 ? 400 : status,
			     used == 0 ? "Incomplete request head" : "Malformed request head", false, 0);
		return true;
	}
	c->head_started = false;
	start_request(c, &h, (size_t)used);
	http_head_free(&h);
	return true;
}

#define PORT_NOT_OPEN "The sandbox is running but port is not open" /* E2B's words */

/* The upstream failed during the handshake: an answer that says which
 * step. */
static void handshake_failed(struct pconn *c, enum proxy_bridge_answer a)
{
	char msg[160];
	if (c->route.api) {
		upstream_failed(c, API_NOT_REACHABLE);
		return;
	}
	if (!c->via_bridge || a == PROXY_BRIDGE_REFUSED) {
		upstream_failed(c, PORT_NOT_OPEN);
		return;
	}
	if (!c->bridge_asked)
		snprintf(msg, sizeof msg,
			 "The sandbox is running but its agent's port bridge (vsock port %d) is not reachable",
			 PROXY_BRIDGE_PORT);
	else if (a == PROXY_BRIDGE_TIMEOUT)
		snprintf(msg, sizeof msg, "The sandbox is running but port %d did not accept the connection in time",
			 c->route.port);
	else if (a == PROXY_BRIDGE_BUSY)
		snprintf(msg, sizeof msg, "The sandbox's port bridge has too many connections open, retry");
	else
		snprintf(msg, sizeof msg, "The sandbox is running but port %d could not be reached", c->route.port);
	upstream_failed(c, msg);
}

/* The TCP connect to cube-api: done once the socket is writable (or
 * failed: HUP/ERR), then the request head goes out. */
static bool process_api_connect(struct pconn *c)
{
	if (c->up.connecting) {
		if (!c->up.can_write)
			return false;
		int err = 0;
		socklen_t el = sizeof err;
		if (getsockopt(c->up.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		c->up.connecting = false;
		if (err || c->up.hup) {
			log_warn("proxy.upstream", "api %s:%d connect: %s", c->px->cfg.api_addr, c->px->cfg.api_port,
				 strerror(err ? err : ECONNRESET));
			handshake_failed(c, PROXY_BRIDGE_MALFORMED);
			return true;
		}
	}
	buf_append(&c->up.out, c->req_raw.data, c->req_raw.len);
	c->rq_bytes += c->req_raw.len;
	c->st = ST_RELAY;
	return true;
}

/* The first line of the upstream: cube-vmm's "OK <n>", then, through the
 * bridge, the agent's "OK" or "ERR <reason>". */
static bool process_handshake(struct pconn *c)
{
	if (c->route.api)
		return process_api_connect(c);
	const char *nl = c->up.in.len ? memchr(c->up.in.data, '\n', c->up.in.len) : NULL;
	if (!nl) {
		if (c->up.eof || c->up.wfail || c->up.in.len > HANDSHAKE_MAX) {
			handshake_failed(c, PROXY_BRIDGE_MALFORMED);
			return true;
		}
		return false;
	}
	size_t ll = (size_t)(nl - c->up.in.data);
	if (c->bridge_asked) {
		enum proxy_bridge_answer a = proxy_bridge_answer(c->up.in.data, ll);
		if (a != PROXY_BRIDGE_OK) {
			log_info("proxy.upstream", "sandbox=%s port=%d: port bridge answered %.*s", c->route.id,
				 c->route.port, a == PROXY_BRIDGE_MALFORMED ? 9 : (int)ll,
				 a == PROXY_BRIDGE_MALFORMED ? "malformed" : c->up.in.data);
			handshake_failed(c, a);
			return true;
		}
	} else {
		bool ok = ll > 3 && ll < HANDSHAKE_MAX && memcmp(c->up.in.data, "OK ", 3) == 0;
		for (size_t i = 3; ok && i < ll; i++)
			ok = c->up.in.data[i] >= '0' && c->up.in.data[i] <= '9';
		if (!ok) {
			log_warn("proxy.upstream", "sandbox=%s port=%d: unexpected handshake answer", c->route.id,
				 c->route.port);
			handshake_failed(c, PROXY_BRIDGE_MALFORMED);
			return true;
		}
	}
	buf_consume(&c->up.in, ll + 1);
	if (c->via_bridge && !c->bridge_asked) {
		buf_printf(&c->up.out, "PORT %d\n", c->route.port);
		c->bridge_asked = true;
		return true;
	}
	buf_append(&c->up.out, c->req_raw.data, c->req_raw.len);
	c->rq_bytes += c->req_raw.len;
	c->st = ST_RELAY;
	return true;
}

static bool relay_request(struct pconn *c)
{
	if (c->rq.done || c->up.wfail) {
		/* Waiting for the answer. A client that half-closes after its
		 * request still gets it, but sends nothing more. */
		if (c->cl.eof && !c->close_after) {
			c->close_after = true;
			return true;
		}
		return false;
	}
	int r = move_body(c->px, &c->rq, &c->cl.in, &c->up.out, &c->rq_bytes);
	if (r < 0) {
		if (c->resp_started)
			conn_close(c, "malformed chunked request body");
		else
			respond_json(c, 400, "Malformed chunked request body", true, 0);
		return true;
	}
	if (!r && c->cl.eof && !c->cl.in.len) {
		conn_close(c, "client closed during the request body");
		return true;
	}
	return r > 0;
}

static void finish_request(struct pconn *c);

/* A kept upstream may have been closed by the guest just as the request
 * went out. Without a body the request can be sent again on a fresh one. */
static bool retry_on_fresh_upstream(struct pconn *c)
{
	if (!c->up_reused || c->resp_started || c->rq.fr != FR_NONE)
		return false;
	c->up_reused = false;
	close_upstream(c);
	c->rq_bytes = 0;
	if (open_route_upstream(c) < 0)
		return false;
	log_debug("proxy.upstream", "sandbox=%s port=%d: kept connection was closed; retrying on a new one",
		  c->route.id, c->route.port);
	return true;
}

/* Parses the next response head; forwards it. */
static bool relay_response_head(struct pconn *c)
{
	if (!c->up.in.len) {
		if (!c->up.eof)
			return false;
		if (!retry_on_fresh_upstream(c))
			upstream_failed(c, "The sandbox closed the connection without an answer");
		return true;
	}
	struct http_head h;
	int status = 502;
	ssize_t used = http_parse_head(c->up.in.data, c->up.in.len, false, c->px->cfg.max_head_bytes, &h, &status);
	if (used == 0 && !c->up.eof)
		return false;
	if (used <= 0) {
		log_warn("proxy.upstream", "sandbox=%s port=%d: malformed response head (%d)", c->route.id,
			 c->route.port, status);
		upstream_failed(c, "The sandbox sent a malformed answer");
		return true;
	}
	move_bytes(&c->up.in, &c->cl.out, (size_t)used, &c->rs_bytes);
	c->resp_started = true;
	c->status = h.status;
	if (h.status == 101) {
		c->st = ST_TUNNEL;
	} else if (h.status >= 200) {
		c->resp_head_done = true;
		c->resp_keep_alive = h.keep_alive;
		if (!h.keep_alive)
			c->close_after = true; /* the client saw "close" too */
		if (c->is_head || h.status == 204 || h.status == 304)
			body_init(&c->rs, FR_NONE, 0);
		else if (h.chunked)
			body_init(&c->rs, FR_CHUNKED, 0);
		else if (h.content_length >= 0)
			body_init(&c->rs, FR_LENGTH, (uint64_t)h.content_length);
		else
			body_init(&c->rs, FR_EOF, 0);
		if (c->rs.fr == FR_EOF)
			c->close_after = true;
		if (c->rs.done)
			finish_request(c);
	}
	/* 1xx other than 101: a final head follows */
	http_head_free(&h);
	return true;
}

static bool relay_response(struct pconn *c)
{
	if (!c->resp_head_done)
		return relay_response_head(c);
	int r = move_body(c->px, &c->rs, &c->up.in, &c->cl.out, &c->rs_bytes);
	if (r < 0) {
		conn_close(c, "malformed chunked response body");
		return true;
	}
	if (!c->rs.done && c->up.eof && !c->up.in.len) {
		if (c->rs.fr != FR_EOF) {
			conn_close(c, "the sandbox closed in the middle of the answer");
			return true;
		}
		c->rs.done = true;
	}
	if (c->rs.done) {
		finish_request(c);
		return true;
	}
	return r > 0;
}

static void finish_request(struct pconn *c)
{
	log_request(c, "ok");
	if (!c->rq.done || !c->req_keep_alive || c->close_after || c->cl.eof) {
		/* The client cannot send another request we could frame (or
		 * does not want to): close once the answer is out. */
		begin_closing(c);
		return;
	}
	bool keep_up = c->resp_keep_alive && !c->up.eof && !c->up.wfail && !c->up.in.len && !c->up.out.len;
	if (!keep_up)
		close_upstream(c);
	c->up_idle_since = loop_now(c->px->loop);
	c->st = ST_HEAD;
}

static bool tunnel(struct pconn *c)
{
	bool progress = false;
	if (c->cl.wfail || c->up.wfail) {
		conn_close(c, "tunnel write failed");
		return true;
	}
	size_t n = room_in(&c->up.out, c->cl.in.len);
	if (n) {
		move_bytes(&c->cl.in, &c->up.out, n, &c->rq_bytes);
		progress = true;
	}
	n = room_in(&c->cl.out, c->up.in.len);
	if (n) {
		move_bytes(&c->up.in, &c->cl.out, n, &c->rs_bytes);
		progress = true;
	}
	if (c->cl.eof && !c->cl.in.len && !c->up.shut_wanted)
		progress = c->up.shut_wanted = true;
	if (c->up.eof && !c->up.in.len && !c->cl.shut_wanted)
		progress = c->cl.shut_wanted = true;
	if (c->cl.shut && c->up.shut && c->cl.eof && c->up.eof) {
		log_request(c, "tunnel closed");
		conn_close(c, "tunnel closed");
		return true;
	}
	return progress;
}

static bool closing(struct pconn *c)
{
	buf_reset(&c->cl.in); /* whatever the client still sends is dropped */
	buf_trim(&c->cl.in);
	if (c->cl.wfail || (c->cl.shut && c->cl.eof)) {
		conn_close(c, "closed");
		return true;
	}
	return false;
}

static bool process(struct pconn *c)
{
	switch (c->st) {
	case ST_HEAD: return process_head(c);
	case ST_CONNECT: return process_handshake(c);
	case ST_RELAY: {
		if (c->cl.wfail) {
			conn_close(c, "client went away");
			return true;
		}
		bool a = relay_request(c);
		if (c->dead || c->st != ST_RELAY)
			return true;
		bool b = relay_response(c);
		return a || b;
	}
	case ST_TUNNEL: return tunnel(c);
	case ST_CLOSING: return closing(c);
	}
	return false;
}

static bool client_wants_read(const struct pconn *c)
{
	size_t max_head = c->px->cfg.max_head_bytes;
	switch (c->st) {
	case ST_HEAD: return c->cl.in.len < max_head;
	case ST_CONNECT: return false; /* the body waits for the handshake */
	case ST_RELAY:
		if (c->rq.done || c->up.wfail)
			return c->cl.in.len < max_head; /* next head, or EOF */
		return c->cl.in.len < READ_CHUNK;
	case ST_TUNNEL: return c->cl.in.len < READ_CHUNK;
	case ST_CLOSING: return true;
	}
	return false;
}

static bool upstream_wants_read(const struct pconn *c)
{
	switch (c->st) {
	case ST_HEAD:
	case ST_CONNECT: return true;
	case ST_RELAY: return c->up.in.len < (c->resp_head_done ? READ_CHUNK : c->px->cfg.max_head_bytes);
	case ST_TUNNEL: return c->up.in.len < READ_CHUNK;
	case ST_CLOSING: return false;
	}
	return false;
}

static void update_interest(struct pconn *c, struct endpoint *ep, bool want_read)
{
	if (ep->fd < 0 || ep->hup)
		return;
	uint32_t ev = 0;
	if (ep->connecting) {
		loop_io_mod(c->px->loop, &ep->io, EPOLLOUT);
		return;
	}
	if (want_read && !ep->eof)
		ev |= ep->read_want;
	if ((ep->out.len && !ep->wfail) || (ep->shut_wanted && !ep->shut))
		ev |= ep->write_want;
	loop_io_mod(c->px->loop, &ep->io, ev);
}

static void on_kick(void *arg)
{
	conn_run(arg);
}

static void pump(struct pconn *c)
{
	int round;
	for (round = 0; round < PUMP_ROUNDS && !c->dead; round++) {
		bool progress = ep_flush(c, &c->up);
		progress |= ep_flush(c, &c->cl);
		progress |= ep_fill(c, &c->cl, client_wants_read(c));
		progress |= ep_fill(c, &c->up, upstream_wants_read(c));
		progress |= process(c);
		if (!progress)
			break;
	}
	if (c->dead)
		return;
	if (round == PUMP_ROUNDS) /* still busy: let other connections run first */
		loop_timer_arm(c->px->loop, &c->kick, 0, on_kick, c);
	update_interest(c, &c->cl, client_wants_read(c));
	update_interest(c, &c->up, upstream_wants_read(c));
}

/* --- timeouts --------------------------------------------------------------------- */

/* The next moment something times out, and whether it is only the kept
 * upstream that does. */
static uint64_t conn_deadline(const struct pconn *c, bool *upstream_only)
{
	const struct proxy_config *cfg = &c->px->cfg;
	*upstream_only = false;
	switch (c->st) {
	case ST_HEAD: {
		uint64_t d = c->head_started ? c->state_since + cfg->head_timeout_ms
					     : c->last_activity + cfg->keepalive_timeout_ms;
		if (c->up.fd >= 0 && c->up_idle_since + cfg->upstream_idle_ms < d) {
			*upstream_only = true;
			d = c->up_idle_since + cfg->upstream_idle_ms;
		}
		return d;
	}
	case ST_CONNECT: return c->state_since + cfg->connect_timeout_ms;
	case ST_RELAY:
	case ST_TUNNEL: return c->last_activity + cfg->relay_idle_ms;
	case ST_CLOSING: return c->state_since + LINGER_MS;
	}
	return c->last_activity;
}

static void on_timeout(struct pconn *c, bool upstream_only)
{
	if (upstream_only) {
		close_upstream(c);
		return;
	}
	switch (c->st) {
	case ST_HEAD:
		if (c->head_started) {
			c->in_request = true;
			snprintf(c->method, sizeof c->method, "-");
			snprintf(c->path, sizeof c->path, "-");
			respond_json(c, 408, "Request head timed out", false, 0);
		} else {
			conn_close(c, "idle");
		}
		break;
	case ST_CONNECT: handshake_failed(c, PROXY_BRIDGE_TIMEOUT); break;
	case ST_RELAY:
		if (c->resp_started)
			conn_close(c, "idle timeout");
		else
			respond_json(c, 504,
				     c->route.api ? "The appliance API did not answer in time"
						  : "The sandbox did not answer in time",
				     !c->route.api, c->route.port);
		break;
	case ST_TUNNEL: conn_close(c, "idle timeout"); break;
	case ST_CLOSING: conn_close(c, "linger timeout"); break;
	}
}

static void on_timer(void *arg)
{
	struct pconn *c = arg;
	bool upstream_only;
	if (mono_ms() >= conn_deadline(c, &upstream_only))
		on_timeout(c, upstream_only);
	conn_run(c);
}

/* Deadlines only move later while nothing changes state, so the timer is
 * re-armed only when it would fire too late (or not at all); an early
 * firing just re-arms it. That keeps the sorted timer list quiet. */
static void conn_schedule(struct pconn *c)
{
	bool upstream_only;
	uint64_t d = conn_deadline(c, &upstream_only);
	if (c->timer.armed && c->timer.due_ms <= d)
		return;
	uint64_t now = mono_ms();
	loop_timer_arm(c->px->loop, &c->timer, d > now ? d - now : 0, on_timer, c);
}

/* --- connections ---------------------------------------------------------------------- */

static void conn_free(struct pconn *c)
{
	struct proxy *px = c->px;
	if (c->prev)
		c->prev->next = c->next;
	else
		px->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	px->nconns--;
	buf_free(&c->req_raw);
	free(c);
}

static void conn_run(struct pconn *c)
{
	pump(c);
	if (c->dead)
		conn_free(c);
	else
		conn_schedule(c);
}

static void on_client_io(void *arg, uint32_t events)
{
	struct pconn *c = arg;
	ep_events(c, &c->cl, events);
	conn_run(c);
}

static void on_upstream_io(void *arg, uint32_t events)
{
	struct pconn *c = arg;
	ep_events(c, &c->up, events);
	conn_run(c);
}

/* "ip:port" -> "ip"; an IPv4 client on the dual-stack listener shows as
 * ::ffff:a.b.c.d, given to cube-api as a.b.c.d. Anything else as it is. */
static void peer_address(const char *peer, char *out, size_t n)
{
	const char *colon = strrchr(peer, ':');
	size_t len = strlen(peer);
	if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1))
		len = (size_t)(colon - peer);
	if (len > 7 && strncasecmp(peer, "::ffff:", 7) == 0 && memchr(peer + 7, '.', len - 7)) {
		peer += 7;
		len -= 7;
	}
	snprintf(out, n, "%.*s", (int)len, peer);
}

void proxy_adopt(struct proxy *px, int fd, const char *peer, const struct proxy_transport_ops *ops, void *ctx)
{
	struct pconn *c = calloc(1, sizeof *c);
	if (!c) {
		ops->free(ctx);
		close(fd);
		return;
	}
	c->px = px;
	c->up.fd = -1;
	snprintf(c->peer, sizeof c->peer, "%s", peer ? peer : "-");
	peer_address(c->peer, c->peer_ip, sizeof c->peer_ip);
	if (ep_open(c, &c->cl, fd, ops, ctx, on_client_io) < 0) {
		log_warn("proxy.accept", "cannot watch a client socket: %s", strerror(errno));
		ops->free(ctx);
		close(fd);
		free(c);
		return;
	}
	c->st = ST_HEAD;
	c->last_activity = mono_ms();
	c->next = px->conns;
	if (px->conns)
		px->conns->prev = c;
	px->conns = c;
	px->nconns++;
	conn_run(c);
}

size_t proxy_conn_count(const struct proxy *px)
{
	return px->nconns;
}

/* --- listeners -------------------------------------------------------------------------- */

static void listener_resume(void *arg)
{
	struct listener *ln = arg;
	loop_io_mod(ln->px->loop, &ln->io, EPOLLIN);
}

static void listener_on_io(void *arg, uint32_t events)
{
	(void)events;
	struct listener *ln = arg;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		int fd = accept4(ln->io.fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* the pending connection stays readable: pause, or
				 * the level-triggered loop spins on it */
				log_warn("proxy.accept", "out of file descriptors; pausing accept for 100 ms");
				loop_io_mod(ln->px->loop, &ln->io, 0);
				loop_timer_arm(ln->px->loop, &ln->pause, 100, listener_resume, ln);
			}
			return;
		}
		if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
			/* streamed answers are many small writes: no Nagle delay */
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		}
		const struct proxy_transport_ops *ops = &proxy_plain_ops;
		void *ctx = NULL;
		if (ln->wrap && ln->wrap(ln->wrap_arg, fd, &ops, &ctx) < 0) {
			close(fd);
			continue;
		}
		char peer[64];
		http_peer_name(&ss, peer, sizeof peer);
		proxy_adopt(ln->px, fd, peer, ops, ctx);
	}
}

int proxy_listen_fd(struct proxy *px, int fd, proxy_wrap_fn wrap, void *wrap_arg)
{
	struct listener *ln = calloc(1, sizeof *ln);
	if (!ln || fd_nonblock(fd) < 0) {
		free(ln);
		close(fd);
		return -1;
	}
	ln->px = px;
	ln->wrap = wrap;
	ln->wrap_arg = wrap_arg;
	if (loop_io_add(px->loop, &ln->io, fd, EPOLLIN, listener_on_io, ln) < 0) {
		close(fd);
		free(ln);
		return -1;
	}
	ln->next = px->listeners;
	px->listeners = ln;
	return 0;
}

int proxy_listen_tcp(struct proxy *px, const char *addr, int port, proxy_wrap_fn wrap, void *wrap_arg)
{
	int fd = http_listen_socket(addr, port);
	return fd < 0 ? -1 : proxy_listen_fd(px, fd, wrap, wrap_arg);
}

/* --- the server ------------------------------------------------------------------------------ */

struct proxy *proxy_new(struct loop *l, const struct proxy_config *cfg)
{
	struct proxy *px = calloc(1, sizeof *px);
	if (!px)
		return NULL;
	px->loop = l;
	px->cfg = *cfg;
	if (!px->cfg.state_dir)
		px->cfg.state_dir = "/var/lib/cubeos";
	if (!px->cfg.domain)
		px->cfg.domain = "cubeos.local";
	if (!px->cfg.max_head_bytes)
		px->cfg.max_head_bytes = 64 * 1024;
	if (!px->cfg.head_timeout_ms)
		px->cfg.head_timeout_ms = 30 * 1000;
	if (!px->cfg.keepalive_timeout_ms)
		px->cfg.keepalive_timeout_ms = 120 * 1000;
	if (!px->cfg.connect_timeout_ms)
		px->cfg.connect_timeout_ms = 10 * 1000;
	if (!px->cfg.relay_idle_ms)
		px->cfg.relay_idle_ms = 3600 * 1000;
	if (!px->cfg.upstream_idle_ms)
		px->cfg.upstream_idle_ms = 15 * 1000;
	if (!px->cfg.api_addr)
		px->cfg.api_addr = "127.0.0.1";
	if (!px->cfg.api_port)
		px->cfg.api_port = 3000;
	return px;
}

void proxy_free(struct proxy *px)
{
	if (!px)
		return;
	while (px->conns) {
		struct pconn *c = px->conns;
		conn_close(c, "shutdown");
		conn_free(c);
	}
	while (px->listeners) {
		struct listener *ln = px->listeners;
		px->listeners = ln->next;
		loop_io_del(px->loop, &ln->io);
		loop_timer_disarm(px->loop, &ln->pause);
		close(ln->io.fd);
		free(ln);
	}
	buf_free(&px->scratch);
	free(px);
}
