/*
 * netlink.h - the few RTNETLINK requests cubeos needs to run the NICs, so
 * the appliance carries no `ip` binary: list links, set a link up, add and
 * flush IPv4 addresses, add a default route, and read addresses and routes
 * back for `net show`.
 *
 * Every call opens its own NETLINK_ROUTE socket, sends one request and waits
 * for the kernel's answer (they are rare and fast), so there is no shared
 * state and nothing to keep open. Errors come back as -1 with errno set to
 * what the kernel said (EEXIST, ENODEV, EPERM...).
 */
#ifndef CUBEOS_NETLINK_H
#define CUBEOS_NETLINK_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

struct nl_link {
	int index;
	char name[16];	     /* IFNAMSIZ: <net/if.h> and <linux/if.h> cannot both be included */
	unsigned flags;	     /* IFF_UP, IFF_LOOPBACK, IFF_RUNNING... */
	unsigned short type; /* ARPHRD_ETHER, ARPHRD_LOOPBACK... */
	uint8_t mac[6];	     /* valid when mac_len == 6 */
	unsigned mac_len;
	unsigned mtu;
	uint8_t operstate; /* IF_OPER_UP, IF_OPER_DOWN... */
};

struct nl_addr4 {
	int index;
	struct in_addr addr;
	unsigned prefix;
};

struct nl_route4 {
	int oif;
	struct in_addr dst; /* 0.0.0.0 with prefix 0: the default route */
	unsigned prefix;
	struct in_addr gateway; /* 0.0.0.0: directly connected */
	unsigned metric;
	uint8_t protocol; /* RTPROT_KERNEL, RTPROT_STATIC, RTPROT_DHCP... */
};

/* Arrays are malloc'd (caller frees); the return value is the count, or -1. */
int nl_links(struct nl_link **out);
int nl_addrs4(struct nl_addr4 **out);
int nl_routes4(struct nl_route4 **out); /* the main table's unicast routes */

int nl_link_up(int index);
/* Adds (or refreshes) addr/prefix with its broadcast address. */
int nl_addr4_add(int index, struct in_addr addr, unsigned prefix);
/* Removes every IPv4 address of the link (routes through it go with them). */
int nl_addr4_flush(int index);
/* Adds or replaces the default route via gateway on the link. */
int nl_route4_add_default(int index, struct in_addr gateway, unsigned metric, uint8_t protocol);

/* Prefix length of a contiguous netmask (network order), or -1. */
int netmask_to_prefix(struct in_addr mask);
struct in_addr prefix_to_netmask(unsigned prefix);

#endif
