/* test_daemon_opts.c - api/daemon_opts.c: the daemons' shared command line. */
#include "../daemon_opts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/tests/test.h"

static void no_usage(FILE *f)
{
	(void)f;
}

static int on_extra(int val, const char *arg, void *ctx)
{
	if (val != 'x' || strcmp(arg, "bad") == 0)
		return -1;
	*(const char **)ctx = arg;
	return 0;
}

static const struct option extra[] = {{"extra", required_argument, NULL, 'x'}, {NULL, 0, NULL, 0}};

/* Parses a NULL-ended argument list from a fresh getopt state. */
static int parse(struct daemon_opts *o, const char **args)
{
	char *argv[16] = {"daemon"};
	int argc = 1;
	while (*args && argc < 15)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	optind = 0; /* glibc: 0 also resets its internal state */
	opterr = 0;
	return daemon_opts_parse(o, argc, argv);
}

static struct daemon_opts defaults(const char **extra_value, unsigned with)
{
	return (struct daemon_opts){.name = "test",
				    .with = with,
				    .usage = no_usage,
				    .extra = extra,
				    .on_extra = on_extra,
				    .ctx = extra_value,
				    .state_dir = "/state",
				    .run_dir = "/run",
				    .listen = "0.0.0.0:1"};
}

TEST(parse_shared_and_extra_options)
{
	const char *x = NULL;
	struct daemon_opts o = defaults(&x, DAEMON_OPT_RUN | DAEMON_OPT_DEBUG);
	CHECK_EQ_INT(parse(&o, (const char *[]){NULL}), 0);
	CHECK(CHECK_STREQ(o.state_dir, "/state") && CHECK_STREQ(o.listen, "0.0.0.0:1") && !o.domain && !o.debug);
	CHECK_EQ_INT(parse(&o, (const char *[]){"--state", "/s", "--run=/r", "--listen", ":9", "--domain", "d.test",
						"--debug", "--extra", "v", NULL}),
		     0);
	CHECK(CHECK_STREQ(o.state_dir, "/s") && CHECK_STREQ(o.run_dir, "/r") && CHECK_STREQ(o.listen, ":9"));
	CHECK(CHECK_STREQ(o.domain, "d.test") && o.debug && x && CHECK_STREQ(x, "v"));
}

TEST(parse_refuses_what_the_daemon_does_not_take)
{
	const char *x = NULL;
	struct daemon_opts o = defaults(&x, 0);
	CHECK_EQ_INT(parse(&o, (const char *[]){"--run", "/r", NULL}), -1);
	CHECK_EQ_INT(parse(&o, (const char *[]){"--debug", NULL}), -1);
	CHECK_EQ_INT(parse(&o, (const char *[]){"--unknown", NULL}), -1);
	CHECK_EQ_INT(parse(&o, (const char *[]){"--state", NULL}), -1); /* missing value */
	CHECK_EQ_INT(parse(&o, (const char *[]){"--extra", "bad", NULL}), -1);
	CHECK_EQ_INT(parse(&o, (const char *[]){"stray", NULL}), -1);
}

TEST(split_listen_forms)
{
	char addr[16];
	int port = 0;
	CHECK(daemon_split_listen("1.2.3.4:80", addr, sizeof addr, &port) == 0 && CHECK_STREQ(addr, "1.2.3.4"));
	CHECK_EQ_INT(port, 80);
	CHECK(daemon_split_listen("[::1]:443", addr, sizeof addr, &port) == 0 && CHECK_STREQ(addr, "::1"));
	CHECK_EQ_INT(port, 443);
	CHECK(daemon_split_listen(":53", addr, sizeof addr, &port) == 0 && CHECK_STREQ(addr, ""));
	CHECK_EQ_INT(port, 53);
	const char *bad[] = {"nope", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:8x", "123456789012345678:1"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK_EQ_INT(daemon_split_listen(bad[i], addr, sizeof addr, &port), -1);
}

TEST(domain_file_first_word_or_null)
{
	char dir[] = "/tmp/test_daemon_opts.XXXXXX", sub[64], path[96];
	CHECK(mkdtemp(dir) != NULL);
	CHECK(daemon_domain_file(dir) == NULL);
	snprintf(sub, sizeof sub, "%s/config", dir);
	snprintf(path, sizeof path, "%s/domain", sub);
	CHECK(mkdir(sub, 0755) == 0);
	FILE *f = fopen(path, "w");
	fputs("box.test  # set by the console\nother\n", f);
	fclose(f);
	char *d = daemon_domain_file(dir);
	CHECK(d && CHECK_STREQ(d, "box.test"));
	free(d);
	f = fopen(path, "w");
	fputs("\n", f);
	fclose(f);
	CHECK(daemon_domain_file(dir) == NULL);
	unlink(path);
	rmdir(sub);
	rmdir(dir);
}
