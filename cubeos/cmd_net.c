/*
 * cmd_net.c - net show (links, IPv4 addresses and routes over netlink, how
 * each NIC is configured and its DHCP lease, the saved config) and net set
 * (checks and saves network.json, then applies it to the running network).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/json.h"
#include "config.h"
#include "net.h"
#include "netlink.h"
#include "shell.h"

static const char *oper_name(uint8_t s)
{
	static const char *const names[] = {"unknown", "notpresent", "down", "lowerdown", "testing", "dormant", "up"};
	return s < sizeof names / sizeof names[0] ? names[s] : "?";
}

static const char *link_name(const struct nl_link *links, int n, int index)
{
	for (int k = 0; k < n; k++)
		if (links[k].index == index)
			return links[k].name;
	return "?";
}

static void show_interfaces(struct shell *sh, const struct nl_link *links, int n)
{
	struct nl_addr4 *addrs = NULL;
	int na = nl_addrs4(&addrs);
	shell_printf(sh, "interfaces\r\n");
	for (int k = 0; k < n; k++) {
		const struct nl_link *l = &links[k];
		const uint8_t *m = l->mac;
		shell_printf(sh, "  %-12s %-8s mac %02x:%02x:%02x:%02x:%02x:%02x mtu %u\r\n", l->name,
			     oper_name(l->operstate), m[0], m[1], m[2], m[3], m[4], m[5], l->mtu);
		for (int a = 0; a < na; a++) {
			char text[INET_ADDRSTRLEN];
			if (addrs[a].index == l->index)
				shell_printf(sh, "    inet %s/%u\r\n",
					     inet_ntop(AF_INET, &addrs[a].addr, text, sizeof text), addrs[a].prefix);
		}
	}
	free(addrs);
}

static void show_routes(struct shell *sh, const struct nl_link *links, int n)
{
	struct nl_route4 *r = NULL;
	int nr = nl_routes4(&r);
	shell_printf(sh, "routes (IPv4)\r\n");
	for (int k = 0; k < nr; k++) {
		char ds[INET_ADDRSTRLEN], gs[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &r[k].dst, ds, sizeof ds);
		inet_ntop(AF_INET, &r[k].gateway, gs, sizeof gs);
		const char *dev = link_name(links, n, r[k].oif);
		if (r[k].prefix == 0)
			shell_printf(sh, "  default via %s dev %s metric %u\r\n", gs, dev, r[k].metric);
		else
			shell_printf(sh, "  %s/%u%s%s dev %s\r\n", ds, r[k].prefix, r[k].gateway.s_addr ? " via " : "",
				     r[k].gateway.s_addr ? gs : "", dev);
	}
	free(r);
}

void cmd_net_show(struct shell *sh, int argc, char **argv)
{
	struct nl_link *links = NULL;
	int n = nl_links(&links);
	if (n < 0)
		shell_printf(sh, "error: cannot list network links: %s\r\n", strerror(errno));
	show_interfaces(sh, links, n < 0 ? 0 : n);
	show_routes(sh, links, n < 0 ? 0 : n);
	free(links);
	struct net *net = net_running();
	if (net) {
		struct buf b = BUF_INIT;
		net_describe(net, &b);
		shell_printf(sh, "configured\r\n%s", b.data ? b.data : "  (no NIC)\r\n");
		buf_free(&b);
	}
	char *saved = sh->os && sh->os->config ? config_read(sh->os->config, "network.json", NULL) : NULL;
	shell_printf(sh, "saved config: %s\r\n", saved ? saved : "none (DHCP on every NIC)");
	free(saved);
}

static bool valid_iface(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= IFNAMSIZ)
		return false;
	for (; *s; s++)
		if (!(*s == '-' || *s == '_' || *s == '.' || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= 'A' && *s <= 'Z')))
			return false;
	return true;
}

static bool valid_ipv4(const char *s)
{
	struct in_addr a;
	return inet_pton(AF_INET, s, &a) == 1;
}

/* "10.0.0.2/24" */
static bool valid_cidr(const char *s)
{
	char addr[INET_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof addr)
		return false;
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	char *end;
	long prefix = strtol(slash + 1, &end, 10);
	return valid_ipv4(addr) && slash[1] && !*end && prefix >= 1 && prefix <= 32;
}

/* Saved first, then applied to the running network (PID1 mode); in test mode
 * there is no running network and it waits for the next boot. */
static void save(struct shell *sh, struct buf *b)
{
	char err[256];
	if (!sh->os || !sh->os->config)
		shell_printf(sh, "error: the configuration is not available\r\n");
	else if (config_write(sh->os->config, "network.json", b->data, b->len) < 0)
		shell_printf(sh, "error: cannot save network.json: %s\r\n", strerror(errno));
	else if (!net_running())
		shell_printf(sh, "saved; applied at next boot\r\n");
	else if (net_apply(net_running(), b->data, err, sizeof err) < 0)
		shell_printf(sh, "saved, but not applied: %s\r\n", err);
	else
		shell_printf(sh, "saved and applied\r\n");
}

static void usage(struct shell *sh, const char *why)
{
	shell_printf(sh, "error: %s\r\nusage: net set dhcp | net set static IFACE ADDR/PREFIX GATEWAY [DNS...]\r\n",
		     why);
}

void cmd_net_set(struct shell *sh, int argc, char **argv)
{
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	if (strcmp(argv[0], "dhcp") == 0 && argc == 1) {
		jw_obj(&w);
		jw_kstr(&w, "mode", "dhcp");
		jw_end(&w);
	} else if (strcmp(argv[0], "static") == 0) {
		if (argc < 4) {
			usage(sh, "static needs IFACE ADDR/PREFIX GATEWAY");
			goto out;
		}
		if (!valid_iface(argv[1]) || !valid_cidr(argv[2]) || !valid_ipv4(argv[3])) {
			usage(sh, !valid_iface(argv[1])	 ? "bad interface name"
				  : !valid_cidr(argv[2]) ? "ADDR/PREFIX must look like 192.168.1.10/24"
							 : "GATEWAY must be an IPv4 address");
			goto out;
		}
		for (int i = 4; i < argc; i++) {
			if (!valid_ipv4(argv[i])) {
				usage(sh, "each DNS server must be an IPv4 address");
				goto out;
			}
		}
		jw_obj(&w);
		jw_kstr(&w, "mode", "static");
		jw_kstr(&w, "iface", argv[1]);
		jw_kstr(&w, "address", argv[2]);
		jw_kstr(&w, "gateway", argv[3]);
		jw_key(&w, "dns");
		jw_arr(&w);
		for (int i = 4; i < argc; i++)
			jw_str(&w, argv[i]);
		jw_end(&w);
		jw_end(&w);
	} else {
		usage(sh, "expected dhcp or static");
		goto out;
	}
	buf_putc(&b, '\n');
	save(sh, &b);
out:
	buf_free(&b);
}
