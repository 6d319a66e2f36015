/* test_shell.c - the admin shell: word splitting, and whole sessions over pipes with the real event loop. */
#include "../shell.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../config.h"
#include "../service.h"
#include "../../lib/buf.h"
#include "../../lib/tests/test.h"
#include "tmpdir.h"

TEST(split_words_and_quotes)
{
	char line[] = "  apikey create \"my ci key\" 'a b'c  ";
	char *argv[8];
	const char *err = NULL;
	if (!CHECK_EQ_INT(shell_split(line, argv, 8, &err), 4))
		return;
	CHECK_STREQ(argv[0], "apikey");
	CHECK_STREQ(argv[2], "my ci key");
	CHECK_STREQ(argv[3], "a bc");
	char bad[] = "logs \"x";
	CHECK_EQ_INT(shell_split(bad, argv, 8, &err), -1);
	CHECK_STREQ(err, "unterminated quote");
	char many[] = "a b c d e f g h i";
	CHECK_EQ_INT(shell_split(many, argv, 8, &err), -1);
	char empty[] = "   ";
	CHECK_EQ_INT(shell_split(empty, argv, 8, &err), 0);
}

/* --- sessions ------------------------------------------------------------------- */

struct session {
	struct cubeos os;
	struct config config;
	int to_shell[2], from_shell[2];
	struct shell_tty *tty;
	struct buf out;
	char *dir;
	enum power_action power;
};

static void record_power(struct cubeos *c, enum power_action a)
{
	c->shutting_down = a;
}

static void session_open(struct session *s)
{
	memset(s, 0, sizeof *s);
	s->dir = tmpdir_make("sh");
	char path[300];
	snprintf(path, sizeof path, "%s/config", s->dir);
	struct first_boot fb;
	config_open(&s->config, path, 1000, &fb);
	s->config.durable = false;
	config_set_password(&s->config, "letmein");
	snprintf(path, sizeof path, "%s/logs", s->dir);
	mkdir(path, 0700);
	s->os.loop = loop_new();
	s->os.config = &s->config;
	s->os.state_dir = s->dir;
	s->os.started_ms = mono_ms();
	s->os.request_power = record_power;
	/* One service, so status and logs have something real to show. */
	struct service_def *d = calloc(1, sizeof *d);
	d->name = strdup("echoer");
	d->argv = calloc(4, sizeof(char *));
	d->argv[0] = strdup("/bin/sh");
	d->argv[1] = strdup("-c");
	d->argv[2] = strdup("echo hello from echoer; exec sleep 30");
	char err[128];
	s->os.services = service_set_new(s->os.loop, d, 1, path, -1, err, sizeof err);
	service_start_all(s->os.services);
	pipe2(s->to_shell, O_CLOEXEC);
	pipe2(s->from_shell, O_CLOEXEC);
	s->tty = shell_tty_attach(&s->os, s->to_shell[0], s->from_shell[1], NULL, NULL);
	shell_tty_shell(s->tty)->lock_ms = 300;
	fd_nonblock(s->from_shell[0]);
}

static void stop_loop(void *arg)
{
	loop_stop(arg);
}

/* Sends text, runs the loop for ms, and returns everything the shell wrote since the last call. */
static const char *say(struct session *s, const char *text, uint64_t ms)
{
	if (text)
		CHECK_EQ_INT(write(s->to_shell[1], text, strlen(text)), strlen(text));
	struct loop_timer t = {0};
	loop_timer_arm(s->os.loop, &t, ms, stop_loop, s->os.loop);
	loop_run(s->os.loop);
	buf_reset(&s->out);
	char chunk[4096];
	ssize_t r;
	while ((r = read(s->from_shell[0], chunk, sizeof chunk)) > 0)
		buf_append(&s->out, chunk, (size_t)r);
	return s->out.data ? s->out.data : "";
}

/* Like say(), but for output that depends on a child process: runs the loop
 * in short slices until the output so far contains want, or max_ms passed
 * (a loaded machine can take far longer than usual to run /bin/sh). */
