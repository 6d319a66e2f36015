/*
 * main_proxy.c - cube-proxy: the sandbox proxy daemon (api/proxy.h).
 *
 *   cube-proxy [--state DIR] [--run DIR] [--listen ADDR:PORT] [--domain D]
 *
 * Plain HTTP on --listen (default 0.0.0.0:80). The domain is --domain, else
 * the first line of DIR/config/domain, else "cubeos.local".
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/loop.h"
#include "proxy.h"

struct options {
	const char *state_dir;
	const char *run_dir;
	const char *listen;
	const char *domain;
};

static void usage(FILE *f)
{
	fputs("usage: cube-proxy [--state DIR] [--run DIR] [--listen ADDR:PORT] [--domain D]\n"
	      "  --state DIR        persistent state (default /var/lib/cubeos): the sandbox registry\n"
	      "  --run DIR          runtime directory (default /run/cubeos)\n"
	      "  --listen ADDR:PORT plain HTTP listener (default 0.0.0.0:80)\n"
	      "  --domain D         sandbox host names are <port>-<id>.D (default: DIR/config/domain,\n"
	      "                     else cubeos.local)\n",
	      f);
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"state", required_argument, NULL, 's'},  {"run", required_argument, NULL, 'r'},
	    {"listen", required_argument, NULL, 'l'}, {"domain", required_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},	      {NULL, 0, NULL, 0},
	};
	*o = (struct options){"/var/lib/cubeos", "/run/cubeos", "0.0.0.0:80", NULL};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': o->state_dir = optarg; break;
		case 'r': o->run_dir = optarg; break;
		case 'l': o->listen = optarg; break;
		case 'd': o->domain = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "cube-proxy: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* "ADDR:PORT", "[V6]:PORT" or ":PORT" into addr (may become "") and port. */
static int split_listen(const char *s, char *addr, size_t addrsz, int *port)
{
	const char *colon = strrchr(s, ':');
	if (!colon)
		return -1;
	const char *a = s;
	size_t al = (size_t)(colon - s);
	if (al >= 2 && a[0] == '[' && a[al - 1] == ']') {
		a++;
		al -= 2;
	}
	if (al >= addrsz)
		return -1;
	memcpy(addr, a, al);
	addr[al] = '\0';
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || p < 1 || p > 65535)
		return -1;
	*port = (int)p;
	return 0;
}

/* The first line of DIR/config/domain, or NULL. */
static char *read_domain_file(const char *state_dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/config/domain", state_dir);
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	char line[256];
	char *d = NULL;
	if (fgets(line, sizeof line, f)) {
		line[strcspn(line, " \t\r\n")] = '\0';
		if (line[0])
			d = strdup(line);
	}
	fclose(f);
	return d;
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

	char *domain_file = o.domain ? NULL : read_domain_file(o.state_dir);
	const char *domain = o.domain ? o.domain : domain_file ? domain_file : "cubeos.local";
	char addr[128];
	int port;
	if (split_listen(o.listen, addr, sizeof addr, &port) < 0) {
		fprintf(stderr, "cube-proxy: --listen wants ADDR:PORT, got '%s'\n", o.listen);
		return 2;
	}

	struct loop *l = loop_new();
	if (!l) {
		log_error("proxy.start", "cannot create the event loop: %s", strerror(errno));
		return 1;
	}
	struct proxy_config cfg = {.state_dir = o.state_dir, .domain = domain};
	struct proxy *px = proxy_new(l, &cfg);
	if (!px || proxy_listen_tcp(px, addr, port, NULL, NULL) < 0) {
		log_error("proxy.start", "cannot listen on %s: %s", o.listen, strerror(errno));
		return 1;
	}
	loop_on_signal(l, SIGTERM, on_stop_signal, l);
	loop_on_signal(l, SIGINT, on_stop_signal, l);
	log_info("proxy.start", "listening on %s, domain %s, state %s", o.listen, domain, o.state_dir);
	int rc = loop_run(l);
	proxy_free(px);
	loop_free(l);
	free(domain_file);
	return rc < 0 ? 1 : 0;
}
