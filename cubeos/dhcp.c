/*
 * dhcp.c - the DHCPv4 client: message format and state machine (dhcp.h).
 *
 * Everything read from the network goes through dhcp_frame_parse and
 * dhcp_parse, which check every length against the bytes really there
 * before reading (fuzzed by cubeos/fuzz/fuzz_dhcp.c).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "dhcp.h"
#include "netlink.h"

#define BOOTREQUEST 1
#define BOOTREPLY   2
#define HTYPE_ETHER 1

/* Offsets in the fixed BOOTP header. */
#define OFF_OP	       0
#define OFF_HTYPE      1
#define OFF_HLEN       2
#define OFF_XID	       4
#define OFF_SECS       8
#define OFF_FLAGS      10
#define OFF_CIADDR     12
#define OFF_YIADDR     16
#define OFF_CHADDR     28
#define OFF_SNAME      44
#define OFF_FILE       108
#define OFF_MAGIC      236
#define SNAME_LEN      64
#define FILE_LEN       128
#define BROADCAST_FLAG 0x8000

/* Option codes (RFC 2132). */
#define OPT_PAD	      0
#define OPT_MASK      1
#define OPT_ROUTER    3
#define OPT_DNS	      6
#define OPT_HOSTNAME  12
#define OPT_DOMAIN    15
#define OPT_REQ_IP    50
#define OPT_LEASE     51
#define OPT_OVERLOAD  52
#define OPT_MSG_TYPE  53
#define OPT_SERVER_ID 54
#define OPT_PARAMS    55
#define OPT_T1	      58
#define OPT_T2	      59
#define OPT_CLIENT_ID 61
#define OPT_END	      255

static const uint8_t magic[4] = {99, 130, 83, 99};

/* Small BOOTP servers drop requests shorter than the BOOTP minimum. */
#define BOOTP_MIN_LEN 300

/* --- parsing ------------------------------------------------------------------ */

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static struct in_addr get_addr(const uint8_t *p)
{
	struct in_addr a;
	memcpy(&a, p, 4);
	return a;
}

/* One option into m. seen[] catches repeats of single-valued options. */
static int take_option(struct dhcp_msg *m, uint8_t code, const uint8_t *v, size_t len, bool *seen)
{
	if (code == OPT_DNS) {
		/* RFC 3396 lets long options be split: DNS lists are appended. */
		if (len == 0 || len % 4)
			return -1;
		for (size_t i = 0; i < len && m->n_dns < DHCP_MAX_DNS; i += 4)
			m->dns[m->n_dns++] = get_addr(v + i);
		return 0;
	}
	if (code == OPT_ROUTER && (len == 0 || len % 4))
		return -1;
	bool known = true;
	switch (code) {
	case OPT_MSG_TYPE:
		if (len != 1)
			return -1;
		m->type = v[0];
		break;
	case OPT_MASK:
		if (len != 4)
			return -1;
		m->mask = get_addr(v);
		m->has_mask = true;
		if (netmask_to_prefix(m->mask) < 0)
			return -1;
		break;
	case OPT_ROUTER:
		m->router = get_addr(v);
		m->has_router = true;
		break;
	case OPT_SERVER_ID:
		if (len != 4)
			return -1;
		m->server_id = get_addr(v);
		m->has_server_id = true;
		break;
	case OPT_LEASE:
	case OPT_T1:
	case OPT_T2:
		if (len != 4)
			return -1;
		if (code == OPT_LEASE)
			m->lease_s = get32(v), m->has_lease = true;
		else if (code == OPT_T1)
			m->t1_s = get32(v), m->has_t1 = true;
		else
			m->t2_s = get32(v), m->has_t2 = true;
		break;
	default: known = false;
	}
	if (known) {
		if (seen[code])
			return -1;
		seen[code] = true;
	}
	return 0;
}

/* Walks one option area. *overload gets option 52 when allowed (main area
 * only). Returns 0 when the end option was found, 1 when the area ran out
 * without one, -1 if malformed. */