static const char *say_until(struct session *s, const char *text, const char *want, uint64_t max_ms)
{
	if (text)
		CHECK_EQ_INT(write(s->to_shell[1], text, strlen(text)), strlen(text));
	buf_reset(&s->out);
	uint64_t deadline = mono_ms() + max_ms;
	do {
		struct loop_timer t = {0};
		loop_timer_arm(s->os.loop, &t, 20, stop_loop, s->os.loop);
		loop_run(s->os.loop);
		char chunk[4096];
		ssize_t r;
		while ((r = read(s->from_shell[0], chunk, sizeof chunk)) > 0)
			buf_append(&s->out, chunk, (size_t)r);
		if (s->out.data && strstr(s->out.data, want))
			break;
	} while (mono_ms() < deadline);
	return s->out.data ? s->out.data : "";
}

static void session_close(struct session *s)
{
	struct service_set *set = s->os.services;
	if (set->svc[0].pid > 0) /* 0 would be our own process group */
		kill(set->svc[0].pid, SIGKILL);
	shell_tty_free(s->tty);
	service_set_free(set);
	loop_free(s->os.loop);
	config_close(&s->config);
	for (int i = 0; i < 2; i++) {
		close(s->to_shell[i]);
		close(s->from_shell[i]);
	}
	buf_free(&s->out);
	tmpdir_remove(s->dir);
	free(s->dir);
}

TEST(session_login_status_unknown_apikeys_logs)
{
	struct session s;
	session_open(&s);
	CHECK(strstr(say(&s, NULL, 50), "Password: ") != NULL);
	const char *o = say(&s, "wrong\n", 50);
	CHECK(strstr(o, "wrong password") != NULL);
	CHECK(strstr(o, "wrong\n") == NULL); /* passwords are not echoed */
	o = say(&s, "letmein\r\n", 50);
	CHECK(strstr(o, "logged in") && strstr(o, "cubeos> "));

	o = say(&s, "status\n", 50);
	CHECK(strstr(o, "hostname   cubeos-") != NULL);
	CHECK(strstr(o, "echoer") && strstr(o, "starting"));
	CHECK(strstr(o, "kvm ") && strstr(o, "memory ") && strstr(o, "uptime "));
	CHECK(strstr(o, "sandboxes  0 running, 0 paused") != NULL);

	o = say(&s, "frobnicate now\n", 50);
	CHECK(strstr(o, "unknown command \"frobnicate\"; type help") != NULL);
	o = say(&s, "apikey\n", 50);
	CHECK(strstr(o, "apikey create [NAME]") != NULL);
	o = say(&s, "apikey revoke\n", 50);
	CHECK(strstr(o, "usage: apikey revoke ID") != NULL);

	o = say(&s, "apikey create \"deploy bot\"\n", 50);
	const char *key = strstr(o, "key  e2b_");
	CHECK(key != NULL);
	char id[17] = "";
	const char *idp = strstr(o, "id   ");
	if (idp)
		sscanf(idp + 5, "%16s", id);
	o = say(&s, "apikey list\n", 50);
	CHECK(strstr(o, "deploy bot") && strstr(o, id) && strstr(o, "admin"));
	CHECK(strstr(o, "e2b_") == NULL); /* list never shows keys */
	char cmd[64];
	snprintf(cmd, sizeof cmd, "apikey revoke %s\n", id);
	CHECK(strstr(say(&s, cmd, 50), "revoked") != NULL);
	CHECK(strstr(say(&s, "apikey list\n", 50), "deploy bot") == NULL);
	CHECK(strstr(say(&s, "apikey revoke nope\n", 50), "no API key with id") != NULL);

	o = say(&s, "logs echoer\n", 50);
	CHECK(strstr(o, "\"msg\":\"hello from echoer\"") != NULL);
	CHECK(strstr(say(&s, "logs nosuch\n", 50), "error: no service \"nosuch\"") != NULL);
	CHECK(strstr(say(&s, "logs echoer 0\n", 50), "LINES is a number") != NULL);

	CHECK(strstr(say(&s, "net set static eth0 10.0.0.2/24 10.0.0.1 9.9.9.9\n", 50), "saved; applied at next boot"));
	CHECK(strstr(say(&s, "net set static eth0 10.0.0.2/33 10.0.0.1\n", 50), "ADDR/PREFIX must look like"));
	CHECK(strstr(say(&s, "net set bogus\n", 50), "expected dhcp or static"));
	CHECK(strstr(say(&s, "net show\n", 50), "\"mode\":\"static\""));
	CHECK(strstr(say(&s, "ca\n", 50), "SHA-256 fingerprint: "));
	CHECK(strstr(say(&s, "sandbox list\n", 50), "no sandboxes"));
	CHECK(strstr(say(&s, "install /dev/sda\n", 50), "not available in test mode"));
	CHECK(strstr(say(&s, "help\n", 50), "apikey revoke ID"));
	CHECK(strstr(say(&s, "reboot\n", 50), "reboot: stopping services"));
	CHECK_EQ_INT(s.os.shutting_down, POWER_REBOOT);
	o = say(&s, "exit\n", 50);
	CHECK(strstr(o, "logged out\r\nPassword: ") != NULL);
	CHECK(strstr(strstr(o, "Password: ") + 1, "Password: ") == NULL); /* one prompt */
	session_close(&s);
}

