/*
 * vsock.c - virtio-vsock (device id 19): stream sockets between the guest
 * (its CID from the config) and the host (CID 2), relayed to Unix sockets.
 *
 * Host to guest: a client connects to the listening socket cfg->uds_path and
 * sends "CONNECT <port>\n"; we pick a local port, send the guest a REQUEST,
 * and on its RESPONSE answer the client "OK <local port>\n" and relay bytes
 * both ways (RST or no answer within CONNECT_TIMEOUT_MS closes the client).
 * Guest to host: a REQUEST to port P connects to "<uds_path>_<P>".
 *
 * Flow control is the virtio credit scheme in both directions. Toward the
 * guest we read a host socket only while the guest's credit (buf_alloc -
 * (tx_cnt - fwd_cnt)) is positive, and only as much as that credit and one
 * posted rx buffer allow; a readable socket waits in the pending list until
 * an rx buffer is free. From the guest we grant VSOCK_BUF_ALLOC bytes per
 * connection: what the host socket does not take at once is buffered (that
 * buffer is the credit we granted), fwd_cnt counts what left it, and a
 * CREDIT_UPDATE goes out every quarter buffer. A guest that sends beyond its
 * credit stalls the tx queue until that connection drains, rather than
 * growing our memory.
 *
 * Connections are not saved in snapshots: their host sockets belong to the
 * old process. After a restore the guest gets a TRANSPORT_RESET event and
 * drops them; its listening sockets survive. It drops them in a work item
 * that can run seconds after its vCPUs resume on a starved host, and it
 * drops whatever is connected by then, without a word to us: a client that
 * connected in between would see its request vanish. So new host clients
 * are held (their CONNECT line is not read) until the guest has handled the
 * event, which shows when it hands the event buffer back (see
 * release_held_connects).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_vsock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../lib/buf.h"
#include "../../lib/log.h"
#include "../snapfile.h"
#include "virtio.h"

#define VSOCK_QUEUE_SIZE     256
#define VSOCK_RXQ	     0
#define VSOCK_TXQ	     1
#define VSOCK_EVQ	     2
#define VSOCK_HOST_CID	     2
#define VSOCK_HDR_LEN	     ((uint32_t)sizeof(struct virtio_vsock_hdr)) /* 44 */
#define VSOCK_BUF_ALLOC	     (256u * 1024) /* what we let the guest have in flight per connection */
#define VSOCK_MAX_PKT	     (64u * 1024)
#define VSOCK_MAX_CONNS	     1024
#define VSOCK_HASH	     256
#define VSOCK_MAX_ORPHAN_RST 64
#define VSOCK_TX_BATCH	     256
/* A guest answers a REQUEST at once, with RST when nothing listens; no
 * answer means its vCPUs did not run (a host starved of CPU, e.g. many
 * guests starting at once under nested emulation) or it hangs. 20 s gives the
 * first case room without keeping a client of a hung guest for long. */
#define CONNECT_TIMEOUT_MS  20000
#define CONNECT_LINE_MAX    64
#define VSOCK_STATE_VERSION 2 /* 2 adds next_port; 1 is still read */
#define FIRST_LOCAL_PORT    1024
/* How long host clients wait for a restored guest to handle the transport
 * reset before they are let through anyway (a guest driver that never
 * reposts event buffers must not lock everyone out). Counted from resume. */
#define RESET_HOLD_MAX_MS 10000

/* Control packets a connection still has to send to the guest. */
enum {
	CTL_REQUEST = 1,
	CTL_RESPONSE = 2,
	CTL_RST = 4,
	CTL_SHUTDOWN = 8,
	CTL_CREDIT_UPDATE = 16,
	CTL_CREDIT_REQUEST = 32,
};

enum conn_state {
	C_HANDSHAKE,   /* host client connected, "CONNECT <port>\n" not read yet */
	C_CONNECTING,  /* REQUEST sent to the guest, waiting for RESPONSE */
	C_ESTABLISHED, /* relaying */
	C_CLOSING,     /* host socket closed, RST still to be sent */
};

struct vsock;

struct conn {
	struct vsock *vs;
	struct conn *hnext;	    /* hash chain (not in C_HANDSHAKE) */
	struct conn *next, *prev;   /* every connection */
	struct conn *pnext, *pprev; /* pending list: something to send to the guest */
	bool pending;
	enum conn_state state;
	bool hashed;
	uint32_t local_port, peer_port;
	int fd;
	struct loop_io io;
	struct loop_timer timer;

	uint32_t ctl;		 /* CTL_* still to send */
	uint32_t shutdown_flags; /* for CTL_SHUTDOWN */
	bool want_rx;		 /* the host socket has data (or EOF) for the guest */
	bool host_eof;		 /* read returned 0: SHUTDOWN(SEND) sent to the guest */
	bool host_hup;		 /* the host peer hung up completely */
	bool host_wr_shut;	 /* we shut down writing to the host socket */
	bool credit_requested;
	uint32_t guest_shut; /* VIRTIO_VSOCK_SHUTDOWN_* the guest sent */