static int parse_area(struct dhcp_msg *m, const uint8_t *p, size_t n, bool *seen, int *overload)
{
	size_t i = 0;
	while (i < n) {
		uint8_t code = p[i++];
		if (code == OPT_PAD)
			continue;
		if (code == OPT_END)
			return 0;
		if (i >= n)
			return -1;
		size_t len = p[i++];
		if (len > n - i)
			return -1;
		if (code == OPT_OVERLOAD && overload) {
			if (len != 1 || p[i] < 1 || p[i] > 3 || *overload)
				return -1;
			*overload = p[i];
		} else if (take_option(m, code, p + i, len, seen) < 0) {
			return -1;
		}
		i += len;
	}
	return 1;
}

int dhcp_parse(const uint8_t *p, size_t n, struct dhcp_msg *m)
{
	bool seen[256] = {false};
	int overload = 0;
	memset(m, 0, sizeof *m);
	if (n < DHCP_FIXED_LEN || n > DHCP_MSG_MAX || memcmp(p + OFF_MAGIC, magic, 4) != 0)
		return -1;
	if (p[OFF_HTYPE] != HTYPE_ETHER || p[OFF_HLEN] != 6)
		return -1;
	m->op = p[OFF_OP];
	m->xid = get32(p + OFF_XID);
	m->yiaddr = get_addr(p + OFF_YIADDR);
	memcpy(m->chaddr, p + OFF_CHADDR, 6);
	/* The main area must end with the end option: a message cut short is refused. */
	if (parse_area(m, p + DHCP_FIXED_LEN, n - DHCP_FIXED_LEN, seen, &overload) != 0)
		return -1;
	if ((overload & 1) && parse_area(m, p + OFF_FILE, FILE_LEN, seen, NULL) < 0)
		return -1;
	if ((overload & 2) && parse_area(m, p + OFF_SNAME, SNAME_LEN, seen, NULL) < 0)
		return -1;
	return m->type ? 0 : -1;
}

/* --- building ------------------------------------------------------------------ */

struct writer {
	uint8_t *p;
	size_t cap, len;
	bool overflow;
};

static void put(struct writer *w, const void *data, size_t n)
{
	if (w->overflow || n > w->cap - w->len) {
		w->overflow = true;
		return;
	}
	memcpy(w->p + w->len, data, n);
	w->len += n;
}

static void put_opt(struct writer *w, uint8_t code, const void *data, size_t n)
{
	uint8_t hdr[2] = {code, (uint8_t)n};
	put(w, hdr, 2);
	put(w, data, n);
}

static void put32_at(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

size_t dhcp_build(uint8_t *out, size_t cap, const struct dhcp_request *r)
{
	struct writer w = {out, cap, 0, false};
	uint8_t hdr[DHCP_FIXED_LEN] = {0};
	hdr[OFF_OP] = BOOTREQUEST;
	hdr[OFF_HTYPE] = HTYPE_ETHER;
	hdr[OFF_HLEN] = 6;
	put32_at(hdr + OFF_XID, r->xid);
	hdr[OFF_SECS] = (uint8_t)(r->secs >> 8), hdr[OFF_SECS + 1] = (uint8_t)r->secs;
	if (r->broadcast)
		hdr[OFF_FLAGS] = BROADCAST_FLAG >> 8;
	memcpy(hdr + OFF_CIADDR, &r->ciaddr, 4);
	memcpy(hdr + OFF_CHADDR, r->mac, 6);
	memcpy(hdr + OFF_MAGIC, magic, 4);
	put(&w, hdr, sizeof hdr);

	put_opt(&w, OPT_MSG_TYPE, &r->type, 1);
	uint8_t client_id[7] = {HTYPE_ETHER};
	memcpy(client_id + 1, r->mac, 6);
	put_opt(&w, OPT_CLIENT_ID, client_id, sizeof client_id);
	if (r->requested.s_addr)
		put_opt(&w, OPT_REQ_IP, &r->requested, 4);
	if (r->server_id.s_addr)
		put_opt(&w, OPT_SERVER_ID, &r->server_id, 4);
	size_t hn = r->hostname ? strlen(r->hostname) : 0;
	if (hn)
		put_opt(&w, OPT_HOSTNAME, r->hostname, hn > 63 ? 63 : hn);
	if (r->type != DHCPRELEASE) {
		static const uint8_t params[] = {OPT_MASK,  OPT_ROUTER,	   OPT_DNS, OPT_DOMAIN,
						 OPT_LEASE, OPT_SERVER_ID, OPT_T1,  OPT_T2};
		put_opt(&w, OPT_PARAMS, params, sizeof params);
	}
	uint8_t end = OPT_END, pad = OPT_PAD;
	put(&w, &end, 1);
	while (!w.overflow && w.len < BOOTP_MIN_LEN)
		put(&w, &pad, 1);
	return w.overflow ? 0 : w.len;
}

/* --- IPv4/UDP framing ------------------------------------------------------------ */

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t sum)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

