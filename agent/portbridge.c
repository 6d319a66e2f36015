/*
 * portbridge.c - the agent's port bridge; see portbridge.h for the wire.
 *
 * One struct bconn per bridged connection, with two sides: the host (the
 * accepted vsock socket) and the guest (a TCP connection to loopback).
 *
 *   PREAMBLE  reading "PORT <n>\n" from the host
 *   CONNECT   non-blocking connect to 127.0.0.1:<n>, then [::1]:<n>
 *   RELAY     bytes both ways through two bounded buffers
 *
 * Everything is level-triggered and driven from pump(), which moves bytes
 * until nothing moves any more and then tells epoll what it waits for. A
 * side is read only while the buffer towards the other side has room: that
 * is the backpressure, end to end. EOF on one side becomes a shutdown of the
 * other side's write direction once its buffer is empty (half-close), and
 * the connection ends when both directions have ended; a reset or a failed
 * write ends it at once.
 */
#include "portbridge.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"

#define PUMP_ROUNDS  32 /* then yield to other connections */
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE 100 /* ms without accepting after running out of fds */

/* --- the preamble ------------------------------------------------------------ */

ssize_t portbridge_parse_preamble(const char *p, size_t n, int *port)
{
	static const char word[] = "PORT ";
	const size_t wl = sizeof word - 1;
	if (n > PORTBRIDGE_PREAMBLE_MAX)
		n = PORTBRIDGE_PREAMBLE_MAX;
	for (size_t i = 0; i < wl; i++) {
		if (i == n)
			return 0;
		if (p[i] != word[i])
			return -1;
	}
	long v = 0;
	size_t i = wl;
	for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
		if (i == wl && p[i] == '0')
			return -1; /* no leading zero, and so no port 0 */
		if (i - wl == 5)
			return -1; /* more than 5 digits */
		v = v * 10 + (p[i] - '0');
	}
	if (v > 65535)
		return -1;
	if (i == n)
		return n == PORTBRIDGE_PREAMBLE_MAX ? -1 : 0;
	if (p[i] != '\n' || i == wl)
		return -1;
	*port = (int)v;
	return (ssize_t)(i + 1);
}

/* --- connections -------------------------------------------------------------- */

enum bstate { B_PREAMBLE, B_CONNECT, B_RELAY };

struct side {
	int fd; /* -1: none */
	struct loop_io io;
	bool eof;      /* its read direction ended */
	bool shut;     /* we shut its write direction */
	bool readable; /* a read may return something */
	bool writable; /* a write may take something */
	bool hup;      /* unwatched after HUP: nothing blocks any more */
};

/* Bytes read from one side, waiting to be written to the other. */
struct pipebuf {
	char *data;
	size_t start, end;
};

struct bconn {
	struct portbridge *pb;
	struct bconn *prev, *next;
	enum bstate st;
	struct side host, guest;
	struct pipebuf up;   /* host -> guest (the preamble lands here first) */
	struct pipebuf down; /* guest -> host ("OK\n" first) */
	int port;
	int family; /* of the guest connect in progress */
	bool dead;
	/* Over max_conns: answered "ERR busy" once its preamble is read. Not at
	 * accept: closing a socket whose preamble then arrives unread makes the
	 * kernel send a reset, and the host may lose the answer to it. */
	bool busy;
	struct loop_timer timer; /* preamble / connect deadline */
	struct loop_timer kick;	 /* resume a pump that yielded */
};

struct listener {
	struct portbridge *pb;
	struct loop_io io;
	struct loop_timer pause;
	struct listener *next;
};

struct portbridge {
	struct loop *loop;
	struct portbridge_config cfg;
	struct listener *listeners;
	struct bconn *conns;
	size_t nconns;
};

static void on_deadline(void *arg);
static void on_kick(void *arg);
static void on_host_io(void *arg, uint32_t events);
static void on_guest_io(void *arg, uint32_t events);

static size_t pb_len(const struct pipebuf *b)
{
	return b->end - b->start;
}