	/* Toward the guest. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	/* From the guest. */
	uint32_t fwd_cnt, fwd_cnt_sent;
	struct buf out;	      /* guest data the host socket has not taken yet */
	size_t out_uncounted; /* leading bytes of out that are ours ("OK <port>\n"), not credit */
};

struct vsock {
	struct virtio_dev vd; /* first: the transport hands us back this pointer */
	uint64_t guest_cid;
	char uds_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	struct loop_io listen_io;

	struct conn *hash[VSOCK_HASH];
	struct conn *all;
	struct conn *pend_head, *pend_tail;
	int nr_conns;
	uint32_t next_port;
	struct {
		uint32_t local_port, peer_port;
	} orphan[VSOCK_MAX_ORPHAN_RST]; /* RSTs for packets that match no connection */
	int nr_orphan;
	struct conn *tx_blocked_on; /* stopped taking tx packets until this one drains */
	bool event_pending;	    /* TRANSPORT_RESET to deliver */
	bool hold_connects;	    /* restored: new host clients wait for the reset to be handled */
	uint16_t reset_avail_idx;   /* the event queue's avail index when the reset went out */
	struct loop_timer hold_timer;
	struct virtq_chain ch;
};

/* --- pure helpers (unit-tested) -------------------------------------------- */

uint32_t vsock_peer_credit(uint32_t peer_buf_alloc, uint32_t peer_fwd_cnt, uint32_t tx_cnt)
{
	uint32_t in_flight = tx_cnt - peer_fwd_cnt; /* wraps correctly past 2^32 */
	return in_flight >= peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
}

