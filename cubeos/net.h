/*
 * net.h - the appliance's network at boot: loopback up with 127.0.0.1, every
 * ethernet NIC up, then per NIC either the static configuration saved in
 * network.json (the NIC it names) or a DHCP client (every other NIC), all on
 * the PID1 event loop. DNS servers (static and from leases) are written to
 * <state>/resolv.conf for the DNS daemon.
 *
 * network.json: {"mode":"dhcp"} or
 *   {"mode":"static","iface":"eth0","address":"192.168.1.10/24","gateway":"192.168.1.1","dns":["1.1.1.1"]}
 */
#ifndef CUBEOS_NET_H
#define CUBEOS_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "../lib/loop.h"

struct net;

struct net_options {
	const char *state_dir;	 /* resolv.conf goes here */
	const char *hostname;	 /* sent to the DHCP server (option 12) */
	const char *config_json; /* network.json text, or NULL: DHCP everywhere */
};

/* Brings the links up and starts configuring them; returns NULL only if
 * the links cannot even be listed. Whatever fails on one NIC is logged and
 * the others carry on. The first one started is what net_running() returns. */
struct net *net_start(struct loop *l, const struct net_options *o);
/* Stops the DHCP clients (their addresses are removed) and frees n. */
void net_stop(struct net *n);
struct net *net_running(void);

/* Applies a new network.json now: NICs whose configuration changed are
 * reconfigured, the others keep their address. 0, or -1 with a reason. */
int net_apply(struct net *n, const char *config_json, char *err, size_t errsz);

/* How each NIC is configured, one "  NAME  ..." line each (for `net show`). */
void net_describe(struct net *n, struct buf *out);

/* The static configuration in network.json: 0 with *is_static false for
 * DHCP, 0 with the fields for static, -1 with a reason if malformed. */
struct net_static {
	char iface[16];
	struct in_addr addr, gateway;
	unsigned prefix;
	struct in_addr dns[3];
	unsigned n_dns;
};
int net_parse_config(const char *json, bool *is_static, struct net_static *s, char *err, size_t errsz);

#endif
