/*
 * interp.c - the code interpreter on port 49999 (E2B's code-interpreter API).
 *
 * A context is a language (python or bash), a cwd and one kernel: a
 * persistent `python3 -u -c <kernel.py>` (agent/interp/kernel.py, protocol in
 * agent/interp/README.md). The agent writes one JSON request per line to the
 * kernel's fd 3 and reads ready-made /execute NDJSON events, one per line,
 * from its fd 4. The kernel's fd 1 and 2 carry the raw output of processes it
 * starts (os.system, subprocess, bash commands); that output becomes stdout
 * and stderr events of the execution that is running.
 *
 * Each context has a FIFO of executions. Only the head runs in the kernel.
 * The HTTP response of every execution starts at once and gets keepalives
 * while it waits: the upstream server also starts its streaming response
 * before it takes the context lock, so waiting counts against the client's
 * execution timeout the same way.
 *
 * A client that goes away drops a waiting execution; a running one gets its
 * kernel interrupted (SIGINT to the kernel's process group, as upstream does
 * since e2b-dev/code-interpreter#213, so an abandoned `time.sleep(300)` does
 * not block the context) and its remaining output is discarded.
 *
 * A kernel that dies ends the running execution with a KernelDied error; the
 * next execution starts a new kernel (with fresh state).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "spawn.h"

extern const char interp_kernel_py[]; /* agent/interp/kernel.py, embedded by the Makefile */

#define KEEPALIVE_MS	    5000 /* upstream's KEEPALIVE_INTERVAL */
#define READ_CHUNK	    65536
#define MAX_EVENT_LINE	    (64u << 20) /* longer kernel lines are dropped */
#define PAUSE_PENDING	    (8u << 20)	/* stop reading the kernel when the client lags this much */
#define RESUME_PENDING	    (1u << 20)
#define RESUME_POLL_MS	    20
#define KILL_GRACE_MS	    2000 /* SIGTERM -> SIGKILL for a kernel being stopped */
#define DEFAULT_CWD	    "/home/user"
#define SUPPORTED_LANGUAGES "python, bash"

struct interp_ctx;

struct interp_exec {
	struct interp_exec *next; /* FIFO of the context */
	struct interp_ctx *ctx;
	struct http_conn *conn; /* NULL once the client went away: output is discarded */
	unsigned long seq;	/* for logs */
	struct json *body;	/* the parsed request; code and env_vars point into it */
	const struct json *code;
	const struct json *env; /* request env_vars (an object) or NULL */
	bool running;		/* sent to the kernel */
	bool startup;		/* the agent's own barrier after the kernel's start-up files (interp_prewarm) */
	bool finishing;
	uint64_t queued_ms;
	uint64_t started_ms;
	uint64_t last_write_ms;
	uint64_t bytes_out;
	struct loop_timer keepalive;
};

/* One kernel process and the agent's ends of its pipes (-1 when closed). */
struct kernel {
	pid_t pid;	    /* 0: none */
	bool exiting;	    /* inside the exit handler: do not send requests */
	int req_fd;	    /* socket to its fd 3 (a socket so writes can use MSG_NOSIGNAL) */
	int ev_fd;	    /* its fd 4 */
	int out_fd, err_fd; /* its fd 1, 2 */
	struct loop_io req_io, ev_io, out_io, err_io;
	struct loop_child child;
	struct buf req_out;	       /* request bytes the socket has not taken yet */
	char **base_env;	       /* sandbox env vars when it started (it has them already) */
	struct buf ev_in;	       /* event bytes up to an incomplete line */
	size_t ev_scanned;	       /* bytes of ev_in known to hold no '\n' */
	bool ev_skipping;	       /* dropping the rest of an over-long line */
	bool spoke;		       /* sent at least one event: it did start */
	struct buf out_hold, err_hold; /* output not yet sent (incomplete UTF-8 at the end) */
	uint64_t started_ms;
};

struct interp_ctx {
	struct interp_ctx *next; /* all contexts, in creation order */
	char id[40];
	const char *lang; /* "python" or "bash" */
	char *cwd;
	struct kernel k;
	struct interp_exec *head, *tail;
	bool paused; /* not reading the kernel: the client is slow */
	struct loop_timer resume;
};

static struct {
	struct interp_ctx *contexts;
	struct interp_ctx *default_ctx[2]; /* per language, created on first use */
	struct user user;
	unsigned long exec_seq;
	struct loop_timer prewarm;
	enum { WARM_NONE, WARM_STARTING, WARM_READY, WARM_FAILED } warm; /* the default python kernel */
} interp;

static const char *const languages[2] = {"python", "bash"};

static void ctx_run_head(struct interp_ctx *x);
static void kernel_read_events(struct interp_ctx *x, bool drain);
static void kernel_read_output(struct interp_ctx *x, int which, bool drain);

/* --- small helpers --------------------------------------------------------- */

static struct loop *L(void)
{
	return agent.loop;
}

/* "2026-11-23T11:00:00.123456Z", the form of Jupyter's message dates. */
static void iso_now(char *out, size_t n)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + k, n - k, ".%06ldZ", ts.tv_nsec / 1000);
}

/* Upstream ids are Jupyter kernel ids: random UUIDs. */
static void uuid4(char out[40])
{
	static uint64_t counter;
	uint8_t r[16];
	if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
		/* Early boot without entropy: ids only need to be unique. */
		uint64_t s =
		    (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ mono_ms() ^ (++counter * 0x9e3779b97f4a7c15ull);
		for (int i = 0; i < 16; i++) {
			s += 0x9e3779b97f4a7c15ull;
			uint64_t z = (s ^ (s >> 30)) * 0xbf58476d1ce4e5b9ull;
			r[i] = (uint8_t)((z ^ (z >> 31)) >> 24);
		}
	}
	r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
	r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
	snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
		 r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
}

/* How many leading bytes can be sent without cutting a UTF-8 sequence: an
 * incomplete one at the end waits for the next read. */
static size_t utf8_complete_prefix(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t back = 1; back <= 3 && back <= n; back++) {
		unsigned char c = p[n - back];
		if ((c & 0xc0) == 0x80)
			continue;
		size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		return need > back ? n - back : n;
	}
	return n;
}

