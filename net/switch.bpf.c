/*
 * switch.bpf.c - the sandbox switch: two tc programs on every sandbox TAP.
 *
 *   from_guest (TAP ingress: what the guest sends)  verdict, audit, SNAT
 *   to_guest   (TAP egress: what reaches the guest) DNAT
 *
 * The maps and the order of the verdict are described in switch.h.
 */
#include <stdbool.h>

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "switch.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SWITCH_MAX_SANDBOXES);
	__type(key, __u32);
	__type(value, struct switch_sandbox);
} sandboxes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SWITCH_MAX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct switch_rule4);
	__type(value, __u8);
} allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SWITCH_MAX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct switch_rule4);
	__type(value, __u8);
} deny4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SWITCH_MAX_BLOCKED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct switch_range4);
	__type(value, __u8);
} blocked4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SWITCH_MAX_FLOWS);
	__type(key, struct switch_flow4);
	__type(value, struct switch_flow_state);
} flows4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SWITCH_MAX_SANDBOXES);
	__type(key, __u32);
	__type(value, struct switch_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SWITCH_RINGBUF_BYTES);
} audit SEC(".maps");

#define IP_OFF	    ETH_HLEN
#define IP_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))
#define IP_SRC_OFF  (ETH_HLEN + __builtin_offsetof(struct iphdr, saddr))
#define IP_DST_OFF  (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))
#define DNS_PORT    53

/* The start of an ICMP echo (linux/icmp.h drags in libc headers). */
struct icmp_echo {
	__u8 type, code;
	__sum16 checksum;
	__be16 id, sequence;
};
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO      8

/* What the verdict needs of an IPv4 packet. */
struct packet4 {
	struct switch_flow4 flow;
	__u32 l4_off; /* 0: no L4 header here (a later fragment, or too short) */
};

static __always_inline struct switch_counters *counters_of(__u32 id)
{
	struct switch_counters *c = bpf_map_lookup_elem(&counters, &id);
	if (c)
		return c;
	struct switch_counters zero = {};
	bpf_map_update_elem(&counters, &id, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&counters, &id);
}

static __always_inline int parse4(struct __sk_buff *skb, const struct switch_sandbox *s, struct packet4 *p)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + IP_OFF;
	if ((void *)(ip + 1) > end || ip->ihl < 5)
		return -1;
	p->flow.sandbox = s->id;
	p->flow.saddr = ip->saddr;
	p->flow.daddr = ip->daddr;
	p->flow.proto = ip->protocol;
	p->l4_off = 0;
	if (ip->frag_off & bpf_htons(0x1fff)) /* a later fragment: no ports */
		return 0;
	__u32 l4 = IP_OFF + ip->ihl * 4;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		__be16 *ports = data + l4;
		if ((void *)(ports + 2) > end)
			return 0;
		p->flow.sport = ports[0];
		p->flow.dport = ports[1];
		p->l4_off = l4;
	} else if (ip->protocol == IPPROTO_ICMP) {
		struct icmp_echo *icmp = data + l4;
		if ((void *)(icmp + 1) > end)
			return 0;
		if (icmp->type == ICMP_ECHO || icmp->type == ICMP_ECHOREPLY)
			p->flow.sport = icmp->id;
		p->l4_off = l4;
	}
	return 0;
}

static __always_inline bool in_rules(void *map, const struct switch_sandbox *s, __be32 addr)
{
	struct switch_rule4 k = {.prefixlen = 64, .sandbox = bpf_htonl(s->id), .addr = addr};
	return bpf_map_lookup_elem(map, &k) != NULL;
}

/* The verdict for a new flow (switch.h, in that order). */
static __always_inline __u8 decide4(const struct switch_sandbox *s, const struct packet4 *p, __u8 *reason)
{
	const struct switch_flow4 *f = &p->flow;
	if (f->daddr == s->gateway_addr) {
		bool dns = (f->proto == IPPROTO_UDP || f->proto == IPPROTO_TCP) && p->l4_off &&
			   f->dport == bpf_htons(DNS_PORT);
		*reason = dns || f->proto == IPPROTO_ICMP ? SWITCH_R_GATEWAY : SWITCH_R_APPLIANCE;
		return *reason == SWITCH_R_GATEWAY ? SWITCH_ALLOW : SWITCH_DROP;
	}
	if (f->saddr != s->guest_addr) {
		*reason = SWITCH_R_SPOOF;
		return SWITCH_DROP;
	}
	struct switch_range4 r = {.prefixlen = 32, .addr = f->daddr};
	if (bpf_map_lookup_elem(&blocked4, &r)) {
		*reason = SWITCH_R_BLOCKED;
		return SWITCH_DROP;
	}
	*reason = SWITCH_R_RULE;
	if (in_rules(&allow4, s, f->daddr))
		return SWITCH_ALLOW;
	if (in_rules(&deny4, s, f->daddr))
		return SWITCH_DROP;
	*reason = SWITCH_R_DEFAULT;
	return s->allow_internet ? SWITCH_ALLOW : SWITCH_DROP;
}

