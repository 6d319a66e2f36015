/* test_service.c - dependency order, cycles, backoff, and real children under the real event loop. */
#include "../service.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/tests/test.h"
#include "tmpdir.h"

static char *deps_a[] = {"b", NULL}, *deps_b[] = {"c", NULL}, *deps_c[] = {"a", NULL}, *deps_none[] = {NULL};
static char *argv_true[] = {"/bin/true", NULL};

TEST(order_puts_dependencies_first)
{
	struct service_def d[] = {{"api", argv_true, (char *[]){"vmm", "net", NULL}, NULL},
				  {"vmm", argv_true, (char *[]){"net", NULL}, NULL},
				  {"net", argv_true, deps_none, NULL},
				  {"dns", argv_true, NULL, NULL}};
	size_t order[4];
	char err[128];
	if (!CHECK_EQ_INT(service_order(d, 4, order, err, sizeof err), 0))
		return;
	CHECK_EQ_INT(order[0], 2); /* net */
	CHECK_EQ_INT(order[1], 3); /* dns: no deps, table order after net */
	CHECK_EQ_INT(order[2], 1); /* vmm */
	CHECK_EQ_INT(order[3], 0); /* api */
}

TEST(order_refuses_cycles_with_the_cycle_named)
{
	struct service_def d[] = {{"a", argv_true, deps_a, NULL},
				  {"b", argv_true, deps_b, NULL},
				  {"c", argv_true, deps_c, NULL},
				  {"d", argv_true, NULL, NULL}};
	size_t order[4];
	char err[128];
	CHECK_EQ_INT(service_order(d, 4, order, err, sizeof err), -1);
	CHECK_STREQ(err, "dependency cycle: a -> b -> c -> a");
	struct service_def self[] = {{"x", argv_true, (char *[]){"x", NULL}, NULL}};
	CHECK_EQ_INT(service_order(self, 1, order, err, sizeof err), -1);
	CHECK_STREQ(err, "dependency cycle: x -> x");
}

TEST(order_refuses_unknown_and_duplicate_names)
{
	struct service_def d[] = {{"a", argv_true, (char *[]){"nope", NULL}, NULL}};
	size_t order[2];
	char err[128];
	CHECK_EQ_INT(service_order(d, 1, order, err, sizeof err), -1);
	CHECK_STREQ(err, "service a depends on unknown service nope");
	struct service_def dup[] = {{"a", argv_true, NULL, NULL}, {"a", argv_true, NULL, NULL}};
	CHECK_EQ_INT(service_order(dup, 2, order, err, sizeof err), -1);
	CHECK_STREQ(err, "service a is declared twice");
}

