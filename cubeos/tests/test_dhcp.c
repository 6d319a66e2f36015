/*
 * test_dhcp.c - the DHCP client without a network: message build/parse
 * (and the strictness of the parser), the IPv4/UDP framing, and the state
 * machine against a scripted server on a fake clock: DISCOVER, OFFER,
 * REQUEST, ACK, renewal at T1 by unicast, rebinding at T2 by broadcast,
 * expiry, NAK and retransmission timing.
 */
#include <arpa/inet.h>

#include "../../lib/tests/test.h"
#include "../dhcp.h"
#include "../netlink.h"

static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

static struct in_addr A(const char *s) {
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a;
}

/* A server reply: fixed header, then raw option bytes (end option added). */
static size_t
reply(uint8_t *p, uint32_t xid, const char *yiaddr, const uint8_t *opts, size_t olen)
{
	memset(p, 0, 576);
	p[0] = 2, p[1] = 1, p[2] = 6;
	p[4] = (uint8_t)(xid >> 24), p[5] = (uint8_t)(xid >> 16), p[6] = (uint8_t)(xid >> 8), p[7] = (uint8_t)xid;
	struct in_addr y = A(yiaddr);
	memcpy(p + 16, &y, 4);
	memcpy(p + 28, mac, 6);
	p[236] = 99, p[237] = 130, p[238] = 83, p[239] = 99;
	memcpy(p + 240, opts, olen);
	p[240 + olen] = 255;
	return 241 + olen;
}

#define OPTS_ACK(type, lease)                                                                                          \
	{                                                                                                              \
		53, 1, type, 54, 4, 10, 0, 0, 1, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 0, 1, 6, 8, 10, 0, 0, 53, 9, 9,  \
		    9, 9, 51, 4, (uint8_t)((lease) >> 24), (uint8_t)((lease) >> 16), (uint8_t)((lease) >> 8),          \
		    (uint8_t)(lease)                                                                                   \
	}

TEST(parse_full_ack)
{
	uint8_t p[576], o[] = OPTS_ACK(DHCPACK, 3600);
	size_t n = reply(p, 0x01020304, "10.0.0.7", o, sizeof o);
	struct dhcp_msg m;
	if (!CHECK_EQ_INT(dhcp_parse(p, n, &m), 0))
		return;
	CHECK_EQ_INT(m.type, DHCPACK);
	CHECK_EQ_INT(m.xid, 0x01020304);
	CHECK(m.yiaddr.s_addr == A("10.0.0.7").s_addr);
	CHECK(m.has_server_id && m.server_id.s_addr == A("10.0.0.1").s_addr);
	CHECK(m.has_mask && netmask_to_prefix(m.mask) == 24);
	CHECK(m.has_router && m.router.s_addr == A("10.0.0.1").s_addr);
	CHECK_EQ_INT(m.n_dns, 2);
	CHECK(m.dns[1].s_addr == A("9.9.9.9").s_addr);
	CHECK(m.has_lease && m.lease_s == 3600);
	CHECK(!m.has_t1 && !m.has_t2);
}

TEST(parse_rejects_malformed)
{
	uint8_t p[576], o[] = OPTS_ACK(DHCPACK, 3600);
	struct dhcp_msg m;
	size_t n = reply(p, 1, "10.0.0.7", o, sizeof o);
	for (size_t cut = 0; cut < n; cut++) /* every truncation */
		CHECK_EQ_INT(dhcp_parse(p, cut, &m), -1);
	uint8_t bad[576];
	memcpy(bad, p, n);
	bad[236] = 0; /* magic cookie */
	CHECK_EQ_INT(dhcp_parse(bad, n, &m), -1);
	memcpy(bad, p, n);
	bad[240 + 4] = 5; /* server id length 5 */
	CHECK_EQ_INT(dhcp_parse(bad, n, &m), -1);
	uint8_t noncontig[] = {53, 1, 5, 1, 4, 255, 0, 255, 0};
	CHECK_EQ_INT(dhcp_parse(p, reply(p, 1, "10.0.0.7", noncontig, sizeof noncontig), &m), -1);
	uint8_t twice[] = {53, 1, 5, 51, 4, 0, 0, 0, 1, 51, 4, 0, 0, 0, 2};
	CHECK_EQ_INT(dhcp_parse(p, reply(p, 1, "10.0.0.7", twice, sizeof twice), &m), -1);
	uint8_t notype[] = {51, 4, 0, 0, 0, 1};
	CHECK_EQ_INT(dhcp_parse(p, reply(p, 1, "10.0.0.7", notype, sizeof notype), &m), -1);
	uint8_t runs_past[] = {53, 1, 5, 12, 200};
	CHECK_EQ_INT(dhcp_parse(p, reply(p, 1, "10.0.0.7", runs_past, sizeof runs_past), &m), -1);
}

