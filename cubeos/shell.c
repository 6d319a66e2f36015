/* shell.c - line editing, login and command dispatch of the admin shell; see shell.h. */
#include "shell.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "config.h"
#include "service.h"

void shell_write(struct shell *sh, const char *s, size_t n)
{
	if (n)
		sh->out(sh->out_arg, s, n);
}

void shell_printf(struct shell *sh, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	shell_write(sh, b.data, b.len);
	buf_free(&b);
}

static void prompt(struct shell *sh)
{
	if (sh->mode == SHELL_COMMAND)
		shell_printf(sh, "cubeos> ");
	else if (sh->mode == SHELL_LOGIN)
		shell_printf(sh, "Password: ");
}

void shell_init(struct shell *sh, struct cubeos *os, shell_out_fn out, void *arg, bool echo)
{
	memset(sh, 0, sizeof *sh);
	sh->os = os;
	sh->out = out;
	sh->out_arg = arg;
	sh->echo = echo;
	sh->mode = SHELL_LOGIN;
	sh->lock_ms = SHELL_LOCK_MS;
}

static void child_forget(struct shell *sh);

void shell_fini(struct shell *sh)
{
	/* A session going away (hangup) takes its command with it. */
	shell_signal_child(sh, SIGKILL);
	child_forget(sh);
	if (sh->os && sh->os->loop)
		loop_timer_disarm(sh->os->loop, &sh->unlock);
	explicit_bzero(sh->line, sizeof sh->line);
}

void shell_start(struct shell *sh)
{
	const char *host = sh->os && sh->os->config ? sh->os->config->hostname : "cubeos";
	shell_printf(sh, "\r\nCubeOS admin console on %s\r\n", host);
	prompt(sh);
}

/* --- words ---------------------------------------------------------------- */

int shell_split(char *line, char **argv, int max, const char **err)
{
	int argc = 0;
	char *r = line, *w = line;
	for (;;) {
		while (*r == ' ' || *r == '\t')
			r++;
		if (!*r)
			return argc;
		if (argc == max) {
			*err = "too many words";
			return -1;
		}
		argv[argc++] = w;
		char quote = 0;
		while (*r && (quote || (*r != ' ' && *r != '\t'))) {
			if (quote && *r == quote)
				quote = 0;
			else if (!quote && (*r == '"' || *r == '\''))
				quote = *r;
			else
				*w++ = *r;
			r++;
		}
		if (quote) {
			*err = "unterminated quote";
			return -1;
		}
		bool end = !*r;
		*w++ = '\0';
		if (end)
			return argc;
		r++;
	}
}

/* --- commands --------------------------------------------------------------- */

/* Number of words of cmd->name that argv starts with, or 0. */
static int match_words(const struct shell_cmd *cmd, int argc, char **argv)
{
	char name[64];
	snprintf(name, sizeof name, "%s", cmd->name);
	char *words[3];
	const char *err;
	int nw = shell_split(name, words, 3, &err);
	if (nw > argc)
		return 0;
	for (int i = 0; i < nw; i++)
		if (strcmp(words[i], argv[i]) != 0)
			return 0;
	return nw;
}

static void usage_of_group(struct shell *sh, const char *word)
{
	shell_printf(sh, "usage:\r\n");
	for (const struct shell_cmd *c = shell_cmds; c->name; c++)
		if (strncmp(c->name, word, strlen(word)) == 0 && c->name[strlen(word)] == ' ')
			shell_printf(sh, "  %s %s\r\n", c->name, c->args);
}

static bool is_group(const char *word)
{
	for (const struct shell_cmd *c = shell_cmds; c->name; c++)
		if (strncmp(c->name, word, strlen(word)) == 0 && c->name[strlen(word)] == ' ')
			return true;
	return false;
}

void shell_run_line(struct shell *sh, char *line)
{
	char *argv[SHELL_ARGS_MAX];
	const char *err = NULL;
	int argc = shell_split(line, argv, SHELL_ARGS_MAX, &err);
	if (argc < 0) {
		shell_printf(sh, "error: %s\r\n", err);
		return;
	}
	if (argc == 0)
		return;
	const struct shell_cmd *best = NULL;
	int used = 0;
	for (const struct shell_cmd *c = shell_cmds; c->name; c++) {
		int nw = match_words(c, argc, argv);
		if (nw > used) {
			best = c;
			used = nw;
		}
	}
	if (!best) {
		if (is_group(argv[0]))
			usage_of_group(sh, argv[0]);
		else
			shell_printf(sh, "unknown command \"%.40s\"; type help for the list\r\n", argv[0]);
		return;
	}
	int nargs = argc - used;
	if (nargs < best->min_args || nargs > best->max_args) {
		shell_printf(sh, "usage: %s %s\r\n", best->name, best->args);
		return;
	}
	best->fn(sh, nargs, argv + used);
}

