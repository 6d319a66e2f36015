/*
 * netlink.c - RTNETLINK requests (see netlink.h).
 *
 * The requests are built and sent with lib/rtnl.h; this file knows which
 * family header (ifinfomsg, ifaddrmsg or rtmsg) and attributes each takes.
 */
#include <errno.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/rtnl.h"
#include "netlink.h"

/* --- dumps ------------------------------------------------------------------ */

struct collect {
	void *items;
	size_t n, cap, size;
};

static void *collect_next(struct collect *c)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 8;
		void *p = realloc(c->items, cap * c->size);
		if (!p)
			return NULL;
		c->items = p;
		c->cap = cap;
	}
	void *slot = (char *)c->items + c->n++ * c->size;
	memset(slot, 0, c->size);
	return slot;
}

static int collect_done(struct collect *c, int rc, void **out)
{
	if (rc < 0) {
		free(c->items);
		*out = NULL;
		return -1;
	}
	*out = c->items;
	return (int)c->n;
}

static void on_link(void *arg, const struct nlmsghdr *h)
{
	const struct ifinfomsg *ifi = NLMSG_DATA(h);
	if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof *ifi))
		return;
	struct nl_link *l = collect_next(arg);
	if (!l)
		return;
	l->index = ifi->ifi_index;
	l->flags = ifi->ifi_flags;
	l->type = ifi->ifi_type;
	int len = (int)IFLA_PAYLOAD(h);
	for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		size_t alen = RTA_PAYLOAD(a);
		if (a->rta_type == IFLA_IFNAME && alen > 0) {
			size_t n = alen < sizeof l->name ? alen : sizeof l->name - 1;
			memcpy(l->name, RTA_DATA(a), n);
			l->name[n] = '\0';
		} else if (a->rta_type == IFLA_ADDRESS && alen == 6) {
			memcpy(l->mac, RTA_DATA(a), 6);
			l->mac_len = 6;
		} else if (a->rta_type == IFLA_MTU && alen == 4) {
			memcpy(&l->mtu, RTA_DATA(a), 4);
		} else if (a->rta_type == IFLA_OPERSTATE && alen == 1) {
			l->operstate = *(const uint8_t *)RTA_DATA(a);
		}
	}
}

int nl_links(struct nl_link **out)
{
	struct rtnl_req r;
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
	struct collect c = {.size = sizeof(struct nl_link)};
	rtnl_req_init(&r, RTM_GETLINK, NLM_F_DUMP, &ifi, sizeof ifi);
	return collect_done(&c, rtnl_transact(&r, on_link, &c), (void **)out);
}

static void on_addr(void *arg, const struct nlmsghdr *h)
{
	const struct ifaddrmsg *ifa = NLMSG_DATA(h);
	if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof *ifa) || ifa->ifa_family != AF_INET)
		return;
	struct in_addr local = {0}, address = {0};
	bool has_local = false, has_address = false;
	int len = (int)IFA_PAYLOAD(h);
	for (const struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (RTA_PAYLOAD(a) != 4)
			continue;
		if (a->rta_type == IFA_LOCAL) {
			memcpy(&local, RTA_DATA(a), 4);
			has_local = true;
		} else if (a->rta_type == IFA_ADDRESS) {
			memcpy(&address, RTA_DATA(a), 4);
			has_address = true;
		}
	}
	if (!has_local && !has_address)
		return;
	struct nl_addr4 *o = collect_next(arg);
	if (!o)
		return;
	o->index = (int)ifa->ifa_index;
	o->prefix = ifa->ifa_prefixlen;
	/* IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links. */
	o->addr = has_local ? local : address;
}

int nl_addrs4(struct nl_addr4 **out)
{
	struct rtnl_req r;
	struct ifaddrmsg ifa = {.ifa_family = AF_INET};
	struct collect c = {.size = sizeof(struct nl_addr4)};
	rtnl_req_init(&r, RTM_GETADDR, NLM_F_DUMP, &ifa, sizeof ifa);
	return collect_done(&c, rtnl_transact(&r, on_addr, &c), (void **)out);
}

