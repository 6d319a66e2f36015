/*
 * switch_loader.h - loading and steering the sandbox switch (switch.c).
 *
 *   struct net_sw *sw = net_switch_load(NULL, err, sizeof err);
 *   net_switch_set_sandbox(sw, tap_ifindex, &(struct switch_sandbox){...});
 *   net_switch_rule(sw, id, true, "203.0.113.7/32", true);   allowOut
 *   ... attach net_switch_prog_fd(sw, true) at the TAP's tc ingress,
 *       net_switch_prog_fd(sw, false) at its egress ...
 *   net_switch_audit_poll(sw, on_event, arg);                  new flows
 *
 * A policy change must bump the sandbox's generation (net_switch_set_sandbox
 * again): denied flows are decided anew then; allowed ones keep going.
 * Needs root (CAP_BPF, CAP_NET_ADMIN).
 */
#ifndef CUBE_NET_SWITCH_LOADER_H
#define CUBE_NET_SWITCH_LOADER_H

#include <stdbool.h>
#include <stddef.h>

#include "switch.h"

struct net_sw;

/* Loads the programs and fills the always-blocked ranges, less the CIDRs in
 * unblocked (NULL-terminated, as the defaults spell them: "10.0.0.0/8"; the
 * operator's appliance config). NULL with a message in err. */
struct net_sw *net_switch_load(const char *const *unblocked, char *err, size_t errsz);
void net_switch_free(struct net_sw *sw);

/* from_guest (TAP ingress) or to_guest (TAP egress). */
int net_switch_prog_fd(const struct net_sw *sw, bool from_guest);

/* 0, or -1 with errno set. */
int net_switch_set_sandbox(struct net_sw *sw, __u32 ifindex, const struct switch_sandbox *s);
int net_switch_remove_sandbox(struct net_sw *sw, __u32 ifindex, __u32 id);
/* Adds or removes one allowOut (allow) or denyOut CIDR ("a.b.c.d[/n]"). */
int net_switch_rule(struct net_sw *sw, __u32 id, bool allow, const char *cidr, bool add);
/* The sandbox's counters summed over the CPUs. */
int net_switch_counters(const struct net_sw *sw, __u32 id, struct switch_counters *sum);
/* Calls fn for every audit event not read yet; the number read. */
int net_switch_audit_poll(struct net_sw *sw, void (*fn)(void *arg, const struct switch_event *e), void *arg);

/* "a.b.c.d" or "a.b.c.d/n" -> the network address (host bits cleared) and n. */
int net_cidr4_parse(const char *s, __be32 *addr, __u32 *plen);

#endif
