/*
 * test_switch.c - every verdict and NAT path of the sandbox switch, run in
 * the kernel with BPF_PROG_TEST_RUN on packets built here: the program's
 * answer, the packet it leaves (addresses, valid checksums), the audit
 * events and the counters.
 *
 * The sandbox under test is the loopback device's ifindex (test runs need a
 * real device). Needs root with BPF; elsewhere every test says SKIP.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../lib/tests/test.h"
#include "../switch_loader.h"

#define GUEST	"192.168.127.2"
#define GATEWAY "192.168.127.1"
#define HOST	"100.96.0.7" /* this sandbox's host-side address */
#define ID	7

static struct net_sw *sw;
static __u32 lo;

/* --- packets ------------------------------------------------------------------------ */

static __u16 csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

static uint32_t csum_add(uint32_t sum, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)(p[n - 1] << 8);
	return sum;
}

static __be32 ip4(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a.s_addr;
}

static void put16(unsigned char *p, __u16 v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static __u16 get16(const unsigned char *p)
{
	return (__u16)(p[0] << 8 | p[1]);
}

/* The L4 checksum over the pseudo header (TCP, UDP) or the message (ICMP). */
static __u16 l4_sum(const unsigned char *ip, __u8 proto, const unsigned char *l4, size_t n)
{
	uint32_t sum = 0;
	if (proto != IPPROTO_ICMP) {
		unsigned char pseudo[12] = {0};
		memcpy(pseudo, ip + 12, 8);
		pseudo[9] = proto;
		put16(pseudo + 10, (__u16)n);
		sum = csum_add(sum, pseudo, sizeof pseudo);
	}
	return csum_fold(csum_add(sum, l4, n));
}

/* An Ethernet frame with an IPv4 packet: TCP (SYN), UDP ("ping") or an ICMP
 * echo; sport is the echo id for ICMP. Checksums valid. Its length. */
static size_t frame4(unsigned char *buf, __u8 proto, const char *src, const char *dst, __u16 sport, __u16 dport)
{
	memset(buf, 0, 128);
	static const unsigned char guest_mac[6] = {0x02, 0xcb, 0, 0, 0, 2}, gw_mac[6] = {0x02, 0xcb, 0, 0, 0, 1};
	memcpy(buf, gw_mac, 6);
	memcpy(buf + 6, guest_mac, 6);
	put16(buf + 12, 0x0800);
	unsigned char *ip = buf + 14, *l4 = ip + 20;
	size_t l4len = proto == IPPROTO_TCP ? 20 : 12; /* UDP and ICMP: 8 header bytes + "ping" */
	ip[0] = 0x45;
	put16(ip + 2, (__u16)(20 + l4len));
	ip[8] = 64;
	ip[9] = proto;
	__be32 s = ip4(src), d = ip4(dst);
	memcpy(ip + 12, &s, 4);
	memcpy(ip + 16, &d, 4);
	put16(ip + 10, (__u16)~csum_fold(csum_add(0, ip, 20)));
	if (proto == IPPROTO_TCP) {
		put16(l4, sport);
		put16(l4 + 2, dport);
		l4[12] = 5 << 4;
		l4[13] = 0x02; /* SYN */
		put16(l4 + 14, 65535);
		put16(l4 + 16, (__u16)~l4_sum(ip, proto, l4, l4len));
	} else if (proto == IPPROTO_UDP) {
		put16(l4, sport);
		put16(l4 + 2, dport);
		put16(l4 + 4, (__u16)l4len);
		memcpy(l4 + 8, "ping", 4);
		put16(l4 + 6, (__u16)~l4_sum(ip, proto, l4, l4len));
	} else {
		l4[0] = 8; /* echo request */
		put16(l4 + 4, sport);
		put16(l4 + 6, 1);
		memcpy(l4 + 8, "ping", 4);
		put16(l4 + 2, (__u16)~l4_sum(ip, proto, l4, l4len));
	}
	return 14 + 20 + l4len;
}

/* Both checksums of an IPv4 frame hold. */
static bool checksums_ok(const unsigned char *f, size_t n)
{
	const unsigned char *ip = f + 14, *l4 = ip + 20;
	if (csum_fold(csum_add(0, ip, 20)) != 0xffff)
		return false;
	if (ip[9] == IPPROTO_UDP && get16(l4 + 6) == 0)
		return true; /* no checksum */
	return l4_sum(ip, ip[9], l4, n - 34) == 0xffff;
}

static __be32 src_of(const unsigned char *f)
{
	__be32 a;
	memcpy(&a, f + 26, 4);
	return a;
}

static __be32 dst_of(const unsigned char *f)
{
	__be32 a;
	memcpy(&a, f + 30, 4);
	return a;
}

/* Runs one frame through a program; its answer, the frame it left in out. */
static int run(bool from_guest, const unsigned char *in, size_t n, unsigned char *out)
{
	struct __sk_buff ctx = {.ifindex = lo};
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	a.test.prog_fd = (__u32)net_switch_prog_fd(sw, from_guest);
	a.test.data_in = (__u64)(unsigned long)in;
	a.test.data_size_in = (__u32)n;
	a.test.data_out = (__u64)(unsigned long)out;
	a.test.data_size_out = 256;
	a.test.ctx_in = (__u64)(unsigned long)&ctx;
	a.test.ctx_size_in = sizeof ctx;
	a.test.repeat = 1;
	if (syscall(__NR_bpf, BPF_PROG_TEST_RUN, &a, sizeof a) < 0) {
		fprintf(stderr, "  BPF_PROG_TEST_RUN: %s\n", strerror(errno));
		return -1;
	}
	return (int)a.test.retval;
}

/* --- the sandbox and its events ----------------------------------------------------- */

static __u32 generation;

static void set_sandbox(bool allow_internet)
{
	struct switch_sandbox s = {.id = ID,
				   .guest_addr = ip4(GUEST),
				   .host_addr = ip4(HOST),
				   .gateway_addr = ip4(GATEWAY),
				   .generation = ++generation,
				   .allow_internet = allow_internet};
	CHECK(net_switch_set_sandbox(sw, lo, &s) == 0);
}

struct events {
	int n;
	struct switch_event last;
};

static void on_event(void *arg, const struct switch_event *e)
{
	struct events *ev = arg;
	ev->n++;
	ev->last = *e;
}

static struct events drain(void)
{
	struct events ev = {0};
	net_switch_audit_poll(sw, on_event, &ev);
	return ev;
}

/* One frame from the guest: the program's answer, and the one audit event
 * it made (its reason in *reason, 0 if none). */
static int send_from_guest(__u8 proto, const char *src, const char *dst, __u16 sport, __u16 dport, __u8 *reason,
			   unsigned char *out)
{
	unsigned char in[128], scratch[256];
	size_t n = frame4(in, proto, src, dst, sport, dport);
	drain();
	int rc = run(true, in, n, out ? out : scratch);
	struct events ev = drain();
	*reason = ev.n ? ev.last.reason : 0;
	return rc;
}

static bool ready(void)
{
	if (!sw) {
		fprintf(stderr, "  SKIP: the switch could not be loaded here (needs root with BPF)\n");
		return false;
	}
	set_sandbox(true);
	return true;
}

/* --- tests -------------------------------------------------------------------------- */

TEST(cidrs_parse_and_lose_their_host_bits)
{
	__be32 a;
	__u32 n;
	CHECK(net_cidr4_parse("10.1.2.3/8", &a, &n) == 0 && a == ip4("10.0.0.0") && n == 8);
	CHECK(net_cidr4_parse("1.2.3.4", &a, &n) == 0 && a == ip4("1.2.3.4") && n == 32);
	CHECK(net_cidr4_parse("0.0.0.0/0", &a, &n) == 0 && a == 0 && n == 0);
	CHECK(net_cidr4_parse("1.2.3.4/33", &a, &n) < 0);
	CHECK(net_cidr4_parse("1.2.3/8", &a, &n) < 0);
	CHECK(net_cidr4_parse("/8", &a, &n) < 0);
	CHECK(net_cidr4_parse("1.2.3.4/", &a, &n) < 0);
	CHECK(net_cidr4_parse("example.test", &a, &n) < 0);
}

TEST(an_unknown_tap_carries_nothing)
{
	if (!ready())
		return;
	CHECK(net_switch_remove_sandbox(sw, lo, ID) == 0);
	unsigned char in[128], out[256];
	size_t n = frame4(in, IPPROTO_TCP, GUEST, "1.1.1.1", 40000, 443);
	CHECK_EQ_INT(run(true, in, n, out), TC_ACT_SHOT);
	CHECK_EQ_INT(run(false, in, n, out), TC_ACT_SHOT);
}

TEST(internet_flow_is_allowed_snatted_audited_once_and_counted)
{
	if (!ready())
		return;
	struct switch_counters c0, c1;
	net_switch_counters(sw, ID, &c0);
	unsigned char out[256];
	__u8 reason;
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "93.184.216.34", 40001, 443, &reason, out), TC_ACT_OK);
	CHECK_EQ_INT(reason, SWITCH_R_DEFAULT);
	CHECK(src_of(out) == ip4(HOST) && dst_of(out) == ip4("93.184.216.34"));
	CHECK(checksums_ok(out, 54));
	/* The same flow again: no new event. */
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "93.184.216.34", 40001, 443, &reason, out), TC_ACT_OK);
	CHECK_EQ_INT(reason, 0);
	/* UDP and ICMP are translated too, checksums kept. */
	CHECK_EQ_INT(send_from_guest(IPPROTO_UDP, GUEST, "93.184.216.34", 40002, 443, &reason, out), TC_ACT_OK);
	CHECK(src_of(out) == ip4(HOST) && checksums_ok(out, 46));
	CHECK_EQ_INT(send_from_guest(IPPROTO_ICMP, GUEST, "93.184.216.34", 77, 0, &reason, out), TC_ACT_OK);
	CHECK(src_of(out) == ip4(HOST) && checksums_ok(out, 46));
	net_switch_counters(sw, ID, &c1);
	CHECK_EQ_INT(c1.tx_packets - c0.tx_packets, 4);
	CHECK(c1.tx_bytes - c0.tx_bytes == 54 + 54 + 46 + 46);
}