#define IP_HLEN	 20
#define UDP_HLEN 8

size_t dhcp_frame_build(uint8_t *out, size_t cap, struct in_addr src, struct in_addr dst, const uint8_t *msg,
			size_t len)
{
	size_t total = IP_HLEN + UDP_HLEN + len;
	if (total > cap || total > 0xffff)
		return 0;
	uint8_t *ip = out, *udp = out + IP_HLEN;
	memset(out, 0, IP_HLEN + UDP_HLEN);
	ip[0] = 0x45;
	ip[2] = (uint8_t)(total >> 8), ip[3] = (uint8_t)total;
	ip[8] = 64; /* TTL */
	ip[9] = IPPROTO_UDP;
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	uint16_t ipsum = fold(sum16(ip, IP_HLEN, 0));
	ip[10] = (uint8_t)(ipsum >> 8), ip[11] = (uint8_t)ipsum;

	size_t ulen = UDP_HLEN + len;
	udp[0] = 0, udp[1] = DHCP_CLIENT_PORT;
	udp[2] = 0, udp[3] = DHCP_SERVER_PORT;
	udp[4] = (uint8_t)(ulen >> 8), udp[5] = (uint8_t)ulen;
	memcpy(udp + UDP_HLEN, msg, len);
	/* Pseudo-header: addresses, protocol, UDP length. */
	uint32_t sum = sum16(ip + 12, 8, IPPROTO_UDP + (uint32_t)ulen);
	uint16_t usum = fold(sum16(udp, ulen, sum));
	if (usum == 0)
		usum = 0xffff; /* 0 means "no checksum" in UDP */
	udp[6] = (uint8_t)(usum >> 8), udp[7] = (uint8_t)usum;
	return total;
}

int dhcp_frame_parse(const uint8_t *pkt, size_t n, const uint8_t **msg, size_t *len)
{
	if (n < IP_HLEN || (pkt[0] >> 4) != 4)
		return -1;
	size_t ihl = (size_t)(pkt[0] & 0xf) * 4;
	size_t total = (size_t)pkt[2] << 8 | pkt[3];
	/* Frames may carry link padding past the IP total length; never less. */
	if (ihl < IP_HLEN || total < ihl + UDP_HLEN || total > n)
		return -1;
	if (fold(sum16(pkt, ihl, 0)) != 0 || pkt[9] != IPPROTO_UDP)
		return -1;
	if ((((unsigned)pkt[6] << 8 | pkt[7]) & 0x3fff) != 0) /* more-fragments or an offset */
		return -1;
	const uint8_t *udp = pkt + ihl;
	unsigned sport = (unsigned)udp[0] << 8 | udp[1], dport = (unsigned)udp[2] << 8 | udp[3];
	size_t ulen = (size_t)udp[4] << 8 | udp[5];
	if (sport != DHCP_SERVER_PORT || dport != DHCP_CLIENT_PORT || ulen < UDP_HLEN || ulen > total - ihl)
		return -1;
	/* The UDP checksum is not verified: with checksum offload (veth,
	 * virtio) a packet socket sees it unfinished, and every DHCP field is
	 * checked on its own anyway. */
	*msg = udp + UDP_HLEN;
	*len = ulen - UDP_HLEN;
	return 0;
}