static void describe_status(int status, char *out, size_t n)
{
	if (WIFSIGNALED(status))
		snprintf(out, n, "killed by signal %d: %s", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(out, n, "exit status %d", WEXITSTATUS(status));
}

/* Normalises a language name the way upstream does (case, blanks) and maps it
 * to one we run. Returns the canonical name or NULL. */
static const char *language_canonical(const char *name)
{
	if (!name || !*name)
		return "python";
	char low[32];
	size_t n = 0;
	while (*name == ' ' || *name == '\t' || *name == '\n')
		name++;
	for (; *name && n < sizeof low - 1; name++)
		low[n++] = (char)((*name >= 'A' && *name <= 'Z') ? *name + 32 : *name);
	while (n && (low[n - 1] == ' ' || low[n - 1] == '\t' || low[n - 1] == '\n'))
		n--;
	low[n] = '\0';
	if (!strcmp(low, "python") || !strcmp(low, "python3"))
		return "python";
	if (!strcmp(low, "bash") || !strcmp(low, "sh"))
		return "bash";
	return NULL;
}

static int language_index(const char *lang)
{
	return strcmp(lang, "python") == 0 ? 0 : 1;
}

/* --- backpressure ----------------------------------------------------------
 * A client that reads slower than the kernel writes would make the agent
 * buffer without bound. Instead stop reading the kernel's pipes (so the
 * kernel and its children block) until the client caught up. http.c has no
 * "drained" callback, so poll. Stopping is done by watching no events: the
 * pipes' HUP is still reported, and a HUP while paused is handled by reading
 * (which sees EOF) as usual. */
static void ctx_set_reading(struct interp_ctx *x, bool on)
{
	struct kernel *k = &x->k;
	uint32_t ev = on ? EPOLLIN : 0;
	if (k->ev_fd >= 0)
		loop_io_mod(L(), &k->ev_io, ev);
	if (k->out_fd >= 0)
		loop_io_mod(L(), &k->out_io, ev);
	if (k->err_fd >= 0)
		loop_io_mod(L(), &k->err_io, ev);
}

static void ctx_unpause(struct interp_ctx *x)
{
	if (!x->paused)
		return;
	loop_timer_disarm(L(), &x->resume);
	x->paused = false;
	ctx_set_reading(x, true);
}

static void ctx_on_resume_poll(void *arg)
{
	struct interp_ctx *x = arg;
	struct interp_exec *e = x->head && x->head->running ? x->head : NULL;
	if (e && e->conn && http_conn_pending(e->conn) > RESUME_PENDING) {
		loop_timer_arm(L(), &x->resume, RESUME_POLL_MS, ctx_on_resume_poll, x);
		return;
	}
	x->paused = false;
	ctx_set_reading(x, true);
}

static void ctx_pause(struct interp_ctx *x)
{
	if (x->paused)
		return;
	x->paused = true;
	ctx_set_reading(x, false);
	loop_timer_arm(L(), &x->resume, RESUME_POLL_MS, ctx_on_resume_poll, x);
}

/* --- writing to the client -------------------------------------------------- */

/* Sends one complete NDJSON line (p[n-1] == '\n') as one chunk. */
static void exec_write_line(struct interp_exec *e, const char *p, size_t n)
{
	if (!e->conn)
		return;
	http_stream_write(e->conn, p, n);
	e->last_write_ms = loop_now(L());
	e->bytes_out += n;
	if (e->running && http_conn_pending(e->conn) > PAUSE_PENDING)
		ctx_pause(e->ctx);
}

static void exec_write_output(struct interp_exec *e, const char *stream, const char *p, size_t n)
{
	if (e->startup && n > 0) /* nobody reads it: the log is the only place to see a broken start-up file */
		log_info("interp.startup", "context=%s %s: %.*s", e->ctx->id, stream, (int)(n > 2000 ? 2000 : n), p);
	if (!e->conn || n == 0)
		return;
	char ts[48];
	iso_now(ts, sizeof ts);
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	jw_kstr(&w, "type", stream);
	jw_key(&w, "text");
	jw_strn(&w, p, n);
	jw_kstr(&w, "timestamp", ts);
	jw_end(&w);
	buf_putc(&b, '\n');
	exec_write_line(e, b.data, b.len);
	buf_free(&b);
}

static void exec_write_error(struct interp_exec *e, const char *name, const char *value)
{
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	jw_kstr(&w, "type", "error");
	jw_kstr(&w, "name", name);
	jw_kstr(&w, "value", value);
	jw_kstr(&w, "traceback", "");
	jw_end(&w);
	buf_putc(&b, '\n');
	exec_write_line(e, b.data, b.len);
	buf_free(&b);
}

static void exec_on_keepalive(void *arg)
{
	struct interp_exec *e = arg;
	uint64_t now = loop_now(L());
	uint64_t idle = now - e->last_write_ms;
	loop_timer_arm(L(), &e->keepalive, idle >= KEEPALIVE_MS ? KEEPALIVE_MS : KEEPALIVE_MS - idle, exec_on_keepalive,
		       e);
	/* Bytes still queued for the client keep the connection busy anyway. */
	if (idle >= KEEPALIVE_MS && e->conn && http_conn_pending(e->conn) == 0) {
		static const char line[] = "{\"type\":\"keepalive\"}\n";
		exec_write_line(e, line, sizeof line - 1);
	}
}

/* --- the execution queue --------------------------------------------------- */

static struct interp_exec *ctx_running(const struct interp_ctx *x)
{
	return x->head && x->head->running ? x->head : NULL;
}

static void ctx_unlink(struct interp_ctx *x, struct interp_exec *e)
{
	struct interp_exec **pp = &x->head, *prev = NULL;
	while (*pp && *pp != e) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = e->next;
	if (x->tail == e)
		x->tail = prev;
}

static void exec_free(struct interp_exec *e)
{
	loop_timer_disarm(L(), &e->keepalive);
	json_free(e->body);
	free(e);
}

/* Ends an execution: optional error event, then end_of_execution. Does not
 * start the next one (the callers decide). */
static void exec_finish(struct interp_exec *e, const char *err_name, const char *err_value)
{
	struct interp_ctx *x = e->ctx;
	e->finishing = true;
	if (e->running) {
		/* Output its child processes wrote before the kernel reported the
		 * end is already in the pipes: send it before the end. */
		kernel_read_output(x, 1, true);
		kernel_read_output(x, 2, true);
	}
	if (err_name)
		exec_write_error(e, err_name, err_value);
	if (e->startup) {
		interp.warm = err_name ? WARM_FAILED : WARM_READY;
		log_info("interp.startup", "context=%s default python kernel %s in %llu ms", x->id,
			 err_name ? "failed to start" : "ready", (unsigned long long)(loop_now(L()) - e->queued_ms));
	}
	static const char end[] = "{\"type\":\"end_of_execution\"}\n";
	exec_write_line(e, end, sizeof end - 1);
	if (e->conn)
		http_stream_end(e->conn);
	ctx_unlink(x, e);
	uint64_t now = loop_now(L());
	log_info("interp.execute", "context=%s exec=%lu done%s%s waited_ms=%llu ran_ms=%llu bytes=%llu%s", x->id,
		 e->seq, err_name ? " error=" : "", err_name ? err_name : "",
		 (unsigned long long)((e->running ? e->started_ms : now) - e->queued_ms),
		 (unsigned long long)(e->running ? now - e->started_ms : 0), (unsigned long long)e->bytes_out,
		 e->conn ? "" : " client=gone");
	exec_free(e);
	ctx_unpause(x); /* nobody to wait for any more */
}

/* The client went away (called by http.c from the loop). */
static void exec_on_abort(void *arg)
{
	struct interp_exec *e = arg;
	struct interp_ctx *x = e->ctx;
	e->conn = NULL;
	loop_timer_disarm(L(), &e->keepalive);
	if (e->finishing)
		return;
	if (!e->running) {
		log_info("interp.execute", "context=%s exec=%lu dropped: client gone while queued", x->id, e->seq);
		ctx_unlink(x, e);
		exec_free(e);
		return;
	}
	log_info("interp.execute", "context=%s exec=%lu client gone: interrupting the kernel, output discarded", x->id,
		 e->seq);
	if (x->k.pid > 0)
		kill(-x->k.pid, SIGINT);
	ctx_unpause(x); /* its output is discarded now: no reason to wait */
}

/* --- requests to the kernel ------------------------------------------------ */

static char **env_copy(char **env)
{
	size_t n = 0;
	while (env && env[n])
		n++;
	char **c = calloc(n + 1, sizeof *c);
	if (!c)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!(c[i] = strdup(env[i])))
			abort();
	return c;
}

