/*
 * main_api.c - cube-api: the E2B REST control plane (see api/api.h).
 *
 *   cube-api [--state DIR] [--run DIR] [--listen ADDR:PORT] [--domain D]
 *            [--vmm PATH] [--debug]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/loop.h"
#include "api.h"
#include "vm.h"

static const struct vm_ops real_vm_ops = {
    .start = vm_start,
    .stop = vm_stop,
    .pause = vm_pause,
    .resume = vm_resume,
    .alive = vm_alive,
    .template_build = template_build,
};

struct options {
	struct api_config cfg;
	char listen_addr[256];
	int port;
	char domain[256];
};

static void usage(FILE *f)
{
	fputs("usage: cube-api [--state DIR] [--run DIR] [--listen ADDR:PORT] [--domain D] [--vmm PATH] [--debug]\n"
	      "  --state DIR        persistent state (default /var/lib/cubeos)\n"
	      "  --run DIR          runtime sockets (default /run/cubeos)\n"
	      "  --listen ADDR:PORT default 0.0.0.0:3000\n"
	      "  --domain D         default: DIR/config/domain, else cubeos.local\n"
	      "  --vmm PATH         cube-vmm binary (default /usr/bin/cube-vmm)\n",
	      f);
}

/* "ADDR:PORT" or "[v6]:PORT" or ":PORT". */
static int parse_listen(const char *s, struct options *o)
{
	const char *colon = strrchr(s, ':');
	if (!colon)
		return -1;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return -1;
	size_t n = (size_t)(colon - s);
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n >= sizeof o->listen_addr)
		return -1;
	memcpy(o->listen_addr, s, n);
	o->listen_addr[n] = '\0';
	o->port = (int)port;
	return 0;
}

/* The domain the admin console set, first line of DIR/config/domain. */
static void read_domain_file(struct options *o)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/config/domain", o->cfg.state_dir);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(o->domain, sizeof o->domain, f))
		o->domain[strcspn(o->domain, "\r\n \t")] = '\0';
	fclose(f);
	if (o->domain[0])
		o->cfg.domain = o->domain;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	o->cfg.state_dir = "/var/lib/cubeos";
	o->cfg.run_dir = "/run/cubeos";
	snprintf(o->listen_addr, sizeof o->listen_addr, "0.0.0.0");
	o->port = 3000;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "--debug") == 0) {
			log_set_level(LOG_DEBUG);
			continue;
		}
		if (!v) {
			fprintf(stderr, "cube-api: %s needs a value (or is unknown)\n", a);
			return -1;
		}
		i++;
		if (strcmp(a, "--state") == 0)
			o->cfg.state_dir = v;
		else if (strcmp(a, "--run") == 0)
			o->cfg.run_dir = v;
		else if (strcmp(a, "--domain") == 0)
			o->cfg.domain = v;
		else if (strcmp(a, "--vmm") == 0)
			o->cfg.vmm_path = v;
		else if (strcmp(a, "--listen") == 0) {
			if (parse_listen(v, o) < 0) {
				fprintf(stderr, "cube-api: --listen wants ADDR:PORT, got \"%s\"\n", v);
				return -1;
			}
		} else {
			fprintf(stderr, "cube-api: unknown option %s\n", a);
			return -1;
		}
	}
	if (!o->cfg.domain)
		read_domain_file(o);
	return 0;
}

static void on_stop_signal(void *arg, int signo)
{
	log_info("api.stop", "signal %d: stopping", signo);
	loop_stop(arg);
}

int main(int argc, char **argv)
{
	struct options o;
	memset(&o, 0, sizeof o);
	log_set_component("api");
	if (parse_args(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct loop *l = loop_new();
	if (!l) {
		log_error("api.start", "cannot create the event loop: %s", strerror(errno));
		return 1;
	}
	/* Before api_new: the worker threads inherit the blocked mask, so
	 * these signals reach the loop's signalfd, never a worker. */
	loop_on_signal(l, SIGTERM, on_stop_signal, l);
	loop_on_signal(l, SIGINT, on_stop_signal, l);
	struct api *a = api_new(l, &o.cfg, &real_vm_ops);
	if (!a)
		return 1;
	if (http_server_listen_tcp(api_server(a), o.listen_addr, o.port) < 0) {
		log_error("api.start", "cannot listen on %s:%d: %s", o.listen_addr, o.port, strerror(errno));
		api_free(a);
		loop_free(l);
		return 1;
	}
	log_info("api.start", "listening on %s:%d, state %s, run %s, domain %s", o.listen_addr, o.port, o.cfg.state_dir,
		 o.cfg.run_dir, o.cfg.domain ? o.cfg.domain : "cubeos.local");
	int rc = loop_run(l);
	api_free(a);
	loop_free(l);
	return rc < 0 ? 1 : 0;
}
