/*
 * daemon_opts.h - the command line the api/ daemons share.
 *
 * cube-api, cube-proxy and cube-dns all take --state DIR, --listen
 * ADDR:PORT and --domain D (cube-api and cube-proxy also --run DIR, cube-api
 * and cube-dns also --debug), and all find their domain the same way: --domain,
 * else the first line of DIR/config/domain that the admin console writes,
 * else "cubeos.local". Each daemon keeps its own options (--tls-listen,
 * --address, --vmm, ...) and hands them in as extra getopt_long entries.
 */
#ifndef CUBE_API_DAEMON_OPTS_H
#define CUBE_API_DAEMON_OPTS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Shared options a daemon may leave out of its command line. */
#define DAEMON_OPT_RUN	 0x1 /* --run DIR */
#define DAEMON_OPT_DEBUG 0x2 /* --debug */

struct daemon_opts {
	/* Set by the daemon before parsing. */
	const char *name;				      /* "cube-proxy": prefixes error messages */
	unsigned with;					      /* DAEMON_OPT_* it accepts */
	void (*usage)(FILE *f);				      /* prints its usage text */
	const struct option *extra;			      /* its own options, {NULL} ended; may be NULL */
	int (*on_extra)(int val, const char *arg, void *ctx); /* one of them; -1 stops */
	void *ctx;

	/* Defaults set by the daemon, replaced by the command line. */
	const char *state_dir; /* --state */
	const char *run_dir;   /* --run */
	const char *listen;    /* --listen ADDR:PORT */
	const char *domain;    /* --domain; NULL: not given */
	bool debug;	       /* --debug */
};

/* Parses argv with getopt_long. --help prints the usage to stdout and exits
 * 0; an unknown option, a bad extra or a stray argument prints why (and the
 * usage for an unknown option) to stderr and returns -1. 0 on success. */
int daemon_opts_parse(struct daemon_opts *o, int argc, char **argv);

/* Splits "ADDR:PORT", "[V6]:PORT" or ":PORT" into addr (may become "") and
 * a port 1..65535. 0, or -1 when s is not one of those or addr is too short. */
int daemon_split_listen(const char *s, char *addr, size_t addrsz, int *port);

/* The first word of the first line of DIR/config/domain as a new string,
 * or NULL when there is none. */
char *daemon_domain_file(const char *state_dir);

#endif