static bool env_contains(char **env, const char *kv)
{
	for (; env && *env; env++)
		if (strcmp(*env, kv) == 0)
			return true;
	return false;
}

static bool json_has_key(const struct json *obj, const char *key, size_t klen)
{
	for (const struct json *v = obj ? obj->child : NULL; v; v = v->next)
		if (v->key_len == klen && memcmp(v->key, key, klen) == 0)
			return true;
	return false;
}

/* The env_vars sent with a request: the request's own, plus the sandbox env
 * vars that changed since the kernel started (POST /init after a snapshot
 * restore), so code always sees the current sandbox env. Unchanged ones are
 * left out: the kernel has them from its start, and a value the user code
 * set itself (os.environ[...] = ...) then persists, as upstream. */
static void write_env_vars(struct jw *w, char **base_env, const struct json *req_env)
{
	jw_obj(w);
	for (char **e = agent.env; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (!eq || eq == *e || env_contains(base_env, *e) || json_has_key(req_env, *e, (size_t)(eq - *e)))
			continue;
		char key[256];
		size_t kl = (size_t)(eq - *e);
		if (kl >= sizeof key)
			continue;
		memcpy(key, *e, kl);
		key[kl] = '\0';
		jw_kstr(w, key, eq + 1);
	}
	/* valid_env_vars() made sure the names hold no NUL. */
	for (const struct json *v = req_env ? req_env->child : NULL; v; v = v->next) {
		jw_key(w, v->key);
		jw_strn(w, v->str, v->len);
	}
	jw_end(w);
}

/* Queues the request line of e for the kernel. */
static void kernel_request(struct kernel *k, const struct interp_exec *e)
{
	if (e->startup) {
		buf_puts(&k->req_out, "{\"startup\":true}\n");
		return;
	}
	struct jw w;
	jw_init(&w, &k->req_out);
	jw_obj(&w);
	jw_key(&w, "code");
	jw_strn(&w, e->code->str, e->code->len);
	jw_key(&w, "env_vars");
	write_env_vars(&w, k->base_env, e->env);
	jw_end(&w);
	buf_putc(&k->req_out, '\n');
}

/* --- the kernel process ------------------------------------------------------ */

static void kernel_close_fd(struct loop_io *io, int *fd)
{
	if (*fd < 0)
		return;
	loop_io_del(L(), io);
	close(*fd);
	*fd = -1;
}

/* Forgets the kernel (already dead or killed): closes our ends of its pipes. */
static void kernel_release(struct interp_ctx *x)
{
	struct kernel *k = &x->k;
	loop_child_unwatch(L(), &k->child);
	kernel_close_fd(&k->req_io, &k->req_fd);
	kernel_close_fd(&k->ev_io, &k->ev_fd);
	kernel_close_fd(&k->out_io, &k->out_fd);
	kernel_close_fd(&k->err_io, &k->err_fd);
	buf_free(&k->req_out);
	env_free(k->base_env);
	k->base_env = NULL;
	buf_free(&k->ev_in);
	buf_free(&k->out_hold);
	buf_free(&k->err_hold);
	k->ev_scanned = 0;
	k->ev_skipping = false;
	k->spoke = false;
	k->pid = 0;
	k->exiting = false;
	loop_timer_disarm(L(), &x->resume);
	x->paused = false;
}

static void kernel_flush_requests(struct interp_ctx *x);

static void kernel_on_req_writable(void *arg, uint32_t events)
{
	kernel_flush_requests(arg);
}