int vsock_parse_connect(const char *line, size_t len, uint32_t *port)
{
	static const char prefix[] = "CONNECT ";
	if (len && line[len - 1] == '\r')
		len--;
	if (len <= sizeof(prefix) - 1 || memcmp(line, prefix, sizeof(prefix) - 1) != 0)
		return -1;
	uint64_t v = 0;
	for (size_t i = sizeof(prefix) - 1; i < len; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(line[i] - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	*port = (uint32_t)v;
	return 0;
}

/* --- connection bookkeeping ------------------------------------------------ */

static struct loop *vs_loop(struct vsock *vs)
{
	return vs->vd.vm ? vs->vd.vm->loop : NULL;
}

static unsigned hash_of(uint32_t local_port, uint32_t peer_port)
{
	return (local_port * 2654435761u ^ peer_port) % VSOCK_HASH;
}

static struct conn *conn_find(struct vsock *vs, uint32_t local_port, uint32_t peer_port)
{
	for (struct conn *c = vs->hash[hash_of(local_port, peer_port)]; c; c = c->hnext)
		if (c->local_port == local_port && c->peer_port == peer_port)
			return c;
	return NULL;
}

static void conn_hash(struct conn *c)
{
	unsigned h = hash_of(c->local_port, c->peer_port);
	c->hnext = c->vs->hash[h];
	c->vs->hash[h] = c;
	c->hashed = true;
}

static void conn_unhash(struct conn *c)
{
	if (!c->hashed)
		return;
	for (struct conn **pp = &c->vs->hash[hash_of(c->local_port, c->peer_port)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	}
	c->hashed = false;
}

static void pend_remove(struct conn *c)
{
	struct vsock *vs = c->vs;
	if (!c->pending)
		return;
	if (c->pprev)
		c->pprev->pnext = c->pnext;
	else
		vs->pend_head = c->pnext;
	if (c->pnext)
		c->pnext->pprev = c->pprev;
	else
		vs->pend_tail = c->pprev;
	c->pnext = c->pprev = NULL;
	c->pending = false;
}

/* Queues c (at the tail, for fairness) if it has anything for the guest. */
static void pend_update(struct conn *c)
{
	struct vsock *vs = c->vs;
	bool want = c->ctl || (c->want_rx && c->state == C_ESTABLISHED);
	if (want == c->pending)
		return;
	if (!want) {
		pend_remove(c);
		return;
	}
	c->pprev = vs->pend_tail;
	c->pnext = NULL;
	if (vs->pend_tail)
		vs->pend_tail->pnext = c;
	else
		vs->pend_head = c;
	vs->pend_tail = c;
	c->pending = true;
}

static uint32_t conn_credit(const struct conn *c)
{
	return vsock_peer_credit(c->peer_buf_alloc, c->peer_fwd_cnt, c->tx_cnt);
}

static bool conn_can_read(const struct conn *c)
{
	return c->state == C_ESTABLISHED && !c->host_eof && !(c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_RCV) &&
	       conn_credit(c) > 0;
}

static void on_conn_io(void *arg, uint32_t events);

/* Watches the host socket for exactly what the connection can use now. */
static void conn_update_events(struct conn *c)
{
	struct loop *l = vs_loop(c->vs);
	uint32_t ev = 0;
	if (c->fd >= 0 && !c->vs->vd.paused) {
		if (c->state == C_HANDSHAKE)
			ev = c->vs->hold_connects ? 0 : EPOLLIN;
		else if (c->state == C_ESTABLISHED) {
			if (conn_can_read(c) && !c->want_rx)
				ev |= EPOLLIN;
			if (c->out.len)
				ev |= EPOLLOUT;
		}
	}
	if (!l)
		return;
	/* Unwatched rather than watched for nothing: a hung-up socket would
	 * report EPOLLHUP in a loop. */
	if (!ev)
		loop_io_del(l, &c->io);
	else if (!c->io.active)
		loop_io_add(l, &c->io, c->fd, ev, on_conn_io, c);
	else if (c->io.events != ev)
		loop_io_mod(l, &c->io, ev);
}

static void tx_unblock(struct vsock *vs);

static void conn_close_fd(struct conn *c)
{
	struct loop *l = vs_loop(c->vs);
	if (l) {
		loop_io_del(l, &c->io);
		loop_timer_disarm(l, &c->timer);
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static void conn_free(struct conn *c)
{
	struct vsock *vs = c->vs;
	conn_close_fd(c);
	conn_unhash(c);
	pend_remove(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		vs->all = c->next;
	if (c->next)
		c->next->prev = c->prev;
	buf_free(&c->out);
	vs->nr_conns--;
	if (vs->tx_blocked_on == c)
		tx_unblock(vs);
	free(c);
}

/* Ends the connection: the host socket closes now, the guest hears RST. */
static void conn_reset(struct conn *c)
{
	if (c->state == C_HANDSHAKE || !c->hashed) {
		conn_free(c); /* the guest never heard of it */
		return;
	}
	conn_close_fd(c);
	c->state = C_CLOSING;
	c->ctl = CTL_RST;
	c->want_rx = false;
	buf_reset(&c->out);
	if (c->vs->tx_blocked_on == c)
		tx_unblock(c->vs);
	pend_update(c);
}

static struct conn *conn_new(struct vsock *vs, int fd)
{
	if (vs->nr_conns >= VSOCK_MAX_CONNS)
		return NULL;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->vs = vs;
	c->fd = fd;
	c->io.fd = -1;
	c->next = vs->all;
	if (vs->all)
		vs->all->prev = c;
	vs->all = c;
	vs->nr_conns++;
	return c;
}

static bool local_port_used(struct vsock *vs, uint32_t port)
{
	for (struct conn *c = vs->all; c; c = c->next)
		if (c->hashed && c->local_port == port)
			return true;
	return false;
}

static uint32_t alloc_local_port(struct vsock *vs)
{
	for (;;) {
		uint32_t p = vs->next_port++;
		if (vs->next_port == 0xffffffffu || vs->next_port < FIRST_LOCAL_PORT)
			vs->next_port = FIRST_LOCAL_PORT;
		if (!local_port_used(vs, p)) /* at most VSOCK_MAX_CONNS are: this ends */
			return p;
	}
}

/* --- toward the guest (rx queue) ------------------------------------------- */

static void fill_hdr(struct vsock *vs, struct conn *c, struct virtio_vsock_hdr *h, uint16_t op, uint32_t len)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = VSOCK_HOST_CID;
	h->dst_cid = vs->guest_cid;
	h->type = VIRTIO_VSOCK_TYPE_STREAM;
	h->op = op;
	h->len = len;
	h->buf_alloc = VSOCK_BUF_ALLOC;
	if (c) {
		h->src_port = c->local_port;
		h->dst_port = c->peer_port;
		h->fwd_cnt = c->fwd_cnt;
		c->fwd_cnt_sent = c->fwd_cnt;
	}
}

/* Reads what the guest's credit and this buffer allow from the host socket
 * into ch. Returns the bytes used in the chain, 0 if nothing was sent. */
static uint32_t conn_fill_data(struct vsock *vs, struct conn *c, const struct virtq_chain *ch)
{
	struct virtio_vsock_hdr h;
	if (!conn_can_read(c)) {
		c->want_rx = false;
		return 0;
	}
	uint64_t room = ch->writable_len - VSOCK_HDR_LEN;
	uint32_t len = conn_credit(c);
	if (len > room)
		len = (uint32_t)room;
	if (len > VSOCK_MAX_PKT)
		len = VSOCK_MAX_PKT;
	struct iovec iov[VIRTQ_MAX_SIZE];
	struct msghdr msg = {.msg_iov = iov};
	msg.msg_iovlen = (size_t)virtq_chain_iov(ch, true, VSOCK_HDR_LEN, len, iov, VIRTQ_MAX_SIZE);
	ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT);
	c->want_rx = false;
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		conn_reset(c);
		return 0;
	}
	if (n == 0) {
		/* The host is done sending; it may still read (half close). */
		c->host_eof = true;
		c->ctl |= CTL_SHUTDOWN;
		c->shutdown_flags |= VIRTIO_VSOCK_SHUTDOWN_SEND | (c->host_hup ? VIRTIO_VSOCK_SHUTDOWN_RCV : 0);
		return 0;
	}
	fill_hdr(vs, c, &h, VIRTIO_VSOCK_OP_RW, (uint32_t)n);
	virtq_chain_write(ch, 0, &h, sizeof(h));
	c->tx_cnt += (uint32_t)n;
	char more;
	if (conn_credit(c) == 0 && !c->credit_requested && recv(c->fd, &more, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
		/* Stalled on credit with data waiting: ask, in case the guest
		 * only updates when asked. */
		c->credit_requested = true;
		c->ctl |= CTL_CREDIT_REQUEST;
	}
	return VSOCK_HDR_LEN + (uint32_t)n;
}

/* Writes the next packet c owes the guest into ch; 0 if none. */
static uint32_t conn_fill(struct vsock *vs, struct conn *c, const struct virtq_chain *ch)
{
	static const struct {
		uint32_t bit;
		uint16_t op;
	} order[] = {
	    {CTL_RST, VIRTIO_VSOCK_OP_RST},
	    {CTL_REQUEST, VIRTIO_VSOCK_OP_REQUEST},
	    {CTL_RESPONSE, VIRTIO_VSOCK_OP_RESPONSE},
	    {CTL_CREDIT_UPDATE, VIRTIO_VSOCK_OP_CREDIT_UPDATE},
	    {CTL_CREDIT_REQUEST, VIRTIO_VSOCK_OP_CREDIT_REQUEST},
	    {CTL_SHUTDOWN, VIRTIO_VSOCK_OP_SHUTDOWN},
	};
	struct virtio_vsock_hdr h;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (!(c->ctl & order[i].bit))
			continue;
		/* Data read before an EOF goes out before the SHUTDOWN. */
		if (order[i].bit == CTL_SHUTDOWN && c->want_rx && conn_can_read(c))
			break;
		c->ctl &= ~order[i].bit;
		if (order[i].bit == CTL_RST)
			c->ctl = 0;
		fill_hdr(vs, c, &h, order[i].op, 0);
		if (order[i].bit == CTL_SHUTDOWN)
			h.flags = c->shutdown_flags;
		virtq_chain_write(ch, 0, &h, sizeof(h));
		return VSOCK_HDR_LEN;
	}
	if (c->want_rx)
		return conn_fill_data(vs, c, ch);
	return 0;
}

static void conn_check_close(struct conn *c);

/* Sends what the pending connections have, while the guest has rx buffers. */
static void rx_pump(struct vsock *vs)
{
	struct virtq *vq = virtio_queue_get(&vs->vd, VSOCK_RXQ);
	if (!vq)
		return;
	while (vs->nr_orphan || vs->pend_head) {
		if (virtq_pop(vq, &vs->ch) != 1)
			break; /* the guest's rx refill notification brings us back */
		const struct virtq_chain *ch = &vs->ch;
		if (ch->writable_len < VSOCK_HDR_LEN) {
			virtio_warn(&vs->vd, "rx buffer of %llu bytes", (unsigned long long)ch->writable_len);
			virtq_push(vq, ch->head, 0);
			continue;
		}
		if (vs->nr_orphan) {
			struct virtio_vsock_hdr h;
			vs->nr_orphan--;
			fill_hdr(vs, NULL, &h, VIRTIO_VSOCK_OP_RST, 0);
			h.src_port = vs->orphan[vs->nr_orphan].local_port;
			h.dst_port = vs->orphan[vs->nr_orphan].peer_port;
			virtq_chain_write(ch, 0, &h, sizeof(h));
			virtq_push(vq, ch->head, VSOCK_HDR_LEN);
			continue;
		}
		struct conn *c = vs->pend_head;
		pend_remove(c);
		uint32_t used = conn_fill(vs, c, ch);
		if (used)
			virtq_push(vq, ch->head, used);
		else
			virtq_unpop(vq);
		if (c->state == C_CLOSING && !c->ctl) {
			conn_free(c); /* RST delivered */
			continue;
		}
		conn_update_events(c);
		pend_update(c); /* back at the tail if it has more */
		conn_check_close(c);
	}
	virtio_queue_done(&vs->vd, VSOCK_RXQ);
}

static void queue_orphan_rst(struct vsock *vs, const struct virtio_vsock_hdr *h)
{
	if (h->op == VIRTIO_VSOCK_OP_RST || vs->nr_orphan == VSOCK_MAX_ORPHAN_RST)
		return; /* never answer a RST; if the guest floods us, it loses some */
	vs->orphan[vs->nr_orphan].local_port = h->dst_port;
	vs->orphan[vs->nr_orphan].peer_port = h->src_port;
	vs->nr_orphan++;
}

/* --- toward the host socket -------------------------------------------------- */

static void conn_want_credit_update(struct conn *c)
{
	if (c->fwd_cnt - c->fwd_cnt_sent >= VSOCK_BUF_ALLOC / 4) {
		c->ctl |= CTL_CREDIT_UPDATE;
		pend_update(c);
	}
}

/* Counts n bytes that left the out buffer (or went straight out) as
 * forwarded, except our own "OK" line. */
static void conn_forwarded(struct conn *c, size_t n)
{
	size_t ours = n < c->out_uncounted ? n : c->out_uncounted;
	c->out_uncounted -= ours;
	c->fwd_cnt += (uint32_t)(n - ours);
}

static void conn_flush(struct conn *c)
{
	while (c->out.len) {
		ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			conn_reset(c);
			return;
		}
		conn_forwarded(c, (size_t)n);
		buf_consume(&c->out, (size_t)n);
	}
	conn_want_credit_update(c);
	if (!c->out.len && c->vs->tx_blocked_on == c)
		tx_unblock(c->vs);
	conn_check_close(c);
}

/* Closes what both sides have finished: our write side once the guest shut
 * its sending and we delivered everything, the whole connection once
 * neither direction can carry data any more. */
static void conn_check_close(struct conn *c)
{
	if (c->state != C_ESTABLISHED)
		return;
	if ((c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_SEND) && !c->out.len && !c->host_wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->host_wr_shut = true;
	}
	if (c->host_wr_shut && (c->host_eof || (c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_RCV)) && !(c->ctl & CTL_SHUTDOWN))
		conn_reset(c);
}

/* Guest data for the host socket: straight through if nothing is queued,
 * else behind what is. Returns -1 if it does not fit (the guest overran the
 * credit we gave). */
static int conn_take_data(struct conn *c, const struct virtq_chain *ch, uint32_t len)
{
	if (c->out.len - c->out_uncounted + len > VSOCK_BUF_ALLOC)
		return -1;
	uint32_t sent = 0;
	if (!c->out.len) {
		struct iovec iov[VIRTQ_MAX_SIZE];
		struct msghdr msg = {.msg_iov = iov};
		msg.msg_iovlen = (size_t)virtq_chain_iov(ch, false, VSOCK_HDR_LEN, len, iov, VIRTQ_MAX_SIZE);
		ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			conn_reset(c);
			return 0;
		}
		if (n > 0) {
			sent = (uint32_t)n;
			conn_forwarded(c, sent);
		}
	}
	if (sent < len) {
		char *dst = buf_reserve(&c->out, len - sent);
		buf_commit(&c->out, virtq_chain_read(ch, VSOCK_HDR_LEN + sent, dst, len - sent));
	}
	conn_want_credit_update(c);
	return 0;
}

/* --- from the guest (tx queue) ----------------------------------------------- */

static void guest_connect(struct vsock *vs, const struct virtio_vsock_hdr *h)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = -1;
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", vs->uds_path, h->dst_port) <
	    sizeof(sa.sun_path))
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* A Unix connect completes or fails at once (EAGAIN: backlog full). */
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		log_debug("virtio_vsock.connect", "guest port %u -> %s: %s", h->src_port, sa.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		queue_orphan_rst(vs, h);
		return;
	}
	struct conn *c = conn_new(vs, fd);
	if (!c) {
		close(fd);
		queue_orphan_rst(vs, h);
		return;
	}
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->state = C_ESTABLISHED;
	c->ctl = CTL_RESPONSE;
	conn_hash(c);
	pend_update(c);
	conn_update_events(c);
}