static size_t pb_room(const struct bconn *c, const struct pipebuf *b)
{
	return c->pb->cfg.buf_size - b->end;
}

static void side_close(struct bconn *c, struct side *s)
{
	if (s->fd < 0)
		return;
	loop_io_del(c->pb->loop, &s->io);
	close(s->fd);
	s->fd = -1;
}

static void conn_close(struct bconn *c, const char *why)
{
	if (c->dead)
		return;
	log_debug("bridge.close", "port=%d: %s", c->port, why);
	c->dead = true;
	side_close(c, &c->host);
	side_close(c, &c->guest);
	loop_timer_disarm(c->pb->loop, &c->timer);
	loop_timer_disarm(c->pb->loop, &c->kick);
}

static void conn_free(struct bconn *c)
{
	struct portbridge *pb = c->pb;
	if (c->prev)
		c->prev->next = c->next;
	else
		pb->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pb->nconns--;
	free(c->up.data);
	free(c->down.data);
	free(c);
}

/* Answers "ERR <reason>" and closes. The answer is one small write on a
 * socket that has sent nothing yet, so it always fits; if it does not, the
 * host sees a close, which it takes as a failure too. */
static void refuse(struct bconn *c, const char *reason)
{
	char line[48];
	int n = snprintf(line, sizeof line, "ERR %s\n", reason);
	if (c->host.fd >= 0 && !c->host.hup) {
		if (send(c->host.fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("bridge.refuse", "port=%d: answer not sent: %s", c->port, strerror(errno));
		shutdown(c->host.fd, SHUT_WR);
	}
	conn_close(c, reason);
}

/* --- the guest side: connecting ----------------------------------------------- */

static const char *connect_reason(int err)
{
	switch (err) {
	case ECONNREFUSED: return "refused";
	case ETIMEDOUT: return "timeout";
	default: return "unreachable";
	}
}

/* Starts a non-blocking connect to the loopback address of family. Returns
 * 0 (connected or in progress) or an errno. */
static int guest_connect(struct bconn *c, int family)
{
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)c->port)};
	a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a6.sin6_addr = in6addr_loopback;
	const struct sockaddr *sa = family == AF_INET ? (const void *)&a4 : (const void *)&a6;
	socklen_t sl = family == AF_INET ? sizeof a4 : sizeof a6;

	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	if (connect(fd, sa, sl) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return e;
	}
	/* a bridged HTTP stream is many small writes: no Nagle delay */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (loop_io_add(c->pb->loop, &c->guest.io, fd, EPOLLOUT, on_guest_io, c) < 0) {
		int e = errno;
		close(fd);
		return e;
	}
	c->guest = (struct side){.fd = fd, .io = c->guest.io};
	c->family = family;
	return 0;
}

/* Loopback first over IPv4, then IPv6 (a server may listen on ::1 only). */
static void start_connect(struct bconn *c)
{
	int err = guest_connect(c, AF_INET);
	if (err == ECONNREFUSED)
		err = guest_connect(c, AF_INET6) == 0 ? 0 : ECONNREFUSED;
	if (err) {
		refuse(c, connect_reason(err));
		return;
	}
	c->st = B_CONNECT;
	uint64_t ms = c->pb->cfg.connect_timeout_ms;
	loop_timer_arm(c->pb->loop, &c->timer, ms, on_deadline, c);
}

static void relay_begin(struct bconn *c)
{
	loop_timer_disarm(c->pb->loop, &c->timer);
	memcpy(c->down.data, "OK\n", 3);
	c->down.start = 0;
	c->down.end = 3;
	c->guest.readable = c->guest.writable = true;
	c->host.writable = true;
	c->st = B_RELAY;
	log_debug("bridge.open", "port=%d over %s", c->port, c->family == AF_INET ? "127.0.0.1" : "::1");
}

/* The connect finished (or the deadline passed): relay, retry over IPv6 or
 * refuse. Returns true when the state changed. */
