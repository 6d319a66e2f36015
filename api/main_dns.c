/*
 * main_dns.c - cube-dns: the appliance's DNS responder (api/dns.h).
 *
 *   cube-dns [--state DIR] [--listen ADDR:PORT] [--domain D] [--address A.B.C.D] [--debug]
 *
 * UDP and TCP on --listen (default 0.0.0.0:53). The zone is --domain, else
 * the first line of DIR/config/domain, else "cubeos.local". Without
 * --address, answers carry the address each query arrived on (or the first
 * non-loopback IPv4 address), so a new DHCP lease is followed at once.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/loop.h"
#include "daemon_opts.h"
#include "dns.h"

static void usage(FILE *f)
{
	fputs("usage: cube-dns [--state DIR] [--listen ADDR:PORT] [--domain D] [--address A.B.C.D] [--debug]\n"
	      "  --state DIR        persistent state (default /var/lib/cubeos): DIR/config/domain\n"
	      "  --listen ADDR:PORT UDP and TCP (default 0.0.0.0:53)\n"
	      "  --domain D         the zone: D and *.D (default: DIR/config/domain, else cubeos.local)\n"
	      "  --address A.B.C.D  the answer (default: the address each query arrived on, else the\n"
	      "                     first non-loopback IPv4 address)\n"
	      "  --debug            log every query\n",
	      f);
}

#define OPT_ADDRESS 'a'

/* --address, the one option of cube-dns alone. */
static int on_extra_option(int val, const char *arg, void *ctx)
{
	if (val != OPT_ADDRESS)
		return -1;
	*(const char **)ctx = arg;
	return 0;
}

static void on_stop_signal(void *arg, int signo)
{
	log_info("dns.stop", "signal %d", signo);
	loop_stop(arg);
}

int main(int argc, char **argv)
{
	static const struct option extra[] = {
	    {"address", required_argument, NULL, OPT_ADDRESS},
	    {NULL, 0, NULL, 0},
	};
	const char *address = NULL;
	struct daemon_opts o = {
	    .name = "cube-dns",
	    .with = DAEMON_OPT_DEBUG,
	    .usage = usage,
	    .extra = extra,
	    .on_extra = on_extra_option,
	    .ctx = &address,
	    .state_dir = "/var/lib/cubeos",
	    .listen = "0.0.0.0:53",
	};
	if (daemon_opts_parse(&o, argc, argv) < 0)
		return 2;
	log_set_component("dns");
	if (o.debug)
		log_set_level(LOG_DEBUG);
	signal(SIGPIPE, SIG_IGN);

	char *domain_file = o.domain ? NULL : daemon_domain_file(o.state_dir);
	const char *domain = o.domain ? o.domain : domain_file ? domain_file : "cubeos.local";
	char addr[64];
	int port;
	if (daemon_split_listen(o.listen, addr, sizeof addr, &port) < 0) {
		fprintf(stderr, "cube-dns: --listen wants ADDR:PORT (IPv4), got '%s'\n", o.listen);
		return 2;
	}
	struct loop *l = loop_new();
	if (!l) {
		log_error("dns.start", "cannot create the event loop: %s", strerror(errno));
		return 1;
	}
	struct dns_server_config cfg = {.domain = domain, .address = address};
	struct dns_server *s = dns_server_new(l, &cfg);
	if (!s) {
		fprintf(stderr, "cube-dns: bad --address '%s' or domain '%s'\n", address ? address : "", domain);
		return 2;
	}
	if (dns_server_listen(s, addr, port) < 0) {
		log_error("dns.start", "cannot listen on %s: %s", o.listen, strerror(errno));
		return 1;
	}
	loop_on_signal(l, SIGTERM, on_stop_signal, l);
	loop_on_signal(l, SIGINT, on_stop_signal, l);
	log_info("dns.start", "listening on %s (udp, tcp), zone %s, answer %s", o.listen, domain,
		 address ? address : "the address asked");
	int rc = loop_run(l);
	dns_server_free(s);
	loop_free(l);
	free(domain_file);
	return rc < 0 ? 1 : 0;
}