TEST(blocked_ranges_are_dropped_before_any_allow_rule)
{
	if (!ready())
		return;
	CHECK(net_switch_rule(sw, ID, true, "10.0.0.0/8", true) == 0); /* an allowOut cannot reopen them */
	CHECK(net_switch_rule(sw, ID, true, "100.64.0.0/10", true) == 0);
	set_sandbox(true);
	static const char *const blocked[] = {"10.1.2.3",    "172.16.0.1",	"192.168.1.1",
					      "127.0.0.1",   "169.254.169.254", "100.96.0.9", /* another sandbox */
					      "224.0.0.251", "255.255.255.255", "0.1.2.3"};
	for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
		__u8 reason;
		if (!CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, blocked[i], 40010, 80, &reason, NULL),
				  TC_ACT_SHOT))
			fprintf(stderr, "  %s was let through\n", blocked[i]);
		CHECK_EQ_INT(reason, SWITCH_R_BLOCKED);
	}
	net_switch_rule(sw, ID, true, "10.0.0.0/8", false);
	net_switch_rule(sw, ID, true, "100.64.0.0/10", false);
}

TEST(allow_out_deny_out_and_the_default)
{
	if (!ready())
		return;
	__u8 reason;
	/* allow_internet_access false: only allowOut gets out. */
	CHECK(net_switch_rule(sw, ID, true, "1.1.1.0/24", true) == 0);
	set_sandbox(false);
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "1.1.1.1", 40020, 443, &reason, NULL), TC_ACT_OK);
	CHECK_EQ_INT(reason, SWITCH_R_RULE);
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "8.8.8.8", 40020, 443, &reason, NULL), TC_ACT_SHOT);
	CHECK_EQ_INT(reason, SWITCH_R_DEFAULT);
	/* Internet on, denyOut a range; an allowOut inside it wins. */
	CHECK(net_switch_rule(sw, ID, false, "8.8.0.0/16", true) == 0);
	CHECK(net_switch_rule(sw, ID, true, "8.8.4.4/32", true) == 0);
	set_sandbox(true);
	CHECK_EQ_INT(send_from_guest(IPPROTO_UDP, GUEST, "8.8.8.8", 40021, 53, &reason, NULL), TC_ACT_SHOT);
	CHECK_EQ_INT(reason, SWITCH_R_RULE);
	CHECK_EQ_INT(send_from_guest(IPPROTO_UDP, GUEST, "8.8.4.4", 40021, 53, &reason, NULL), TC_ACT_OK);
	CHECK_EQ_INT(reason, SWITCH_R_RULE);
	CHECK_EQ_INT(send_from_guest(IPPROTO_UDP, GUEST, "9.9.9.9", 40021, 53, &reason, NULL), TC_ACT_OK);
	CHECK_EQ_INT(reason, SWITCH_R_DEFAULT);
	net_switch_rule(sw, ID, true, "1.1.1.0/24", false);
	net_switch_rule(sw, ID, false, "8.8.0.0/16", false);
	net_switch_rule(sw, ID, true, "8.8.4.4/32", false);
}

