/*
 * main_proxy.c - cube-proxy: the sandbox proxy daemon (api/proxy.h).
 *
 *   cube-proxy [--state DIR] [--run DIR] [--listen ADDR:PORT] [--tls-listen ADDR:PORT|off]
 *              [--domain D] [--api ADDR:PORT]
 *
 * Plain HTTP on --listen (default 0.0.0.0:80), TLS on --tls-listen (default
 * 0.0.0.0:443) with DIR/config/server.crt + server.key (api/proxy_tls.h:
 * reloaded when they change, or on SIGHUP; until they exist TLS connections
 * are dropped). The domain is --domain, else the first line of
 * DIR/config/domain, else "cubeos.local". Host api.<domain> (the SDKs'
 * default API URL) is relayed to cube-api at --api (default 127.0.0.1:3000).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/loop.h"
#include "daemon_opts.h"
#include "proxy.h"
#include "proxy_tls.h"

/* cube-proxy's command line: the shared options, then its own. */
struct options {
	struct daemon_opts d;
	const char *tls_listen; /* "off": none */
	const char *api;	/* cube-api's HTTP listener, ADDR:PORT */
};

static void usage(FILE *f)
{
	fputs("usage: cube-proxy [--state DIR] [--run DIR] [--listen ADDR:PORT] [--tls-listen ADDR:PORT|off]\n"
	      "                  [--domain D] [--api ADDR:PORT]\n"
	      "  --state DIR        persistent state (default /var/lib/cubeos): the sandbox registry\n"
	      "  --run DIR          runtime directory (default /run/cubeos)\n"
	      "  --listen ADDR:PORT plain HTTP listener (default 0.0.0.0:80)\n"
	      "  --tls-listen ADDR:PORT|off  TLS listener (default 0.0.0.0:443), certificate and key\n"
	      "                     DIR/config/server.crt and server.key (reloaded when they change)\n"
	      "  --domain D         sandbox host names are <port>-<id>.D (default: DIR/config/domain,\n"
	      "                     else cubeos.local)\n"
	      "  --api ADDR:PORT    cube-api's HTTP listener, where Host api.D goes (default 127.0.0.1:3000)\n",
	      f);
}

#define OPT_TLS_LISTEN 't'
#define OPT_API	       'a'

/* --tls-listen and --api, the options of cube-proxy alone. */
static int on_extra_option(int val, const char *arg, void *ctx)
{
	struct options *o = ctx;
	if (val == OPT_TLS_LISTEN)
		o->tls_listen = arg;
	else if (val == OPT_API)
		o->api = arg;
	else
		return -1;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option extra[] = {
	    {"tls-listen", required_argument, NULL, OPT_TLS_LISTEN},
	    {"api", required_argument, NULL, OPT_API},
	    {NULL, 0, NULL, 0},
	};
	*o = (struct options){
	    .d =
		{
		    .name = "cube-proxy",
		    .with = DAEMON_OPT_RUN,
		    .usage = usage,
		    .extra = extra,
		    .on_extra = on_extra_option,
		    .ctx = o,
		    .state_dir = "/var/lib/cubeos",
		    .run_dir = "/run/cubeos",
		    .listen = "0.0.0.0:80",
		},
	    .tls_listen = "0.0.0.0:443",
	    .api = "127.0.0.1:3000",
	};
	return daemon_opts_parse(&o->d, argc, argv);
}

static void on_reload_signal(void *arg, int signo)
{
	(void)signo;
	log_info("proxy.reload", "SIGHUP: reloading the TLS certificate");
	proxy_tls_reload(arg, true);
}

/* The TLS listener, its credentials from DIR/config/server.{crt,key}. */
static struct proxy_tls *start_tls(struct proxy *px, const struct options *o)
{
	char addr[128], cert[4096], key[4096];
	int port;
	if (daemon_split_listen(o->tls_listen, addr, sizeof addr, &port) < 0) {
		fprintf(stderr, "cube-proxy: --tls-listen wants ADDR:PORT or off, got '%s'\n", o->tls_listen);
		exit(2);
	}
	snprintf(cert, sizeof cert, "%s/config/server.crt", o->d.state_dir);
	snprintf(key, sizeof key, "%s/config/server.key", o->d.state_dir);
	struct proxy_tls *tls = proxy_tls_new(cert, key);
	if (!tls || proxy_listen_tcp(px, addr, port, proxy_tls_wrap, tls) < 0) {
		log_error("proxy.start", "cannot listen on %s: %s", o->tls_listen, strerror(errno));
		exit(1);
	}
	return tls;
}

static void on_stop_signal(void *arg, int signo)
{
	log_info("proxy.stop", "signal %d", signo);
	loop_stop(arg);
}

int main(int argc, char **argv)
{
	struct options o;
	if (parse_options(argc, argv, &o) < 0)
		return 2;
	log_set_component("proxy");
	signal(SIGPIPE, SIG_IGN);

	char *domain_file = o.d.domain ? NULL : daemon_domain_file(o.d.state_dir);
	const char *domain = o.d.domain ? o.d.domain : domain_file ? domain_file : "cubeos.local";
	char addr[128];
	int port;
	if (daemon_split_listen(o.d.listen, addr, sizeof addr, &port) < 0) {
		fprintf(stderr, "cube-proxy: --listen wants ADDR:PORT, got '%s'\n", o.d.listen);
		return 2;
	}
	char api_addr[128];
	int api_port;
	struct in6_addr probe;
	if (daemon_split_listen(o.api, api_addr, sizeof api_addr, &api_port) < 0 ||
	    (inet_pton(AF_INET, api_addr, &probe) != 1 && inet_pton(AF_INET6, api_addr, &probe) != 1)) {
		fprintf(stderr, "cube-proxy: --api wants an IP address and port (e.g. 127.0.0.1:3000), got '%s'\n",
			o.api);
		return 2;
	}

	struct loop *l = loop_new();
	if (!l) {
		log_error("proxy.start", "cannot create the event loop: %s", strerror(errno));
		return 1;
	}
	struct proxy_config cfg = {
	    .state_dir = o.d.state_dir, .domain = domain, .api_addr = api_addr, .api_port = api_port};
	struct proxy *px = proxy_new(l, &cfg);
	if (!px || proxy_listen_tcp(px, addr, port, NULL, NULL) < 0) {
		log_error("proxy.start", "cannot listen on %s: %s", o.d.listen, strerror(errno));
		return 1;
	}
	struct proxy_tls *tls = strcmp(o.tls_listen, "off") ? start_tls(px, &o) : NULL;
	if (tls)
		loop_on_signal(l, SIGHUP, on_reload_signal, tls);
	loop_on_signal(l, SIGTERM, on_stop_signal, l);
	loop_on_signal(l, SIGINT, on_stop_signal, l);
	log_info("proxy.start", "listening on %s, TLS on %s, domain %s, api.%s to %s, state %s", o.d.listen,
		 o.tls_listen, domain, domain, o.api, o.d.state_dir);
	int rc = loop_run(l);
	proxy_free(px);
	proxy_tls_free(tls);
	loop_free(l);
	free(domain_file);
	return rc < 0 ? 1 : 0;
}