static void on_connect_timeout(void *arg);

/* Handles one guest packet. -1: no room for its data now (leave it queued). */
static int handle_packet(struct vsock *vs, const struct virtio_vsock_hdr *h, const struct virtq_chain *ch)
{
	if (h->len > ch->readable_len - VSOCK_HDR_LEN || h->len > VSOCK_MAX_PKT) {
		virtio_warn(&vs->vd, "packet claims %u bytes of payload, has %llu", h->len,
			    (unsigned long long)(ch->readable_len - VSOCK_HDR_LEN));
		return 0;
	}
	if (h->src_cid != vs->guest_cid || h->dst_cid != VSOCK_HOST_CID) {
		virtio_warn(&vs->vd, "packet from CID %llu to CID %llu dropped", (unsigned long long)h->src_cid,
			    (unsigned long long)h->dst_cid);
		return 0;
	}
	if (h->type != VIRTIO_VSOCK_TYPE_STREAM) {
		queue_orphan_rst(vs, h); /* only stream sockets */
		return 0;
	}
	struct conn *c = conn_find(vs, h->dst_port, h->src_port);
	if (!c) {
		if (h->op == VIRTIO_VSOCK_OP_REQUEST)
			guest_connect(vs, h);
		else
			queue_orphan_rst(vs, h);
		return 0;
	}
	if (c->state == C_CLOSING)
		return 0; /* our RST is on its way */
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	if (conn_credit(c) > 0)
		c->credit_requested = false;
	switch (h->op) {
	case VIRTIO_VSOCK_OP_RESPONSE:
		if (c->state != C_CONNECTING) {
			conn_reset(c);
			return 0;
		}
		c->state = C_ESTABLISHED;
		loop_timer_disarm(vs_loop(vs), &c->timer);
		buf_printf(&c->out, "OK %u\n", c->local_port);
		c->out_uncounted = c->out.len;
		conn_flush(c);
		break;
	case VIRTIO_VSOCK_OP_RST: conn_free(c); return 0;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		c->guest_shut |= h->flags & (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND);
		conn_check_close(c);
		break;
	case VIRTIO_VSOCK_OP_RW:
		if (c->state != C_ESTABLISHED || (c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_SEND)) {
			conn_reset(c);
			return 0;
		}
		if (conn_take_data(c, ch, h->len) < 0) {
			vs->tx_blocked_on = c;
			return -1;
		}
		break;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE: break; /* the credit fields above are the news */
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c->ctl |= CTL_CREDIT_UPDATE;
		pend_update(c);
		break;
	default: /* a second REQUEST for a live connection, or garbage */ conn_reset(c); return 0;
	}
	if (c->hashed && c->state != C_CLOSING) /* still alive */
		conn_update_events(c);
	return 0;
}