static void kernel_flush_requests(struct interp_ctx *x)
{
	struct kernel *k = &x->k;
	while (k->req_out.len && k->req_fd >= 0) {
		ssize_t w = send(k->req_fd, k->req_out.data, k->req_out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			buf_consume(&k->req_out, (size_t)w);
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!k->req_io.active)
				loop_io_add(L(), &k->req_io, k->req_fd, EPOLLOUT, kernel_on_req_writable, x);
			return;
		}
		/* The kernel is gone; its exit handler reports it. */
		log_warn("interp.kernel", "context=%s pid=%d request write failed: %s", x->id, (int)k->pid,
			 strerror(errno));
		buf_reset(&k->req_out);
		break;
	}
	if (k->req_io.active)
		loop_io_del(L(), &k->req_io);
}

static void kernel_on_exit(void *arg, pid_t pid, int status)
{
	struct interp_ctx *x = arg;
	struct kernel *k = &x->k;
	char how[96];
	describe_status(status, how, sizeof how);
	log_info("interp.kernel", "context=%s pid=%d exited: %s after %llu ms", x->id, (int)pid, how,
		 (unsigned long long)(loop_now(L()) - k->started_ms));
	k->exiting = true;
	/* Whatever it wrote before dying is still in the pipes. */
	kernel_read_events(x, true);
	struct interp_exec *e = ctx_running(x);
	if (e) {
		char msg[512];
		if (k->spoke)
			snprintf(
			    msg, sizeof msg,
			    "The kernel died during the execution (%s). The context's state (variables, imports) is "
			    "lost; the next execution starts a new kernel.",
			    how);
		else
			snprintf(msg, sizeof msg, "The kernel failed to start (%s); see its stderr output.", how);
		exec_finish(e, k->spoke ? "KernelDied" : "KernelStartFailed", msg);
	}
	kernel_release(x);
	ctx_run_head(x);
}

static void kernel_on_events(void *arg, uint32_t events)
{
	kernel_read_events(arg, false);
}

static void kernel_on_stdout(void *arg, uint32_t events)
{
	kernel_read_output(arg, 1, false);
}

static void kernel_on_stderr(void *arg, uint32_t events)
{
	kernel_read_output(arg, 2, false);
}

static void close_pair(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0)
			close(p[i]);
}

/* The kernel's source travels in its environment rather than its argv, so
 * that `ps` in a sandbox shows a short command line. The bootstrap pops it
 * before any user code runs, so user processes never inherit it. */
static const char kernel_bootstrap[] =
    "import os; exec(compile(os.environ.pop('CUBE_KERNEL_PY'), '<cube-kernel>', 'exec'))";

static char **kernel_env(const struct interp_ctx *x)
{
	return env_put(env_build(&interp.user, x->cwd, NULL), "CUBE_KERNEL_PY", interp_kernel_py, true);
}

static int kernel_spawn(struct interp_ctx *x)
{
	struct kernel *k = &x->k;
	int req[2] = {-1, -1}, ev[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, req) < 0 || pipe2(ev, O_CLOEXEC) < 0 ||
	    pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		log_error("interp.kernel", "context=%s cannot create pipes: %s", x->id, strerror(errno));
		goto fail;
	}
	/* The kernel only reads its requests: a shutdown end tells it nothing,
	 * but makes the pair behave like the pipe the protocol describes. */
	shutdown(req[1], SHUT_WR);
	char *argv[] = {"python3", "-u",   "-c", (char *)kernel_bootstrap, "--lang", (char *)x->lang,
			"--cwd",   x->cwd, NULL};
	struct spawn s = {
	    .argv = argv,
	    .envp = kernel_env(x),
	    .fds = {-1 /* /dev/null */, out[1], err[1], req[1], ev[1]},
	    .nfds = 5,
	    .user = geteuid() != interp.user.uid ? &interp.user : NULL,
	    .cwd = x->cwd,
	    .cwd_fallback = "/",
	};
	/* No report pipe: a kernel that cannot start says why on its stderr,
	 * which the waiting execution streams before KernelStartFailed. */
	pid_t pid = spawn_start(&s, NULL);
	int fork_errno = errno;
	env_free(s.envp);
	if (pid < 0) {
		log_error("interp.kernel", "context=%s fork: %s", x->id, strerror(fork_errno));
		goto fail;
	}
	close(req[1]);
	close(ev[1]);
	close(out[1]);
	close(err[1]);
	loop_child_watch(L(), &k->child, pid, kernel_on_exit, x);
	k->base_env = env_copy(agent.env);
	k->pid = pid;
	k->exiting = false;
	k->started_ms = loop_now(L());
	k->req_fd = req[0];
	k->ev_fd = ev[0];
	k->out_fd = out[0];
	k->err_fd = err[0];
	fd_nonblock(k->req_fd);
	fd_nonblock(k->ev_fd);
	fd_nonblock(k->out_fd);
	fd_nonblock(k->err_fd);
	loop_io_add(L(), &k->ev_io, k->ev_fd, EPOLLIN, kernel_on_events, x);
	loop_io_add(L(), &k->out_io, k->out_fd, EPOLLIN, kernel_on_stdout, x);
	loop_io_add(L(), &k->err_io, k->err_fd, EPOLLIN, kernel_on_stderr, x);
	log_info("interp.kernel", "context=%s lang=%s pid=%d cwd=%s user=%s started", x->id, x->lang, (int)pid, x->cwd,
		 interp.user.name);
	return 0;
fail:
	close_pair(req);
	close_pair(ev);
	close_pair(out);
	close_pair(err);
	return -1;
}

/* An old kernel being stopped after a restart or delete. The context has
 * moved on (its pipes are closed, a new kernel may run); this only makes sure
 * the old process group goes away. */
struct kernel_reaper {
	pid_t pid;
	struct loop_child child;
	struct loop_timer timer;
};

static void reaper_on_exit(void *arg, pid_t pid, int status)
{
	struct kernel_reaper *r = arg;
	loop_timer_disarm(L(), &r->timer);
	kill(-r->pid, SIGKILL); /* what is left of its process group */
	free(r);
}

static void reaper_on_timeout(void *arg)
{
	struct kernel_reaper *r = arg;
	log_info("interp.kernel", "pid=%d still alive after SIGTERM: SIGKILL", (int)r->pid);
	kill(-r->pid, SIGKILL); /* reaper_on_exit follows */
}

