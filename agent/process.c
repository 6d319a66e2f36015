/*
 * process.c - envd's process.Process service: Start, Connect, List,
 * SendInput, CloseStdin, SendSignal, Update.
 *
 * Every process the agent starts lives in one table (a linked list: there
 * are rarely more than a handful). A process owns its output fds (stdout and
 * stderr pipes, or a pty master), its stdin, and a list of subscribers: the
 * streaming responses (Start, Connect) that receive its events. Output is
 * read on the loop and fanned out to all subscribers; with none, it is
 * dropped, as envd does. A subscriber whose client goes away just leaves the
 * list: the process keeps running and can be re-attached with Connect.
 *
 * Lifecycle of a process:
 *   spawn   fork; the child reports a failed exec through a close-on-exec
 *           pipe. Until that pipe says "exec happened" the process is
 *           invisible to List/Connect and its output is not read.
 *   started the start event goes out; output is streamed.
 *   exited  the loop reported the exit status. We then wait for the output
 *           to reach EOF (so no byte is lost), but at most EXIT_GRACE_MS: a
 *           background grandchild ("sleep 100 &") may hold the pipes open
 *           forever, and envd likewise ends a command when its main process
 *           exits.
 *   ended   the end event is sent, every stream is closed, the entry is
 *           removed from the table.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "../lib/b64.h"
#include "spawn.h"

#define STD_CHUNK	(32 * 1024)   /* envd reads stdout/stderr in 32 KiB chunks */
#define PTY_CHUNK	(16 * 1024)   /* and the pty in 16 KiB chunks */
#define EXIT_GRACE_MS	250	      /* after exit: how long to wait for output EOF */
#define DRAIN_MAX	(1024 * 1024) /* bytes read per fd when forcing the end */
#define BACKLOG_HIGH	(4u << 20)    /* a subscriber this far behind pauses the output */
#define BACKLOG_LOW	(1u << 20)    /* ... until every subscriber is below this */
#define BACKLOG_POLL_MS 20
#define STDIN_QUEUE_MAX (8u << 20) /* input accepted but not yet taken by the process */
#define OOM_SCORE_ADJ	100	   /* like envd: user processes die before the agent */

struct proc;

/* One streaming response attached to a process. */
struct sub {
	struct sub *next;
	struct proc *p;
	struct http_conn *conn;
	uint64_t keepalive_ms;
	uint64_t last_sent_ms;
	struct loop_timer keepalive;
	struct loop_timer deadline; /* Connect-Timeout-Ms of this stream */
};

/* An output fd of a process: stdout, stderr or the pty master. */
struct outfd {
	struct proc *p;
	int fd;		  /* -1 once at EOF */
	const char *kind; /* the DataEvent field: "stdout", "stderr", "pty" */
	size_t chunk;
	struct loop_io io;
};

struct proc {
	struct proc *next;
	pid_t pid;
	char *tag;	   /* NULL if none */
	char *cmdline;	   /* for logs */
	struct buf config; /* the ProcessConfig as proto3 JSON, for List */
	char user[64];
	bool is_pty;
	bool started; /* exec succeeded */
	bool exited;
	int wstatus;
	bool paused; /* output reading paused for backpressure */

	int exec_fd; /* read end of the child's exec-status pipe, or -1 */
	struct loop_io exec_io;

	struct outfd out[2]; /* [0] stdout or pty, [1] stderr (unused with a pty) */

	/* Input: the stdin pipe, or a dup of the pty master (a second fd so it
	 * can be watched for EPOLLOUT independently of the reader). Writes that
	 * do not fit go to in_q and are flushed when the fd is writable. */
	int in_fd;
	struct loop_io in_io;
	struct buf in_q;
	bool in_close_pending;

	struct loop_child child;
	struct loop_timer kill_timer;  /* Start's Connect-Timeout-Ms: SIGKILL */
	struct loop_timer grace_timer; /* after exit: stop waiting for EOF */
	struct loop_timer backlog_timer;
	struct sub *subs;
};

static struct proc *procs;

static struct loop *L(void)
{
	return agent.loop;
}

/* --- small helpers ----------------------------------------------------------- */

/* Go's names for signals, so the end event's status reads exactly like envd's
 * ("signal: killed"). */