TEST(backoff_doubles_caps_and_resets)
{
	struct backoff b = BACKOFF_DEFAULT;
	uint64_t want[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
	for (size_t i = 0; i < 8; i++)
		CHECK_EQ_INT(backoff_delay(&b, 100), want[i]);
	CHECK_EQ_INT(backoff_delay(&b, 59999), 30000);
	CHECK_EQ_INT(backoff_delay(&b, 60000), 500); /* a healthy minute resets */
	CHECK_EQ_INT(backoff_delay(&b, 0), 1000);
}

TEST(table_from_json)
{
	const char *j = "[{\"name\":\"a\",\"argv\":[\"/bin/sh\",\"-c\",\"x\"],\"deps\":[\"b\"]},"
			"{\"name\":\"b\",\"argv\":[\"/bin/true\"],\"env\":[\"K=V\"]}]";
	struct service_def *d;
	size_t n;
	char err[128];
	if (!CHECK_EQ_INT(service_defs_from_json(j, strlen(j), &d, &n, err, sizeof err), 0))
		return;
	CHECK_EQ_INT(n, 2);
	CHECK_STREQ(d[0].argv[2], "x");
	CHECK_STREQ(d[0].deps[0], "b");
	CHECK_STREQ(d[1].env[0], "K=V");
	service_defs_free(d, n);
	CHECK_EQ_INT(service_defs_from_json("[{\"argv\":1}]", 12, &d, &n, err, sizeof err), -1);
	CHECK_EQ_INT(service_defs_from_json("{", 1, &d, &n, err, sizeof err), -1);
}

/* --- real children ----------------------------------------------------------- */

static struct service_def *one_def(const char *name, const char *script)
{
	struct service_def *d = calloc(1, sizeof *d);
	d->name = strdup(name);
	d->argv = calloc(4, sizeof(char *));
	d->argv[0] = strdup("/bin/sh");
	d->argv[1] = strdup("-c");
	d->argv[2] = strdup(script);
	return d;
}

static void stop_loop(void *arg)
{
	loop_stop(arg);
}

static void run_for(struct loop *l, uint64_t ms)
{
	struct loop_timer t = {0};
	loop_timer_arm(l, &t, ms, stop_loop, l);
	loop_run(l);
}

static char *make_dir(void)
{
	return tmpdir_make("svc");
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *data = calloc(1, 65536);
	if (f) {
		size_t n = fread(data, 1, 65535, f);
		data[n] = '\0';
		fclose(f);
	}
	return data;
}

TEST(crashing_service_is_restarted_with_backoff_and_logged)
{
	struct loop *l = loop_new();
	char *dir = make_dir();
	char err[128];
	struct service_set *set = service_set_new(
	    l, one_def("crashy", "echo out-line; echo err-line >&2; sleep 0.1; exit 3"), 1, dir, -1, err, sizeof err);
	if (!CHECK(set != NULL))
		return;
	set->backoff = (struct backoff){100, 400, 60000, 100};
	service_start_all(set);
	struct service *s = &set->svc[0];
	CHECK_EQ_INT(s->state, SVC_STARTING);
	/* Runs of 0.1 s, then delays 100, 200, 400 (capped), 400: exits at
	 * 0.1, 0.3, 0.6 and 1.1 s, the next start due at 1.5 s. */
	run_for(l, 1300);
	CHECK_EQ_INT(s->restarts, 4);
	CHECK_EQ_INT(s->state, SVC_BACKOFF);
	CHECK(s->has_exited && WIFEXITED(s->last_status) && WEXITSTATUS(s->last_status) == 3);
	char how[64];
	service_describe_exit(s, how, sizeof how);
	CHECK_STREQ(how, "exit 3");

	char path[256];
	snprintf(path, sizeof path, "%s/crashy.log", dir);
	char *log = slurp(path);
	CHECK(strstr(log, "\"level\":\"info\",\"comp\":\"crashy\",\"event\":\"output\",\"msg\":\"out-line\"") != NULL);
	CHECK(strstr(log, "\"level\":\"warn\",\"comp\":\"crashy\",\"event\":\"output\",\"msg\":\"err-line\"") != NULL);
	free(log);
	service_set_free(set);
	loop_free(l);
	tmpdir_remove(dir);
	free(dir);
}

static int stopped_calls;
static void on_all_stopped(void *arg)
{
	stopped_calls++;
	loop_stop(arg);
}

TEST(stop_all_goes_in_reverse_order_and_kills_stubborn_ones)
{
	struct loop *l = loop_new();
	char *dir = make_dir();
	char marks[300], script_a[400], script_b[400];
	snprintf(marks, sizeof marks, "%s/marks", dir);
	snprintf(script_a, sizeof script_a, "trap 'echo a >> %s; exit 0' TERM; while :; do sleep 0.05; done", marks);
	/* b ignores SIGTERM: it must get SIGKILL after the timeout. */
	snprintf(script_b, sizeof script_b, "trap 'echo b >> %s' TERM; while :; do sleep 0.05; done", marks);
	struct service_def *d = calloc(2, sizeof *d);
	struct service_def *a = one_def("a", script_a), *b = one_def("b", script_b);
	d[0] = *a;
	d[1] = *b;
	free(a);
	free(b);
	d[1].deps = calloc(2, sizeof(char *));
	d[1].deps[0] = strdup("a"); /* b depends on a: stop b first */
	char err[128];
	struct service_set *set = service_set_new(l, d, 2, dir, -1, err, sizeof err);
	if (!CHECK(set != NULL))
		return;
	set->stop_timeout_ms = 300;
	service_start_all(set);
	run_for(l, 300);
	uint64_t t0 = mono_ms();
	service_stop_all(set, on_all_stopped, l);
	loop_run(l);
	CHECK_EQ_INT(stopped_calls, 1);
	CHECK(mono_ms() - t0 >= 300); /* waited for b's timeout */
	CHECK_EQ_INT(set->svc[0].state, SVC_STOPPED);
	CHECK_EQ_INT(set->svc[1].state, SVC_STOPPED);
	CHECK(WIFSIGNALED(set->svc[1].last_status) && WTERMSIG(set->svc[1].last_status) == SIGKILL);
	char *got = slurp(marks);
	CHECK_STREQ(got, "b\na\n");
	free(got);
	service_set_free(set);
	loop_free(l);
	tmpdir_remove(dir);
	free(dir);
}

TEST(log_rotates_at_the_cap)
{
	char *dir = make_dir();
	struct svclog lg;
	if (!CHECK_EQ_INT(svclog_open(&lg, dir, "rot", 300, -1), 0))
		return;
	for (int i = 0; i < 10; i++)
		svclog_line(&lg, LOG_INFO, "0123456789012345678901234567890123456789", 40);
	char path[256];
	snprintf(path, sizeof path, "%s/rot.log.1", dir);
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size > 0 && st.st_size <= 300);
	CHECK(lg.size <= 300);
	/* JSON lines from our own daemons are kept as they are. */
	const char *own = "{\"ts\":\"x\",\"level\":\"error\",\"comp\":\"api\",\"event\":\"e\",\"msg\":\"m\"}";
	svclog_line(&lg, LOG_INFO, own, strlen(own));
	snprintf(path, sizeof path, "%s/rot.log", dir);
	char *log = slurp(path);
	CHECK(strstr(log, own) != NULL);
	free(log);
	svclog_close(&lg);
	tmpdir_remove(dir);
	free(dir);
}