static __always_inline void audit_flow(const struct switch_flow4 *f, __u8 verdict, __u8 reason, __u8 family)
{
	struct switch_event *e = bpf_ringbuf_reserve(&audit, sizeof *e, 0);
	if (!e)
		return; /* the reader is behind: the flow still gets its verdict */
	e->ns = bpf_ktime_get_ns();
	e->sandbox = f->sandbox;
	e->saddr = f->saddr;
	e->daddr = f->daddr;
	e->sport = f->sport;
	e->dport = f->dport;
	e->proto = f->proto;
	e->verdict = verdict;
	e->reason = reason;
	e->family = family;
	bpf_ringbuf_submit(e, 0);
}

/* The cached verdict of the flow, or a new one (audited once per flow and
 * policy generation). Allowed flows stay allowed: a policy change does not
 * cut an established flow. */
static __always_inline __u8 verdict4(const struct switch_sandbox *s, const struct packet4 *p)
{
	struct switch_flow_state *st = bpf_map_lookup_elem(&flows4, &p->flow);
	if (st && (st->verdict == SWITCH_ALLOW || st->generation == s->generation))
		return st->verdict;
	struct switch_flow_state now = {.generation = s->generation};
	now.verdict = decide4(s, p, &now.reason);
	bpf_map_update_elem(&flows4, &p->flow, &now, BPF_ANY);
	audit_flow(&p->flow, now.verdict, now.reason, 4);
	return now.verdict;
}

/* Rewrites one IPv4 address (at off) and the checksums that cover it. */
static __always_inline int rewrite4(struct __sk_buff *skb, const struct packet4 *p, __u32 off, __be32 from, __be32 to)
{
	if (p->l4_off && p->flow.proto == IPPROTO_TCP)
		bpf_l4_csum_replace(skb, p->l4_off + __builtin_offsetof(struct tcphdr, check), from, to,
				    BPF_F_PSEUDO_HDR | sizeof to);
	else if (p->l4_off && p->flow.proto == IPPROTO_UDP)
		bpf_l4_csum_replace(skb, p->l4_off + __builtin_offsetof(struct udphdr, check), from, to,
				    BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | sizeof to);
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, from, to, sizeof to) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, off, &to, sizeof to, 0);
}

static __always_inline void count_drop(__u32 id)
{
	struct switch_counters *c = counters_of(id);
	if (c)
		c->dropped++;
}

SEC("tc")
int from_guest(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	const struct switch_sandbox *s = bpf_map_lookup_elem(&sandboxes, &ifindex);
	if (!s)
		return TC_ACT_SHOT; /* a TAP the switch does not know carries nothing */
	struct switch_counters *c = counters_of(s->id);
	if (c) {
		c->tx_packets++;
		c->tx_bytes += skb->len;
	}
	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK; /* the gateway's address is resolved by the host */
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct switch_flow4 f = {.sandbox = s->id};
		struct switch_flow_state *st = bpf_map_lookup_elem(&flows4, &f);
		if (!st) { /* one IPv6 audit event per sandbox */
			struct switch_flow_state d = {.verdict = SWITCH_DROP, .reason = SWITCH_R_IPV6};
			bpf_map_update_elem(&flows4, &f, &d, BPF_ANY);
			audit_flow(&f, SWITCH_DROP, SWITCH_R_IPV6, 6);
		}
		count_drop(s->id);
		return TC_ACT_SHOT;
	}
	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		count_drop(s->id);
		return TC_ACT_SHOT;
	}
	struct packet4 p = {};
	if (parse4(skb, s, &p) < 0 || verdict4(s, &p) != SWITCH_ALLOW) {
		count_drop(s->id);
		return TC_ACT_SHOT;
	}
	if (p.flow.daddr != s->gateway_addr && rewrite4(skb, &p, IP_SRC_OFF, s->guest_addr, s->host_addr) < 0) {
		count_drop(s->id);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

SEC("tc")
int to_guest(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	const struct switch_sandbox *s = bpf_map_lookup_elem(&sandboxes, &ifindex);
	if (!s)
		return TC_ACT_SHOT;
	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK;
	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		count_drop(s->id);
		return TC_ACT_SHOT;
	}
	struct packet4 p = {};
	if (parse4(skb, s, &p) < 0) {
		count_drop(s->id);
		return TC_ACT_SHOT;
	}
	/* Only what is addressed to this sandbox (its host-side address), or
	 * what its gateway answers, reaches the guest. */
	if (p.flow.daddr == s->host_addr) {
		if (rewrite4(skb, &p, IP_DST_OFF, s->host_addr, s->guest_addr) < 0) {
			count_drop(s->id);
			return TC_ACT_SHOT;
		}
	} else if (!(p.flow.saddr == s->gateway_addr && p.flow.daddr == s->guest_addr)) {
		count_drop(s->id);
		return TC_ACT_SHOT;
	}
	struct switch_counters *c = counters_of(s->id);
	if (c) {
		c->rx_packets++;
		c->rx_bytes += skb->len;
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