TEST(session_three_wrong_passwords_lock_for_a_while)
{
	struct session s;
	session_open(&s);
	say(&s, NULL, 20);
	const char *o = say(&s, "a\nb\nc\nletmein\n", 50);
	CHECK(strstr(o, "too many wrong passwords") != NULL);
	CHECK(strstr(o, "logged in") == NULL); /* typed while locked: dropped */
	o = say(&s, NULL, 400);
	CHECK(strstr(o, "Password: ") != NULL);
	CHECK(strstr(say(&s, "letmein\n", 50), "logged in") != NULL);
	session_close(&s);
}

TEST(session_editing_and_bad_input)
{
	struct session s;
	session_open(&s);
	say(&s, "letmein\n", 50);
	/* Backspace fixes a typo; arrow keys and control bytes are ignored. */
	CHECK(strstr(say(&s, "helq\x7fp\x1b[A\x01\n", 50), "commands:") != NULL);
	/* Ctrl-C drops the line. */
	const char *o = say(&s, "poweroff\x03", 50);
	CHECK(strstr(o, "^C") != NULL);
	CHECK_EQ_INT(s.os.shutting_down, POWER_NONE);
	/* A very long line is refused, and the shell goes on. */
	char *big = malloc(5000);
	memset(big, 'x', 4998);
	big[4998] = '\n';
	big[4999] = '\0';
	CHECK(strstr(say(&s, big, 50), "line too long") != NULL);
	free(big);
	CHECK(strstr(say(&s, "status\n", 50), "hostname") != NULL);
	CHECK(strstr(say(&s, "\"unterminated\n", 50), "unterminated quote") != NULL);
	/* Ctrl-D logs out. */
	CHECK(strstr(say(&s, "\x04", 50), "logged out") != NULL);
	CHECK(strstr(say(&s, "status\n", 50), "wrong password") != NULL);
	session_close(&s);
}

/* Writes DIR/<kind>/<name>/<file> with text (the api's record layout). */
static void put_record(const char *dir, const char *kind, const char *name, const char *file, const char *text)
{
	char path[600];
	snprintf(path, sizeof path, "%s/%s", dir, kind);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/%s/%s", dir, kind, name);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/%s/%s/%s", dir, kind, name, file);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

TEST(session_sandbox_and_template_list_read_the_records)
{
	struct session s;
	session_open(&s);
	say(&s, "letmein\n", 50);
	CHECK(strstr(say(&s, "template list\n", 50), "no templates"));
	put_record(s.dir, "sandboxes", "abc123", "sandbox.json",
		   "{\"sandboxID\":\"abc123\",\"templateID\":\"base\",\"state\":\"running\","
		   "\"startedAt\":\"2026-11-23T17:47:04.340Z\",\"endAt\":\"2026-11-23T17:49:04.340Z\","
		   "\"metadata\":{\"a\":\"b\",\"evil\":\"x\\u001b[2Jy\"}}");
	put_record(s.dir, "sandboxes", "broken", "sandbox.json", "{\"sandboxID\":");
	put_record(s.dir, "sandboxes", "odd", "sandbox.json", "{\"templateID\":7}");
	char starting[600];
	snprintf(starting, sizeof starting, "%s/sandboxes/starting", s.dir);
	mkdir(starting, 0700); /* no record yet: skipped */
	const char *o = say(&s, "sandbox list\n", 50);
	CHECK(strstr(o, "abc123                base              running   2026-11-23 17:47:04  2026-11-23 17:49:04  "
			"a=b,evil=x?[2Jy\r\n") != NULL);
	CHECK(strstr(o, "\x1b") == NULL); /* control bytes from a record never reach the console */
	CHECK(strstr(o, "warning: ") && strstr(o, "/sandboxes/broken/sandbox.json"));
	CHECK(strstr(
	    o, "odd                   -                 -         -                    -                    -\r\n"));
	CHECK(strstr(o, "starting") == NULL);
	put_record(s.dir, "templates", "base", "template.json",
		   "{\"templateID\":\"base\",\"state\":\"building\",\"progress\":60,\"cpuCount\":2,"
		   "\"memoryMB\":512,\"diskSizeMB\":64,\"updatedAt\":\"2026-11-23T17:46:27.571Z\"}");
	put_record(s.dir, "templates", "py", "template.json",
		   "{\"state\":\"error\",\"error\":\"no /sbin/init\",\"createdAt\":\"2026-11-23T10:00:00Z\"}");
	o = say(&s, "template list\n", 50);
	CHECK(strstr(o, "base              building 60%       2   512 MiB    64 MiB  2026-11-23 17:46:27\r\n"));
	CHECK(strstr(o, "py                error              0     0 MiB     0 MiB  2026-11-23 10:00:00\r\n"));
	CHECK(strstr(o, "  error: no /sbin/init\r\n"));
	session_close(&s);
}

