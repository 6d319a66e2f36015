/* daemon_opts.c - the command line the api/ daemons share (see daemon_opts.h). */
#include "daemon_opts.h"

#include <stdlib.h>
#include <string.h>

/* getopt_long values of the shared options: above every character, so they
 * never meet a daemon's own short-letter values. */
enum { OPT_STATE = 0x100, OPT_RUN, OPT_LISTEN, OPT_DOMAIN, OPT_DEBUG };

#define MAX_OPTIONS 32

/* The shared options this daemon accepts, then its own, then the end mark.
 * -1 if they do not fit (a programming error, reported as bad usage). */
static int build_longopts(const struct daemon_opts *o, struct option *out)
{
	int n = 0;
	out[n++] = (struct option){"state", required_argument, NULL, OPT_STATE};
	if (o->with & DAEMON_OPT_RUN)
		out[n++] = (struct option){"run", required_argument, NULL, OPT_RUN};
	out[n++] = (struct option){"listen", required_argument, NULL, OPT_LISTEN};
	out[n++] = (struct option){"domain", required_argument, NULL, OPT_DOMAIN};
	if (o->with & DAEMON_OPT_DEBUG)
		out[n++] = (struct option){"debug", no_argument, NULL, OPT_DEBUG};
	out[n++] = (struct option){"help", no_argument, NULL, 'h'};
	for (const struct option *e = o->extra; e && e->name; e++) {
		if (n == MAX_OPTIONS - 1)
			return -1;
		out[n++] = *e;
	}
	out[n] = (struct option){NULL, 0, NULL, 0};
	return 0;
}

int daemon_opts_parse(struct daemon_opts *o, int argc, char **argv)
{
	struct option longopts[MAX_OPTIONS];
	if (build_longopts(o, longopts) < 0) {
		fprintf(stderr, "%s: too many options\n", o->name);
		return -1;
	}
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case OPT_STATE: o->state_dir = optarg; break;
		case OPT_RUN: o->run_dir = optarg; break;
		case OPT_LISTEN: o->listen = optarg; break;
		case OPT_DOMAIN: o->domain = optarg; break;
		case OPT_DEBUG: o->debug = true; break;
		case 'h': o->usage(stdout); exit(0);
		case '?':
		case ':': o->usage(stderr); return -1;
		default:
			if (!o->on_extra || o->on_extra(ch, optarg, o->ctx) < 0)
				return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", o->name, argv[optind]);
		return -1;
	}
	return 0;
}

int daemon_split_listen(const char *s, char *addr, size_t addrsz, int *port)
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

char *daemon_domain_file(const char *state_dir)
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