static void on_route(void *arg, const struct nlmsghdr *h)
{
	const struct rtmsg *rt = NLMSG_DATA(h);
	if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof *rt) || rt->rtm_family != AF_INET ||
	    rt->rtm_type != RTN_UNICAST)
		return;
	uint32_t table = rt->rtm_table;
	struct nl_route4 route = {.prefix = rt->rtm_dst_len, .protocol = rt->rtm_protocol};
	int len = (int)RTM_PAYLOAD(h);
	for (const struct rtattr *a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		size_t alen = RTA_PAYLOAD(a);
		if (a->rta_type == RTA_TABLE && alen == 4)
			memcpy(&table, RTA_DATA(a), 4);
		else if (a->rta_type == RTA_DST && alen == 4)
			memcpy(&route.dst, RTA_DATA(a), 4);
		else if (a->rta_type == RTA_GATEWAY && alen == 4)
			memcpy(&route.gateway, RTA_DATA(a), 4);
		else if (a->rta_type == RTA_OIF && alen == 4)
			memcpy(&route.oif, RTA_DATA(a), 4);
		else if (a->rta_type == RTA_PRIORITY && alen == 4)
			memcpy(&route.metric, RTA_DATA(a), 4);
	}
	if (table != RT_TABLE_MAIN)
		return;
	struct nl_route4 *o = collect_next(arg);
	if (o)
		*o = route;
}

int nl_routes4(struct nl_route4 **out)
{
	struct rtnl_req r;
	struct rtmsg rt = {.rtm_family = AF_INET};
	struct collect c = {.size = sizeof(struct nl_route4)};
	rtnl_req_init(&r, RTM_GETROUTE, NLM_F_DUMP, &rt, sizeof rt);
	return collect_done(&c, rtnl_transact(&r, on_route, &c), (void **)out);
}

/* --- changes ------------------------------------------------------------------ */

int nl_link_up(int index)
{
	struct rtnl_req r;
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = index, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
	rtnl_req_init(&r, RTM_NEWLINK, NLM_F_ACK, &ifi, sizeof ifi);
	return rtnl_transact(&r, NULL, NULL);
}

int nl_addr4_add(int index, struct in_addr addr, unsigned prefix)
{
	struct rtnl_req r;
	struct ifaddrmsg ifa = {.ifa_family = AF_INET,
				.ifa_prefixlen = (uint8_t)prefix,
				.ifa_scope = RT_SCOPE_UNIVERSE,
				.ifa_index = (unsigned)index};
	if (prefix > 32) {
		errno = EINVAL;
		return -1;
	}
	rtnl_req_init(&r, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &ifa, sizeof ifa);
	rtnl_req_attr(&r, IFA_LOCAL, &addr, 4);
	rtnl_req_attr(&r, IFA_ADDRESS, &addr, 4);
	if (prefix < 31) {
		struct in_addr brd = {addr.s_addr | ~prefix_to_netmask(prefix).s_addr};
		rtnl_req_attr(&r, IFA_BROADCAST, &brd, 4);
	}
	return rtnl_transact(&r, NULL, NULL);
}

static int addr4_del(int index, struct in_addr addr, unsigned prefix)
{
	struct rtnl_req r;
	struct ifaddrmsg ifa = {.ifa_family = AF_INET, .ifa_prefixlen = (uint8_t)prefix, .ifa_index = (unsigned)index};
	rtnl_req_init(&r, RTM_DELADDR, NLM_F_ACK, &ifa, sizeof ifa);
	rtnl_req_attr(&r, IFA_LOCAL, &addr, 4);
	return rtnl_transact(&r, NULL, NULL);
}

int nl_addr4_flush(int index)
{
	struct nl_addr4 *addrs;
	int n = nl_addrs4(&addrs), rc = 0;
	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (addrs[i].index == index && addr4_del(index, addrs[i].addr, addrs[i].prefix) < 0 &&
		    errno != EADDRNOTAVAIL)
			rc = -1;
	free(addrs);
	return rc;
}

int nl_route4_add_default(int index, struct in_addr gateway, unsigned metric, uint8_t protocol)
{
	struct rtnl_req r;
	struct rtmsg rt = {.rtm_family = AF_INET,
			   .rtm_table = RT_TABLE_MAIN,
			   .rtm_protocol = protocol,
			   .rtm_scope = RT_SCOPE_UNIVERSE,
			   .rtm_type = RTN_UNICAST};
	uint32_t oif = (uint32_t)index, prio = metric;
	rtnl_req_init(&r, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &rt, sizeof rt);
	rtnl_req_attr(&r, RTA_GATEWAY, &gateway, 4);
	rtnl_req_attr(&r, RTA_OIF, &oif, 4);
	rtnl_req_attr(&r, RTA_PRIORITY, &prio, 4);
	return rtnl_transact(&r, NULL, NULL);
}

int netmask_to_prefix(struct in_addr mask)
{
	uint32_t m = ntohl(mask.s_addr);
	int prefix = __builtin_popcount(m);
	/* Contiguous: the set bits are exactly the top `prefix` bits. */
	uint32_t want = prefix ? ~0u << (32 - prefix) : 0;
	return m == want ? prefix : -1;
}

struct in_addr prefix_to_netmask(unsigned prefix)
{
	struct in_addr m = {htonl(prefix == 0 ? 0 : prefix >= 32 ? ~0u : ~0u << (32 - prefix))};
	return m;
}