static const char *go_signal_name(int sig)
{
	static const char *const names[] = {
	    [SIGHUP] = "hangup",
	    [SIGINT] = "interrupt",
	    [SIGQUIT] = "quit",
	    [SIGILL] = "illegal instruction",
	    [SIGTRAP] = "trace/breakpoint trap",
	    [SIGABRT] = "aborted",
	    [SIGBUS] = "bus error",
	    [SIGFPE] = "floating point exception",
	    [SIGKILL] = "killed",
	    [SIGUSR1] = "user defined signal 1",
	    [SIGSEGV] = "segmentation fault",
	    [SIGUSR2] = "user defined signal 2",
	    [SIGPIPE] = "broken pipe",
	    [SIGALRM] = "alarm clock",
	    [SIGTERM] = "terminated",
	    [SIGSTKFLT] = "stack fault",
	    [SIGCHLD] = "child exited",
	    [SIGCONT] = "continued",
	    [SIGSTOP] = "stopped (signal)",
	    [SIGTSTP] = "stopped",
	    [SIGTTIN] = "stopped (tty input)",
	    [SIGTTOU] = "stopped (tty output)",
	    [SIGURG] = "urgent I/O condition",
	    [SIGXCPU] = "CPU time limit exceeded",
	    [SIGXFSZ] = "file size limit exceeded",
	    [SIGVTALRM] = "virtual timer expired",
	    [SIGPROF] = "profiling timer expired",
	    [SIGWINCH] = "window changed",
	    [SIGIO] = "I/O possible",
	    [SIGPWR] = "power failure",
	    [SIGSYS] = "bad system call",
	};
	if (sig > 0 && (size_t)sig < sizeof names / sizeof names[0] && names[sig])
		return names[sig];
	return NULL;
}

/* The status string of Go's os.ProcessState, which envd reports. */
static void format_status(int st, char *out, size_t n)
{
	if (WIFEXITED(st)) {
		snprintf(out, n, "exit status %d", WEXITSTATUS(st));
	} else if (WIFSIGNALED(st)) {
		const char *name = go_signal_name(WTERMSIG(st));
		char num[32];
		if (!name) {
			snprintf(num, sizeof num, "signal %d", WTERMSIG(st));
			name = num;
		}
		snprintf(out, n, "signal: %s%s", name, WCOREDUMP(st) ? " (core dumped)" : "");
	} else {
		snprintf(out, n, "unknown status %d", st);
	}
}

static void reply_empty(struct rpc_call *call)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "{}");
	rpc_reply(call, &b);
	buf_free(&b);
}

/* --- subscribers ------------------------------------------------------------- */

static void sub_send(struct sub *s, const struct buf *msg)
{
	rpc_stream_send(s->conn, msg);
	s->last_sent_ms = loop_now(L());
}

static void sub_unlink(struct sub *s)
{
	for (struct sub **pp = &s->p->subs; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	loop_timer_disarm(L(), &s->keepalive);
	loop_timer_disarm(L(), &s->deadline);
}

/* The client went away: forget the stream, leave the process alone. */
static void sub_on_abort(void *arg)
{
	struct sub *s = arg;
	log_debug("process.detach", "pid=%d", (int)s->p->pid);
	sub_unlink(s);
	free(s);
}

/* Ends the stream (code NULL: success) and frees the subscriber. */
static void sub_end(struct sub *s, const char *code, const char *msg)
{
	struct http_conn *c = s->conn;
	/* Clear the abort hook first: on a connection that already failed the
	 * end is a no-op and the hook would later fire on a freed sub. */
	http_conn_on_abort(c, NULL, NULL);
	sub_unlink(s);
	free(s);
	if (code)
		rpc_stream_end(c, code, "%s", msg);
	else
		rpc_stream_end(c, NULL, "%s", "");
}

static void sub_on_keepalive(void *arg)
{
	struct sub *s = arg;
	uint64_t now = loop_now(L()), idle = now - s->last_sent_ms;
	if (idle >= s->keepalive_ms) {
		struct buf b = BUF_INIT;
		buf_puts(&b, "{\"event\":{\"keepalive\":{}}}");
		sub_send(s, &b);
		buf_free(&b);
		idle = 0;
	}
	/* Like envd, data resets the keepalive clock: only idle streams ping. */
	loop_timer_arm(L(), &s->keepalive, s->keepalive_ms - idle, sub_on_keepalive, s);
}

/* The stream's own deadline: the stream ends with deadline_exceeded at once
 * (as envd's handler returns ctx.Err()); the SDK turns that into its
 * TimeoutError. Killing the process is the process's own timer (Start only),
 * which also runs when this client is gone. */
static void sub_on_deadline(void *arg)
{
	struct sub *s = arg;
	log_info("process.deadline", "pid=%d", (int)s->p->pid);
	sub_end(s, "deadline_exceeded", "context deadline exceeded");
}

static void send_start_event(struct sub *s)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "{\"event\":{\"start\":{\"pid\":%d}}}", (int)s->p->pid);
	sub_send(s, &b);
	buf_free(&b);
	loop_timer_arm(L(), &s->keepalive, s->keepalive_ms, sub_on_keepalive, s);
}

static struct sub *sub_add(struct proc *p, struct http_conn *c, const struct http_req *req, uint64_t timeout_ms)
{
	struct sub *s = calloc(1, sizeof *s);
	if (!s)
		abort();
	s->p = p;
	s->conn = c;
	s->keepalive_ms = rpc_keepalive_ms(req);
	s->last_sent_ms = loop_now(L());
	s->next = p->subs;
	p->subs = s;
	http_conn_on_abort(c, sub_on_abort, s);
	if (timeout_ms)
		loop_timer_arm(L(), &s->deadline, timeout_ms, sub_on_deadline, s);
	return s;
}

