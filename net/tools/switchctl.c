/*
 * switchctl.c - the switch on one interface, driven from stdin: for the
 * network namespace test (net/tests/switch-ns.sh) and for trying policies
 * by hand.
 *
 *   net-switchctl IFNAME --guest A --host A --gateway A [--no-internet]
 *                 [--allow CIDR]... [--deny CIDR]... [--unblock CIDR]...
 *
 * Loads the switch, makes IFNAME sandbox 1, attaches from_guest at its tc
 * ingress and to_guest at its egress, prints "ready", then one line per
 * audit event. Commands on stdin change the policy live: "allow CIDR",
 * "deny CIDR", "internet on|off" (each answered "ok" or "error ..."),
 * "counters". At the end of stdin it detaches and exits.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../switch_loader.h"
#include "../tc.h"

#define ID 1

static const char *const reasons[] = {"", "gateway", "appliance", "spoof", "blocked", "rule", "default", "ipv6"};

static void print_event(void *arg, const struct switch_event *e)
{
	char s[INET_ADDRSTRLEN], d[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &e->saddr, s, sizeof s);
	inet_ntop(AF_INET, &e->daddr, d, sizeof d);
	printf("audit sandbox=%u proto=%u src=%s:%u dst=%s:%u verdict=%s reason=%s\n", e->sandbox, e->proto, s,
	       ntohs(e->sport), d, ntohs(e->dport), e->verdict == SWITCH_ALLOW ? "allow" : "drop",
	       e->reason < sizeof reasons / sizeof reasons[0] ? reasons[e->reason] : "?");
	fflush(stdout);
}

static int usage(void)
{
	fprintf(stderr, "usage: net-switchctl IFNAME --guest A --host A --gateway A [--no-internet] "
			"[--allow CIDR]... [--deny CIDR]... [--unblock CIDR]...\n");
	return 2;
}

static int command(struct net_sw *sw, struct switch_sandbox *s, char *line, unsigned ifindex)
{
	char verb[16], arg[64];
	line[strcspn(line, "\n")] = '\0';
	if (sscanf(line, "%15s %63s", verb, arg) < 1)
		return 0;
	int rc = 0;
	if (!strcmp(verb, "allow") || !strcmp(verb, "deny"))
		rc = net_switch_rule(sw, ID, verb[0] == 'a', arg, true);
	else if (!strcmp(verb, "internet"))
		s->allow_internet = !strcmp(arg, "on");
	else if (!strcmp(verb, "counters")) {
		struct switch_counters c;
		net_switch_counters(sw, ID, &c);
		printf("counters tx=%llu rx=%llu dropped=%llu\n", (unsigned long long)c.tx_packets,
		       (unsigned long long)c.rx_packets, (unsigned long long)c.dropped);
		fflush(stdout);
		return 0;
	} else {
		printf("error unknown command %s\n", verb);
		fflush(stdout);
		return 0;
	}
	s->generation++;
	if (rc == 0)
		rc = net_switch_set_sandbox(sw, ifindex, s);
	printf(rc == 0 ? "ok\n" : "error %s\n", strerror(errno));
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	unsigned ifindex = if_nametoindex(argv[1]);
	if (!ifindex) {
		fprintf(stderr, "net-switchctl: %s: no such interface\n", argv[1]);
		return 1;
	}
	struct switch_sandbox s = {.id = ID, .generation = 1, .allow_internet = 1};
	const char *allow[64], *deny[64], *unblock[65];
	int nallow = 0, ndeny = 0, nunblock = 0;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		struct in_addr in;
		if (!strcmp(a, "--no-internet")) {
			s.allow_internet = 0;
			continue;
		}
		if (!v)
			return usage();
		i++;
		if (!strcmp(a, "--allow") && nallow < 64)
			allow[nallow++] = v;
		else if (!strcmp(a, "--deny") && ndeny < 64)
			deny[ndeny++] = v;
		else if (!strcmp(a, "--unblock") && nunblock < 64)
			unblock[nunblock++] = v;
		else if (inet_pton(AF_INET, v, &in) == 1 && !strcmp(a, "--guest"))
			s.guest_addr = in.s_addr;
		else if (inet_pton(AF_INET, v, &in) == 1 && !strcmp(a, "--host"))
			s.host_addr = in.s_addr;
		else if (inet_pton(AF_INET, v, &in) == 1 && !strcmp(a, "--gateway"))
			s.gateway_addr = in.s_addr;
		else
			return usage();
	}
	if (!s.guest_addr || !s.host_addr || !s.gateway_addr)
		return usage();
	unblock[nunblock] = NULL;
	char err[256] = "";
	struct net_sw *sw = net_switch_load(unblock, err, sizeof err);
	if (!sw) {
		fprintf(stderr, "net-switchctl: %s\n", err);
		return 1;
	}
	int rc = 1;
	for (int i = 0; i < nallow; i++)
		if (net_switch_rule(sw, ID, true, allow[i], true) < 0)
			goto out;
	for (int i = 0; i < ndeny; i++)
		if (net_switch_rule(sw, ID, false, deny[i], true) < 0)
			goto out;
	if (net_switch_set_sandbox(sw, ifindex, &s) < 0 ||
	    tc_attach((int)ifindex, net_switch_prog_fd(sw, true), true, "from_guest", err, sizeof err) < 0 ||
	    tc_attach((int)ifindex, net_switch_prog_fd(sw, false), false, "to_guest", err, sizeof err) < 0) {
		fprintf(stderr, "net-switchctl: %s\n", err[0] ? err : strerror(errno));
		goto out;
	}
	printf("ready\n");
	fflush(stdout);
	char line[256];
	for (;;) {
		struct pollfd p = {.fd = 0, .events = POLLIN};
		int n = poll(&p, 1, 50);
		net_switch_audit_poll(sw, print_event, NULL);
		if (n > 0) {
			if (!fgets(line, sizeof line, stdin))
				break;
			command(sw, &s, line, ifindex);
		}
	}
	rc = 0;
out:
	tc_detach((int)ifindex);
	net_switch_free(sw);
	return rc;
}
