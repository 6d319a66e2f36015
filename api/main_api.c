/*
 * main_api.c - cube-api: the E2B REST control plane (see api/api.h).
 *
 *   cube-api [--state DIR] [--run DIR] [--listen ADDR:PORT] [--domain D]
 *            [--vmm PATH] [--pool-size N] [--debug]
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
#include "daemon_opts.h"
#include "vm.h"

static const struct vm_ops real_vm_ops = {
    .start = vm_start,
    .stop = vm_stop,
    .pause = vm_pause,
    .resume = vm_resume,
    .alive = vm_alive,
    .prestart = vm_prestart,
    .claim = vm_claim,
    .checkpoint = vm_checkpoint,
    .template_build = template_build,
};

struct options {
	struct api_config cfg;
	char listen_addr[256];
	int port;
	char *domain_file; /* DIR/config/domain's, when --domain is not given */
};

static void usage(FILE *f)
{
	fputs(
	    "usage: cube-api [--state DIR] [--run DIR] [--listen ADDR:PORT] [--domain D] [--vmm PATH] [--pool-size N]\n"
	    "                [--max-sandboxes N] [--min-free-mib N] [--debug]\n"
	    "  --state DIR        persistent state (default /var/lib/cubeos)\n"
	    "  --run DIR          runtime sockets (default /run/cubeos)\n"
	    "  --listen ADDR:PORT default 0.0.0.0:3000\n"
	    "  --domain D         default: DIR/config/domain, else cubeos.local\n"
	    "  --vmm PATH         cube-vmm binary (default /usr/bin/cube-vmm)\n"
	    "  --pool-size N      paused VMMs kept warm per template (default 2, 0: none);\n"
	    "                     DIR/config/pool.json {\"<template>\": N, \"*\": N} overrides it\n"
	    "  --max-sandboxes N  creates are 429 while N sandboxes run (default 2000)\n"
	    "  --min-free-mib N   creates are 429 while less memory is available (default 256)\n",
	    f);
}

/* cube-api's own options. */
enum { OPT_VMM = 'v', OPT_POOL_SIZE = 'p', OPT_MAX_SANDBOXES = 'm', OPT_MIN_FREE = 'f' };

/* A number in [lo, hi] for option `name`, or -1 with a message. */
static long number_option(const char *name, const char *arg, long lo, long hi)
{
	char *end;
	long n = strtol(arg, &end, 10);
	if (*end || end == arg || n < lo || n > hi) {
		fprintf(stderr, "cube-api: --%s wants %ld..%ld, got \"%s\"\n", name, lo, hi, arg);
		return -1;
	}
	return n;
}

static int on_extra_option(int val, const char *arg, void *ctx)
{
	struct api_config *cfg = ctx;
	long n;
	switch (val) {
	case OPT_VMM: cfg->vmm_path = arg; return 0;
	case OPT_POOL_SIZE:
		if ((n = number_option("pool-size", arg, 0, 64)) < 0)
			return -1;
		cfg->pool_size = (int)n;
		return 0;
	case OPT_MAX_SANDBOXES:
		if ((n = number_option("max-sandboxes", arg, 1, 100000)) < 0)
			return -1;
		cfg->max_sandboxes = (int)n;
		return 0;
	case OPT_MIN_FREE:
		if ((n = number_option("min-free-mib", arg, 1, 1 << 20)) < 0)
			return -1;
		cfg->min_free_mib = (int)n;
		return 0;
	default: return -1;
	}
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option extra[] = {
	    {"vmm", required_argument, NULL, OPT_VMM},
	    {"pool-size", required_argument, NULL, OPT_POOL_SIZE},
	    {"max-sandboxes", required_argument, NULL, OPT_MAX_SANDBOXES},
	    {"min-free-mib", required_argument, NULL, OPT_MIN_FREE},
	    {NULL, 0, NULL, 0},
	};
	struct daemon_opts d = {
	    .name = "cube-api",
	    .with = DAEMON_OPT_RUN | DAEMON_OPT_DEBUG,
	    .usage = usage,
	    .extra = extra,
	    .on_extra = on_extra_option,
	    .ctx = &o->cfg,
	    .state_dir = "/var/lib/cubeos",
	    .run_dir = "/run/cubeos",
	    .listen = "0.0.0.0:3000",
	};
	o->cfg.pool_size = 2;
	if (daemon_opts_parse(&d, argc, argv) < 0)
		return -1;
	if (d.debug)
		log_set_level(LOG_DEBUG);
	if (daemon_split_listen(d.listen, o->listen_addr, sizeof o->listen_addr, &o->port) < 0) {
		fprintf(stderr, "cube-api: --listen wants ADDR:PORT, got \"%s\"\n", d.listen);
		return -1;
	}
	o->cfg.state_dir = d.state_dir;
	o->cfg.run_dir = d.run_dir;
	o->cfg.domain = d.domain;
	if (!o->cfg.domain)
		o->cfg.domain = o->domain_file = daemon_domain_file(d.state_dir);
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
	if (parse_args(argc, argv, &o) < 0)
		return 2;
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
	free(o.domain_file);
	return rc < 0 ? 1 : 0;
}