/* The child side of `sandbox kill` (the image test drives it against the real
 * api): ids that cannot name a sandbox never reach the api, and an api that
 * does not answer is a clear error. */
TEST(sandbox_kill_refuses_bad_ids_and_a_missing_api)
{
	CHECK_EQ_INT(sandbox_kill_main("/nonexistent/api.sock", "../etc"), 1);
	CHECK_EQ_INT(sandbox_kill_main("/nonexistent/api.sock", "ABC"), 1);
	CHECK_EQ_INT(sandbox_kill_main("/nonexistent/api.sock", ""), 1);
	CHECK_EQ_INT(sandbox_kill_main("/nonexistent/api.sock", "abc123"), 1);
}

/* --- commands that run a child (shell_run) ---------------------------------------- */

static struct shell *logged_in(struct session *s)
{
	session_open(s);
	say(s, "letmein\n", 50);
	return shell_tty_shell(s->tty);
}

static bool process_gone(pid_t pid)
{
	return kill(pid, 0) < 0 && errno == ESRCH;
}

TEST(run_streams_output_then_status_and_prompt)
{
	struct session s;
	struct shell *sh = logged_in(&s);
	char *const argv[] = {"/bin/sh", "-c", "echo one; printf 'crlf\\r\\n'; echo two >&2; exit 3", NULL};
	CHECK_EQ_INT(shell_run(sh, argv), 0);
	CHECK_EQ_INT(sh->mode, SHELL_RUNNING);
	const char *o = say_until(&s, NULL, "cubeos> ", 10000);
	/* LF becomes CRLF, a CRLF stays one, stderr comes too, and the prompt follows the status. */
	CHECK(strstr(o, "one\r\ncrlf\r\ntwo\r\n[exit 3]\r\ncubeos> ") != NULL);
	CHECK(strstr(o, "\r\r\n") == NULL);
	CHECK_EQ_INT(sh->mode, SHELL_COMMAND);

	char *const ok[] = {"/bin/sh", "-c", "echo fine", NULL};
	CHECK_EQ_INT(shell_run(sh, ok), 0);
	o = say_until(&s, NULL, "cubeos> ", 10000);
	CHECK(strstr(o, "fine\r\ncubeos> ") != NULL);
	CHECK(strstr(o, "[exit") == NULL); /* success needs no status line */

	char *const missing[] = {"/nonexistent/prog", NULL};
	CHECK_EQ_INT(shell_run(sh, missing), 0);
	o = say_until(&s, NULL, "cubeos> ", 10000);
	CHECK(strstr(o, "cannot run /nonexistent/prog") && strstr(o, "[exit 127]"));
	session_close(&s);
}

TEST(run_ignores_typing_and_stops_on_ctrl_c)
{
	struct session s;
	struct shell *sh = logged_in(&s);
	char *const argv[] = {"/bin/sh", "-c", "echo started; sleep 30; echo not-reached", NULL};
	CHECK_EQ_INT(shell_run(sh, argv), 0);
	CHECK(strstr(say_until(&s, NULL, "started", 10000), "started") != NULL);
	/* A second command cannot start, and typed lines do not run. */
	CHECK_EQ_INT(shell_run(sh, argv), -1);
	const char *o = say(&s, "status\n", 100);
	CHECK(strstr(o, "a command is still running") != NULL);
	CHECK(strstr(o, "hostname") == NULL);
	pid_t pid = sh->child.pid;
	uint64_t t0 = mono_ms();
	o = say_until(&s, "\x03", "cubeos> ", 10000);
	CHECK(strstr(o, "^C\r\n") && strstr(o, "[signal 2 (Interrupt)]\r\ncubeos> "));
	CHECK(mono_ms() - t0 < 1000);
	CHECK(process_gone(pid));
	CHECK(strstr(say(&s, "status\n", 50), "hostname") != NULL); /* the shell goes on */
	session_close(&s);
}