TEST(the_gateway_answers_dns_and_icmp_only)
{
	if (!ready())
		return;
	unsigned char out[256];
	__u8 reason;
	CHECK_EQ_INT(send_from_guest(IPPROTO_UDP, GUEST, GATEWAY, 40030, 53, &reason, out), TC_ACT_OK);
	CHECK_EQ_INT(reason, SWITCH_R_GATEWAY);
	CHECK(src_of(out) == ip4(GUEST)); /* the gateway sees the guest as it is */
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, GATEWAY, 40031, 53, &reason, NULL), TC_ACT_OK);
	CHECK_EQ_INT(send_from_guest(IPPROTO_ICMP, GUEST, GATEWAY, 9, 0, &reason, NULL), TC_ACT_OK);
	/* The appliance's API, proxy or SSH: not from a sandbox. */
	static const __u16 ports[] = {3000, 80, 443, 22};
	for (size_t i = 0; i < 4; i++) {
		CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, GATEWAY, 40032, ports[i], &reason, NULL), TC_ACT_SHOT);
		CHECK_EQ_INT(reason, SWITCH_R_APPLIANCE);
	}
}

TEST(a_spoofed_source_is_dropped)
{
	if (!ready())
		return;
	__u8 reason;
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, "192.168.127.99", "1.1.1.1", 40040, 443, &reason, NULL), TC_ACT_SHOT);
	CHECK_EQ_INT(reason, SWITCH_R_SPOOF);
}

