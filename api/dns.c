/* dns.c - cube-dns: the appliance's authoritative DNS responder; see dns.h. */
#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"

#define HDR_LEN	      12
#define FLAG_QR	      0x8000
#define FLAG_AA	      0x0400
#define FLAG_RD	      0x0100
#define OPCODE(flags) (((flags) >> 11) & 0xf)
#define ADDR_CACHE_MS 1000
#define TCP_CONNS_MAX 64
#define TCP_IDLE_MS   10000
#define TCP_QUERY_MAX DNS_UDP_MAX /* a longer TCP query is not one of ours */
#define UDP_BATCH     64	  /* datagrams per wakeup, then other work runs */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* --- parsing ------------------------------------------------------------------ */

/* Appends one label to q (wire form and lower-case text). */
static int add_label(struct dns_question *q, const uint8_t *label, size_t n, size_t *name_len)
{
	if (q->wire_len + 1 + n + 1 > DNS_NAME_MAX) /* + the root label still to come */
		return -1;
	q->wire[q->wire_len++] = (uint8_t)n;
	memcpy(q->wire + q->wire_len, label, n);
	q->wire_len += n;
	if (*name_len)
		q->name[(*name_len)++] = '.';
	for (size_t i = 0; i < n; i++) {
		uint8_t c = label[i];
		if (c <= 0x20 || c >= 0x7f || c == '.')
			q->odd = true;
		q->name[(*name_len)++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	q->name[*name_len] = '\0';
	return 0;
}

/* The name at *off. Each pointer must go below every position read so far
 * in this name, so following them always ends (and at most DNS_MAX_HOPS). */
static int read_name(const uint8_t *m, size_t len, size_t *off, struct dns_question *q)
{
	size_t pos = *off, lowest = *off, resume = 0, name_len = 0;
	int hops = 0;
	q->wire_len = 0;
	q->name[0] = '\0';
	q->odd = false;
	for (;;) {
		if (pos >= len)
			return -1;
		uint8_t l = m[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= len)
				return -1;
			size_t target = (size_t)(l & 0x3f) << 8 | m[pos + 1];
			if (target < HDR_LEN || target >= lowest || ++hops > DNS_MAX_HOPS)
				return -1;
			if (!resume)
				resume = pos + 2;
			pos = lowest = target;
			continue;
		}
		if (l & 0xc0) /* the 0x40 and 0x80 label types are obsolete or unassigned */
			return -1;
		if (l == 0)
			break;
		if (pos + 1 + l > len || add_label(q, m + pos + 1, l, &name_len) < 0)
			return -1;
		pos += 1 + (size_t)l;
	}
	q->wire[q->wire_len++] = 0;
	*off = resume ? resume : pos + 1;
	return 0;
}

int dns_read_question(const uint8_t *msg, size_t len, size_t *off, struct dns_question *q)
{
	if (read_name(msg, len, off, q) < 0 || *off + 4 > len)
		return -1;
	q->qtype = get16(msg + *off);
	q->qclass = get16(msg + *off + 2);
	*off += 4;
	return 0;
}

/* --- answering ------------------------------------------------------------------ */

enum zone_place { OUTSIDE, APEX, CHILD, DEEPER };

static enum zone_place place_in_zone(const struct dns_question *q, const char *domain)
{
	size_t n = strlen(q->name), d = strlen(domain);
	if (q->odd || n < d || strcasecmp(q->name + n - d, domain) != 0)
		return OUTSIDE;
	if (n == d)
		return APEX;
	if (q->name[n - d - 1] != '.')
		return OUTSIDE; /* "xcubeos.local" */
	return memchr(q->name, '.', n - d - 1) ? DEEPER : CHILD;
}

/* The header of a reply: the query's id, opcode and RD, with QR and rcode. */
static size_t reply_header(const uint8_t *q, uint8_t *out, uint16_t extra_flags, int rcode, uint16_t qd, uint16_t an)
{
	uint16_t qflags = get16(q + 2);
	memcpy(out, q, 2);
	put16(out + 2, (uint16_t)(FLAG_QR | (qflags & 0x7800) | (qflags & FLAG_RD) | extra_flags | rcode));
	put16(out + 4, qd);
	put16(out + 6, an);
	put16(out + 8, 0);
	put16(out + 10, 0);
	return HDR_LEN;
}

static size_t answer_question(const uint8_t *q, const struct dns_question *qq, const char *domain, uint32_t addr_be,
			      uint8_t *out, int *rcode)
{
	enum zone_place where = place_in_zone(qq, domain);
	bool want_a = qq->qtype == DNS_TYPE_A || qq->qtype == DNS_TYPE_ANY;
	uint16_t flags = where == OUTSIDE ? 0 : FLAG_AA;
	if (qq->qclass != DNS_CLASS_IN && qq->qclass != DNS_TYPE_ANY)
		*rcode = DNS_REFUSED;
	else if (where == OUTSIDE)
		*rcode = DNS_REFUSED;
	else if (where == DEEPER)
		*rcode = DNS_NXDOMAIN;
	else if (want_a && !addr_be)
		*rcode = DNS_SERVFAIL;
	else
		*rcode = DNS_NOERROR;
	bool with_a = *rcode == DNS_NOERROR && want_a;
	size_t n = reply_header(q, out, flags, *rcode, 1, with_a ? 1 : 0);
	memcpy(out + n, qq->wire, qq->wire_len);
	n += qq->wire_len;
	put16(out + n, qq->qtype);
	put16(out + n + 2, qq->qclass);
	n += 4;
	if (!with_a)
		return n;
	static const uint8_t a_rr[] = {0xc0, HDR_LEN, 0, DNS_TYPE_A, 0, DNS_CLASS_IN, 0, 0, 0, DNS_TTL, 0, 4};
	memcpy(out + n, a_rr, sizeof a_rr);
	n += sizeof a_rr;
	memcpy(out + n, &addr_be, 4);
	return n + 4;
}

size_t dns_answer(const uint8_t *q, size_t qlen, const char *domain, uint32_t addr_be, uint8_t *out, size_t outsz,
		  int *rcode)
{
	int rc_local;
	if (!rcode)
		rcode = &rc_local;
	*rcode = -1;
	/* No header, or a response: nothing to say (answering responses
	 * would let two responders loop on each other). */
	if (qlen < HDR_LEN || outsz < DNS_UDP_MAX || (get16(q + 2) & FLAG_QR))
		return 0;
	if (OPCODE(get16(q + 2)) != 0) {
		*rcode = DNS_NOTIMP;
		return reply_header(q, out, 0, DNS_NOTIMP, 0, 0);
	}
	struct dns_question qq;
	size_t off = HDR_LEN;
	/* One question, no answers or authority (a query has none); the
	 * additional section (EDNS OPT) is ignored. */
	if (get16(q + 4) != 1 || get16(q + 6) != 0 || get16(q + 8) != 0 || dns_read_question(q, qlen, &off, &qq) < 0) {
		*rcode = DNS_FORMERR;
		return reply_header(q, out, 0, DNS_FORMERR, 0, 0);
	}
	return answer_question(q, &qq, domain, addr_be, out, rcode);
}

uint32_t dns_first_ipv4(void)
{
	struct ifaddrs *ifs;
	if (getifaddrs(&ifs) < 0)
		return 0;
	uint32_t found = 0;
	for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
		    (i->ifa_flags & IFF_LOOPBACK))
			continue;
		found = ((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr.s_addr;
	}
	freeifaddrs(ifs);
	return found;
}

/* --- the server ------------------------------------------------------------------ */

struct dns_listener {
	struct dns_server *s;
	struct loop_io io;
	bool tcp;
	struct dns_listener *next;
};

struct tcp_conn {
	struct dns_server *s;
	struct loop_io io;
	struct loop_timer idle;
	uint8_t in[2 + TCP_QUERY_MAX];
	size_t len;
	struct tcp_conn *prev, *next;
};

struct dns_server {
	struct loop *loop;
	char *domain;
	uint32_t fixed_addr; /* network order; 0: found per query */
	uint32_t cached_addr;
	uint64_t cached_at;
	bool cached;
	struct dns_listener *listeners;
	struct tcp_conn *conns;
	size_t nconns;
};

static bool is_loopback(uint32_t addr_be)
{
	return (ntohl(addr_be) >> 24) == 127;
}

/* The address to answer with, for a query that arrived on local (0: unknown). */
static uint32_t answer_addr(struct dns_server *s, uint32_t local)
{
	if (s->fixed_addr)
		return s->fixed_addr;
	if (local && local != htonl(INADDR_ANY) && !is_loopback(local))
		return local;
	uint64_t now = loop_now(s->loop);
	if (!s->cached || now - s->cached_at >= ADDR_CACHE_MS) {
		s->cached_addr = dns_first_ipv4();
		s->cached_at = now;
		s->cached = true;
	}
	return s->cached_addr;
}

static void log_query(const uint8_t *q, size_t qlen, int rcode, const char *peer, const char *proto)
{
	struct dns_question qq = {0};
	size_t off = HDR_LEN;
	if (qlen < HDR_LEN || dns_read_question(q, qlen, &off, &qq) < 0)
		snprintf(qq.name, sizeof qq.name, "?");
	log_debug("dns.query", "%s %s name=%s type=%u rcode=%d", proto, peer, qq.odd ? "(odd)" : qq.name, qq.qtype,
		  rcode);
}

static void sockaddr_text(const struct sockaddr_in *a, char *out, size_t n)
{
	char ip[INET_ADDRSTRLEN] = "?";
	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
	snprintf(out, n, "%s:%d", ip, ntohs(a->sin_port));
}

/* One datagram in, one reply out, sent from the address it was sent to. */
static bool udp_serve_one(struct dns_server *s, int fd)
{
	uint8_t q[DNS_UDP_MAX], out[DNS_UDP_MAX];
	struct sockaddr_in from;
	union {
		char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {q, sizeof q};
	struct msghdr mh = {.msg_name = &from,
			    .msg_namelen = sizeof from,
			    .msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.buf,
			    .msg_controllen = sizeof ctl.buf};
	ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n < 0)
		return errno == EINTR;
	struct in_pktinfo pi = {0};
	bool have_pi = false;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			memcpy(&pi, CMSG_DATA(c), sizeof pi);
			have_pi = true;
		}
	/* A truncated datagram is longer than any query for our zone. */
	bool truncated = mh.msg_flags & MSG_TRUNC;
	int rcode = -1;
	size_t len = truncated ? 0
			       : dns_answer(q, (size_t)n, s->domain, answer_addr(s, have_pi ? pi.ipi_addr.s_addr : 0),
					    out, sizeof out, &rcode);
	char peer[32];
	sockaddr_text(&from, peer, sizeof peer);
	log_query(q, (size_t)n, rcode, peer, "udp");
	if (!len)
		return true;
	struct msghdr rh = {
	    .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &(struct iovec){out, len}, .msg_iovlen = 1};
	if (have_pi) {
		/* Reply from the address asked: a client drops answers from any other. */
		memset(&ctl, 0, sizeof ctl);
		rh.msg_control = ctl.buf;
		rh.msg_controllen = sizeof ctl.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&rh);
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof pi);
		struct in_pktinfo spi = {.ipi_spec_dst = pi.ipi_addr};
		memcpy(CMSG_DATA(c), &spi, sizeof spi);
	}
	if (sendmsg(fd, &rh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("dns.send", "reply to %s lost: %s", peer, strerror(errno));
	return true;
}

static void on_udp(void *arg, uint32_t events)
{
	(void)events;
	struct dns_listener *ln = arg;
	for (int i = 0; i < UDP_BATCH && udp_serve_one(ln->s, ln->io.fd); i++)
		;
}

/* --- TCP (RFC 7766: resolvers retry over TCP; queries are length-prefixed) --- */

static void tcp_close(struct tcp_conn *c)
{
	struct dns_server *s = c->s;
	loop_io_del(s->loop, &c->io);
	loop_timer_disarm(s->loop, &c->idle);
	close(c->io.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	free(c);
}

static void on_tcp_idle(void *arg)
{
	tcp_close(arg);
}

/* Answers every complete query in c->in. False when the connection must end. */
static bool tcp_answer_queued(struct tcp_conn *c)
{
	while (c->len >= 2) {
		size_t qlen = get16(c->in);
		if (qlen > TCP_QUERY_MAX)
			return false;
		if (c->len < 2 + qlen)
			return true;
		uint8_t out[2 + DNS_UDP_MAX];
		struct sockaddr_in local = {0};
		socklen_t sl = sizeof local;
		getsockname(c->io.fd, (struct sockaddr *)&local, &sl);
		int rcode = -1;
		size_t n = dns_answer(c->in + 2, qlen, c->s->domain, answer_addr(c->s, local.sin_addr.s_addr), out + 2,
				      sizeof out - 2, &rcode);
		log_query(c->in + 2, qlen, rcode, "tcp", "tcp");
		if (!n)
			return false;
		put16(out, (uint16_t)n);
		/* A reply this small fits an empty socket buffer; one that
		 * does not means the client is not reading: drop it. */
		if (send(c->io.fd, out, n + 2, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)(n + 2))
			return false;
		memmove(c->in, c->in + 2 + qlen, c->len - 2 - qlen);
		c->len -= 2 + qlen;
	}
	return true;
}

static void on_tcp_conn(void *arg, uint32_t events)
{
	(void)events;
	struct tcp_conn *c = arg;
	ssize_t n = read(c->io.fd, c->in + c->len, sizeof c->in - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		tcp_close(c);
		return;
	}
	c->len += (size_t)n;
	if (!tcp_answer_queued(c)) {
		tcp_close(c);
		return;
	}
	loop_timer_arm(c->s->loop, &c->idle, TCP_IDLE_MS, on_tcp_idle, c);
}

static void on_tcp_accept(void *arg, uint32_t events)
{
	(void)events;
	struct dns_listener *ln = arg;
	struct dns_server *s = ln->s;
	int fd = accept4(ln->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct tcp_conn *c = s->nconns < TCP_CONNS_MAX ? calloc(1, sizeof *c) : NULL;
	if (!c || loop_io_add(s->loop, &c->io, fd, EPOLLIN, on_tcp_conn, c) < 0) {
		free(c);
		close(fd);
		return;
	}
	c->s = s;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	loop_timer_arm(s->loop, &c->idle, TCP_IDLE_MS, on_tcp_idle, c);
}

/* --- set-up ------------------------------------------------------------------------ */

struct dns_server *dns_server_new(struct loop *l, const struct dns_server_config *cfg)
{
	struct in_addr fixed = {0};
	if (cfg->address && inet_pton(AF_INET, cfg->address, &fixed) != 1) {
		errno = EINVAL;
		return NULL;
	}
	struct dns_server *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->loop = l;
	s->fixed_addr = fixed.s_addr;
	s->domain = strdup(cfg->domain ? cfg->domain : "cubeos.local");
	size_t n = s->domain ? strlen(s->domain) : 0;
	if (n && s->domain[n - 1] == '.') /* "cubeos.local." is the same zone */
		s->domain[n - 1] = '\0';
	if (!s->domain || !s->domain[0]) {
		free(s->domain);
		free(s);
		errno = EINVAL;
		return NULL;
	}
	return s;
}

static int add_listener(struct dns_server *s, int fd, bool tcp)
{
	struct dns_listener *ln = calloc(1, sizeof *ln);
	if (!ln || fd_nonblock(fd) < 0 ||
	    loop_io_add(s->loop, &ln->io, fd, EPOLLIN, tcp ? on_tcp_accept : on_udp, ln) < 0) {
		int e = errno;
		free(ln);
		close(fd);
		errno = e;
		return -1;
	}
	ln->s = s;
	ln->tcp = tcp;
	ln->next = s->listeners;
	s->listeners = ln;
	return 0;
}

int dns_server_listen_udp_fd(struct dns_server *s, int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
	return add_listener(s, fd, false);
}

int dns_server_listen_tcp_fd(struct dns_server *s, int fd)
{
	return add_listener(s, fd, true);
}

static int bound_socket(int type, const struct sockaddr_in *a)
{
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)a, sizeof *a) < 0 || (type == SOCK_STREAM && listen(fd, 64) < 0)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int dns_server_listen(struct dns_server *s, const char *addr, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (addr && addr[0] && inet_pton(AF_INET, addr, &a.sin_addr) != 1) {
		errno = EINVAL;
		return -1;
	}
	int ufd = bound_socket(SOCK_DGRAM, &a);
	if (ufd < 0 || dns_server_listen_udp_fd(s, ufd) < 0)
		return -1;
	int tfd = bound_socket(SOCK_STREAM, &a);
	if (tfd < 0 || dns_server_listen_tcp_fd(s, tfd) < 0)
		return -1;
	return 0;
}

void dns_server_free(struct dns_server *s)
{
	if (!s)
		return;
	while (s->conns)
		tcp_close(s->conns);
	for (struct dns_listener *ln = s->listeners, *next; ln; ln = next) {
		next = ln->next;
		loop_io_del(s->loop, &ln->io);
		close(ln->io.fd);
		free(ln);
	}
	free(s->domain);
	free(s);
}