TEST(parse_overload_and_split_dns)
{
	uint8_t p[576], o[] = {53, 1, 2, 52, 1, 1, 6, 4, 1, 1, 1, 1};
	size_t n = reply(p, 9, "10.0.0.9", o, sizeof o);
	/* The file field carries the server id and more DNS servers. */
	uint8_t file[] = {54, 4, 10, 0, 0, 1, 6, 8, 2, 2, 2, 2, 3, 3, 3, 3, 255};
	memcpy(p + 108, file, sizeof file);
	struct dhcp_msg m;
	if (!CHECK_EQ_INT(dhcp_parse(p, n, &m), 0))
		return;
	CHECK(m.has_server_id);
	CHECK_EQ_INT(m.n_dns, 3);
	CHECK(m.dns[2].s_addr == A("3.3.3.3").s_addr);
}

TEST(build_then_parse)
{
	struct dhcp_request r = {.type = DHCPREQUEST,
				 .xid = 0xdeadbeef,
				 .secs = 3,
				 .broadcast = true,
				 .requested = A("10.0.0.7"),
				 .server_id = A("10.0.0.1"),
				 .hostname = "cubeos-abc123"};
	memcpy(r.mac, mac, 6);
	uint8_t p[DHCP_MSG_MAX];
	size_t n = dhcp_build(p, sizeof p, &r);
	CHECK(n >= 300);
	CHECK_EQ_INT(p[0], 1);
	CHECK_EQ_INT(p[10], 0x80); /* broadcast flag */
	struct dhcp_msg m;
	if (!CHECK_EQ_INT(dhcp_parse(p, n, &m), 0))
		return;
	CHECK_EQ_INT(m.type, DHCPREQUEST);
	CHECK_EQ_INT(m.xid, 0xdeadbeef);
	CHECK(m.server_id.s_addr == A("10.0.0.1").s_addr);
	CHECK(memmem(p, n,
		     "\x0c\x0d"
		     "cubeos-abc123",
		     15) != NULL);				    /* option 12 */
	CHECK(memmem(p, n, "\x32\x04\x0a\x00\x00\x07", 6) != NULL); /* option 50 */
	CHECK_EQ_INT(dhcp_build(p, 100, &r), 0);
}

TEST(frame_roundtrip)
{
	uint8_t msg[300], pkt[400];
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (uint8_t)i;
	size_t n = dhcp_frame_build(pkt, sizeof pkt, A("0.0.0.0"), A("255.255.255.255"), msg, sizeof msg);
	CHECK_EQ_INT(n, 328);
	/* What we build goes 68 -> 67; a server's answer is 67 -> 68: swap ports. */
	uint8_t t = pkt[21];
	pkt[21] = pkt[23], pkt[23] = t;
	const uint8_t *payload;
	size_t plen;
	if (!CHECK_EQ_INT(dhcp_frame_parse(pkt, n + 10, &payload, &plen), 0)) /* + link padding */
		return;
	CHECK_MEMEQ(payload, plen, msg, sizeof msg);
	pkt[6] = 0x20; /* more fragments */
	CHECK_EQ_INT(dhcp_frame_parse(pkt, n, &payload, &plen), -1);
	pkt[6] = 0;
	pkt[8] = 1; /* TTL changed: header checksum now wrong */
	CHECK_EQ_INT(dhcp_frame_parse(pkt, n, &payload, &plen), -1);
	pkt[8] = 64;
	CHECK_EQ_INT(dhcp_frame_parse(pkt, 30, &payload, &plen), -1);
	CHECK_EQ_INT(dhcp_frame_parse(pkt, n, &payload, &plen), 0);
}

/* --- the state machine, with a scripted server ------------------------------------------ */

struct fake {
	int sent;
	enum dhcp_send_how how;
	struct in_addr to;
	struct dhcp_msg last; /* our last message, parsed back */
	int bound, renewed, lost;
	struct dhcp_lease lease;
};

static int fake_send(void *arg, enum dhcp_send_how how, struct in_addr to, const uint8_t *msg, size_t len)
{
	struct fake *f = arg;
	f->sent++;
	f->how = how;
	f->to = to;
	dhcp_parse(msg, len, &f->last);
	return 0;
}

static void fake_bound(void *arg, const struct dhcp_lease *l, bool renewal)
{
	struct fake *f = arg;
	renewal ? f->renewed++ : f->bound++;
	f->lease = *l;
}

