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
 */
#ifndef CUBEOS_SHELL_H
#define CUBEOS_SHELL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/loop.h"
#include "cubeos.h"

#define SHELL_LINE_MAX	512
#define SHELL_ARGS_MAX	16
#define SHELL_MAX_TRIES 3
#define SHELL_LOCK_MS	5000

typedef void (*shell_out_fn)(void *arg, const char *s, size_t n);

enum shell_mode { SHELL_LOGIN, SHELL_LOCKED, SHELL_COMMAND };

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
const char *kvm_type(void);

#endif