/* --- the state machine --------------------------------------------------------------- */

#define RETRY_FIRST_MS	  4000
#define RETRY_MAX_MS	  64000
#define REQUEST_TRIES	  4
#define RENEW_MIN_WAIT_MS 60000
#define NAK_RESTART_MS	  1000
#define NEVER		  UINT64_MAX

static uint32_t next_random(struct dhcp_client *c)
{
	/* xorshift32: xids and jitter only need to differ, not be secret. */
	uint32_t x = c->rng ? c->rng : 0x9e3779b9u;
	x ^= x << 13, x ^= x >> 17, x ^= x << 5;
	return c->rng = x;
}

const char *dhcp_state_name(enum dhcp_state s)
{
	static const char *const names[] = {"init", "selecting", "requesting", "bound", "renewing", "rebinding"};
	return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

void dhcp_client_init(struct dhcp_client *c, const uint8_t mac[6], const char *hostname, const struct dhcp_ops *ops,
		      void *arg, uint32_t seed)
{
	memset(c, 0, sizeof *c);
	memcpy(c->mac, mac, 6);
	if (hostname)
		snprintf(c->hostname, sizeof c->hostname, "%s", hostname);
	c->ops = ops;
	c->arg = arg;
	c->rng = seed;
	c->state = DHCP_INIT;
	c->next_ms = NEVER;
}

uint64_t dhcp_client_next(const struct dhcp_client *c)
{
	return c->next_ms;
}

bool dhcp_client_needs_raw(const struct dhcp_client *c)
{
	return c->state == DHCP_INIT || c->state == DHCP_SELECTING || c->state == DHCP_REQUESTING;
}

/* 4 s doubling to 64 s, +-1 s (RFC 2131 4.1), so many clients spread out. */
static uint64_t retry_delay(struct dhcp_client *c)
{
	unsigned shift = c->tries < 4 ? c->tries : 4;
	uint64_t base = (uint64_t)RETRY_FIRST_MS << shift;
	if (base > RETRY_MAX_MS)
		base = RETRY_MAX_MS;
	return base - 1000 + next_random(c) % 2001;
}

static void send_msg(struct dhcp_client *c, uint8_t type, uint64_t now)
{
	struct dhcp_request r = {.type = type, .xid = c->xid, .hostname = c->hostname};
	uint64_t secs = (now - c->started_ms) / 1000;
	enum dhcp_send_how how = DHCP_SEND_RAW_BROADCAST;
	struct in_addr to = {INADDR_BROADCAST};
	memcpy(r.mac, c->mac, 6);
	r.secs = secs > 0xffff ? 0xffff : (uint16_t)secs;
	if (c->state == DHCP_SELECTING || c->state == DHCP_REQUESTING) {
		r.broadcast = true; /* we cannot receive unicast before the address is configured */
		if (c->state == DHCP_REQUESTING) {
			r.requested = c->offer;
			r.server_id = c->offer_server;
		}
	} else {
		r.ciaddr = c->lease.addr;
		how = c->state == DHCP_RENEWING ? DHCP_SEND_UDP_UNICAST : DHCP_SEND_UDP_BROADCAST;
		if (how == DHCP_SEND_UDP_UNICAST)
			to = c->lease.server;
	}
	uint8_t buf[DHCP_MSG_MAX];
	size_t len = dhcp_build(buf, sizeof buf, &r);
	if (type == DHCPREQUEST)
		c->sent_ms = now;
	if (len)
		c->ops->send(c->arg, how, to, buf, len);
}

static void new_xid(struct dhcp_client *c)
{
	c->xid = next_random(c);
}

static void discover(struct dhcp_client *c, uint64_t now)
{
	c->state = DHCP_SELECTING;
	c->tries = 0;
	c->started_ms = now;
	new_xid(c);
	send_msg(c, DHCPDISCOVER, now);
	c->next_ms = now + retry_delay(c);
}

static void drop_lease(struct dhcp_client *c)
{
	if (!c->have_lease)
		return;
	c->have_lease = false;
	c->ops->lost(c->arg, &c->lease);
}

/* Back to INIT: the next DISCOVER goes out after delay_ms. */
static void restart(struct dhcp_client *c, uint64_t now, uint64_t delay_ms)
{
	drop_lease(c);
	c->state = DHCP_INIT;
	c->next_ms = now + delay_ms;
}

void dhcp_client_start(struct dhcp_client *c, uint64_t now)
{
	discover(c, now);
}

void dhcp_client_stop(struct dhcp_client *c)
{
	drop_lease(c);
	c->state = DHCP_INIT;
	c->next_ms = NEVER;
}

static uint64_t at(uint64_t start, uint32_t seconds)
{
	return seconds == DHCP_INFINITE ? NEVER : start + (uint64_t)seconds * 1000;
}

/* Half the time left until the deadline, but not below 60 s (RFC 2131 4.4.5)
 * unless the deadline is nearer than that. */
static uint64_t renew_retry(uint64_t now, uint64_t deadline)
{
	if (deadline == NEVER)
		return NEVER;
	uint64_t left = deadline > now ? deadline - now : 0;
	uint64_t wait = left / 2;
	if (wait < RENEW_MIN_WAIT_MS)
		wait = left < RENEW_MIN_WAIT_MS ? left : RENEW_MIN_WAIT_MS;
	return now + wait;
}

static unsigned classful_prefix(struct in_addr a)
{
	uint8_t first = (uint8_t)(ntohl(a.s_addr) >> 24);
	return first < 128 ? 8 : first < 192 ? 16 : 24;
}

/* A lease from an ACK, or false if the ACK is unusable. */
static bool lease_from_ack(const struct dhcp_msg *m, struct dhcp_lease *l, struct in_addr server_fallback)
{
	uint32_t host = ntohl(m->yiaddr.s_addr);
	if (!m->has_lease || m->lease_s == 0 || host == 0 || host >= 0xe0000000u)
		return false;
	memset(l, 0, sizeof *l);
	l->addr = m->yiaddr;
	l->prefix = m->has_mask ? (unsigned)netmask_to_prefix(m->mask) : classful_prefix(m->yiaddr);
	l->router = m->has_router ? m->router : (struct in_addr){0};
	l->server = m->has_server_id ? m->server_id : server_fallback;
	l->n_dns = m->n_dns;
	memcpy(l->dns, m->dns, sizeof l->dns);
	l->lease_s = m->lease_s;
	if (m->lease_s == DHCP_INFINITE) {
		l->t1_s = l->t2_s = DHCP_INFINITE;
		return true;
	}
	l->t1_s = m->has_t1 ? m->t1_s : m->lease_s / 2;
	l->t2_s = m->has_t2 ? m->t2_s : (uint32_t)((uint64_t)m->lease_s * 7 / 8);
	/* Inconsistent timers from the server: fall back to the RFC defaults. */
	if (l->t1_s > l->t2_s || l->t2_s > l->lease_s) {
		l->t1_s = m->lease_s / 2;
		l->t2_s = (uint32_t)((uint64_t)m->lease_s * 7 / 8);
	}
	return true;
}

static void bind_lease(struct dhcp_client *c, const struct dhcp_lease *l, uint64_t now)
{
	bool renewal = c->have_lease && c->lease.addr.s_addr == l->addr.s_addr && c->lease.prefix == l->prefix &&
		       c->lease.router.s_addr == l->router.s_addr;
	if (c->have_lease && !renewal)
		drop_lease(c);
	c->lease = *l;
	c->lease.start_ms = c->sent_ms;
	c->have_lease = true;
	c->state = DHCP_BOUND;
	c->tries = 0;
	c->t1_ms = at(c->sent_ms, l->t1_s);
	c->t2_ms = at(c->sent_ms, l->t2_s);
	c->expire_ms = at(c->sent_ms, l->lease_s);
	c->next_ms = c->t1_ms;
	c->ops->bound(c->arg, &c->lease, renewal);
}

static void on_offer(struct dhcp_client *c, const struct dhcp_msg *m, uint64_t now)
{
	uint32_t host = ntohl(m->yiaddr.s_addr);
	if (c->state != DHCP_SELECTING || !m->has_server_id || host == 0 || host >= 0xe0000000u)
		return;
	c->offer = m->yiaddr;
	c->offer_server = m->server_id;
	c->state = DHCP_REQUESTING;
	c->tries = 0;
	send_msg(c, DHCPREQUEST, now);
	c->next_ms = now + retry_delay(c);
}

static void on_ack(struct dhcp_client *c, const struct dhcp_msg *m, uint64_t now)
{
	struct dhcp_lease l;
	if (c->state == DHCP_REQUESTING) {
		if ((m->has_server_id && m->server_id.s_addr != c->offer_server.s_addr) ||
		    !lease_from_ack(m, &l, c->offer_server))
			return;
	} else if (c->state == DHCP_RENEWING || c->state == DHCP_REBINDING) {
		if (!lease_from_ack(m, &l, c->lease.server))
			return;
	} else {
		return;
	}
	bind_lease(c, &l, now);
}

static void on_nak(struct dhcp_client *c, const struct dhcp_msg *m, uint64_t now)
{
	if (c->state == DHCP_REQUESTING && m->has_server_id && m->server_id.s_addr != c->offer_server.s_addr)
		return; /* another server refusing what it never offered */
	if (c->state == DHCP_REQUESTING || c->state == DHCP_RENEWING || c->state == DHCP_REBINDING)
		restart(c, now, NAK_RESTART_MS);
}

void dhcp_client_input(struct dhcp_client *c, const uint8_t *msg, size_t len, uint64_t now)
{
	struct dhcp_msg m;
	if (dhcp_parse(msg, len, &m) < 0 || m.op != BOOTREPLY || m.xid != c->xid || memcmp(m.chaddr, c->mac, 6) != 0)
		return;
	if (m.type == DHCPOFFER)
		on_offer(c, &m, now);
	else if (m.type == DHCPACK)
		on_ack(c, &m, now);
	else if (m.type == DHCPNAK)
		on_nak(c, &m, now);
}

void dhcp_client_timeout(struct dhcp_client *c, uint64_t now)
{
	if (now < c->next_ms)
		return;
	switch (c->state) {
	case DHCP_INIT: discover(c, now); break;
	case DHCP_SELECTING:
		c->tries++;
		send_msg(c, DHCPDISCOVER, now);
		c->next_ms = now + retry_delay(c);
		break;
	case DHCP_REQUESTING:
		if (++c->tries >= REQUEST_TRIES) {
			discover(c, now);
			break;
		}
		send_msg(c, DHCPREQUEST, now);
		c->next_ms = now + retry_delay(c);
		break;
	case DHCP_BOUND:
		c->state = DHCP_RENEWING;
		new_xid(c);
		c->started_ms = now;
		/* fall through */
	case DHCP_RENEWING:
		if (now >= c->t2_ms) {
			c->state = DHCP_REBINDING;
			goto rebinding;
		}
		send_msg(c, DHCPREQUEST, now);
		c->next_ms = renew_retry(now, c->t2_ms);
		break;
	case DHCP_REBINDING:
	rebinding:
		if (now >= c->expire_ms) {
			restart(c, now, 0);
			discover(c, now);
			break;
		}
		send_msg(c, DHCPREQUEST, now);
		c->next_ms = renew_retry(now, c->expire_ms);
		break;
	}
}