static void fake_lost(void *arg, const struct dhcp_lease *l)
{
	((struct fake *)arg)->lost++;
}

static const struct dhcp_ops fake_ops = {fake_send, fake_bound, fake_lost};

static void answer(struct dhcp_client *c, struct fake *f, uint8_t type, uint32_t lease, uint64_t now)
{
	uint8_t p[576], o[] = OPTS_ACK(type, lease);
	dhcp_client_input(c, p, reply(p, f->last.xid, "10.0.0.7", o, sizeof o), now);
}

static void bind_client(struct dhcp_client *c, struct fake *f, uint32_t lease)
{
	memset(f, 0, sizeof *f);
	dhcp_client_init(c, mac, "cubeos-test", &fake_ops, f, 42);
	dhcp_client_start(c, 1000);
	answer(c, f, DHCPOFFER, lease, 1100);
	answer(c, f, DHCPACK, lease, 1200);
}

TEST(discover_offer_request_ack)
{
	struct dhcp_client c;
	struct fake f = {0};
	dhcp_client_init(&c, mac, "cubeos-test", &fake_ops, &f, 42);
	dhcp_client_start(&c, 1000);
	CHECK_EQ_INT(c.state, DHCP_SELECTING);
	CHECK_EQ_INT(f.last.type, DHCPDISCOVER);
	CHECK_EQ_INT(f.how, DHCP_SEND_RAW_BROADCAST);
	CHECK(dhcp_client_needs_raw(&c));
	/* A reply for another xid or another MAC is ignored. */
	uint8_t p[576], o[] = OPTS_ACK(DHCPOFFER, 100);
	dhcp_client_input(&c, p, reply(p, f.last.xid + 1, "10.0.0.7", o, sizeof o), 1050);
	CHECK_EQ_INT(c.state, DHCP_SELECTING);
	answer(&c, &f, DHCPOFFER, 100, 1100);
	CHECK_EQ_INT(c.state, DHCP_REQUESTING);
	CHECK_EQ_INT(f.last.type, DHCPREQUEST);
	CHECK(f.last.server_id.s_addr == A("10.0.0.1").s_addr);
	answer(&c, &f, DHCPACK, 100, 1200);
	CHECK_EQ_INT(c.state, DHCP_BOUND);
	CHECK_EQ_INT(f.bound, 1);
	CHECK(f.lease.addr.s_addr == A("10.0.0.7").s_addr);
	CHECK_EQ_INT(f.lease.prefix, 24);
	CHECK(f.lease.router.s_addr == A("10.0.0.1").s_addr);
	CHECK_EQ_INT(f.lease.n_dns, 2);
	CHECK_EQ_INT(f.lease.t1_s, 50);
	CHECK_EQ_INT(f.lease.t2_s, 87);
	/* Lease times count from the REQUEST (sent at 1100). */
	CHECK_EQ_INT(dhcp_client_next(&c), 1100 + 50000);
	CHECK(!dhcp_client_needs_raw(&c));
}

TEST(renew_at_t1_unicast)
{
	struct dhcp_client c;
	struct fake f;
	bind_client(&c, &f, 100);
	uint64_t t1 = dhcp_client_next(&c);
	dhcp_client_timeout(&c, t1 - 1); /* early: nothing */
	CHECK_EQ_INT(c.state, DHCP_BOUND);
	dhcp_client_timeout(&c, t1);
	CHECK_EQ_INT(c.state, DHCP_RENEWING);
	CHECK_EQ_INT(f.how, DHCP_SEND_UDP_UNICAST);
	CHECK(f.to.s_addr == A("10.0.0.1").s_addr);
	CHECK_EQ_INT(f.last.type, DHCPREQUEST);
	answer(&c, &f, DHCPACK, 100, t1 + 10);
	CHECK_EQ_INT(c.state, DHCP_BOUND);
	CHECK_EQ_INT(f.renewed, 1);
	CHECK_EQ_INT(f.lost, 0);
	CHECK_EQ_INT(dhcp_client_next(&c), t1 + 50000);
}