TEST(a_policy_change_keeps_established_flows_and_applies_to_new_ones)
{
	if (!ready())
		return;
	__u8 reason;
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "1.0.0.1", 40050, 443, &reason, NULL), TC_ACT_OK);
	set_sandbox(false); /* internet off, live */
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "1.0.0.1", 40050, 443, &reason, NULL), TC_ACT_OK);
	CHECK_EQ_INT(reason, 0); /* established: still going, nothing new to audit */
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "1.0.0.1", 40051, 443, &reason, NULL), TC_ACT_SHOT);
	CHECK_EQ_INT(reason, SWITCH_R_DEFAULT);
	/* A denied flow is audited once per policy, and decided anew after a change. */
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "1.0.0.1", 40051, 443, &reason, NULL), TC_ACT_SHOT);
	CHECK_EQ_INT(reason, 0);
	CHECK(net_switch_rule(sw, ID, true, "1.0.0.1/32", true) == 0);
	set_sandbox(false);
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "1.0.0.1", 40051, 443, &reason, NULL), TC_ACT_OK);
	CHECK_EQ_INT(reason, SWITCH_R_RULE);
	net_switch_rule(sw, ID, true, "1.0.0.1/32", false);
}

TEST(replies_are_dnatted_to_the_guest_and_nothing_else_reaches_it)
{
	if (!ready())
		return;
	struct switch_counters c0, c1;
	net_switch_counters(sw, ID, &c0);
	unsigned char in[128], out[256];
	size_t n = frame4(in, IPPROTO_TCP, "93.184.216.34", HOST, 443, 40001);
	CHECK_EQ_INT(run(false, in, n, out), TC_ACT_OK);
	CHECK(dst_of(out) == ip4(GUEST) && src_of(out) == ip4("93.184.216.34"));
	CHECK(checksums_ok(out, n));
	n = frame4(in, IPPROTO_UDP, "93.184.216.34", HOST, 443, 40002);
	CHECK_EQ_INT(run(false, in, n, out), TC_ACT_OK);
	CHECK(dst_of(out) == ip4(GUEST) && checksums_ok(out, n));
	/* The gateway's DNS answers, as they are. */
	n = frame4(in, IPPROTO_UDP, GATEWAY, GUEST, 53, 40030);
	CHECK_EQ_INT(run(false, in, n, out), TC_ACT_OK);
	CHECK(dst_of(out) == ip4(GUEST));
	/* Another sandbox's address, or anything else: not delivered. */
	n = frame4(in, IPPROTO_TCP, "93.184.216.34", "100.96.0.9", 443, 40001);
	CHECK_EQ_INT(run(false, in, n, out), TC_ACT_SHOT);
	n = frame4(in, IPPROTO_TCP, "10.0.0.5", GUEST, 443, 40001);
	CHECK_EQ_INT(run(false, in, n, out), TC_ACT_SHOT);
	net_switch_counters(sw, ID, &c1);
	CHECK_EQ_INT(c1.rx_packets - c0.rx_packets, 3);
	CHECK_EQ_INT(c1.dropped - c0.dropped, 2);
}