/* Kills the process groups of the kernel's children that started their own
 * session. The bash kernel runs its shell that way: killing the kernel's own
 * group does not reach the shell and what it runs, and once the kernel is
 * gone they are orphans nobody stops. Called while the kernel still lives,
 * so its children are still its children. */
static void kill_child_sessions(pid_t parent)
{
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		pid_t pid = (pid_t)atoi(de->d_name);
		char path[64], line[512];
		snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, line, sizeof line - 1);
		close(fd);
		if (n <= 0)
			continue;
		line[n] = '\0';
		/* "pid (comm) state ppid pgrp session ...": comm may hold anything,
		 * so parse after its last ')'. */
		char *p = strrchr(line, ')');
		int ppid, pgrp, sid;
		char state;
		if (!p || sscanf(p + 1, " %c %d %d %d", &state, &ppid, &pgrp, &sid) != 4)
			continue;
		if (ppid == parent && sid == pid && pgrp == pid)
			kill(-pid, SIGKILL);
	}
	closedir(d);
}

/* Stops the kernel and everything it started. SIGTERM first, so the kernel
 * can stop what runs outside its process group (the bash kernel's shell has
 * its own session); SIGKILL after KILL_GRACE_MS, or as soon as the kernel is
 * gone, for the rest of the group. */
static void kernel_kill(struct interp_ctx *x)
{
	pid_t pid = x->k.pid;
	if (pid <= 0)
		return;
	/* Only for bash: in python such children are the user's own
	 * (subprocess with start_new_session=True), and like a Jupyter restart
	 * we leave them alone. */
	if (strcmp(x->lang, "bash") == 0)
		kill_child_sessions(pid);
	kernel_release(x);
	struct kernel_reaper *r = calloc(1, sizeof *r);
	if (!r)
		abort();
	r->pid = pid;
	loop_child_watch(L(), &r->child, pid, reaper_on_exit, r);
	if (kill(-pid, SIGTERM) < 0)
		kill(pid, SIGTERM);
	loop_timer_arm(L(), &r->timer, KILL_GRACE_MS, reaper_on_timeout, r);
	log_info("interp.kernel", "context=%s pid=%d stopping", x->id, (int)pid);
}

/* --- reading the kernel -------------------------------------------------------- */

/* Bytes readable now; used to bound drains, so that a background process
 * that writes forever cannot keep a drain going. */
static size_t fd_readable(int fd)
{
	int n = 0;
	if (ioctl(fd, FIONREAD, &n) < 0 || n < 0)
		return 0;
	return (size_t)n;
}

static void kernel_event_line(struct interp_ctx *x, const char *line, size_t n)
{
	if (n == 0 || (n == 1 && line[0] == '\r'))
		return;
	char err[128];
	struct json *j = json_parse(line, n, err, sizeof err);
	if (!j || j->type != JSON_OBJECT) {
		log_warn("interp.kernel", "context=%s dropped a malformed event line (%zu bytes): %s", x->id, n,
			 j ? "not an object" : err);
		json_free(j);
		return;
	}
	x->k.spoke = true;
	const char *type = json_get_str(j, "type");
	bool end = type && strcmp(type, "end_of_execution") == 0;
	json_free(j);
	struct interp_exec *e = ctx_running(x);
	if (!e) {
		log_debug("interp.kernel", "context=%s event without a running execution dropped", x->id);
		return;
	}
	if (end)
		exec_finish(e, NULL, NULL);
	else
		exec_write_line(e, line, n + 1); /* line[n] is its '\n' */
	if (end)
		ctx_run_head(x);
}

/* Splits ev_in into lines and handles the complete ones. */
static void kernel_consume_events(struct interp_ctx *x)
{
	struct kernel *k = &x->k;
	size_t start = 0;
	for (;;) {
		char *nl = memchr(k->ev_in.data + k->ev_scanned, '\n', k->ev_in.len - k->ev_scanned);
		if (!nl) {
			k->ev_scanned = k->ev_in.len;
			break;
		}
		size_t end = (size_t)(nl - k->ev_in.data);
		if (k->ev_skipping)
			k->ev_skipping = false;
		else
			kernel_event_line(x, k->ev_in.data + start, end - start);
		start = end + 1;
		k->ev_scanned = start;
	}
	buf_consume(&k->ev_in, start);
	k->ev_scanned -= start;
	if (k->ev_in.len > MAX_EVENT_LINE) {
		log_warn("interp.kernel", "context=%s dropped an event line longer than %u bytes", x->id,
			 MAX_EVENT_LINE);
		buf_reset(&k->ev_in);
		k->ev_scanned = 0;
		k->ev_skipping = true;
	}
}

static void kernel_read_events(struct interp_ctx *x, bool drain)
{
	struct kernel *k = &x->k;
	size_t budget = drain ? fd_readable(k->ev_fd) : READ_CHUNK;
	while (k->ev_fd >= 0 && budget > 0) {
		size_t want = budget < READ_CHUNK ? budget : READ_CHUNK;
		ssize_t r = read(k->ev_fd, buf_reserve(&k->ev_in, want), want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
				kernel_close_fd(&k->ev_io, &k->ev_fd); /* the exit handler follows */
			break;
		}
		buf_commit(&k->ev_in, (size_t)r);
		budget -= (size_t)r;
		kernel_consume_events(x);
		if (!drain)
			break;
	}
}

/* Sends held output of stream `which` to the running execution; `all` also
 * sends an incomplete UTF-8 sequence at the end (as U+FFFD). */
static void kernel_flush_output(struct interp_ctx *x, int which, bool all)
{
	struct buf *h = which == 1 ? &x->k.out_hold : &x->k.err_hold;
	size_t n = all ? h->len : utf8_complete_prefix(h->data, h->len);
	if (n == 0)
		return;
	struct interp_exec *e = ctx_running(x);
	if (e)
		exec_write_output(e, which == 1 ? "stdout" : "stderr", h->data, n);
	else
		log_debug("interp.kernel", "context=%s %zu bytes of %s outside an execution dropped: %.*s", x->id, n,
			  which == 1 ? "stdout" : "stderr", (int)(n > 200 ? 200 : n), h->data);
	buf_consume(h, n);
}

