/*
 * cmd_net.c - net show (interfaces from /sys, addresses from getifaddrs,
 * IPv4 routes from /proc/net/route, the saved config) and net set (checks
 * and saves network.json; the network part of cubeos applies it at boot).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/json.h"
#include "config.h"
#include "shell.h"

static void read_sys(const char *iface, const char *attr, char *out, size_t outsz)
{
	char path[256];
	snprintf(path, sizeof path, "/sys/class/net/%s/%s", iface, attr);
	FILE *f = fopen(path, "r");
	out[0] = '\0';
	if (f) {
		if (!fgets(out, (int)outsz, f))
			out[0] = '\0';
		fclose(f);
	}
	out[strcspn(out, "\n")] = '\0';
}

static void show_addresses(struct shell *sh, const char *iface)
{
	struct ifaddrs *all, *a;
	if (getifaddrs(&all) < 0)
		return;
	for (a = all; a; a = a->ifa_next) {
		if (!a->ifa_addr || strcmp(a->ifa_name, iface) != 0)
			continue;
		char text[INET6_ADDRSTRLEN] = "";
		int fam = a->ifa_addr->sa_family;
		if (fam == AF_INET)
			inet_ntop(fam, &((struct sockaddr_in *)a->ifa_addr)->sin_addr, text, sizeof text);
		else if (fam == AF_INET6)
			inet_ntop(fam, &((struct sockaddr_in6 *)a->ifa_addr)->sin6_addr, text, sizeof text);
		else
			continue;
		shell_printf(sh, "    %s %s\r\n", fam == AF_INET ? "inet " : "inet6", text);
	}
	freeifaddrs(all);
}

static void show_interfaces(struct shell *sh)
{
	DIR *d = opendir("/sys/class/net");
	struct dirent *e;
	shell_printf(sh, "interfaces\r\n");
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char state[32], mac[32], mtu[16];
		read_sys(e->d_name, "operstate", state, sizeof state);
		read_sys(e->d_name, "address", mac, sizeof mac);
		read_sys(e->d_name, "mtu", mtu, sizeof mtu);
		shell_printf(sh, "  %-12s %-8s mac %s mtu %s\r\n", e->d_name, state, mac, mtu);
		show_addresses(sh, e->d_name);
	}
	if (d)
		closedir(d);
}

static void show_routes(struct shell *sh)
{
	FILE *f = fopen("/proc/net/route", "r");
	char line[256];
	shell_printf(sh, "routes (IPv4)\r\n");
	if (f && !fgets(line, sizeof line, f)) /* header */
		line[0] = '\0';
	while (f && fgets(line, sizeof line, f)) {
		char iface[IFNAMSIZ + 1];
		unsigned dst, gw, flags, mask;
		if (sscanf(line, "%16s %x %x %x %*d %*d %*d %x", iface, &dst, &gw, &flags, &mask) != 5)
			continue;
		struct in_addr a = {dst}, g = {gw};
		char ds[INET_ADDRSTRLEN], gs[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &a, ds, sizeof ds);
		inet_ntop(AF_INET, &g, gs, sizeof gs);
		int prefix = __builtin_popcount(mask);
		if (dst == 0 && mask == 0)
			shell_printf(sh, "  default via %s dev %s\r\n", gs, iface);
		else
			shell_printf(sh, "  %s/%d %s%s dev %s\r\n", ds, prefix, gw ? "via " : "", gw ? gs : "", iface);
	}
	if (f)
		fclose(f);
}

void cmd_net_show(struct shell *sh, int argc, char **argv)
{
	show_interfaces(sh);
	show_routes(sh);
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

static void save(struct shell *sh, struct buf *b)
{
	if (!sh->os || !sh->os->config)
		shell_printf(sh, "error: the configuration is not available\r\n");
	else if (config_write(sh->os->config, "network.json", b->data, b->len) < 0)
		shell_printf(sh, "error: cannot save network.json: %s\r\n", strerror(errno));
	else
		shell_printf(sh, "saved; applied at next boot\r\n");
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
