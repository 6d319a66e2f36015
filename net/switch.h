/*
 * switch.h - what the sandbox switch's maps hold, shared by the eBPF
 * program (switch.bpf.c) and its loader (switch.c).
 *
 * Every clone of a template has the same guest IPv4 address and MAC (they
 * come from the snapshot). The switch gives each sandbox its own host-side
 * address: packets from the guest get it as their source (SNAT), packets to
 * it get the guest address back (DNAT), so the host routes and filters by
 * sandbox. A sandbox is known by the ifindex of its TAP.
 *
 * Verdict for a new IPv4 flow from a guest, in this order:
 *   1. to its gateway: DNS (UDP/TCP 53) and ICMP only; any other port of the
 *      appliance is dropped (reason APPLIANCE)
 *   2. a source other than the guest address: dropped (SPOOF)
 *   3. an always-blocked range (loopback, private, link-local, CGNAT,
 *      multicast, reserved; the loader's list): dropped (BLOCKED), before
 *      any allow rule
 *   4. a matching allowOut CIDR: allowed (RULE)
 *   5. a matching denyOut CIDR: dropped (RULE)
 *   6. the sandbox's default: allow_internet_access (DEFAULT)
 * IPv6 from a guest is dropped (IPV6): sandboxes have IPv4 egress only.
 * An allowed flow is remembered (flows4), so a policy change never cuts an
 * established flow; a denied one is re-evaluated after every change.
 * Each new flow, allowed or not, is one audit event on the ring buffer.
 */
#ifndef CUBE_NET_SWITCH_H
#define CUBE_NET_SWITCH_H

#include <linux/types.h>

#define SWITCH_MAX_SANDBOXES 8192
#define SWITCH_MAX_RULES     65536
#define SWITCH_MAX_BLOCKED   256
#define SWITCH_MAX_FLOWS     262144
#define SWITCH_RINGBUF_BYTES (1 << 20)

/* sandboxes: key __u32 ifindex of the TAP. Addresses in network order. */
struct switch_sandbox {
	__u32 id;	     /* keys the rules, flows and counters */
	__be32 guest_addr;   /* what every clone has */
	__be32 host_addr;    /* this sandbox's own, on the host side */
	__be32 gateway_addr; /* the guest's gateway and DNS resolver */
	__u32 generation;    /* bumped by every policy change */
	__u8 allow_internet;
	__u8 pad[3];
};

/* allow4, deny4: per-sandbox CIDRs. An LPM key whose prefixlen counts the
 * 32 bits of the sandbox id (network order) and then the address bits. */
struct switch_rule4 {
	__u32 prefixlen;
	__be32 sandbox;
	__be32 addr;
};

/* blocked4: the ranges no rule can open, for every sandbox. */
struct switch_range4 {
	__u32 prefixlen;
	__be32 addr;
};

/* flows4: LRU key of a flow from a guest (its original addresses). */
struct switch_flow4 {
	__u32 sandbox;
	__be32 saddr, daddr;
	__be16 sport, dport; /* ICMP: the echo id as sport, 0 */
	__u8 proto;
	__u8 pad[3];
};

struct switch_flow_state {
	__u32 generation; /* of the policy that decided */
	__u8 verdict;	  /* enum switch_verdict */
	__u8 reason;	  /* enum switch_reason */
	__u8 pad[2];
};

/* counters: per-CPU, key __u32 sandbox id. tx: from the guest. */
struct switch_counters {
	__u64 tx_packets, tx_bytes, rx_packets, rx_bytes, dropped;
};

enum switch_verdict { SWITCH_ALLOW = 1, SWITCH_DROP = 2 };

enum switch_reason {
	SWITCH_R_GATEWAY = 1, /* to the gateway's DNS or ICMP */
	SWITCH_R_APPLIANCE,   /* to another port of the appliance */
	SWITCH_R_SPOOF,
	SWITCH_R_BLOCKED,
	SWITCH_R_RULE,
	SWITCH_R_DEFAULT,
	SWITCH_R_IPV6,
};

/* One audit event a new flow (ring buffer "audit"). */
struct switch_event {
	__u64 ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 sandbox;
	__be32 saddr, daddr; /* the guest's view: saddr is the guest address */
	__be16 sport, dport;
	__u8 proto;
	__u8 verdict;
	__u8 reason;
	__u8 family; /* 4 or 6 */
};

#endif