static void kernel_read_output(struct interp_ctx *x, int which, bool drain)
{
	struct kernel *k = &x->k;
	int *fd = which == 1 ? &k->out_fd : &k->err_fd;
	struct loop_io *io = which == 1 ? &k->out_io : &k->err_io;
	struct buf *h = which == 1 ? &k->out_hold : &k->err_hold;
	size_t budget = drain ? (*fd >= 0 ? fd_readable(*fd) : 0) : READ_CHUNK;
	while (*fd >= 0 && budget > 0) {
		size_t want = budget < READ_CHUNK ? budget : READ_CHUNK;
		ssize_t r = read(*fd, buf_reserve(h, want), want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
				kernel_close_fd(io, fd);
			break;
		}
		buf_commit(h, (size_t)r);
		budget -= (size_t)r;
		kernel_flush_output(x, which, false);
		if (!drain)
			break;
	}
	if (drain || *fd < 0)
		kernel_flush_output(x, which, true);
}

/* --- contexts ---------------------------------------------------------------- */

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static struct interp_ctx *ctx_find(const char *id)
{
	for (struct interp_ctx *x = interp.contexts; x; x = x->next)
		if (strcmp(x->id, id) == 0)
			return x;
	return NULL;
}

static struct interp_ctx *ctx_new(const char *lang, const char *cwd)
{
	struct interp_ctx *x = calloc(1, sizeof *x);
	if (!x)
		abort();
	uuid4(x->id);
	x->lang = lang;
	x->cwd = strdup(cwd);
	if (!x->cwd)
		abort();
	x->k.req_fd = x->k.ev_fd = x->k.out_fd = x->k.err_fd = -1;
	struct interp_ctx **pp = &interp.contexts;
	while (*pp)
		pp = &(*pp)->next;
	*pp = x;
	log_info("interp.context", "context=%s lang=%s cwd=%s created", x->id, lang, cwd);
	return x;
}

/* Upstream's default cwd is /home/user; on a machine without it (tests on a
 * host) fall back to the kernel user's home, then /. */
static const char *default_cwd(void)
{
	if (is_dir(DEFAULT_CWD))
		return DEFAULT_CWD;
	if (is_dir(interp.user.home))
		return interp.user.home;
	return "/";
}

/* The default context of a language; created (not started) on first use. */
static struct interp_ctx *ctx_default(const char *lang)
{
	int i = language_index(lang);
	if (!interp.default_ctx[i])
		interp.default_ctx[i] = ctx_new(languages[i], default_cwd());
	return interp.default_ctx[i];
}

/* Starts the head of the queue in the kernel, starting the kernel if needed.
 * A kernel that cannot even be forked fails the waiting executions. */
static void ctx_run_head(struct interp_ctx *x)
{
	while (x->head && !x->head->running) {
		if (x->k.exiting)
			return; /* the exit handler calls again once the old kernel is gone */
		if (x->k.pid == 0 && kernel_spawn(x) < 0) {
			exec_finish(x->head, "KernelStartFailed",
				    "The kernel process could not be started (see the agent log).");
			continue;
		}
		struct interp_exec *e = x->head;
		e->running = true;
		e->started_ms = loop_now(L());
		kernel_request(&x->k, e);
		log_info("interp.execute", "context=%s exec=%lu running pid=%d waited_ms=%llu", x->id, e->seq,
			 (int)x->k.pid, (unsigned long long)(e->started_ms - e->queued_ms));
		kernel_flush_requests(x);
		return;
	}
}

/* Ends every execution of x with an error; the running one first. */
static void ctx_fail_all(struct interp_ctx *x, const char *name, const char *value, bool waiting_too)
{
	struct interp_exec *e = ctx_running(x);
	if (e)
		exec_finish(e, name, value);
	while (waiting_too && x->head)
		exec_finish(x->head, name, value);
}

static void ctx_restart(struct interp_ctx *x)
{
	/* Upstream reports a restart to the running execution this way. */
	kernel_read_output(x, 1, true);
	kernel_read_output(x, 2, true);
	struct interp_exec *e = ctx_running(x);
	kernel_kill(x);
	if (e)
		exec_finish(e, "ContextRestarting", "Context was restarted");
	if (kernel_spawn(x) < 0)
		log_error("interp.context", "context=%s restart: kernel did not start", x->id);
	ctx_run_head(x);
}

static void ctx_delete(struct interp_ctx *x)
{
	struct interp_exec *e = ctx_running(x);
	if (e) {
		kernel_read_output(x, 1, true);
		kernel_read_output(x, 2, true);
	}
	kernel_kill(x);
	ctx_fail_all(x, "ContextDeleted", "The context was deleted", true);
	for (int i = 0; i < 2; i++)
		if (interp.default_ctx[i] == x)
			interp.default_ctx[i] = NULL; /* the next use creates a new one */
	struct interp_ctx **pp = &interp.contexts;
	while (*pp && *pp != x)
		pp = &(*pp)->next;
	if (*pp)
		*pp = x->next;
	loop_timer_disarm(L(), &x->resume);
	log_info("interp.context", "context=%s deleted", x->id);
	free(x->cwd);
	free(x);
}

/* --- HTTP ---------------------------------------------------------------------- */

static void respond_json(struct http_conn *c, int status, const struct buf *b)
{
	http_respond(c, status, "application/json", b->data ? b->data : "", b->len);
}

static void write_context(struct jw *w, const struct interp_ctx *x)
{
	jw_obj(w);
	jw_kstr(w, "id", x->id);
	jw_kstr(w, "language", x->lang);
	jw_kstr(w, "cwd", x->cwd);
	jw_end(w);
}

/* Parses a JSON object body (an empty one counts as {} if allow_empty).
 * Answers 400 and returns NULL when it is not an object. */
static struct json *parse_body(struct http_conn *c, const struct http_req *req, bool allow_empty)
{
	size_t n = req->body_len;
	while (n && (req->body[n - 1] == ' ' || req->body[n - 1] == '\n' || req->body[n - 1] == '\r' ||
		     req->body[n - 1] == '\t'))
		n--;
	if (n == 0 && allow_empty)
		return json_parse("{}", 2, NULL, 0);
	char err[160];
	struct json *j = json_parse(req->body, req->body_len, err, sizeof err);
	if (!j) {
		http_respond_error(c, 400, "invalid JSON body: %s", err);
		return NULL;
	}
	if (j->type != JSON_OBJECT) {
		json_free(j);
		http_respond_error(c, 400, "invalid request: the body must be a JSON object");
		return NULL;
	}
	return j;
}