/* Sends msg to every subscriber. */
static void broadcast(struct proc *p, const struct buf *msg)
{
	for (struct sub *s = p->subs; s; s = s->next)
		sub_send(s, msg);
}

/* --- the process table ------------------------------------------------------- */

static void out_close(struct outfd *o)
{
	if (o->fd < 0)
		return;
	loop_io_del(L(), &o->io);
	close(o->fd);
	o->fd = -1;
}

static void in_close(struct proc *p)
{
	if (p->in_fd < 0)
		return;
	loop_io_del(L(), &p->in_io);
	close(p->in_fd);
	p->in_fd = -1;
	buf_free(&p->in_q);
	p->in_close_pending = false;
}

/* Frees a process that has no subscribers left. */
static void proc_free(struct proc *p)
{
	for (struct proc **pp = &procs; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	loop_child_unwatch(L(), &p->child);
	loop_timer_disarm(L(), &p->kill_timer);
	loop_timer_disarm(L(), &p->grace_timer);
	loop_timer_disarm(L(), &p->backlog_timer);
	if (p->exec_fd >= 0) {
		loop_io_del(L(), &p->exec_io);
		close(p->exec_fd);
	}
	out_close(&p->out[0]);
	out_close(&p->out[1]);
	in_close(p);
	buf_free(&p->config);
	free(p->tag);
	free(p->cmdline);
	free(p);
}

/* Started (visible) processes only: one still spawning has no pid to give. */
static struct proc *proc_find_pid(int64_t pid)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->started && p->pid == pid)
			return p;
	return NULL;
}

static struct proc *proc_find_tag(const char *tag)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->started && p->tag && strcmp(p->tag, tag) == 0)
			return p;
	return NULL;
}

/* Resolves a ProcessSelector ({"pid":N} or {"tag":"x"}) or answers the
 * error itself and returns NULL. */
static struct proc *proc_select(struct rpc_call *call)
{
	const struct json *sel = json_get(call->msg, "process");
	const struct json *pid = json_get(sel, "pid");
	const char *tag = json_get_str(sel, "tag");
	int64_t n;
	struct proc *p;
	if (pid) {
		if (!json_as_int(pid, &n) || n < 0 || n > UINT32_MAX) {
			rpc_error(call, "invalid_argument", "process.pid must be an unsigned integer");
			return NULL;
		}
		if (!(p = proc_find_pid(n)))
			rpc_error(call, "not_found", "process with pid %lld not found", (long long)n);
		return p;
	}
	if (tag) {
		if (!(p = proc_find_tag(tag)))
			rpc_error(call, "not_found", "process with tag %s not found", tag);
		return p;
	}
	/* proto3 JSON omits a zero pid, so an empty selector means pid 0. */
	if (sel && sel->type == JSON_OBJECT && sel->count == 0) {
		rpc_error(call, "not_found", "process with pid 0 not found");
		return NULL;
	}
	rpc_error(call, "invalid_argument", "process selector (pid or tag) is required");
	return NULL;
}

/* --- output ------------------------------------------------------------------ */

static void out_send(struct proc *p, const char *kind, const char *data, size_t n)
{
	if (!p->subs)
		return; /* nobody listening: dropped, as envd does */
	struct buf b = BUF_INIT;
	buf_printf(&b, "{\"event\":{\"data\":{\"%s\":\"", kind);
	char *dst = buf_reserve(&b, b64_encoded_len(n) + 1);
	buf_commit(&b, b64_encode(data, n, dst));
	buf_puts(&b, "\"}}}");
	broadcast(p, &b);
	buf_free(&b);
}

/* Reads one chunk. Returns >0 bytes forwarded, 0 at EOF (fd closed),
 * -1 when nothing is available now. */