static struct service_set *one_set(struct loop *l, const char *dir, const char *name, const char *script)
{
	char err[128];
	struct service_set *set = service_set_new(l, one_def(name, script), 1, dir, -1, err, sizeof err);
	if (set)
		set->backoff = (struct backoff){200, 400, 60000, 200};
	return set;
}

TEST(restart_stops_cleanly_then_starts_again)
{
	struct loop *l = loop_new();
	char *dir = make_dir();
	char marks[300], script[500];
	snprintf(marks, sizeof marks, "%s/marks", dir);
	snprintf(script, sizeof script,
		 "echo started >> %s; trap 'echo term >> %s; exit 0' TERM; while :; do sleep 0.05; done", marks, marks);
	struct service_set *set = one_set(l, dir, "r", script);
	if (!CHECK(set != NULL))
		return;
	service_start_all(set);
	run_for(l, 200);
	struct service *s = &set->svc[0];
	pid_t first = s->pid;
	CHECK_EQ_INT(service_restart(s), 0);
	CHECK_EQ_INT(s->state, SVC_STOPPING);
	CHECK_EQ_INT(service_restart(s), -1);
	CHECK_EQ_INT(errno, EALREADY);
	run_for(l, 300);
	CHECK(s->pid > 0 && s->pid != first);
	CHECK_EQ_INT(s->state, SVC_STARTING);
	CHECK_EQ_INT(s->restarts, 1);
	CHECK(WIFEXITED(s->last_status) && WEXITSTATUS(s->last_status) == 0); /* a clean stop */
	char *got = slurp(marks);
	CHECK_STREQ(got, "started\nterm\nstarted\n");
	free(got);
	if (s->pid > 0)
		kill(s->pid, SIGKILL);
	run_for(l, 50);
	service_set_free(set);
	loop_free(l);
	tmpdir_remove(dir);
	free(dir);
}

TEST(kill_is_a_crash_restarted_with_backoff)
{
	struct loop *l = loop_new();
	char *dir = make_dir();
	struct service_set *set = one_set(l, dir, "k", "exec sleep 30");
	if (!CHECK(set != NULL))
		return;
	service_start_all(set);
	run_for(l, 100);
	struct service *s = &set->svc[0];
	pid_t first = s->pid;
	CHECK_EQ_INT(service_kill(s, SIGKILL), 0);
	run_for(l, 100);
	CHECK_EQ_INT(s->state, SVC_BACKOFF);
	CHECK_EQ_INT(s->restarts, 1);
	CHECK(WIFSIGNALED(s->last_status) && WTERMSIG(s->last_status) == SIGKILL);
	CHECK_EQ_INT(service_kill(s, SIGTERM), -1); /* nothing to signal while in backoff */
	CHECK_EQ_INT(errno, ESRCH);
	run_for(l, 200); /* the 200 ms backoff */
	CHECK(s->pid > 0 && s->pid != first);
	/* A restart asked for while in backoff starts at once. */
	CHECK_EQ_INT(service_kill(s, SIGKILL), 0);
	run_for(l, 50);
	CHECK_EQ_INT(s->state, SVC_BACKOFF);
	CHECK_EQ_INT(service_restart(s), 0);
	CHECK_EQ_INT(s->state, SVC_STARTING);
	CHECK_EQ_INT(s->restarts, 3);
	if (s->pid > 0)
		kill(s->pid, SIGKILL);
	run_for(l, 50);
	service_set_free(set);
	loop_free(l);
	tmpdir_remove(dir);
	free(dir);
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

TEST(services_up_is_logged_once_when_all_run)
{
	struct loop *l = loop_new();
	char *dir = make_dir();
	char path[300];
	snprintf(path, sizeof path, "%s/events", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	log_set_fd(fd);
	struct service_def *d = calloc(2, sizeof *d);
	struct service_def *a = one_def("a", "exec sleep 30"), *b = one_def("b", "exec sleep 30");
	d[0] = *a;
	d[1] = *b;
	free(a);
	free(b);
	char err[128];
	struct service_set *set = service_set_new(l, d, 2, dir, -1, err, sizeof err);
	if (!CHECK(set != NULL))
		return;
	set->backoff = (struct backoff){100, 400, 60000, 100};
	service_start_all(set);
	run_for(l, SVC_SETTLE_MS / 2);
	CHECK(!set->all_up);
	run_for(l, SVC_SETTLE_MS / 2 + 200);
	CHECK(set->all_up);
	/* A crash and a return to running do not log it again. */
	service_kill(&set->svc[0], SIGKILL);
	run_for(l, SVC_SETTLE_MS + 300);
	CHECK_EQ_INT(set->svc[0].state, SVC_RUNNING);
	log_set_fd(2);
	close(fd);
	char *got = slurp(path);
	CHECK_EQ_INT(count_of(got, "\"event\":\"services.up\""), 1);
	CHECK(strstr(got, "all 2 services running") != NULL);
	free(got);
	for (size_t i = 0; i < 2; i++)
		if (set->svc[i].pid > 0)
			kill(set->svc[i].pid, SIGKILL);
	run_for(l, 50);
	service_set_free(set);
	loop_free(l);
	tmpdir_remove(dir);
	free(dir);
}