/* Optional string member: absent or null -> *out = NULL. Answers 400 if it
 * has another type. */
static bool opt_string(struct http_conn *c, const struct json *obj, const char *key, const char **out)
{
	const struct json *v = json_get(obj, key);
	*out = NULL;
	if (!v || v->type == JSON_NULL)
		return true;
	if (v->type != JSON_STRING) {
		http_respond_error(c, 400, "invalid request: '%s' must be a string", key);
		return false;
	}
	*out = v->str;
	return true;
}

static bool valid_env_vars(struct http_conn *c, const struct json *env)
{
	if (!env || env->type == JSON_NULL)
		return true;
	if (env->type != JSON_OBJECT) {
		http_respond_error(c, 400, "invalid request: 'env_vars' must be an object of strings");
		return false;
	}
	for (const struct json *v = env->child; v; v = v->next) {
		if (v->type != JSON_STRING || v->key_len == 0 || memchr(v->key, '=', v->key_len) ||
		    memchr(v->key, '\0', v->key_len) || memchr(v->str, '\0', v->len)) {
			http_respond_error(c, 400,
					   "invalid request: env_vars['%.*s'] must be a string (names without '=')",
					   (int)(v->key_len > 64 ? 64 : v->key_len), v->key);
			return false;
		}
	}
	return true;
}

static void handle_execute(struct http_conn *c, struct http_req *req)
{
	if (!check_access_token(c, req))
		return;
	struct json *body = parse_body(c, req, false);
	if (!body)
		return;
	const struct json *code = json_get(body, "code");
	const char *context_id, *language;
	const struct json *env = json_get(body, "env_vars");
	if (!code || code->type != JSON_STRING) {
		http_respond_error(c, 400, "invalid request: 'code' (a string) is required");
		goto out;
	}
	if (!opt_string(c, body, "context_id", &context_id) || !opt_string(c, body, "language", &language) ||
	    !valid_env_vars(c, env))
		goto out;
	/* Upstream tests truthiness: empty strings count as absent. */
	if (context_id && !*context_id)
		context_id = NULL;
	if (language && !*language)
		language = NULL;
	if (context_id && language) {
		http_respond_error(c, 400, "Only one of context_id or language can be provided");
		goto out;
	}
	struct interp_ctx *x;
	if (context_id) {
		x = ctx_find(context_id);
		if (!x) {
			http_respond_error(c, 404, "Context %s not found", context_id);
			goto out;
		}
	} else {
		const char *lang = language_canonical(language);
		if (!lang) {
			http_respond_error(c, 400,
					   "Unsupported language '%s': supported languages are " SUPPORTED_LANGUAGES,
					   language);
			goto out;
		}
		x = ctx_default(lang);
	}

	struct interp_exec *e = calloc(1, sizeof *e);
	if (!e)
		abort();
	e->body = body;
	body = NULL; /* the execution owns it now */
	e->code = code;
	e->env = env && env->type == JSON_OBJECT ? env : NULL;
	e->ctx = x;
	e->conn = c;
	e->seq = ++interp.exec_seq;
	e->queued_ms = e->last_write_ms = loop_now(L());
	if (x->tail)
		x->tail->next = e;
	else
		x->head = e;
	x->tail = e;
	log_info("interp.execute", "context=%s lang=%s exec=%lu code_bytes=%zu queued_behind=%s peer=%s", x->id,
		 x->lang, e->seq, e->code->len, x->head == e ? "none" : "others", req->peer);

	http_stream_start(c, 200, "application/x-ndjson");
	http_conn_on_abort(c, exec_on_abort, e);
	loop_timer_arm(L(), &e->keepalive, KEEPALIVE_MS, exec_on_keepalive, e);
	ctx_run_head(x);
out:
	json_free(body);
}

static void handle_create_context(struct http_conn *c, struct http_req *req)
{
	struct json *body = parse_body(c, req, true);
	if (!body)
		return;
	const char *language, *cwd_in;
	if (!opt_string(c, body, "language", &language) || !opt_string(c, body, "cwd", &cwd_in))
		goto out;
	const char *lang = language_canonical(language);
	if (!lang) {
		http_respond_error(c, 400, "Unsupported language '%s': supported languages are " SUPPORTED_LANGUAGES,
				   language);
		goto out;
	}
	char *cwd = cwd_in && *cwd_in ? path_resolve(cwd_in, &interp.user) : strdup(default_cwd());
	if (!cwd || !is_dir(cwd)) {
		http_respond_error(c, 400, "cwd '%s' is not a directory", cwd_in ? cwd_in : DEFAULT_CWD);
		free(cwd);
		goto out;
	}
	struct interp_ctx *x = ctx_new(lang, cwd);
	free(cwd);
	/* Start the kernel now, as upstream does: the first execution then
	 * does not pay for the interpreter's start-up. */
	if (kernel_spawn(x) < 0) {
		ctx_delete(x);
		http_respond_error(c, 500, "Failed to create context: the kernel could not be started");
		goto out;
	}
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	write_context(&w, x);
	respond_json(c, 200, &b);
	buf_free(&b);
out:
	json_free(body);
}

static void handle_list_contexts(struct http_conn *c)
{
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_arr(&w);
	for (struct interp_ctx *x = interp.contexts; x; x = x->next)
		write_context(&w, x);
	jw_end(&w);
	respond_json(c, 200, &b);
	buf_free(&b);
}

static void method_not_allowed(struct http_conn *c, const struct http_req *req, const char *allow)
{
	http_add_header(c, "Allow", allow);
	http_respond_error(c, 405, "Method %s not allowed on %s", req->method, req->path);
}