/* --- child processes (shell_run) ------------------------------------------------ */

/* Same base environment as the services get. */
static char *const child_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "TERM=linux", NULL};

bool shell_signal_child(struct shell *sh, int sig)
{
	if (sh->child.pid <= 0)
		return false;
	/* The child leads its own process group: its helpers get the signal too. */
	if (kill(-sh->child.pid, sig) < 0)
		kill(sh->child.pid, sig);
	return true;
}

/* Passes child output on, LF turned into CRLF (the console is in raw mode and
 * a pipe has no line discipline); a CRLF from the child stays as it is. */
static void child_output(struct shell *sh, const char *data, size_t n)
{
	if (sh->mode != SHELL_RUNNING)
		return; /* logged out meanwhile: nobody may see it */
	size_t from = 0;
	for (size_t i = 0; i < n; i++) {
		bool lf_alone = data[i] == '\n' && !(i > 0 ? data[i - 1] == '\r' : sh->child.last_cr);
		if (!lf_alone)
			continue;
		shell_write(sh, data + from, i - from);
		shell_write(sh, "\r\n", 2);
		from = i + 1;
	}
	shell_write(sh, data + from, n - from);
	if (n)
		sh->child.last_cr = data[n - 1] == '\r';
}

static void child_close_output(struct shell *sh)
{
	if (!sh->child.out_open)
		return;
	loop_io_del(sh->os->loop, &sh->child.out);
	close(sh->child.out.fd);
	sh->child.out_open = false;
}

/* Reads what the pipe holds now; closes it at end of file. */
static void child_drain(struct shell *sh)
{
	char chunk[4096];
	while (sh->child.out_open) {
		ssize_t r = read(sh->child.out.fd, chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r <= 0) {
			child_close_output(sh);
			return;
		}
		child_output(sh, chunk, (size_t)r);
	}
}

static void on_child_readable(void *arg, uint32_t events)
{
	child_drain(arg);
}

static void child_forget(struct shell *sh)
{
	if (sh->os && sh->os->loop) {
		child_close_output(sh);
		loop_child_unwatch(sh->os->loop, &sh->child.watch);
	}
	sh->child.pid = 0;
}

static void report_status(struct shell *sh, int wstatus)
{
	if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0)
		shell_printf(sh, "[exit %d]\r\n", WEXITSTATUS(wstatus));
	else if (WIFSIGNALED(wstatus))
		shell_printf(sh, "[signal %d (%s)]\r\n", WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)));
}

static void on_child_exit(void *arg, pid_t pid, int wstatus)
{
	struct shell *sh = arg;
	/* Whatever it wrote before exiting is in the pipe now. Helpers it left
	 * behind may hold the pipe open: the prompt does not wait for them. */
	child_drain(sh);
	child_forget(sh);
	if (sh->mode != SHELL_RUNNING)
		return;
	report_status(sh, wstatus);
	sh->mode = SHELL_COMMAND;
	prompt(sh);
}