static bool finish_connect(struct bconn *c, bool expired)
{
	int err = 0;
	socklen_t el = sizeof err;
	if (expired)
		err = ETIMEDOUT;
	else if (!c->guest.writable && !c->guest.hup)
		return false;
	else if (getsockopt(c->guest.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (!err) {
		relay_begin(c);
		return true;
	}
	side_close(c, &c->guest);
	if (err == ECONNREFUSED && c->family == AF_INET && guest_connect(c, AF_INET6) == 0)
		return true;
	if (err != ECONNREFUSED)
		log_info("bridge.connect", "port=%d: %s", c->port, strerror(err));
	refuse(c, connect_reason(err));
	return true;
}

/* --- the host side: the preamble ------------------------------------------------ */

static bool read_preamble(struct bconn *c)
{
	if (!c->host.readable)
		return false;
	ssize_t n = read(c->host.fd, c->up.data + c->up.end, pb_room(c, &c->up));
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		c->host.readable = c->host.hup;
		return errno == EINTR;
	}
	if (n <= 0) {
		conn_close(c, "host closed before the preamble");
		return true;
	}
	c->up.end += (size_t)n;
	int port = 0;
	ssize_t used = portbridge_parse_preamble(c->up.data, c->up.end, &port);
	if (used < 0) {
		log_info("bridge.preamble", "malformed preamble (%zu bytes)", c->up.end);
		refuse(c, "bad-preamble");
		return true;
	}
	if (used == 0)
		return true;
	if (c->busy) {
		refuse(c, "busy");
		return true;
	}
	c->port = port;
	c->up.start = (size_t)used; /* anything after it is already for the guest */
	if (c->up.start == c->up.end)
		c->up.start = c->up.end = 0;
	loop_timer_disarm(c->pb->loop, &c->timer);
	start_connect(c);
	return true;
}

/* --- relaying ------------------------------------------------------------------------ */

/* Writes what b holds to dst. False and the connection closed on failure. */
static bool flush_to(struct bconn *c, struct pipebuf *b, struct side *dst, bool *progress)
{
	while (pb_len(b) && dst->writable) {
		ssize_t n = send(dst->fd, b->data + b->start, pb_len(b), MSG_NOSIGNAL);
		if (n > 0) {
			b->start += (size_t)n;
			*progress = true;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN && !dst->hup) {
			dst->writable = false;
		} else {
			conn_close(c, n < 0 ? strerror(errno) : "write returned 0");
			return false;
		}
	}
	if (b->start == b->end)
		b->start = b->end = 0;
	return true;
}

/* Reads from src into b while there is room. False and the connection
 * closed on a reset. */
static bool fill_from(struct bconn *c, struct side *src, struct pipebuf *b, bool *progress)
{
	if (src->eof || !src->readable)
		return true;
	if (!pb_room(c, b) && b->start) { /* make room: move the rest to the front */
		memmove(b->data, b->data + b->start, pb_len(b));
		b->end -= b->start;
		b->start = 0;
	}
	size_t room = pb_room(c, b);
	if (!room)
		return true;
	ssize_t n = read(src->fd, b->data + b->end, room);
	if (n > 0) {
		b->end += (size_t)n;
		*progress = true;
		/* A short read drained the socket; skip the EAGAIN round trip. */
		if ((size_t)n < room && !src->hup)
			src->readable = false;
	} else if (n == 0) {
		src->eof = true;
		*progress = true;
	} else if (errno == EAGAIN && !src->hup) {
		src->readable = false;
	} else if (errno != EINTR && errno != EAGAIN) {
		conn_close(c, strerror(errno));
		return false;
	}
	return true;
}

/* One direction: src -> b -> dst, and the half-close once src ended and b
 * is empty. */
static bool transfer(struct bconn *c, struct side *src, struct pipebuf *b, struct side *dst)
{
	bool progress = false;
	if (!flush_to(c, b, dst, &progress) || !fill_from(c, src, b, &progress) || !flush_to(c, b, dst, &progress))
		return true;
	if (src->eof && !pb_len(b) && !dst->shut) {
		shutdown(dst->fd, SHUT_WR);
		dst->shut = true;
		progress = true;
	}
	return progress;
}

static bool relay(struct bconn *c)
{
	bool progress = transfer(c, &c->host, &c->up, &c->guest);
	if (!c->dead)
		progress |= transfer(c, &c->guest, &c->down, &c->host);
	if (!c->dead && c->host.shut && c->guest.shut) {
		conn_close(c, "done");
		return true;
	}
	/* The host closed altogether (HUP, not a half-close): nothing can reach
	 * it any more, so once what it sent is delivered the connection is
	 * over, even if the guest's server ignores the EOF and stays open. */
	if (!c->dead && c->host.hup && c->host.eof && !pb_len(&c->up)) {
		conn_close(c, "host closed");
		return true;
	}
	return progress;
}

/* --- the pump ---------------------------------------------------------------------------- */

static bool process(struct bconn *c, bool expired)
{
	switch (c->st) {
	case B_PREAMBLE:
		if (expired) {
			refuse(c, "bad-preamble");
			return true;
		}
		return read_preamble(c);
	case B_CONNECT: return finish_connect(c, expired);
	case B_RELAY: return relay(c);
	}
	return false;
}

static void update_interest(struct bconn *c)
{
	uint32_t hev = 0, gev = 0;
	switch (c->st) {
	case B_PREAMBLE: hev = EPOLLIN; break;
	case B_CONNECT: gev = EPOLLOUT; break;
	case B_RELAY:
		if (!c->host.eof && (pb_room(c, &c->up) || c->up.start))
			hev |= EPOLLIN;
		if (pb_len(&c->down))
			hev |= EPOLLOUT;
		if (!c->guest.eof && (pb_room(c, &c->down) || c->down.start))
			gev |= EPOLLIN;
		if (pb_len(&c->up))
			gev |= EPOLLOUT;
		break;
	}
	if (c->host.fd >= 0 && !c->host.hup)
		loop_io_mod(c->pb->loop, &c->host.io, hev);
	if (c->guest.fd >= 0 && !c->guest.hup)
		loop_io_mod(c->pb->loop, &c->guest.io, gev);
}

static void pump(struct bconn *c, bool expired)
{
	int round;
	for (round = 0; round < PUMP_ROUNDS && !c->dead; round++) {
		if (!process(c, expired && round == 0))
			break;
	}
	if (c->dead)
		return;
	if (round == PUMP_ROUNDS) /* still busy: let other connections run first */
		loop_timer_arm(c->pb->loop, &c->kick, 0, on_kick, c);
	update_interest(c);
}

static void conn_pump(struct bconn *c, bool expired)
{
	pump(c, expired);
	if (c->dead)
		conn_free(c);
}

/* The deadline timer is disarmed when the preamble or connect phase ends,
 * so when it fires, that phase took too long. */
static void on_deadline(void *arg)
{
	conn_pump(arg, true);
}

static void on_kick(void *arg)
{
	conn_pump(arg, false);
}

static void side_events(struct bconn *c, struct side *s, uint32_t ev)
{
	if (ev & (EPOLLHUP | EPOLLERR)) {
		/* Level-triggered HUP cannot be masked; stop watching. From now
		 * on reads return data or EOF and writes fail: nothing blocks,
		 * so pump() finishes the side without events. */
		s->hup = true;
		loop_io_del(c->pb->loop, &s->io);
		s->readable = s->writable = true;
	}
	if (ev & EPOLLIN)
		s->readable = true;
	if (ev & EPOLLOUT)
		s->writable = true;
}

static void on_host_io(void *arg, uint32_t events)
{
	struct bconn *c = arg;
	side_events(c, &c->host, events);
	conn_pump(c, false);
}

static void on_guest_io(void *arg, uint32_t events)
{
	struct bconn *c = arg;
	side_events(c, &c->guest, events);
	conn_pump(c, false);
}

/* --- accepting ------------------------------------------------------------------------------ */

static void adopt(struct portbridge *pb, int fd)
{
	struct bconn *c = calloc(1, sizeof *c);
	if (c) {
		c->up.data = malloc(pb->cfg.buf_size);
		c->down.data = malloc(pb->cfg.buf_size);
	}
	if (!c || !c->up.data || !c->down.data) {
		if (c) {
			free(c->up.data);
			free(c->down.data);
		}
		free(c);
		close(fd);
		return;
	}
	c->pb = pb;
	c->guest.fd = -1;
	c->host = (struct side){.fd = fd, .readable = true, .writable = true};
	c->next = pb->conns;
	if (pb->conns)
		pb->conns->prev = c;
	pb->conns = c;
	pb->nconns++;
	if (loop_io_add(pb->loop, &c->host.io, fd, EPOLLIN, on_host_io, c) < 0) {
		log_warn("bridge.accept", "cannot watch a connection: %s", strerror(errno));
		c->host.fd = -1;
		close(fd);
		conn_free(c);
		return;
	}
	if (pb->nconns > pb->cfg.max_conns) {
		log_warn("bridge.accept", "%zu connections: refusing more", pb->nconns - 1);
		c->busy = true;
	}
	c->st = B_PREAMBLE;
	loop_timer_arm(pb->loop, &c->timer, pb->cfg.preamble_timeout_ms, on_deadline, c);
}

static void listener_resume(void *arg)
{
	struct listener *ln = arg;
	loop_io_mod(ln->pb->loop, &ln->io, EPOLLIN);
}

static void listener_on_io(void *arg, uint32_t events)
{
	(void)events;
	struct listener *ln = arg;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(ln->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			adopt(ln->pb, fd);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* the pending connection stays readable: pause, or the
			 * level-triggered loop spins on it */
			log_warn("bridge.accept", "%s; pausing accept for %d ms", strerror(errno), ACCEPT_PAUSE);
			loop_io_mod(ln->pb->loop, &ln->io, 0);
			loop_timer_arm(ln->pb->loop, &ln->pause, ACCEPT_PAUSE, listener_resume, ln);
		}
		return;
	}
}