/* /contexts/{id} and /contexts/{id}/restart */
static void handle_context_path(struct http_conn *c, struct http_req *req, const char *rest)
{
	char id[64];
	const char *slash = strchr(rest, '/');
	size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
	bool restart = slash && strcmp(slash, "/restart") == 0;
	if (idlen == 0 || idlen >= sizeof id || (slash && !restart)) {
		http_respond_error(c, 404, "Not found: %s", req->path);
		return;
	}
	memcpy(id, rest, idlen);
	id[idlen] = '\0';
	if (restart ? strcmp(req->method, "POST") != 0 : strcmp(req->method, "DELETE") != 0) {
		method_not_allowed(c, req, restart ? "POST" : "DELETE");
		return;
	}
	struct interp_ctx *x = ctx_find(id);
	if (!x) {
		http_respond_error(c, 404, "Context %s not found", id);
		return;
	}
	log_info("interp.context", "context=%s %s", x->id, restart ? "restart" : "delete");
	if (restart)
		ctx_restart(x);
	else
		ctx_delete(x);
	/* FastAPI's answer for a handler returning None. */
	http_respond(c, 200, "application/json", "null", 4);
}

/* The upstream server allows every origin (CORSMiddleware "*"). */
/* GET /cubeos/ready (CubeOS's own, for template builds): 503 while the
 * default python kernel runs its start-up, else 200 with whether it is up. */
static void handle_ready(struct http_conn *c)
{
	static const char *const reasons[] = {
	    [WARM_NONE] = "no start-up kernel was started",
	    [WARM_STARTING] = "the default python kernel is starting",
	    [WARM_READY] = NULL,
	    [WARM_FAILED] = "the default python kernel could not start",
	};
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	jw_kbool(&w, "ready", interp.warm == WARM_READY);
	if (reasons[interp.warm])
		jw_kstr(&w, "reason", reasons[interp.warm]);
	jw_end(&w);
	respond_json(c, interp.warm == WARM_STARTING ? 503 : 200, &b);
	buf_free(&b);
}

static bool cors(struct http_conn *c, const struct http_req *req)
{
	if (!http_req_header(req, "Origin"))
		return false;
	http_add_header(c, "Access-Control-Allow-Origin", "*");
	if (strcmp(req->method, "OPTIONS") != 0 || !http_req_header(req, "Access-Control-Request-Method"))
		return false;
	const char *hdrs = http_req_header(req, "Access-Control-Request-Headers");
	http_add_header(c, "Access-Control-Allow-Methods", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT");
	if (hdrs)
		http_add_header(c, "Access-Control-Allow-Headers", hdrs);
	http_add_header(c, "Access-Control-Max-Age", "600");
	http_respond(c, 200, "text/plain; charset=utf-8", "OK", 2);
	return true;
}

void interp_handle(struct http_conn *c, struct http_req *req, void *arg)
{
	const char *m = req->method, *p = req->path;
	if (cors(c, req))
		return;
	if (strcmp(p, "/health") == 0) {
		if (strcmp(m, "GET") == 0)
			http_respond(c, 200, "application/json", "\"OK\"", 4); /* FastAPI's JSON "OK" */
		else
			method_not_allowed(c, req, "GET");
	} else if (strcmp(p, "/cubeos/ready") == 0) {
		if (strcmp(m, "GET") == 0)
			handle_ready(c);
		else
			method_not_allowed(c, req, "GET");
	} else if (strcmp(p, "/execute") == 0) {
		if (strcmp(m, "POST") == 0)
			handle_execute(c, req);
		else
			method_not_allowed(c, req, "POST");
	} else if (strcmp(p, "/contexts") == 0) {
		if (strcmp(m, "GET") == 0)
			handle_list_contexts(c);
		else if (strcmp(m, "POST") == 0)
			handle_create_context(c, req);
		else
			method_not_allowed(c, req, "GET, POST");
	} else if (strncmp(p, "/contexts/", 10) == 0) {
		handle_context_path(c, req, p + 10);
	} else {
		http_respond_error(c, 404, "Not found: %s", p);
	}
}

/* --- start ------------------------------------------------------------------- */

/* Upstream runs Jupyter, and so every kernel, as root (its systemd unit has
 * no User=): code can pip install and read /root. An agent that is not root
 * (tests) runs kernels as itself. */
static void choose_user(void)
{
	struct user *u = &interp.user;
	if (geteuid() == 0 && user_lookup("root", u) == 0)
		return;
	memset(u, 0, sizeof *u);
	u->uid = geteuid();
	u->gid = getegid();
	const char *home = getenv("HOME");
	const char *name = getenv("USER");
	snprintf(u->name, sizeof u->name, "%s", u->uid == 0 ? "root" : name ? name : "user");
	snprintf(u->home, sizeof u->home, "%s", u->uid == 0 ? "/root" : home ? home : "/");
	snprintf(u->shell, sizeof u->shell, "/bin/sh");
}

/* Upstream starts the default python kernel with the server. Do it from the
 * loop right after start (a fork; python's start-up runs in parallel), so
 * the agent's own start is not slowed and the first runCode is warm. The
 * kernel is started by a start-up barrier, an execution of the agent's own
 * that the kernel answers once its start-up files ran (kernel.py): until then
 * GET /cubeos/ready says 503, so a template build snapshots a kernel that has
 * its modules loaded. */
static void interp_prewarm(void *arg)
{
	struct interp_ctx *x = ctx_default("python");
	if (x->k.pid != 0 || x->head)
		return; /* a client was first: its cell starts the kernel */
	struct interp_exec *e = calloc(1, sizeof *e);
	if (!e)
		abort();
	e->startup = true;
	e->ctx = x;
	e->seq = ++interp.exec_seq;
	e->queued_ms = e->last_write_ms = loop_now(L());
	x->head = x->tail = e;
	interp.warm = WARM_STARTING;
	ctx_run_head(x);
}

void interp_init(void)
{
	choose_user();
	/* Create the default python context now so that GET /contexts lists it
	 * from the start, as upstream does. */
	ctx_default("python");
	loop_timer_arm(L(), &interp.prewarm, 0, interp_prewarm, NULL);
}

/* Every execution already carries the current sandbox env vars (see
 * write_env_vars), so running kernels need not be restarted. */
void interp_env_changed(void)
{
	log_debug("interp.env", "sandbox env changed; applied to the next executions");
}