int shell_run(struct shell *sh, char *const argv[])
{
	if (!sh->os || !sh->os->loop) {
		shell_printf(sh, "error: cannot run programs here\r\n");
		return -1;
	}
	if (sh->child.pid > 0) {
		shell_printf(sh, "error: a command is still running\r\n");
		return -1;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		shell_printf(sh, "error: cannot run %s: %s\r\n", argv[0], strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		shell_printf(sh, "error: cannot run %s: %s\r\n", argv[0], strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0)
		child_exec(argv, child_env, p[1], p[1]);
	/* Watch before returning to the loop, so the exit cannot be missed. */
	loop_child_watch(sh->os->loop, &sh->child.watch, pid, on_child_exit, sh);
	close(p[1]);
	fd_nonblock(p[0]);
	sh->child.pid = pid;
	sh->child.last_cr = false;
	sh->child.out_open = loop_io_add(sh->os->loop, &sh->child.out, p[0], EPOLLIN, on_child_readable, sh) == 0;
	if (!sh->child.out_open)
		close(p[0]); /* the child gets EPIPE; its exit still ends the command */
	sh->mode = SHELL_RUNNING;
	log_info("shell.run", "console runs %s, pid %d", argv[0], (int)pid);
	return 0;
}

/* Input while a child runs: Ctrl-C interrupts it, Ctrl-D kills it and logs
 * out; everything else is dropped (the child's stdin is /dev/null). */
static void feed_running(struct shell *sh, unsigned char ch)
{
	if (ch == 0x03) {
		shell_printf(sh, "^C\r\n");
		shell_signal_child(sh, SIGINT);
	} else if (ch == 0x04) {
		shell_signal_child(sh, SIGKILL);
		child_forget(sh);
		sh->mode = SHELL_LOGIN;
		shell_printf(sh, "\r\nlogged out (the running command was killed)\r\n");
		prompt(sh);
	}
}

/* --- login ------------------------------------------------------------------ */

static void on_unlock(void *arg)
{
	struct shell *sh = arg;
	sh->mode = SHELL_LOGIN;
	sh->wrong_tries = 0;
	prompt(sh);
}

static void try_password(struct shell *sh)
{
	bool ok = sh->os && sh->os->config && config_check_password(sh->os->config, sh->line);
	shell_printf(sh, "\r\n");
	if (ok) {
		sh->wrong_tries = 0;
		sh->mode = SHELL_COMMAND;
		log_info("shell.login", "admin logged in on the console");
		shell_printf(sh, "logged in; type help for the commands\r\n");
		return;
	}
	log_warn("shell.login", "wrong admin password on the console");
	shell_printf(sh, "wrong password\r\n");
	if (++sh->wrong_tries < SHELL_MAX_TRIES)
		return;
	shell_printf(sh, "too many wrong passwords; wait %llu seconds\r\n", (unsigned long long)(sh->lock_ms / 1000));
	sh->mode = SHELL_LOCKED;
	if (sh->os && sh->os->loop)
		loop_timer_arm(sh->os->loop, &sh->unlock, sh->lock_ms, on_unlock, sh);
	else
		on_unlock(sh); /* no loop (fuzzing): nothing to wait with */
}

/* --- line editing -------------------------------------------------------------- */

static void end_of_line(struct shell *sh)
{
	sh->line[sh->len] = '\0';
	if (sh->mode == SHELL_LOGIN) {
		try_password(sh);
	} else if (sh->overflow) {
		shell_printf(sh, "\r\nerror: line too long (at most %d characters)\r\n", SHELL_LINE_MAX - 1);
	} else {
		if (sh->echo)
			shell_printf(sh, "\r\n");
		shell_run_line(sh, sh->line);
	}
	explicit_bzero(sh->line, sizeof sh->line);
	sh->len = 0;
	sh->overflow = false;
	prompt(sh);
}

static void clear_line(struct shell *sh, const char *shown)
{
	explicit_bzero(sh->line, sizeof sh->line);
	sh->len = 0;
	sh->overflow = false;
	shell_printf(sh, "%s\r\n", shown);
	prompt(sh);
}

static void logout(struct shell *sh)
{
	if (sh->mode != SHELL_COMMAND) {
		clear_line(sh, "");
		return;
	}
	shell_printf(sh, "\r\nlogged out\r\n");
	sh->mode = SHELL_LOGIN;
	sh->len = 0;
	prompt(sh);
}

static void backspace(struct shell *sh)
{
	if (sh->len == 0)
		return;
	sh->len--;
	if (sh->echo && sh->mode == SHELL_COMMAND)
		shell_printf(sh, "\b \b");
}

static void add_char(struct shell *sh, char ch)
{
	if (sh->len + 1 >= SHELL_LINE_MAX) {
		sh->overflow = true;
		return;
	}
	sh->line[sh->len++] = ch;
	if (sh->echo && sh->mode == SHELL_COMMAND)
		shell_write(sh, &ch, 1);
}

/* ESC [ params final, ESC O x, or ESC x: skipped whole. Returns true if the
 * byte belonged to an escape sequence. */
static bool skip_escape(struct shell *sh, unsigned char ch)
{
	if (sh->esc == 0) {
		if (ch != 0x1b)
			return false;
		sh->esc = 1;
		return true;
	}
	if (sh->esc == 1)
		sh->esc = (ch == '[' || ch == 'O') ? 2 : 0;
	else if (ch >= 0x40 && ch <= 0x7e)
		sh->esc = 0;
	return true;
}

static void feed_byte(struct shell *sh, unsigned char ch)
{
	bool after_cr = sh->after_cr;
	sh->after_cr = ch == '\r';
	if (skip_escape(sh, ch))
		return;
	switch (ch) {
	case '\n':
		if (!after_cr)
			end_of_line(sh);
		return;
	case '\r': end_of_line(sh); return;
	case 0x03: clear_line(sh, "^C"); return;
	case 0x15: clear_line(sh, ""); return;
	case 0x04: logout(sh); return;
	case 0x08:
	case 0x7f: backspace(sh); return;
	case '\t': add_char(sh, ' '); return;
	default:
		if (ch >= 0x20)
			add_char(sh, (char)ch);
		/* other control bytes are ignored */
	}
}

void shell_feed(struct shell *sh, const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (sh->mode == SHELL_LOCKED)
			continue; /* typed while locked: dropped */
		if (sh->mode == SHELL_RUNNING)
			feed_running(sh, (unsigned char)data[i]);
		else
			feed_byte(sh, (unsigned char)data[i]);
	}
}

/* --- on file descriptors ------------------------------------------------------ */

struct shell_tty {
	struct shell sh;
	struct loop *loop;
	struct loop_io in, out;
	int out_fd;
	struct buf queue; /* output not yet written */
	bool out_watched;
	struct termios saved;
	bool raw;
	void (*on_eof)(void *);
	void *arg;
};

struct shell *shell_tty_shell(struct shell_tty *t)
{
	return &t->sh;
}

static void on_writable(void *arg, uint32_t events);

static void flush_queue(struct shell_tty *t)
{
	while (t->queue.len > 0) {
		ssize_t w = write(t->out_fd, t->queue.data, t->queue.len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0) {
			buf_reset(&t->queue); /* the reader went away: drop */
			break;
		}
		buf_consume(&t->queue, (size_t)w);
	}
	bool want = t->queue.len > 0;
	if (want && !t->out_watched)
		t->out_watched = loop_io_add(t->loop, &t->out, t->out_fd, EPOLLOUT, on_writable, t) == 0;
	else if (!want && t->out_watched) {
		loop_io_del(t->loop, &t->out);
		t->out_watched = false;
	}
}

static void on_writable(void *arg, uint32_t events)
{
	flush_queue(arg);
}

static void tty_out(void *arg, const char *s, size_t n)
{
	struct shell_tty *t = arg;
	/* A console nobody reads must not grow PID1 without bound. */
	if (t->queue.len > (1 << 20))
		return;
	buf_append(&t->queue, s, n);
	flush_queue(t);
}

static void on_readable(void *arg, uint32_t events)
{
	struct shell_tty *t = arg;
	char chunk[512];
	ssize_t r = read(t->in.fd, chunk, sizeof chunk);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		loop_io_del(t->loop, &t->in);
		/* Hangup: a command still running dies with the session. */
		if (shell_signal_child(&t->sh, SIGKILL))
			log_warn("shell.hangup", "console input ended: killed the running command");
		if (t->on_eof)
			t->on_eof(t->arg);
		return;
	}
	shell_feed(&t->sh, chunk, (size_t)r);
}

