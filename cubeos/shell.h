/*
 * shell.h - the serial-console admin shell.
 *
 * A byte-driven state machine: the caller feeds whatever arrived on the
 * console (shell_feed) and the shell writes through an output callback, so
 * the same code runs on ttyS0/tty1 in the appliance (shell_tty_attach), on a
 * pipe in tests and under the fuzzer. It never blocks PID1's event loop
 * except while a command runs.
 *
 * Session: "Password: " (not echoed; 3 wrong tries lock input for a while),
 * then "cubeos> " prompts until exit, logout or Ctrl-D, then the password
 * prompt again. Editing: backspace, Ctrl-U and Ctrl-C clear the line,
 * escape sequences (arrow keys) and other control bytes are ignored.
 *
 * A command may run a child process (shell_run): its output streams to the
 * session through the loop, the prompt comes back when it exits, Ctrl-C
 * sends it SIGINT, and Ctrl-D or a hangup kills it.
 */
#ifndef CUBEOS_SHELL_H
#define CUBEOS_SHELL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/loop.h"
#include "cubeos.h"

#define SHELL_LINE_MAX	512
#define SHELL_ARGS_MAX	16
#define SHELL_MAX_TRIES 3
#define SHELL_LOCK_MS	5000

typedef void (*shell_out_fn)(void *arg, const char *s, size_t n);

/* SHELL_RUNNING: a child started by shell_run owns the session until it exits. */
enum shell_mode { SHELL_LOGIN, SHELL_LOCKED, SHELL_COMMAND, SHELL_RUNNING };

/* The child process of shell_run, and the pipe its stdout+stderr come through. */
struct shell_child {
	pid_t pid; /* 0: none; also its process group (it runs in its own session) */
	struct loop_child watch;
	struct loop_io out;
	bool out_open;
	bool last_cr; /* the last byte passed on was '\r' (for the LF -> CRLF turn) */
};

struct shell {
	struct cubeos *os;
	shell_out_fn out;
	void *out_arg;
	bool echo; /* echo typed characters back (a terminal) */
	enum shell_mode mode;
	char line[SHELL_LINE_MAX];
	size_t len;
	bool overflow; /* the line went past SHELL_LINE_MAX */
	int esc;       /* 0, or where we are in an escape sequence */
	bool after_cr; /* swallow the LF of a CRLF */
	int wrong_tries;
	uint64_t lock_ms; /* lock time after SHELL_MAX_TRIES wrong passwords */
	struct loop_timer unlock;
	struct shell_child child;
};

void shell_init(struct shell *sh, struct cubeos *os, shell_out_fn out, void *arg, bool echo);
void shell_fini(struct shell *sh);
/* Shows the first prompt. */
void shell_start(struct shell *sh);
void shell_feed(struct shell *sh, const char *data, size_t n);

/* Output helpers for commands. */
void shell_printf(struct shell *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void shell_write(struct shell *sh, const char *s, size_t n);

/* Splits a line into words; "double" and 'single' quotes group words. Returns
 * argc, or -1 with a reason (unterminated quote, too many words). */
int shell_split(char *line, char **argv, int max, const char **err);
/* Runs one command line (after login). */
void shell_run_line(struct shell *sh, char *line);

/* Runs argv (argv[0] is the path to exec) as a child in its own session, with
 * stdin /dev/null and stdout+stderr streamed to the session through the loop
 * (LF becomes CRLF). The session stays in SHELL_RUNNING until the child exits;
 * then a non-zero status is reported ("[exit 3]", "[signal 2 (Interrupt)]")
 * and the prompt comes back. Call it from a command: the prompt that normally
 * follows a command is held back. Returns 0, or -1 with the reason already
 * printed (no loop, fork or pipe failed, another child still running). */
int shell_run(struct shell *sh, char *const argv[]);
/* Sends sig to the running child's process group; false if none runs. */
bool shell_signal_child(struct shell *sh, int sig);

/* A shell on a pair of fds (a console, or a pipe in tests): reads in_fd from
 * the loop, queues output to out_fd without blocking. On a terminal it sets
 * raw mode (the shell echoes and edits itself). on_eof runs when in_fd ends. */
struct shell_tty;
struct shell_tty *shell_tty_attach(struct cubeos *os, int in_fd, int out_fd, void (*on_eof)(void *), void *arg);
void shell_tty_free(struct shell_tty *t);
struct shell *shell_tty_shell(struct shell_tty *t);

/* The command table (commands.c). */
struct shell_cmd {
	const char *name; /* "apikey create": one or two words */
	const char *args; /* usage after the name */
	const char *help;
	int min_args, max_args; /* after the name */
	void (*fn)(struct shell *sh, int argc, char **argv);
};
extern const struct shell_cmd shell_cmds[];

/* cmd_*.c */
void cmd_status(struct shell *sh, int argc, char **argv);
void cmd_net_show(struct shell *sh, int argc, char **argv);
void cmd_net_set(struct shell *sh, int argc, char **argv);
void cmd_apikey_list(struct shell *sh, int argc, char **argv);
void cmd_apikey_create(struct shell *sh, int argc, char **argv);
void cmd_apikey_revoke(struct shell *sh, int argc, char **argv);
void cmd_logs(struct shell *sh, int argc, char **argv);
void cmd_service_list(struct shell *sh, int argc, char **argv);
void cmd_service_restart(struct shell *sh, int argc, char **argv);
void cmd_service_kill(struct shell *sh, int argc, char **argv);
void cmd_sandbox_list(struct shell *sh, int argc, char **argv);
void cmd_template_list(struct shell *sh, int argc, char **argv);
/* sandbox kill ID: a child asks the api over its admin socket (cmd_sandbox_kill.c). */
void cmd_sandbox_kill(struct shell *sh, int argc, char **argv);
/* `cubeos --sandbox-kill ID`: DELETE /sandboxes/ID on the api's admin socket at
 * socket_path; prints the outcome, returns the exit status. */
int sandbox_kill_main(const char *socket_path, const char *id);
/* The "sandboxes" and "templates" lines of status: counts by state, from the api's records. */
void status_sandboxes_templates(struct shell *sh);
/* "KILL", "SIGTERM", "hup" or a number from 1 to NSIG-1; -1 if none of those. */
int shell_parse_signal(const char *text);
void cmd_selftest(struct shell *sh, int argc, char **argv);
/* `cubeos --selftest [options]` (selftest.c): boots a sandbox VM and checks
 * its agent; prints phases and "selftest: PASS ..." or "selftest: FAIL ...".
 * argv[0] is "--selftest". Returns the exit status. */
int selftest_main(int argc, char **argv);
const char *kvm_type(void);

#endif