static void tx_process(struct vsock *vs)
{
	struct virtq *vq = virtio_queue_get(&vs->vd, VSOCK_TXQ);
	if (!vq || vs->tx_blocked_on)
		return;
	int done = 0;
	while (done < VSOCK_TX_BATCH && virtq_pop(vq, &vs->ch) == 1) {
		const struct virtq_chain *ch = &vs->ch;
		struct virtio_vsock_hdr h;
		done++;
		if (virtq_chain_read(ch, 0, &h, sizeof(h)) != sizeof(h)) {
			virtio_warn(&vs->vd, "tx packet shorter than its header");
		} else if (handle_packet(vs, &h, ch) < 0) {
			virtq_unpop(vq); /* retried when the connection drains */
			break;
		}
		virtq_push(vq, ch->head, 0);
	}
	virtio_queue_done(&vs->vd, VSOCK_TXQ);
	if (done == VSOCK_TX_BATCH)
		virtio_request_kick(&vs->vd);
	rx_pump(vs); /* replies, credit updates */
}

static void tx_unblock(struct vsock *vs)
{
	vs->tx_blocked_on = NULL;
	virtio_request_kick(&vs->vd); /* not inline: we may be deep in a connection's teardown */
}

/* --- event queue ------------------------------------------------------------- */