/* No echo, no line discipline: the shell edits and echoes itself. Output
 * keeps OPOST so "\n" still works for anything else writing to the console. */
static void set_raw(struct shell_tty *t, int fd)
{
	struct termios tio;
	if (tcgetattr(fd, &tio) < 0)
		return;
	t->saved = tio;
	t->raw = true;
	tio.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ECHONL | ISIG | IEXTEN);
	tio.c_iflag &= ~(tcflag_t)(ICRNL | INLCR | IXON);
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	tcsetattr(fd, TCSANOW, &tio);
}

struct shell_tty *shell_tty_attach(struct cubeos *os, int in_fd, int out_fd, void (*on_eof)(void *), void *arg)
{
	struct shell_tty *t = calloc(1, sizeof *t);
	t->loop = os->loop;
	/* A copy of our own: the console is often one fd for both directions,
	 * and epoll takes each fd once. */
	t->out_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
	t->on_eof = on_eof;
	t->arg = arg;
	bool tty = isatty(in_fd);
	if (tty)
		set_raw(t, in_fd);
	shell_init(&t->sh, os, tty_out, t, tty);
	fd_nonblock(in_fd);
	fd_nonblock(t->out_fd);
	if (t->out_fd < 0 || loop_io_add(t->loop, &t->in, in_fd, EPOLLIN, on_readable, t) < 0) {
		if (t->out_fd >= 0)
			close(t->out_fd);
		free(t);
		return NULL;
	}
	shell_start(&t->sh);
	return t;
}

void shell_tty_free(struct shell_tty *t)
{
	if (!t)
		return;
	loop_io_del(t->loop, &t->in);
	if (t->out_watched)
		loop_io_del(t->loop, &t->out);
	if (t->raw)
		tcsetattr(t->in.fd, TCSANOW, &t->saved);
	shell_fini(&t->sh);
	close(t->out_fd);
	buf_free(&t->queue);
	free(t);
}