TEST(rebind_at_t2_then_expire)
{
	struct dhcp_client c;
	struct fake f;
	bind_client(&c, &f, 1000); /* T1 500 s, T2 875 s, from 1100 ms */
	uint64_t now = dhcp_client_next(&c);
	dhcp_client_timeout(&c, now);
	CHECK_EQ_INT(c.state, DHCP_RENEWING);
	/* No answer: retries at half the time to T2 (>= 60 s), until T2. */
	int sends = f.sent;
	CHECK_EQ_INT(dhcp_client_next(&c), now + 187500);
	while (c.state == DHCP_RENEWING) {
		now = dhcp_client_next(&c);
		dhcp_client_timeout(&c, now);
	}
	CHECK_EQ_INT(c.state, DHCP_REBINDING);
	CHECK_EQ_INT(now, 1100 + 875000);
	CHECK(f.sent > sends + 1);
	CHECK_EQ_INT(f.how, DHCP_SEND_UDP_BROADCAST);
	while (c.state == DHCP_REBINDING) {
		now = dhcp_client_next(&c);
		dhcp_client_timeout(&c, now);
	}
	CHECK_EQ_INT(now, 1100 + 1000000);
	CHECK_EQ_INT(f.lost, 1);
	CHECK_EQ_INT(c.state, DHCP_SELECTING);
	CHECK_EQ_INT(f.last.type, DHCPDISCOVER);
	CHECK(dhcp_client_needs_raw(&c));
}

TEST(rebind_ack_keeps_address)
{
	struct dhcp_client c;
	struct fake f;
	bind_client(&c, &f, 1000);
	while (c.state != DHCP_REBINDING)
		dhcp_client_timeout(&c, dhcp_client_next(&c));
	answer(&c, &f, DHCPACK, 1000, dhcp_client_next(&c) - 1);
	CHECK_EQ_INT(c.state, DHCP_BOUND);
	CHECK_EQ_INT(f.renewed, 1);
	CHECK_EQ_INT(f.lost, 0);
}

TEST(nak_restarts)
{
	struct dhcp_client c;
	struct fake f;
	bind_client(&c, &f, 100);
	uint64_t t1 = dhcp_client_next(&c);
	dhcp_client_timeout(&c, t1);
	answer(&c, &f, DHCPNAK, 100, t1 + 5);
	CHECK_EQ_INT(f.lost, 1);
	CHECK_EQ_INT(c.state, DHCP_INIT);
	dhcp_client_timeout(&c, dhcp_client_next(&c));
	CHECK_EQ_INT(c.state, DHCP_SELECTING);
	CHECK_EQ_INT(f.last.type, DHCPDISCOVER);
}

TEST(retransmit_backoff)
{
	struct dhcp_client c;
	struct fake f = {0};
	dhcp_client_init(&c, mac, NULL, &fake_ops, &f, 7);
	dhcp_client_start(&c, 0);
	uint64_t now = 0, expect[] = {4000, 8000, 16000, 32000, 64000, 64000};
	for (int k = 0; k < 6; k++) {
		uint64_t next = dhcp_client_next(&c);
		CHECK(next - now >= expect[k] - 1000 && next - now <= expect[k] + 1000);
		now = next;
		dhcp_client_timeout(&c, now);
	}
	CHECK_EQ_INT(f.sent, 7);
	/* REQUESTING gives up after 4 tries and starts over. */
	answer(&c, &f, DHCPOFFER, 100, now);
	for (int k = 0; k < 4; k++)
		dhcp_client_timeout(&c, dhcp_client_next(&c));
	CHECK_EQ_INT(c.state, DHCP_SELECTING);
}

TEST(infinite_lease_never_renews)
{
	struct dhcp_client c;
	struct fake f;
	bind_client(&c, &f, DHCP_INFINITE);
	CHECK_EQ_INT(c.state, DHCP_BOUND);
	CHECK(dhcp_client_next(&c) == UINT64_MAX);
}

TEST(ack_without_lease_ignored)
{
	struct dhcp_client c;
	struct fake f = {0};
	dhcp_client_init(&c, mac, NULL, &fake_ops, &f, 1);
	dhcp_client_start(&c, 0);
	answer(&c, &f, DHCPOFFER, 100, 10);
	uint8_t p[576], o[] = {53, 1, 5, 54, 4, 10, 0, 0, 1};
	dhcp_client_input(&c, p, reply(p, f.last.xid, "10.0.0.7", o, sizeof o), 20);
	CHECK_EQ_INT(c.state, DHCP_REQUESTING);
	CHECK_EQ_INT(f.bound, 0);
}

TEST(netmask_prefix)
{
	CHECK_EQ_INT(netmask_to_prefix(A("255.255.255.0")), 24);
	CHECK_EQ_INT(netmask_to_prefix(A("0.0.0.0")), 0);
	CHECK_EQ_INT(netmask_to_prefix(A("255.255.255.255")), 32);
	CHECK_EQ_INT(netmask_to_prefix(A("255.0.255.0")), -1);
	CHECK(prefix_to_netmask(20).s_addr == A("255.255.240.0").s_addr);
}