TEST(ipv6_is_dropped_and_audited_arp_passes)
{
	if (!ready())
		return;
	unsigned char in[128] = {0}, out[256];
	in[12] = 0x86;
	in[13] = 0xdd;
	in[14] = 0x60;
	drain();
	CHECK_EQ_INT(run(true, in, 14 + 40, out), TC_ACT_SHOT);
	struct events ev = drain();
	CHECK(ev.n <= 1); /* one per sandbox: an earlier test may have made it */
	if (ev.n)
		CHECK(ev.last.reason == SWITCH_R_IPV6 && ev.last.family == 6);
	CHECK_EQ_INT(run(true, in, 14 + 40, out), TC_ACT_SHOT);
	CHECK_EQ_INT(drain().n, 0);
	memset(in, 0, sizeof in);
	in[12] = 0x08;
	in[13] = 0x06;
	CHECK_EQ_INT(run(true, in, 14 + 28, out), TC_ACT_OK);
	CHECK_EQ_INT(run(false, in, 14 + 28, out), TC_ACT_OK);
}

TEST(the_operator_can_unblock_a_range)
{
	if (!sw) {
		fprintf(stderr, "  SKIP: the switch could not be loaded here (needs root with BPF)\n");
		return;
	}
	static const char *const open[] = {"10.0.0.0/8", NULL};
	char err[256];
	struct net_sw *mine = net_switch_load(open, err, sizeof err);
	if (!CHECK(mine != NULL))
		return;
	struct net_sw *saved = sw;
	sw = mine;
	set_sandbox(true);
	__u8 reason;
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "10.1.2.3", 40060, 80, &reason, NULL), TC_ACT_OK);
	CHECK_EQ_INT(send_from_guest(IPPROTO_TCP, GUEST, "192.168.1.1", 40060, 80, &reason, NULL), TC_ACT_SHOT);
	sw = saved;
	net_switch_free(mine);
}

__attribute__((constructor)) static void load_switch(void)
{
	char err[256];
	lo = if_nametoindex("lo");
	if (geteuid() == 0 && lo)
		sw = net_switch_load(NULL, err, sizeof err);
	if (!sw && geteuid() == 0)
		fprintf(stderr, "test_switch: %s\n", err);
}