static ssize_t out_read(struct outfd *o)
{
	static char chunk[STD_CHUNK];
	if (o->fd < 0)
		return 0;
	ssize_t n = read(o->fd, chunk, o->chunk);
	if (n > 0) {
		out_send(o->p, o->kind, chunk, (size_t)n);
		return n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -1;
	/* 0 = EOF on a pipe; EIO = every slave fd of the pty is closed. */
	out_close(o);
	return 0;
}

static size_t max_backlog(const struct proc *p)
{
	size_t m = 0;
	for (const struct sub *s = p->subs; s; s = s->next) {
		size_t n = http_conn_pending(s->conn);
		if (n > m)
			m = n;
	}
	return m;
}

static void on_output(void *arg, uint32_t events);

/*
 * Backpressure. A client that reads slower than the process writes would
 * make its connection's output queue grow without bound. Rather than drop
 * output (or the client), we stop reading the process's fds while any
 * subscriber has more than BACKLOG_HIGH queued, so the process blocks in
 * write() exactly as it would on a slow terminal, and resume once every
 * queue is below BACKLOG_LOW. http.c has no "drained" callback, so a short
 * timer polls the queues while paused. The cost: one slow subscriber slows
 * the others of the same process; acceptable, as there is normally one.
 */
static void backlog_check(void *arg)
{
	struct proc *p = arg;
	if (!p->paused)
		return;
	if (max_backlog(p) > BACKLOG_LOW) {
		loop_timer_arm(L(), &p->backlog_timer, BACKLOG_POLL_MS, backlog_check, p);
		return;
	}
	p->paused = false;
	for (int i = 0; i < 2; i++)
		if (p->out[i].fd >= 0)
			loop_io_add(L(), &p->out[i].io, p->out[i].fd, EPOLLIN, on_output, &p->out[i]);
}

static void backlog_pause_if_needed(struct proc *p)
{
	if (p->paused || max_backlog(p) <= BACKLOG_HIGH)
		return;
	p->paused = true;
	for (int i = 0; i < 2; i++)
		if (p->out[i].fd >= 0)
			loop_io_del(L(), &p->out[i].io);
	loop_timer_arm(L(), &p->backlog_timer, BACKLOG_POLL_MS, backlog_check, p);
}

/* --- the end ----------------------------------------------------------------- */

static void end_event(const struct proc *p, struct buf *b)
{
	char status[96];
	int st = p->wstatus;
	format_status(st, status, sizeof status);
	bool exited = WIFEXITED(st);
	int code = exited ? WEXITSTATUS(st) : -1; /* Go's ExitCode(): -1 when signalled */
	bool ok = exited && code == 0;
	/* proto3 JSON: zero exitCode and false exited are omitted. */
	struct jw w;
	jw_init(&w, b);
	jw_obj(&w);
	jw_key(&w, "event");
	jw_obj(&w);
	jw_key(&w, "end");
	jw_obj(&w);
	if (code)
		jw_kint(&w, "exitCode", code);
	if (exited)
		jw_kbool(&w, "exited", true);
	jw_kstr(&w, "status", status);
	if (!ok) /* envd sets error to cmd.Wait()'s error, i.e. the same text */
		jw_kstr(&w, "error", status);
	jw_end(&w);
	jw_end(&w);
	jw_end(&w);
}

/* Exit status known and output read (or given up on): deliver the end event
 * to everyone, close their streams, forget the process. */
static void proc_finish(struct proc *p)
{
	/* What is already in the pipes belongs to the process: send it. The
	 * bound protects against a grandchild that keeps writing. */
	for (int i = 0; i < 2; i++) {
		size_t total = 0;
		ssize_t n;
		while (total < DRAIN_MAX && (n = out_read(&p->out[i])) > 0)
			total += (size_t)n;
		out_close(&p->out[i]);
	}
	struct buf b = BUF_INIT;
	end_event(p, &b);
	char status[96];
	format_status(p->wstatus, status, sizeof status);
	log_info("process.end", "pid=%d status=%s", (int)p->pid, status);
	while (p->subs) {
		struct sub *s = p->subs;
		sub_send(s, &b);
		sub_end(s, NULL, NULL);
	}
	buf_free(&b);
	proc_free(p);
}

static void on_grace_timeout(void *arg)
{
	proc_finish(arg);
}

/* Ends the process if it is done; returns true if p was freed. */
static bool proc_maybe_finish(struct proc *p)
{
	if (!p->started || !p->exited)
		return false;
	if (p->out[0].fd < 0 && p->out[1].fd < 0) {
		proc_finish(p);
		return true;
	}
	if (!p->grace_timer.armed)
		loop_timer_arm(L(), &p->grace_timer, EXIT_GRACE_MS, on_grace_timeout, p);
	return false;
}

static void on_output(void *arg, uint32_t events)
{
	struct outfd *o = arg;
	struct proc *p = o->p;
	if (out_read(o) == 0) {
		proc_maybe_finish(p);
		return;
	}
	backlog_pause_if_needed(p);
}

/* --- start / exec status ------------------------------------------------------ */

static void proc_started(struct proc *p)
{
	p->started = true;
	for (int i = 0; i < 2; i++)
		if (p->out[i].fd >= 0)
			loop_io_add(L(), &p->out[i].io, p->out[i].fd, EPOLLIN, on_output, &p->out[i]);
	/* cmd goes last: it contains spaces, everything before it stays parseable. */
	log_info("process.start", "pid=%d user=%s%s%s cmd=%s", (int)p->pid, p->user, p->is_pty ? " pty=1" : "",
		 p->in_fd >= 0 && !p->is_pty ? " stdin=1" : "", p->cmdline);
	for (struct sub *s = p->subs; s; s = s->next)
		send_start_event(s);
}

static void proc_exec_failed(struct proc *p, const struct spawn_failure *f)
{
	const char *stage = spawn_stage_name(f->stage);
	char msg[512];
	snprintf(msg, sizeof msg, "error starting process '%s': %s: %s", p->cmdline, stage, strerror(f->err));
	log_info("process.start_failed", "user=%s reason=%s: %s cmd=%s", p->user, stage, strerror(f->err), p->cmdline);
	/* envd answers a failed start with invalid_argument; the SDK surfaces it. */
	while (p->subs)
		sub_end(p->subs, f->err == ENOENT && f->stage == SPAWN_CWD ? "not_found" : "invalid_argument", msg);
	/* The child is exiting by itself; the loop reaps it. */
	proc_free(p);
}

/* Reads the exec-status pipe. Returns true if p was freed. */
static bool exec_status_check(struct proc *p)
{
	struct spawn_failure f;
	int r = spawn_report_read(p->exec_fd, &f);
	if (r == 0)
		return false;
	loop_io_del(L(), &p->exec_io);
	close(p->exec_fd);
	p->exec_fd = -1;
	if (r < 0) {
		if (!p->exited) /* it exits by itself after a report; this is for an unreadable pipe */
			kill(p->pid, SIGKILL);
		proc_exec_failed(p, &f);
		return true;
	}
	proc_started(p);
	return false;
}

static void on_exec_status(void *arg, uint32_t events)
{
	exec_status_check(arg);
}

static void on_child_exit(void *arg, pid_t pid, int wstatus)
{
	struct proc *p = arg;
	p->exited = true;
	p->wstatus = wstatus;
	/* The child is gone, so its exec-status pipe is readable now (data or
	 * EOF): settle that first, the start event must precede the end. */
	if (p->exec_fd >= 0 && exec_status_check(p))
		return;
	proc_maybe_finish(p);
}

/* Connect-Timeout-Ms on Start: the deadline of the command itself. Like
 * envd's exec.CommandContext, it kills the process even when the client has
 * detached; we kill the whole group so pipelines and subshells go too. */
static void on_kill_deadline(void *arg)
{
	struct proc *p = arg;
	if (p->exited)
		return;
	log_info("process.timeout", "pid=%d", (int)p->pid);
	if (killpg(p->pid, SIGKILL) < 0)
		kill(p->pid, SIGKILL);
}

/* --- spawning --------------------------------------------------------------------- */

static char *join_cmdline(char **argv)
{
	struct buf b = BUF_INIT;
	for (size_t i = 0; argv[i]; i++) {
		if (i)
			buf_putc(&b, ' ');
		buf_puts(&b, argv[i]);
		if (b.len > 300) {
			b.len = 300;
			b.data[b.len] = 0;
			buf_puts(&b, "...");
			break;
		}
	}
	if (!b.data)
		buf_puts(&b, "");
	return buf_steal(&b);
}

/* The ProcessConfig as the client sent it (cwd too), for List. */
static void config_json(struct buf *b, const struct json *proc)
{
	struct jw w;
	jw_init(&w, b);
	jw_obj(&w);
	const struct json *cmd = json_get(proc, "cmd");
	if (cmd && cmd->type == JSON_STRING) {
		jw_key(&w, "cmd");
		jw_strn(&w, cmd->str, cmd->len);
	}
	const struct json *args = json_get(proc, "args");
	if (args && args->type == JSON_ARRAY && args->count) {
		jw_key(&w, "args");
		jw_arr(&w);
		for (const struct json *a = args->child; a; a = a->next)
			if (a->type == JSON_STRING)
				jw_strn(&w, a->str, a->len);
		jw_end(&w);
	}
	const struct json *envs = json_get(proc, "envs");
	if (envs && envs->type == JSON_OBJECT && envs->count) {
		jw_key(&w, "envs");
		jw_obj(&w);
		for (const struct json *e = envs->child; e; e = e->next) {
			if (e->type != JSON_STRING)
				continue;
			jw_key(&w, e->key);
			jw_strn(&w, e->str, e->len);
		}
		jw_end(&w);
	}
	const struct json *cwd = json_get(proc, "cwd");
	if (cwd && cwd->type == JSON_STRING) {
		jw_key(&w, "cwd");
		jw_strn(&w, cwd->str, cwd->len);
	}
	jw_end(&w);
}

/* Checks the request's shape; answers and returns false on a bad one. */
static bool start_validate(struct rpc_call *call, const struct json *proc, const struct json *envs,
			   const struct json *args, const struct json *pty)
{
	const char *cmd = json_get_str(proc, "cmd");
	if (!proc || proc->type != JSON_OBJECT || !cmd || !*cmd) {
		rpc_error(call, "invalid_argument", "process.cmd is required");
		return false;
	}
	if (args && args->type != JSON_ARRAY) {
		rpc_error(call, "invalid_argument", "process.args must be an array of strings");
		return false;
	}
	for (const struct json *a = args ? args->child : NULL; a; a = a->next) {
		if (a->type != JSON_STRING || memchr(a->str, 0, a->len)) {
			rpc_error(call, "invalid_argument", "process.args must be an array of strings");
			return false;
		}
	}
	if (envs && envs->type != JSON_OBJECT && envs->type != JSON_NULL) {
		rpc_error(call, "invalid_argument", "process.envs must be an object of strings");
		return false;
	}
	for (const struct json *e = envs ? envs->child : NULL; e; e = e->next) {
		if (e->type != JSON_STRING || !e->key[0] || strchr(e->key, '=')) {
			rpc_error(call, "invalid_argument", "process.envs must map names (without '=') to strings");
			return false;
		}
	}
	if (pty && pty->type != JSON_OBJECT && pty->type != JSON_NULL) {
		rpc_error(call, "invalid_argument", "pty must be an object");
		return false;
	}
	return true;
}

/* Resolves and checks the working directory; answers and returns NULL if it
 * is unusable. */
static char *start_cwd(struct rpc_call *call, const struct json *proc)
{
	const char *req_cwd = json_get_str(proc, "cwd");
	char *cwd = req_cwd && *req_cwd	       ? path_resolve(req_cwd, &call->user)
		    : agent.default_workdir[0] ? strdup(agent.default_workdir)
					       : strdup(call->user.home);
	if (!cwd) {
		rpc_error(call, "invalid_argument", "invalid cwd '%s'", req_cwd ? req_cwd : "");
		return NULL;
	}
	struct stat st;
	if (stat(cwd, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			rpc_error(call, "invalid_argument", "cwd '%s' does not exist", cwd);
		else
			rpc_error(call, rpc_code_from_errno(errno), "cwd '%s': %s", cwd, strerror(errno));
		free(cwd);
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		rpc_error(call, "invalid_argument", "cwd '%s' is not a directory", cwd);
		free(cwd);
		return NULL;
	}
	return cwd;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Opens the fds for the child: pty or pipes, all close-on-exec. The parent
 * ends go to p, the child's 0/1/2 to s->fds (-1: /dev/null). */
static int spawn_fds(struct proc *p, struct spawn *s, const struct json *pty, bool want_stdin)
{
	int o[2] = {-1, -1}, e[2] = {-1, -1}, in[2] = {-1, -1};
	s->nfds = 3;
	s->fds[0] = s->fds[1] = s->fds[2] = -1;
	if (pty) {
		const struct json *size = json_get(pty, "size");
		struct winsize ws = {
		    .ws_col = (unsigned short)json_get_int(size, "cols", 80),
		    .ws_row = (unsigned short)json_get_int(size, "rows", 24),
		};
		int master, slave;
		if (openpty(&master, &slave, NULL, NULL, &ws) < 0)
			return -1;
		fcntl(slave, F_SETFD, FD_CLOEXEC);
		fd_nonblock(master);
		s->fds[0] = s->fds[1] = s->fds[2] = slave;
		s->ctty = true;
		p->out[0].fd = master;
		p->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
		return p->in_fd < 0 ? -1 : 0;
	}
	if (pipe2(o, O_CLOEXEC) < 0)
		return -1;
	p->out[0].fd = o[0];
	s->fds[1] = o[1];
	if (pipe2(e, O_CLOEXEC) < 0)
		return -1;
	p->out[1].fd = e[0];
	s->fds[2] = e[1];
	fd_nonblock(o[0]);
	fd_nonblock(e[0]);
	if (want_stdin) {
		if (pipe2(in, O_CLOEXEC) < 0)
			return -1;
		s->fds[0] = in[0];
		p->in_fd = in[1];
		fd_nonblock(in[1]);
	}
	return 0;
}

/* Closes the parent's copies of the child's ends (a pty slave is all three). */
static void spawn_close_child_ends(struct spawn *s)
{
	if (s->ctty)
		s->fds[1] = s->fds[2] = -1;
	for (int i = 0; i < s->nfds; i++)
		close_fd(&s->fds[i]);
}

static struct proc *proc_new(const struct rpc_call *call, const struct json *proc, bool is_pty)
{
	struct proc *p = calloc(1, sizeof *p);
	if (!p)
		abort();
	p->exec_fd = p->in_fd = -1;
	p->is_pty = is_pty;
	for (int i = 0; i < 2; i++) {
		p->out[i].p = p;
		p->out[i].fd = -1;
		p->out[i].kind = is_pty ? "pty" : i == 0 ? "stdout" : "stderr";
		p->out[i].chunk = is_pty ? PTY_CHUNK : STD_CHUNK;
	}
	snprintf(p->user, sizeof p->user, "%s", call->user.name);
	config_json(&p->config, proc);
	const char *tag = json_get_str(call->msg, "tag");
	if (tag)
		p->tag = strdup(tag);
	return p;
}

static char **build_argv(const struct json *proc)
{
	const struct json *args = json_get(proc, "args");
	size_t n = args && args->type == JSON_ARRAY ? args->count : 0;
	char **argv = calloc(n + 2, sizeof *argv);
	if (!argv)
		abort();
	argv[0] = (char *)json_get_str(proc, "cmd");
	size_t i = 1;
	for (const struct json *a = n ? args->child : NULL; a; a = a->next)
		argv[i++] = a->str;
	return argv;
}

static void process_start(struct rpc_call *call)
{
	const struct json *proc = json_get(call->msg, "process");
	const struct json *envs = json_get(proc, "envs");
	const struct json *args = json_get(proc, "args");
	const struct json *pty = json_get(call->msg, "pty");
	if (pty && pty->type == JSON_NULL)
		pty = NULL;
	if (!start_validate(call, proc, envs, args, pty))
		return;
	uint64_t timeout_ms;
	if (!rpc_deadline_ms(call->req, &timeout_ms)) {
		rpc_error(call, "invalid_argument", "invalid Connect-Timeout-Ms header");
		return;
	}
	char *cwd = start_cwd(call, proc);
	if (!cwd)
		return;
	/* envd: an absent stdin flag means a stdin pipe (the behaviour before
	 * the flag existed); the SDKs send stdin:false unless asked. */
	bool want_stdin = json_get_bool(call->msg, "stdin", true);

	struct proc *p = proc_new(call, proc, pty != NULL);
	struct spawn s = {.user = &call->user, .cwd = cwd, .oom_score_adj = OOM_SCORE_ADJ};
	s.envp = env_build(&call->user, cwd, envs && envs->type == JSON_OBJECT ? envs : NULL);
	if (pty)
		s.envp = env_put(s.envp, "TERM", "xterm-256color", false);
	s.argv = build_argv(proc);
	p->cmdline = join_cmdline(s.argv);

	/* The child reports a failed exec (or setuid, chdir) through the
	 * exec-status pipe; EOF on it means the exec happened. */
	pid_t pid = -1;
	if (spawn_fds(p, &s, pty, want_stdin) == 0)
		pid = spawn_start(&s, &p->exec_fd);
	int fork_errno = errno;
	spawn_close_child_ends(&s);
	env_free(s.envp);
	free(s.argv);
	free(cwd);
	if (pid < 0) {
		log_error("process.spawn_failed", "cmd=%s: %s", p->cmdline, strerror(fork_errno));
		proc_free(p);
		rpc_error(call, "internal", "error starting process: %s", strerror(fork_errno));
		return;
	}

	p->pid = pid;
	/* Registered before we return to the loop, so the status cannot be lost. */
	loop_child_watch(L(), &p->child, pid, on_child_exit, p);
	loop_io_add(L(), &p->exec_io, p->exec_fd, EPOLLIN, on_exec_status, p);
	p->next = procs;
	procs = p;
	if (timeout_ms) /* armed before the stream's own deadline: kill first */
		loop_timer_arm(L(), &p->kill_timer, timeout_ms, on_kill_deadline, p);
	rpc_stream_begin(call->conn);
	sub_add(p, call->conn, call->req, timeout_ms);
	/* The start event follows once the exec-status pipe confirms the exec. */
}

/* --- Connect, List ------------------------------------------------------------ */

static void process_connect(struct rpc_call *call)
{
	uint64_t timeout_ms;
	if (!rpc_deadline_ms(call->req, &timeout_ms)) {
		rpc_error(call, "invalid_argument", "invalid Connect-Timeout-Ms header");
		return;
	}
	struct proc *p = proc_select(call);
	if (!p)
		return;
	/* A Connect stream's deadline only ends the stream, never the process. */
	rpc_stream_begin(call->conn);
	struct sub *s = sub_add(p, call->conn, call->req, timeout_ms);
	send_start_event(s);
}

static void process_list(struct rpc_call *call)
{
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	jw_key(&w, "processes");
	jw_arr(&w);
	for (struct proc *p = procs; p; p = p->next) {
		if (!p->started)
			continue;
		jw_obj(&w);
		jw_key(&w, "config");
		jw_raw(&w, p->config.data, p->config.len);
		jw_kint(&w, "pid", p->pid);
		if (p->tag)
			jw_kstr(&w, "tag", p->tag);
		jw_end(&w);
	}
	jw_end(&w);
	jw_end(&w);
	rpc_reply(call, &b);
	buf_free(&b);
}

/* --- input ------------------------------------------------------------------- */

static void on_input_writable(void *arg, uint32_t events);

/* Writes queued input. Returns 0, or an errno when the input is dead. */
static int in_flush(struct proc *p)
{
	while (p->in_q.len) {
		ssize_t n = write(p->in_fd, p->in_q.data, p->in_q.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			int err = errno;
			if (!p->is_pty)
				in_close(p); /* EPIPE: the process closed its stdin */
			else
				buf_reset(&p->in_q);
			return err;
		}
		buf_consume(&p->in_q, (size_t)n);
	}
	if (p->in_q.len) {
		if (!p->in_io.active)
			loop_io_add(L(), &p->in_io, p->in_fd, EPOLLOUT, on_input_writable, p);
		return 0;
	}
	loop_io_del(L(), &p->in_io);
	if (p->in_close_pending)
		in_close(p);
	return 0;
}

static void on_input_writable(void *arg, uint32_t events)
{
	struct proc *p = arg;
	if (in_flush(p) != 0)
		log_info("process.stdin_closed", "pid=%d", (int)p->pid);
}

static void process_send_input(struct rpc_call *call)
{
	struct proc *p = proc_select(call);
	if (!p)
		return;
	const struct json *input = json_get(call->msg, "input");
	const struct json *data = json_get(input, "stdin");
	bool to_pty = false;
	if (!data) {
		data = json_get(input, "pty");
		to_pty = data != NULL;
	}
	if (!data) {
		rpc_error(call, "invalid_argument", "input.stdin or input.pty is required");
		return;
	}
	if (data->type != JSON_STRING) {
		rpc_error(call, "invalid_argument", "input must be base64");
		return;
	}
	if (to_pty != p->is_pty) {
		rpc_error(call, "failed_precondition",
			  p->is_pty ? "pty assigned to process: input should be written to the pty, not the stdin"
				    : "no pty assigned to process: input should be written to the stdin, not the pty");
		return;
	}
	if (p->in_fd < 0 || p->in_close_pending) {
		rpc_error(call, "failed_precondition", "stdin of process %d is not enabled or was closed", (int)p->pid);
		return;
	}
	char *bytes = malloc(b64_decoded_maxlen(data->len) + 1);
	if (!bytes)
		abort();
	ssize_t n = b64_decode(data->str, data->len, bytes);
	if (n < 0) {
		free(bytes);
		rpc_error(call, "invalid_argument", "input is not valid base64");
		return;
	}
	if (p->in_q.len + (size_t)n > STDIN_QUEUE_MAX) {
		free(bytes);
		rpc_error(call, "resource_exhausted", "process %d is not reading its input", (int)p->pid);
		return;
	}
	buf_append(&p->in_q, bytes, (size_t)n);
	free(bytes);
	int err = in_flush(p);
	if (err) {
		rpc_error(call, "internal", "error writing to %s of process %d: %s", to_pty ? "tty" : "stdin",
			  (int)p->pid, strerror(err));
		return;
	}
	reply_empty(call);
}

static void process_close_stdin(struct rpc_call *call)
{
	struct proc *p = proc_select(call);
	if (!p)
		return;
	if (p->is_pty) {
		rpc_error(call, "failed_precondition",
			  "cannot close stdin for PTY process: send Ctrl+D (0x04) instead");
		return;
	}
	/* Input still queued is delivered first, then the pipe closes. */
	if (p->in_q.len)
		p->in_close_pending = true;
	else
		in_close(p);
	reply_empty(call);
}

/* --- signals, resize ---------------------------------------------------------- */

static int parse_signal(const struct json *j)
{
	int64_t n;
	if (!j)
		return 0;
	if (j->type == JSON_STRING) {
		if (strcmp(j->str, "SIGNAL_SIGKILL") == 0)
			return SIGKILL;
		if (strcmp(j->str, "SIGNAL_SIGTERM") == 0)
			return SIGTERM;
	}
	if (json_as_int(j, &n) && (n == SIGKILL || n == SIGTERM))
		return (int)n;
	return 0;
}

static void process_send_signal(struct rpc_call *call)
{
	struct proc *p = proc_select(call);
	if (!p)
		return;
	const struct json *sj = json_get(call->msg, "signal");
	int sig = parse_signal(sj);
	if (!sig) {
		rpc_error(call, "unimplemented", "invalid signal: %s", sj && sj->type == JSON_STRING ? sj->str : "?");
		return;
	}
	log_info("process.signal", "pid=%d signal=%d", (int)p->pid, sig);
	/* The process leads its own group (setsid): signal the whole tree. The
	 * group outlives an exited leader while its output drains; then it
	 * reaches the grandchildren still holding the pipes. */
	if (killpg(p->pid, sig) < 0 && !p->exited)
		kill(p->pid, sig);
	reply_empty(call);
}

static void process_update(struct rpc_call *call)
{
	struct proc *p = proc_select(call);
	if (!p)
		return;
	const struct json *pty = json_get(call->msg, "pty");
	if (pty && pty->type == JSON_OBJECT) {
		if (!p->is_pty || p->in_fd < 0) {
			rpc_error(call, "failed_precondition", "error resizing tty: tty not assigned to process");
			return;
		}
		const struct json *size = json_get(pty, "size");
		struct winsize ws = {
		    .ws_col = (unsigned short)json_get_int(size, "cols", 0),
		    .ws_row = (unsigned short)json_get_int(size, "rows", 0),
		};
		/* The kernel sends SIGWINCH to the terminal's foreground group. */
		if (ioctl(p->in_fd, TIOCSWINSZ, &ws) < 0) {
			rpc_error(call, "internal", "error resizing tty: %s", strerror(errno));
			return;
		}
	}
	reply_empty(call);
}

const struct rpc_method process_methods[] = {
    {"/process.Process/Start", true, process_start},
    {"/process.Process/Connect", true, process_connect},
    {"/process.Process/List", false, process_list},
    {"/process.Process/SendInput", false, process_send_input},
    {"/process.Process/CloseStdin", false, process_close_stdin},
    {"/process.Process/SendSignal", false, process_send_signal},
    {"/process.Process/Update", false, process_update},
    {NULL, false, NULL},
};