static void deliver_event(struct vsock *vs)
{
	struct virtq *vq = virtio_queue_get(&vs->vd, VSOCK_EVQ);
	if (!vs->event_pending || !vq || virtq_pop(vq, &vs->ch) != 1)
		return;
	uint32_t id = VIRTIO_VSOCK_EVENT_TRANSPORT_RESET;
	virtq_push(vq, vs->ch.head, (uint32_t)virtq_chain_write(&vs->ch, 0, &id, sizeof(id)));
	vs->event_pending = false;
	vs->reset_avail_idx = virtq_avail_idx(vq);
	virtio_queue_done(&vs->vd, VSOCK_EVQ);
}

/* Lets held host clients go on to their CONNECT. */
static void release_held_connects(struct vsock *vs)
{
	vs->hold_connects = false;
	if (vs_loop(vs))
		loop_timer_disarm(vs_loop(vs), &vs->hold_timer);
	for (struct conn *c = vs->all; c; c = c->next)
		if (c->state == C_HANDSHAKE)
			conn_update_events(c);
}

/* Linux handles the event, then reposts its buffer and kicks: a moved avail
 * index after delivery is the sign, where a kick alone is not (we kick all
 * queues ourselves at times). */
static void check_reset_handled(struct vsock *vs)
{
	struct virtq *vq = virtio_queue_get(&vs->vd, VSOCK_EVQ);
	if (vs->hold_connects && !vs->event_pending && vq && virtq_avail_idx(vq) != vs->reset_avail_idx) {
		log_info("virtio_vsock.reset_handled", "the guest handled the transport reset");
		release_held_connects(vs);
	}
}

static void on_hold_timeout(void *arg)
{
	struct vsock *vs = arg;
	pthread_mutex_lock(&vs->vd.vm->lock);
	if (vs->hold_connects) {
		log_warn("virtio_vsock.reset_unhandled",
			 "the guest did not hand back the transport reset event within %d ms; letting host "
			 "clients through",
			 RESET_HOLD_MAX_MS);
		release_held_connects(vs);
		rx_pump(vs);
	}
	pthread_mutex_unlock(&vs->vd.vm->lock);
}

/* The hold's clock runs only while the guest can run. */
static void arm_hold_timer(struct vsock *vs)
{
	if (vs->hold_connects && !vs->vd.paused && vs_loop(vs))
		loop_timer_arm(vs_loop(vs), &vs->hold_timer, RESET_HOLD_MAX_MS, on_hold_timeout, vs);
}

/* --- host sockets -------------------------------------------------------------- */

static void on_connect_timeout(void *arg)
{
	struct conn *c = arg;
	struct vsock *vs = c->vs;
	pthread_mutex_lock(&vs->vd.vm->lock);
	if (c->state == C_CONNECTING) {
		log_info("virtio_vsock.timeout", "guest port %u did not answer within %d ms", c->peer_port,
			 CONNECT_TIMEOUT_MS);
		conn_reset(c);
		rx_pump(vs);
	}
	pthread_mutex_unlock(&vs->vd.vm->lock);
}