int portbridge_listen_fd(struct portbridge *pb, int fd)
{
	struct listener *ln = calloc(1, sizeof *ln);
	if (!ln || fd_nonblock(fd) < 0 || loop_io_add(pb->loop, &ln->io, fd, EPOLLIN, listener_on_io, ln) < 0) {
		free(ln);
		close(fd);
		return -1;
	}
	ln->pb = pb;
	ln->next = pb->listeners;
	pb->listeners = ln;
	return 0;
}

/* --- the bridge ------------------------------------------------------------------------------- */

struct portbridge *portbridge_new(struct loop *l, const struct portbridge_config *cfg)
{
	struct portbridge *pb = calloc(1, sizeof *pb);
	if (!pb)
		return NULL;
	pb->loop = l;
	if (cfg)
		pb->cfg = *cfg;
	if (!pb->cfg.preamble_timeout_ms)
		pb->cfg.preamble_timeout_ms = 10 * 1000;
	if (!pb->cfg.connect_timeout_ms)
		pb->cfg.connect_timeout_ms = 5 * 1000;
	if (!pb->cfg.max_conns)
		pb->cfg.max_conns = 1024;
	if (pb->cfg.buf_size < PORTBRIDGE_PREAMBLE_MAX) /* 0 included */
		pb->cfg.buf_size = 64 * 1024;
	return pb;
}

size_t portbridge_conn_count(const struct portbridge *pb)
{
	return pb->nconns;
}

void portbridge_free(struct portbridge *pb)
{
	if (!pb)
		return;
	while (pb->conns) {
		struct bconn *c = pb->conns;
		conn_close(c, "shutdown");
		conn_free(c);
	}
	while (pb->listeners) {
		struct listener *ln = pb->listeners;
		pb->listeners = ln->next;
		loop_io_del(pb->loop, &ln->io);
		loop_timer_disarm(pb->loop, &ln->pause);
		close(ln->io.fd);
		free(ln);
	}
	free(pb);
}