TEST(run_killed_by_ctrl_d_and_by_hangup)
{
	struct session s;
	struct shell *sh = logged_in(&s);
	char *const argv[] = {"/bin/sh", "-c", "sleep 30 & sleep 30", NULL};
	CHECK_EQ_INT(shell_run(sh, argv), 0);
	say(&s, NULL, 100);
	pid_t pid = sh->child.pid;
	const char *o = say(&s, "\x04", 200);
	CHECK(strstr(o, "the running command was killed") && strstr(o, "Password: "));
	CHECK(process_gone(pid));
	CHECK_EQ_INT(sh->mode, SHELL_LOGIN);

	/* The console's input ends (a hangup): the command dies with it. */
	say(&s, "letmein\n", 50);
	CHECK_EQ_INT(shell_run(sh, argv), 0);
	say(&s, NULL, 100);
	pid = sh->child.pid;
	close(s.to_shell[1]);
	s.to_shell[1] = -1;
	say(&s, NULL, 200);
	CHECK(process_gone(pid));
	session_close(&s);
}

static void to_buf(void *arg, const char *text, size_t n)
{
	buf_append(arg, text, n);
}

TEST(run_needs_a_loop)
{
	struct buf out = BUF_INIT;
	struct shell sh;
	shell_init(&sh, NULL, to_buf, &out, false);
	char *const argv[] = {"/bin/true", NULL};
	CHECK_EQ_INT(shell_run(&sh, argv), -1);
	CHECK(out.data && strstr(out.data, "cannot run programs here"));
	shell_fini(&sh);
	buf_free(&out);
}

TEST(service_list_restart_kill)
{
	struct session s;
	logged_in(&s);
	struct service *svc = &s.os.services->svc[0];
	say(&s, NULL, 100);
	const char *o = say(&s, "service list\n", 50);
	CHECK(strstr(o, "DEPENDS ON") && strstr(o, "echoer") && strstr(o, "/bin/sh -c echo hello"));
	o = say(&s, "status\n", 50);
	CHECK(strstr(o, "UPTIME") != NULL);

	pid_t first = svc->pid;
	o = say(&s, "service restart echoer\n", 300);
	CHECK(strstr(o, "echoer: stopping pid") != NULL);
	CHECK(svc->pid > 0 && svc->pid != first);
	CHECK_EQ_INT(svc->restarts, 1);

	o = say(&s, "service kill echoer TERM\n", 100);
	CHECK(strstr(o, "sent signal 15 (Terminated) to echoer") != NULL);
	CHECK_EQ_INT(svc->state, SVC_BACKOFF);
	CHECK_EQ_INT(svc->restarts, 2);
	CHECK(strstr(say(&s, "service kill echoer\n", 50), "cannot signal echoer: it has no running process"));
	CHECK(strstr(say(&s, "service kill echoer BOGUS\n", 50), "unknown signal \"BOGUS\""));
	CHECK(strstr(say(&s, "service restart nosuch\n", 50), "error: no service \"nosuch\""));
	CHECK(strstr(say(&s, "service\n", 50), "service kill NAME [SIGNAL]"));
	session_close(&s);
}

TEST(signal_names)
{
	CHECK_EQ_INT(shell_parse_signal("KILL"), SIGKILL);
	CHECK_EQ_INT(shell_parse_signal("sigterm"), SIGTERM);
	CHECK_EQ_INT(shell_parse_signal("hup"), SIGHUP);
	CHECK_EQ_INT(shell_parse_signal("9"), 9);
	CHECK_EQ_INT(shell_parse_signal("0"), -1);
	CHECK_EQ_INT(shell_parse_signal("999"), -1);
	CHECK_EQ_INT(shell_parse_signal(""), -1);
	CHECK_EQ_INT(shell_parse_signal("9x"), -1);
}