/* Reads "CONNECT <port>\n" without consuming anything after it: bytes the
 * client sends early are relayed once the guest accepts. */
static void read_connect_line(struct vsock *vs, struct conn *c)
{
	char line[CONNECT_LINE_MAX];
	ssize_t n = recv(c->fd, line, sizeof(line), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	char *nl = n > 0 ? memchr(line, '\n', (size_t)n) : NULL;
	if (!nl) {
		if (n > 0 && (size_t)n < sizeof(line))
			return; /* not all there yet */
		conn_free(c);
		return;
	}
	size_t len = (size_t)(nl - line) + 1;
	uint32_t port;
	if (recv(c->fd, line, len, MSG_DONTWAIT) != (ssize_t)len || vsock_parse_connect(line, len - 1, &port) < 0) {
		log_info("virtio_vsock.bad_connect", "host client sent a bad CONNECT line");
		conn_free(c);
		return;
	}
	c->peer_port = port;
	c->local_port = alloc_local_port(vs);
	c->state = C_CONNECTING;
	c->ctl = CTL_REQUEST;
	conn_hash(c);
	loop_timer_arm(vs_loop(vs), &c->timer, CONNECT_TIMEOUT_MS, on_connect_timeout, c);
	pend_update(c);
	conn_update_events(c);
}

static void on_conn_io(void *arg, uint32_t events)
{
	struct conn *c = arg;
	struct vsock *vs = c->vs;
	pthread_mutex_lock(&vs->vd.vm->lock);
	if (vs->vd.paused) {
		conn_update_events(c);
	} else if (c->state == C_HANDSHAKE) {
		read_connect_line(vs, c);
		rx_pump(vs); /* the REQUEST */
	} else {
		if (events & (EPOLLHUP | EPOLLERR))
			c->host_hup = true;
		if (events & EPOLLOUT)
			conn_flush(c);
		if (c->hashed && c->state == C_ESTABLISHED && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
		    conn_can_read(c)) {
			c->want_rx = true;
			pend_update(c);
		}
		if (c->hashed && c->state != C_CLOSING)
			conn_update_events(c);
		rx_pump(vs);
	}
	pthread_mutex_unlock(&vs->vd.vm->lock);
}

static void on_listen(void *arg, uint32_t events)
{
	struct vsock *vs = arg;
	pthread_mutex_lock(&vs->vd.vm->lock);
	if (vs->vd.paused) {
		loop_io_del(vs_loop(vs), &vs->listen_io);
		pthread_mutex_unlock(&vs->vd.vm->lock);
		return;
	}
	for (int i = 0; i < 16; i++) {
		int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break;
		struct conn *c = conn_new(vs, fd);
		if (!c) {
			log_warn("virtio_vsock.limit", "%d connections open; refusing another", VSOCK_MAX_CONNS);
			close(fd);
			continue;
		}
		c->state = C_HANDSHAKE;
		conn_update_events(c);
	}
	pthread_mutex_unlock(&vs->vd.vm->lock);
}

static void listen_watch(struct vsock *vs)
{
	struct loop *l = vs_loop(vs);
	if (l && vs->listen_fd >= 0 && !vs->listen_io.active)
		loop_io_add(l, &vs->listen_io, vs->listen_fd, EPOLLIN, on_listen, vs);
}

static int listen_open(struct vsock *vs, char *err, size_t errsz)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, vs->uds_path, sizeof(sa.sun_path));
	unlink(vs->uds_path); /* a stale socket from a previous process */
	vs->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (vs->listen_fd < 0 || bind(vs->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(vs->listen_fd, 128) < 0) {
		snprintf(err, errsz, "virtio-vsock: listen on %s: %s", vs->uds_path, strerror(errno));
		if (vs->listen_fd >= 0)
			close(vs->listen_fd);
		vs->listen_fd = -1;
		return -1;
	}
	return 0;
}

/* --- device ops and hooks ------------------------------------------------------ */

static void vsock_notify(struct virtio_dev *vd, int queue)
{
	struct vsock *vs = (struct vsock *)vd;
	switch (queue) {
	case VSOCK_RXQ: rx_pump(vs); break;
	case VSOCK_TXQ: tx_process(vs); break;
	case VSOCK_EVQ:
		deliver_event(vs);
		check_reset_handled(vs);
		break;
	}
}

static void drop_all(struct vsock *vs)
{
	while (vs->all)
		conn_free(vs->all);
	vs->nr_orphan = 0;
	vs->tx_blocked_on = NULL;
}

static void vsock_reset(struct virtio_dev *vd)
{
	drop_all((struct vsock *)vd); /* the guest forgot them all */
}

static void vsock_destroy(struct virtio_dev *vd)
{
	struct vsock *vs = (struct vsock *)vd;
	vs->vd.paused = true; /* no kicks from the teardown */
	drop_all(vs);
	if (vs_loop(vs)) {
		loop_io_del(vs_loop(vs), &vs->listen_io);
		loop_timer_disarm(vs_loop(vs), &vs->hold_timer);
	}
	if (vs->listen_fd >= 0) {
		close(vs->listen_fd);
		unlink(vs->uds_path);
	}
}

static const struct virtio_dev_ops vsock_ops = {.notify = vsock_notify, .reset = vsock_reset, .destroy = vsock_destroy};

static int vsock_save(void *dev, struct snap_w *w)
{
	struct vsock *vs = dev;
	snap_w_u32(w, VSOCK_STATE_VERSION);
	virtio_transport_save(&vs->vd, w);
	snap_w_u64(w, vs->guest_cid);
	snap_w_u32(w, vs->next_port);
	return 0;
}

static int vsock_load(void *dev, const void *data, size_t len, char *err, size_t errsz)
{
	struct vsock *vs = dev;
	struct snap_cur c;
	snap_cur_init(&c, data, len);
	uint32_t version = snap_cur_u32(&c);
	if (c.bad || version < 1 || version > VSOCK_STATE_VERSION) {
		snprintf(err, errsz, "%s state: layout %u, this VMM reads 1 to %u", vs->vd.name, version,
			 VSOCK_STATE_VERSION);
		return -1;
	}
	if (virtio_transport_load(&vs->vd, &c, err, errsz) < 0)
		return -1;
	(void)snap_cur_u64(&c); /* the saved CID: the guest re-reads ours on the reset event */
	uint32_t next_port = version >= 2 ? snap_cur_u32(&c) : FIRST_LOCAL_PORT;
	if (c.bad || c.left) {
		snprintf(err, errsz, "%s state: truncated or corrupt", vs->vd.name);
		return -1;
	}
	/* Go on numbering host ports where the snapshotted process stopped:
	 * the guest may still hold sockets of that process's connections
	 * until it has handled the transport reset, and Linux silently drops
	 * a REQUEST whose ports match a socket it thinks is established. */
	vs->next_port = next_port >= FIRST_LOCAL_PORT && next_port != 0xffffffffu ? next_port : FIRST_LOCAL_PORT;
	return 0;
}

static void vsock_pause(void *dev)
{
	struct vsock *vs = dev;
	virtio_pause(&vs->vd);
	if (vs_loop(vs)) {
		loop_io_del(vs_loop(vs), &vs->listen_io);
		loop_timer_disarm(vs_loop(vs), &vs->hold_timer);
	}
	for (struct conn *c = vs->all; c; c = c->next)
		conn_update_events(c);
}

static void vsock_resume(void *dev)
{
	struct vsock *vs = dev;
	virtio_resume(&vs->vd);
	listen_watch(vs);
	arm_hold_timer(vs);
	for (struct conn *c = vs->all; c; c = c->next)
		conn_update_events(c);
}

static void vsock_restored(void *dev)
{
	struct vsock *vs = dev;
	vs->event_pending = true; /* delivered on the kick below, or when the guest posts an event buffer */
	vs->hold_connects = true;
	arm_hold_timer(vs);
	virtio_transport_restored(&vs->vd);
}

int virtio_vsock_create(struct vm *vm, struct vsock_config *cfg, char *err, size_t errsz)
{
	if (!cfg->uds_path || strlen(cfg->uds_path) + 12 >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errsz, "virtio-vsock: Unix socket path missing or too long (max %zu)",
			 sizeof(((struct sockaddr_un *)0)->sun_path) - 12);
		return -1;
	}
	if (cfg->guest_cid < 3 || cfg->guest_cid > 0xffffffffu) {
		snprintf(err, errsz, "virtio-vsock: guest CID %llu invalid (3 .. 2^32-1)",
			 (unsigned long long)cfg->guest_cid);
		return -1;
	}
	struct vsock *vs = calloc(1, sizeof(*vs));
	if (!vs) {
		snprintf(err, errsz, "virtio-vsock: out of memory");
		return -1;
	}
	virtio_dev_init(&vs->vd, &vm->mem, VIRTIO_ID_VSOCK_DEV, "virtio-vsock", 0, 3, VSOCK_QUEUE_SIZE);
	vs->vd.ops = &vsock_ops;
	vs->guest_cid = cfg->guest_cid;
	vs->next_port = FIRST_LOCAL_PORT;
	vs->listen_io.fd = -1;
	snprintf(vs->uds_path, sizeof(vs->uds_path), "%s", cfg->uds_path);
	memcpy(vs->vd.config, &vs->guest_cid, 8);
	vs->vd.config_size = 8;
	if (listen_open(vs, err, errsz) < 0) {
		free(vs);
		return -1;
	}
	if (virtio_dev_attach(&vs->vd, vm, err, errsz) < 0)
		return -1; /* the bus may hold vs: it lives as long as the VM */
	listen_watch(vs);
	struct vm_device d = {.kind = "virtio-vsock",
			      .dev = vs,
			      .save = vsock_save,
			      .load = vsock_load,
			      .pause = vsock_pause,
			      .resume = vsock_resume,
			      .restored = vsock_restored};
	if (vm_add_device(vm, &d) < 0) {
		snprintf(err, errsz, "virtio-vsock: too many devices");
		return -1;
	}
	return 0;
}
