/*
 * vm.c - starting, stopping, pausing and snapshotting sandbox VMs: the one
 * place in the control plane that runs cube-vmm (see vm.h for the files).
 *
 * Everything here blocks and is called from worker threads, so there is no
 * global state, every fd is close-on-exec, and waitpid() is only ever called
 * for a pid this process spawned (after a daemon restart the VMMs are PID1's
 * children: we then watch /proc instead).
 *
 * The host reaches a guest's agent through the VMM's vsock Unix socket:
 * "CONNECT 49983\n" -> "OK <n>\n", then the stream is plain HTTP to the
 * agent. The VMM is driven through its control socket: one JSON line per
 * request, one per reply.
 */
#include "vm.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/b64.h"
#include "../lib/buf.h"
#include "../lib/connect.h"
#include "../lib/http.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/fileio.h"
#include "../lib/loop.h"

extern char **environ;

/* Paths here are short (state and run dirs, ids of 20 characters); a
 * bounded size keeps the frames small on worker threads' stacks.
 * A restore answers in under a second, but on a host starved of CPU (many
 * starts at once, nested under emulation) a restored guest can wait seconds
 * before it runs at all: RESTORE_AGENT_MS is generous. */
#define VM_PATH_MAX	 1024
#define AGENT_PORT	 49983
#define DEFAULT_VMM	 "/usr/bin/cube-vmm"
#define RESTORE_AGENT_MS 30000
#define BOOT_AGENT_MS	 300000 /* a cold boot nested under emulation takes many seconds */
#define SETTLE_MS	 1000	/* boot-time work in the guest dies down before the snapshot */
#define INTERP_PORT	 49999
#define INTERP_READY_MS	 300000 /* numpy, pandas and matplotlib imported nested under emulation */
#define CONTROL_MS	 5000	/* ping, shutdown: callers cope with a miss */
/* pause and resume: a miss there costs a sandbox (a claim that gives up
 * kills its VMM and restores another from scratch, adding to the load that
 * made the VMM slow), so they wait as long as a restore may take. */
#define CONTROL_SLOW_MS RESTORE_AGENT_MS
/* One GET /health: the first tries are short (the agent is not up yet and
 * the VMM holds a CONNECT until the guest answers), then longer, so a
 * guest starved of CPU that needs more than a couple of seconds per round
 * trip is still seen as up before the deadline. */
#define AGENT_TRY_FIRST_MS    2000
#define AGENT_TRY_MAX_MS      8000
#define SNAPSHOT_MS	      300000 /* writes all of guest RAM and the disk layers */
#define STOP_AFTER_KILL_MS    5000
#define INIT_ENTROPY_BYTES    64
#define LAYER_NAME	      "disk.layer"
#define PAUSED_NAME	      "paused"
#define TEMPLATE_SNAP_NAME    "snap"
#define TEMPLATE_DEFAULT_ARGS "quiet"

/* Every path one VM uses. */
struct vm_paths {
	char vsock[VM_PATH_MAX], control[VM_PATH_MAX], console[VM_PATH_MAX], log[VM_PATH_MAX];
	char layer[VM_PATH_MAX], paused[VM_PATH_MAX];
};

/* --- small helpers ----------------------------------------------------------------- */

static void seterr(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errsz, const char *fmt, ...)
{
	if (!err || !errsz)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
}

static int path_join(char *out, const char *dir, const char *name)
{
	int n = snprintf(out, VM_PATH_MAX, "%s/%s", dir, name);
	return n > 0 && n < VM_PATH_MAX ? 0 : -1;
}

/* Removes a flat directory (snapshots and run dirs have no subdirectories). */
static int remove_flat_dir(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -1;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -1;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
	return rmdir(dir);
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The VMM's sockets in run_dir: vsock.sock, the relays for guest-initiated
 * connections (vsock.sock_<port>) and control.sock. With everything, the
 * logs and the directory go too. */
static void clean_run_dir(const char *run_dir, bool everything)
{
	if (everything) {
		remove_flat_dir(run_dir);
		return;
	}
	int dfd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "vsock.sock", 10) || !strcmp(e->d_name, "control.sock"))
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
}

static int make_paths(const struct vm_spec *s, struct vm_paths *p, char *err, size_t errsz)
{
	struct sockaddr_un sa;
	if (!s || !s->id || !*s->id || !s->sandbox_dir || !s->run_dir) {
		seterr(err, errsz, "vm spec lacks id, sandbox_dir or run_dir");
		return -1;
	}
	if (path_join(p->vsock, s->run_dir, "vsock.sock") || path_join(p->control, s->run_dir, "control.sock") ||
	    path_join(p->console, s->run_dir, "console.log") || path_join(p->log, s->run_dir, "vmm.log") ||
	    path_join(p->layer, s->sandbox_dir, LAYER_NAME) || path_join(p->paused, s->sandbox_dir, PAUSED_NAME)) {
		seterr(err, errsz, "sandbox=%s: path too long", s->id);
		return -1;
	}
	/* Relay sockets are "<vsock>_<port>": leave room for the suffix. */
	if (strlen(p->vsock) + 7 >= sizeof sa.sun_path || strlen(p->control) >= sizeof sa.sun_path) {
		seterr(err, errsz, "sandbox=%s: run dir %s too long for a Unix socket path", s->id, s->run_dir);
		return -1;
	}
	return 0;
}

/* cube-vmm: the one asked for, else the one next to this program (the build
 * dir, the test payload, /usr/bin in the appliance), else /usr/bin. */
static void resolve_vmm(const char *given, char *out, size_t outsz)
{
	if (given && *given) {
		snprintf(out, outsz, "%s", given);
		return;
	}
	char self[VM_PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			if (snprintf(out, outsz, "%s/cube-vmm", self) < (int)outsz && access(out, X_OK) == 0)
				return;
		}
	}
	snprintf(out, outsz, "%s", DEFAULT_VMM);
}

/* The last message the VMM logged (its log is JSON lines), for errors. */
static void last_vmm_message(const char *log_path, char *out, size_t outsz)
{
	out[0] = '\0';
	int fd = open(log_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char tail[4096];
	off_t size = lseek(fd, 0, SEEK_END);
	off_t from = size > (off_t)sizeof tail - 1 ? size - (off_t)(sizeof tail - 1) : 0;
	ssize_t n = pread(fd, tail, sizeof tail - 1, from);
	close(fd);
	if (n <= 0)
		return;
	while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r'))
		n--;
	tail[n] = '\0';
	char *line = strrchr(tail, '\n');
	line = line ? line + 1 : tail;
	struct json *j = json_parse(line, strlen(line), NULL, 0);
	const char *msg = json_get_str(j, "msg");
	snprintf(out, outsz, "%s", msg ? msg : line);
	json_free(j);
}

/* Adds " (vmm: <its last message>)" to why unless it is there already. */
static void append_vmm_message(const char *log_path, char *why, size_t whysz)
{
	char msg[300];
	last_vmm_message(log_path, msg, sizeof msg);
	size_t n = strlen(why);
	if (msg[0] && !strstr(why, msg) && n < whysz)
		snprintf(why + n, whysz - n, " (vmm: %.200s)", msg);
}

/* --- processes ---------------------------------------------------------------------- */

/* Starts argv in its own session (it must outlive this daemon), stdin on
 * /dev/null, stdout and stderr appended to log_path, default signal
 * dispositions and an empty mask whatever this thread has. */
static pid_t spawn_session(char *const argv[], const char *log_path, char *err, size_t errsz)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0640);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pid_t pid = -1;
	int rc = posix_spawn(&pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (rc != 0) {
		seterr(err, errsz, "cannot start %s: %s", argv[0], strerror(rc));
		return -1;
	}
	return pid;
}

/* Has pid ended? For our own child this reaps it (its wait status in *st
 * if given, else -1). A pid that is not our child ended when it is gone or
 * a zombie: a VMM from before a daemon restart (PID1 reaps it), or our own
 * child that the daemon's event loop reaped first (lib/loop reaps every
 * child on SIGCHLD), whose status is then unknown. */
static bool process_ended(pid_t pid, int *st)
{
	int status = 0;
	if (st)
		*st = -1;
	pid_t r = waitpid(pid, &status, WNOHANG);
	if (r == pid) {
		if (st)
			*st = status;
		return true;
	}
	if (r == 0)
		return false;
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	char path[64], stat[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	ssize_t n = read(fd, stat, sizeof stat - 1);
	close(fd);
	if (n <= 0)
		return true;
	stat[n] = '\0';
	const char *paren = strrchr(stat, ')'); /* the name may hold spaces and parens */
	return paren && paren[1] == ' ' && paren[2] == 'Z';
}

static bool wait_ended(pid_t pid, int ms, int *st)
{
	uint64_t deadline = mono_ms() + (uint64_t)(ms > 0 ? ms : 0);
	for (;;) {
		if (process_ended(pid, st))
			return true;
		if (mono_ms() >= deadline)
			return false;
		sleep_ms(10);
	}
}

static void describe_exit(int st, char *out, size_t outsz)
{
	if (st < 0)
		snprintf(out, outsz, "ended");
	else if (WIFEXITED(st))
		snprintf(out, outsz, "exited with %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(out, outsz, "killed by signal %d", WTERMSIG(st));
	else
		snprintf(out, outsz, "ended");
}

/* Does pid's command line name this control socket? Guards against a pid
 * that was reused after the VMM ended. */
static bool is_vmm_of(pid_t pid, const char *control)
{
	char path[64], cmd[4096];
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, cmd, sizeof cmd - 1);
	close(fd);
	if (n <= 0)
		return false;
	cmd[n] = '\0';
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(cmd + i) + 1)
		if (!strcmp(cmd + i, control))
			return true;
	return false;
}

static void kill_and_reap(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	wait_ended(pid, STOP_AFTER_KILL_MS, NULL);
}

/* --- sockets ------------------------------------------------------------------------ */

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads one '\n'-terminated line (without it) byte by byte, so nothing
 * after it is consumed: after the vsock handshake the stream is HTTP. */
static int read_line(int fd, char *line, size_t size, uint64_t deadline)
{
	size_t len = 0;
	for (;;) {
		uint64_t now = mono_ms();
		if (now >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, (int)(deadline - now));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			errno = r == 0 ? ETIMEDOUT : errno;
			return -1;
		}
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			errno = n == 0 ? ECONNRESET : errno;
			return -1;
		}
		if (c == '\n') {
			line[len] = '\0';
			return 0;
		}
		if (len + 1 >= size) {
			errno = EMSGSIZE;
			return -1;
		}
		line[len++] = c;
	}
}

/* A stream to the guest's agent port, or -1 (the VMM not up yet, the guest
 * not listening yet, a timeout). */
static int agent_connect(const char *uds, int port, int timeout_ms)
{
	int fd = http_connect_unix(uds);
	if (fd < 0)
		return -1;
	char req[32], line[64];
	int n = snprintf(req, sizeof req, "CONNECT %d\n", port);
	if (send_all(fd, req, (size_t)n) < 0 ||
	    read_line(fd, line, sizeof line, mono_ms() + (uint64_t)timeout_ms) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (strncmp(line, "OK ", 3) != 0) { /* the guest does not listen (yet) */
		close(fd);
		errno = ECONNREFUSED;
		return -1;
	}
	/* lib/http's client keeps its deadline only on a non-blocking socket:
	 * on a blocking one a guest that took the connection and never answers
	 * (wedged, or starved of CPU) held this worker thread for good. */
	if (fd_nonblock(fd) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* One HTTP request to a port of the agent; the status, or -1 with errno set. */
static int agent_request_port(const char *uds, int port, const char *method, const char *target,
			      const char *const *headers, const char *body, size_t len, int timeout_ms)
{
	int fd = agent_connect(uds, port, timeout_ms);
	if (fd < 0)
		return -1;
	struct http_response resp;
	memset(&resp, 0, sizeof resp);
	int rc = http_request(fd, method, target, headers, body, len, &resp, timeout_ms, NULL, NULL);
	int e = errno;
	close(fd);
	int status = rc == 0 ? resp.status : -1;
	http_response_free(&resp);
	errno = e;
	return status;
}

/* One HTTP request to envd; the status, or -1 with errno set. */
static int agent_request(const char *uds, const char *method, const char *target, const char *const *headers,
			 const char *body, size_t len, int timeout_ms)
{
	return agent_request_port(uds, AGENT_PORT, method, target, headers, body, len, timeout_ms);
}

/* Sends one control request; the parsed reply (caller frees) if it says
 * ok, else NULL with err set. */
static struct json *control_call(const char *ctl, const char *request, int timeout_ms, char *err, size_t errsz)
{
	int fd = http_connect_unix(ctl);
	if (fd < 0) {
		seterr(err, errsz, "control socket %s: %s", ctl, strerror(errno));
		return NULL;
	}
	char line[8192]; /* our requests' replies are one short line */
	struct buf req = BUF_INIT;
	buf_printf(&req, "%s\n", request);
	int rc = send_all(fd, req.data, req.len);
	buf_free(&req);
	if (rc < 0 || read_line(fd, line, sizeof line, mono_ms() + (uint64_t)timeout_ms) < 0) {
		seterr(err, errsz, "control socket %s: %s: %s", ctl, request, strerror(errno));
		close(fd);
		return NULL;
	}
	close(fd);
	struct json *reply = json_parse(line, strlen(line), NULL, 0);
	if (!json_get_bool(reply, "ok", false)) {
		const char *why = json_get_str(reply, "error");
		seterr(err, errsz, "control %s: %s", request, why ? why : line);
		json_free(reply);
		return NULL;
	}
	return reply;
}

static int control_op(const char *ctl, const char *op, int timeout_ms, char *err, size_t errsz)
{
	char req[64];
	snprintf(req, sizeof req, "{\"op\":\"%s\"}", op);
	struct json *r = control_call(ctl, req, timeout_ms, err, errsz);
	json_free(r);
	return r ? 0 : -1;
}

static int control_snapshot(const char *ctl, const char *dir, char *err, size_t errsz)
{
	struct buf req = BUF_INIT;
	struct jw w;
	jw_init(&w, &req);
	jw_obj(&w);
	jw_kstr(&w, "op", "snapshot");
	jw_kstr(&w, "dir", dir);
	jw_end(&w);
	struct json *r = control_call(ctl, req.data, SNAPSHOT_MS, err, errsz);
	buf_free(&req);
	json_free(r);
	return r ? 0 : -1;
}

/* --- the agent ---------------------------------------------------------------------- */

/* Waits while the agent's default python kernel runs the template's start-up
 * files (GET /cubeos/ready on the interpreter port answers 503), so the
 * snapshot holds a kernel with its modules loaded and every sandbox's first
 * runCode is warm. Any other answer (200 ready or not, a template without
 * python, an agent without the route) ends the wait: the snapshot is taken
 * anyway, the kernel then starts in each sandbox instead. */
static void wait_interpreter(pid_t pid, const struct vm_paths *p)
{
	uint64_t t0 = mono_ms(), deadline = t0 + INTERP_READY_MS;
	int status;
	while ((status = agent_request_port(p->vsock, INTERP_PORT, "GET", "/cubeos/ready", NULL, NULL, 0, 5000)) ==
		   503 &&
	       mono_ms() < deadline && !process_ended(pid, NULL))
		sleep_ms(100);
	log_info("template.build", "interpreter: GET /cubeos/ready %d after %llu ms", status,
		 (unsigned long long)(mono_ms() - t0));
}

/* Polls GET /health until it answers 2xx, the VMM dies or the time is up. */
static int wait_agent(pid_t pid, const struct vm_paths *p, int timeout_ms, char *err, size_t errsz)
{
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
	int last_errno = 0, last_status = 0, st = 0, try_ms = AGENT_TRY_FIRST_MS;
	for (;;) {
		if (process_ended(pid, &st)) {
			char how[64], msg[300];
			describe_exit(st, how, sizeof how);
			last_vmm_message(p->log, msg, sizeof msg);
			seterr(err, errsz, "cube-vmm %s before the agent answered: %s", how, msg[0] ? msg : "(no log)");
			return -1;
		}
		uint64_t now = mono_ms();
		if (now >= deadline)
			break;
		int left = (int)(deadline - now);
		int status = agent_request(p->vsock, "GET", "/health", NULL, NULL, 0, left < try_ms ? left : try_ms);
		if (status >= 200 && status < 300)
			return 0;
		if (status > 0)
			last_status = status;
		else
			last_errno = errno;
		if (status < 0 && last_errno == ETIMEDOUT && try_ms < AGENT_TRY_MAX_MS)
			try_ms *= 2;
		sleep_ms(20);
	}
	if (last_status)
		seterr(err, errsz, "the agent answered GET /health with %d for %d ms", last_status, timeout_ms);
	else
		seterr(err, errsz, "the agent did not answer within %d ms (%s)", timeout_ms,
		       last_errno ? strerror(last_errno) : "no connection");
	return -1;
}

static void rfc3339_now(char *out, size_t outsz)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* The caller's identity document with a fresh timestamp and fresh entropy. */
static int init_body(const char *init_json, struct buf *out, const char **token, struct json **doc, char *err,
		     size_t errsz)
{
	const char *src = init_json && *init_json ? init_json : "{}";
	char perr[160];
	*doc = json_parse(src, strlen(src), perr, sizeof perr);
	if (!*doc || (*doc)->type != JSON_OBJECT) {
		seterr(err, errsz, "init document: %s", *doc ? "not a JSON object" : perr);
		json_free(*doc);
		*doc = NULL;
		return -1;
	}
	unsigned char rnd[INIT_ENTROPY_BYTES];
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
		seterr(err, errsz, "getrandom: %s", strerror(errno));
		return -1;
	}
	char ent[((INIT_ENTROPY_BYTES + 2) / 3) * 4 + 1], ts[96];
	ent[b64_encode(rnd, sizeof rnd, ent)] = '\0';
	rfc3339_now(ts, sizeof ts);
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	for (struct json *m = (*doc)->child; m; m = m->next) {
		if (!strcmp(m->key, "timestamp") || !strcmp(m->key, "entropy"))
			continue;
		jw_key(&w, m->key);
		jw_value(&w, m);
	}
	jw_kstr(&w, "timestamp", ts);
	jw_kstr(&w, "entropy", ent);
	jw_end(&w);
	*token = json_get_str(*doc, "accessToken");
	return 0;
}

static int post_init(const struct vm_paths *p, const struct vm_spec *s, char *err, size_t errsz)
{
	struct buf body = BUF_INIT, hdr = BUF_INIT;
	const char *token = NULL;
	struct json *doc = NULL;
	int rc = -1;
	if (init_body(s->init_json, &body, &token, &doc, err, errsz) == 0) {
		if (s->guest_token)
			token = s->guest_token;
		const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
		if (token && *token) {
			buf_printf(&hdr, "X-Access-Token: %s", token);
			headers[1] = hdr.data;
		}
		int status = agent_request(p->vsock, "POST", "/init", headers, body.data, body.len, RESTORE_AGENT_MS);
		if (status == 204 || status == 200)
			rc = 0;
		else if (status > 0)
			seterr(err, errsz, "the agent answered POST /init with %d", status);
		else
			seterr(err, errsz, "POST /init: %s", strerror(errno));
	}
	json_free(doc);
	buf_free(&body);
	buf_free(&hdr);
	return rc;
}

/* --- the template's start command ------------------------------------------------------ *
 * Started through the agent's process.Process/Start as root, its stream
 * read on a thread of its own (the output kept for an error message) while
 * this thread probes the port through the agent's port bridge. Closing the
 * stream detaches: the process goes on and the snapshot holds it. */

#define PORTBRIDGE_PORT	 49982
#define PROBE_DEFAULT_MS 120000
#define PROBE_EVERY_MS	 250
#define START_TAIL	 1024 /* bytes of output quoted in an error */

struct start_run {
	pthread_mutex_t mu;
	int fd;
	struct connect_reader reader;
	long pid;	       /* the start event's, 0 before it */
	bool ended;	       /* the end event or the end of the stream */
	char status[96];       /* the end event's, e.g. "exit status 1" */
	char error[256];       /* an RPC error or a broken stream */
	char tail[START_TAIL]; /* the last output bytes, stdout and stderr mixed */
	size_t tail_len;
	struct buf request;
};

static void start_keep_output(struct start_run *r, const char *p, size_t n)
{
	if (n >= START_TAIL) {
		p += n - START_TAIL;
		n = START_TAIL;
	}
	if (r->tail_len + n > START_TAIL) {
		size_t drop = r->tail_len + n - START_TAIL;
		memmove(r->tail, r->tail + drop, r->tail_len - drop);
		r->tail_len -= drop;
	}
	memcpy(r->tail + r->tail_len, p, n);
	r->tail_len += n;
}

static void start_on_event(struct start_run *r, const struct json *ev)
{
	const struct json *start = json_get(ev, "start"), *data = json_get(ev, "data"), *end = json_get(ev, "end");
	if (start)
		r->pid = (long)json_get_int(start, "pid", 0);
	for (const struct json *m = data ? data->child : NULL; m; m = m->next) {
		if (m->type != JSON_STRING)
			continue;
		char *dec = malloc(b64_decoded_maxlen(m->len) + 1);
		ssize_t n = dec ? b64_decode(m->str, m->len, dec) : -1;
		if (n > 0)
			start_keep_output(r, dec, (size_t)n);
		free(dec);
	}
	if (end) {
		const char *st = json_get_str(end, "status");
		snprintf(r->status, sizeof r->status, "%s", st ? st : "exited");
		r->ended = true;
	}
}

static void start_on_message(void *arg, unsigned flags, const char *msg, size_t len)
{
	struct start_run *r = arg;
	struct json *j = json_parse(msg, len, NULL, 0);
	const struct json *e = json_get(j, "error");
	if (flags & CONNECT_FLAG_END_STREAM) {
		r->ended = true;
		if (e)
			snprintf(r->error, sizeof r->error, "%s", json_get_str(e, "message") ?: "error");
	} else if (json_get(j, "event")) {
		start_on_event(r, json_get(j, "event"));
	}
	json_free(j);
}

static void start_on_data(void *arg, const char *p, size_t n)
{
	struct start_run *r = arg;
	pthread_mutex_lock(&r->mu);
	connect_reader_feed(&r->reader, p, n);
	pthread_mutex_unlock(&r->mu);
}

/* The stream's thread: the request, then output until the process ends or
 * the build shuts the socket down. */
static void *start_stream(void *arg)
{
	struct start_run *r = arg;
	static const char *const headers[] = {"Content-Type: application/connect+json",
					      "Authorization: Basic cm9vdDo=", /* "root:" */
					      "Connect-Protocol-Version: 1", NULL};
	struct http_response resp;
	memset(&resp, 0, sizeof resp);
	int rc = http_request(r->fd, "POST", "/process.Process/Start", headers, r->request.data, r->request.len, &resp,
			      24 * 3600 * 1000, start_on_data, r);
	pthread_mutex_lock(&r->mu);
	if (rc == 0 && resp.status != 200 && !r->error[0])
		snprintf(r->error, sizeof r->error, "the agent answered %d: %.200s", resp.status,
			 resp.body.data ? resp.body.data : "");
	if (r->reader.failed && !r->error[0])
		snprintf(r->error, sizeof r->error, "a stream message over %u bytes", CONNECT_MESSAGE_MAX);
	r->ended = true;
	pthread_mutex_unlock(&r->mu);
	http_response_free(&resp);
	return NULL;
}

static void start_request(const struct template_start *st, struct buf *out)
{
	struct buf msg = BUF_INIT;
	struct jw w;
	jw_init(&w, &msg);
	jw_obj(&w);
	jw_key(&w, "process");
	jw_obj(&w);
	jw_kstr(&w, "cmd", st->argv[0]);
	jw_key(&w, "args");
	jw_arr(&w);
	for (const char *const *a = st->argv + 1; *a; a++)
		jw_str(&w, *a);
	jw_end(&w);
	struct json *envs = st->envs_json ? json_parse(st->envs_json, strlen(st->envs_json), NULL, 0) : NULL;
	if (envs && envs->type == JSON_OBJECT) {
		jw_key(&w, "envs");
		jw_value(&w, envs);
	}
	json_free(envs);
	if (st->cwd && *st->cwd)
		jw_kstr(&w, "cwd", st->cwd);
	jw_end(&w);
	jw_kbool(&w, "stdin", false); /* an image's `CMD bash` ends at once rather than wait on a pipe */
	jw_end(&w);
	connect_envelope(out, 0, msg.data, msg.len);
	buf_free(&msg);
}

/* True once the guest port accepts a connection (the bridge says OK). */
static bool probe_port(const char *uds, int port)
{
	int fd = agent_connect(uds, PORTBRIDGE_PORT, 2000);
	if (fd < 0)
		return false;
	char req[32], line[64] = "";
	int n = snprintf(req, sizeof req, "PORT %d\n", port);
	bool ok = send_all(fd, req, (size_t)n) == 0 && read_line(fd, line, sizeof line, mono_ms() + 5000) == 0 &&
		  strcmp(line, "OK") == 0;
	close(fd);
	return ok;
}

/* The command line for messages: argv joined by spaces, cut. */
static void describe_argv(const char *const *argv, char *out, size_t outsz)
{
	size_t len = 0;
	out[0] = '\0';
	for (const char *const *a = argv; *a && len + 1 < outsz; a++)
		len += (size_t)snprintf(out + len, outsz - len, "%s%s", a == argv ? "" : " ", *a);
}

static void quote_tail(const struct start_run *r, char *out, size_t outsz)
{
	size_t j = 0;
	for (size_t i = 0; i < r->tail_len && j + 1 < outsz; i++) {
		char c = r->tail[i];
		out[j++] = c == '\n' || c == '\r' || c == '\t' ? ' ' : (c >= 32 && c < 127 ? c : '?');
	}
	while (j > 0 && out[j - 1] == ' ')
		j--;
	out[j] = '\0';
}

/* Waits for the start event, then for the probe port. 0 (st->note says
 * what happened), or -1 with err set. */
static int start_wait(struct start_run *r, struct template_start *st, pid_t vmm, const struct vm_paths *p, char *err,
		      size_t errsz)
{
	int limit = st->probe_timeout_ms > 0 ? st->probe_timeout_ms : PROBE_DEFAULT_MS;
	uint64_t t0 = mono_ms(), deadline = t0 + (uint64_t)limit;
	char cmd[256], out[START_TAIL + 1];
	describe_argv(st->argv, cmd, sizeof cmd);
	for (;;) {
		pthread_mutex_lock(&r->mu);
		long pid = r->pid;
		bool ended = r->ended;
		pthread_mutex_unlock(&r->mu);
		if (ended) {
			pthread_mutex_lock(&r->mu);
			quote_tail(r, out, sizeof out);
			if (!pid) /* no start event: it never ran */
				seterr(err, errsz, "cannot start `%s`: %s", cmd,
				       r->error[0] ? r->error : "the agent ended the stream before starting it");
			else if (st->probe_port)
				seterr(err, errsz,
				       "the start command `%s` ended (%s) before port %d accepted connections%s%s", cmd,
				       r->status[0]  ? r->status
				       : r->error[0] ? r->error
						     : "stream closed",
				       st->probe_port, out[0] ? "; its output: " : "", out);
			else
				snprintf(st->note, sizeof st->note,
					 "the start command `%s` ended (%s) before the snapshot%s%.200s", cmd,
					 r->status[0] ? r->status : "stream closed", out[0] ? "; its output: " : "",
					 out);
			pthread_mutex_unlock(&r->mu);
			return st->probe_port || !pid ? -1 : 0;
		}
		if (pid && !st->probe_port) {
			snprintf(st->note, sizeof st->note, "started `%s` (pid %ld)", cmd, pid);
			return 0;
		}
		if (pid && probe_port(p->vsock, st->probe_port)) {
			snprintf(st->note, sizeof st->note, "started `%s` (pid %ld); port %d accepted after %llu ms",
				 cmd, pid, st->probe_port, (unsigned long long)(mono_ms() - t0));
			return 0;
		}
		if (process_ended(vmm, NULL)) {
			seterr(err, errsz, "cube-vmm ended while the start command `%s` was starting", cmd);
			return -1;
		}
		if (mono_ms() >= deadline) {
			pthread_mutex_lock(&r->mu);
			quote_tail(r, out, sizeof out);
			pthread_mutex_unlock(&r->mu);
			if (pid)
				seterr(err, errsz,
				       "port %d did not accept connections within %d s of starting `%s`%s%s",
				       st->probe_port, limit / 1000, cmd, out[0] ? "; its output: " : "", out);
			else
				seterr(err, errsz, "the start command `%s` did not start within %d s", cmd,
				       limit / 1000);
			return -1;
		}
		sleep_ms(PROBE_EVERY_MS);
	}
}

/* Starts st->argv in the guest and waits for it (start_wait). 0 or -1. */
static int run_start_command(struct template_start *st, pid_t vmm, const struct vm_paths *p, char *err, size_t errsz)
{
	struct start_run r = {.mu = PTHREAD_MUTEX_INITIALIZER, .request = BUF_INIT};
	r.reader.on_message = start_on_message;
	r.reader.arg = &r;
	r.fd = agent_connect(p->vsock, AGENT_PORT, 10000);
	if (r.fd < 0) {
		seterr(err, errsz, "cannot reach the agent to start the start command: %s", strerror(errno));
		return -1;
	}
	start_request(st, &r.request);
	pthread_t th;
	int rc = -1;
	if (pthread_create(&th, NULL, start_stream, &r) != 0) {
		seterr(err, errsz, "cannot start a thread: %s", strerror(errno));
	} else {
		rc = start_wait(&r, st, vmm, p, err, errsz);
		shutdown(r.fd, SHUT_RDWR); /* detach: the process goes on */
		pthread_join(th, NULL);
	}
	close(r.fd);
	connect_reader_free(&r.reader);
	buf_free(&r.request);
	return rc;
}

/* --- sandboxes ---------------------------------------------------------------------- */

/* Restores snap_dir into a new VMM for this sandbox and hands the agent its
 * identity. Everything it made is undone on failure. */
static pid_t restore_sandbox(const struct vm_spec *s, const struct vm_paths *p, const char *snap_dir, const char *event,
			     char *err, size_t errsz)
{
	uint64_t t0 = mono_ms();
	char state[VM_PATH_MAX];
	if (path_join(state, snap_dir, "state") || access(state, R_OK) < 0) {
		seterr(err, errsz, "sandbox=%s: no snapshot in %s (%s)", s->id, snap_dir, strerror(errno));
		return -1;
	}
	struct json *doc = NULL;
	struct buf probe = BUF_INIT;
	const char *token;
	char why[512];
	int bad = init_body(s->init_json, &probe, &token, &doc, why, sizeof why); /* before a VMM is spent on it */
	json_free(doc);
	buf_free(&probe);
	if (bad) {
		seterr(err, errsz, "sandbox=%s: %s", s->id, why);
		return -1;
	}
	if (dir_make_all(s->run_dir, 0700) < 0 || dir_make_all(s->sandbox_dir, 0700) < 0) {
		seterr(err, errsz, "sandbox=%s: cannot make %s or %s: %s", s->id, s->run_dir, s->sandbox_dir,
		       strerror(errno));
		return -1;
	}
	clean_run_dir(s->run_dir, false);
	/* A fresh top layer: whatever an older one held is in the snapshot. */
	unlink(p->layer);
	char vmm[VM_PATH_MAX], layer_arg[VM_PATH_MAX + 8];
	resolve_vmm(s->vmm_path, vmm, sizeof vmm);
	snprintf(layer_arg, sizeof layer_arg, "0=%s", p->layer);
	char *const argv[] = {vmm,	  "restore",	      "--snapshot",	(char *)snap_dir, "--disk-layer",
			      layer_arg,  "--vsock-uds",      (char *)p->vsock, "--control",	  (char *)p->control,
			      "--serial", (char *)p->console, "--id",		(char *)s->id,	  NULL};
	pid_t pid = spawn_session(argv, p->log, why, sizeof why);
	if (pid > 0 && wait_agent(pid, p, RESTORE_AGENT_MS, why, sizeof why) == 0 &&
	    post_init(p, s, why, sizeof why) == 0) {
		log_info(event, "sandbox=%s pid=%d from %s, agent ready in %llu ms", s->id, (int)pid, snap_dir,
			 (unsigned long long)(mono_ms() - t0));
		return pid;
	}
	kill_and_reap(pid);
	append_vmm_message(p->log, why, sizeof why);
	clean_run_dir(s->run_dir, true);
	unlink(p->layer);
	seterr(err, errsz, "sandbox=%s: %s", s->id, why);
	log_error(event, "sandbox=%s: restore of %s failed: %s", s->id, snap_dir, why);
	return -1;
}

pid_t vm_start(const struct vm_spec *s, char *err, size_t errsz)
{
	struct vm_paths p;
	char snap[VM_PATH_MAX];
	if (make_paths(s, &p, err, errsz) < 0)
		return -1;
	if (!s->template_dir || path_join(snap, s->template_dir, TEMPLATE_SNAP_NAME)) {
		seterr(err, errsz, "sandbox=%s: no template directory", s->id);
		return -1;
	}
	return restore_sandbox(s, &p, snap, "vm.start", err, errsz);
}

pid_t vm_resume(const struct vm_spec *s, char *err, size_t errsz)
{
	struct vm_paths p;
	if (make_paths(s, &p, err, errsz) < 0)
		return -1;
	pid_t pid = restore_sandbox(s, &p, p.paused, "vm.resume", err, errsz);
	/* The new VMM holds the snapshot's memory and disk layer open: their
	 * space comes back when it ends, and a stale paused/ must never be
	 * mistaken for the sandbox's state later. */
	if (pid > 0 && remove_flat_dir(p.paused) < 0)
		log_warn("vm.resume", "sandbox=%s: cannot remove %s: %s", s->id, p.paused, strerror(errno));
	return pid;
}

/* --- the warm pool ------------------------------------------------------------------ */

/* Polls the control socket until it answers, the VMM dies or the time is up. */
static int wait_control(pid_t pid, const struct vm_paths *p, int timeout_ms, char *err, size_t errsz)
{
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
	int st = 0;
	char why[256] = "";
	for (;;) {
		if (process_ended(pid, &st)) {
			char how[64], msg[300];
			describe_exit(st, how, sizeof how);
			last_vmm_message(p->log, msg, sizeof msg);
			seterr(err, errsz, "cube-vmm %s before its control socket answered: %s", how,
			       msg[0] ? msg : "(no log)");
			return -1;
		}
		if (control_op(p->control, "ping", CONTROL_MS, why, sizeof why) == 0)
			return 0;
		if (mono_ms() >= deadline)
			break;
		sleep_ms(20);
	}
	seterr(err, errsz, "the control socket did not answer within %d ms (%s)", timeout_ms, why);
	return -1;
}

/* Undoes a pool VMM that cannot be used: killed, sockets, logs and layer gone. */
static void discard_vmm(pid_t pid, const struct vm_spec *s, const struct vm_paths *p)
{
	kill_and_reap(pid);
	clean_run_dir(s->run_dir, true);
	unlink(p->layer);
}

pid_t vm_prestart(const struct vm_spec *s, char *err, size_t errsz)
{
	struct vm_paths p;
	char snap[VM_PATH_MAX], state[VM_PATH_MAX], why[512];
	uint64_t t0 = mono_ms();
	if (make_paths(s, &p, err, errsz) < 0)
		return -1;
	if (!s->template_dir || path_join(snap, s->template_dir, TEMPLATE_SNAP_NAME) ||
	    path_join(state, snap, "state") || access(state, R_OK) < 0) {
		seterr(err, errsz, "sandbox=%s: no template snapshot in %s", s->id,
		       s->template_dir ? s->template_dir : "(none)");
		return -1;
	}
	if (dir_make_all(s->run_dir, 0700) < 0 || dir_make_all(s->sandbox_dir, 0700) < 0) {
		seterr(err, errsz, "sandbox=%s: cannot make %s or %s: %s", s->id, s->run_dir, s->sandbox_dir,
		       strerror(errno));
		return -1;
	}
	clean_run_dir(s->run_dir, false);
	unlink(p.layer);
	char vmm[VM_PATH_MAX], layer_arg[VM_PATH_MAX + 8];
	resolve_vmm(s->vmm_path, vmm, sizeof vmm);
	snprintf(layer_arg, sizeof layer_arg, "0=%s", p.layer);
	/* --paused: the vCPUs never run until vm_claim, so a waiting VMM costs
	 * no CPU and its guest does not see time pass. */
	char *const argv[] = {vmm,	     "restore",	    "--snapshot", snap,	     "--disk-layer", layer_arg,
			      "--vsock-uds", p.vsock,	    "--control",  p.control, "--serial",     p.console,
			      "--id",	     (char *)s->id, "--paused",	  NULL};
	pid_t pid = spawn_session(argv, p.log, why, sizeof why);
	if (pid > 0 && wait_control(pid, &p, RESTORE_AGENT_MS, why, sizeof why) == 0) {
		log_info("vm.prestart", "sandbox=%s pid=%d from %s, paused, ready in %llu ms", s->id, (int)pid, snap,
			 (unsigned long long)(mono_ms() - t0));
		return pid;
	}
	discard_vmm(pid, s, &p);
	seterr(err, errsz, "sandbox=%s: %s", s->id, why);
	log_error("vm.prestart", "sandbox=%s: restore of %s failed: %s", s->id, snap, why);
	return -1;
}

int vm_claim(pid_t pid, const struct vm_spec *s, char *err, size_t errsz)
{
	struct vm_paths p;
	char why[512] = "";
	uint64_t t0 = mono_ms();
	if (make_paths(s, &p, err, errsz) < 0)
		return -1;
	if (pid <= 0 || process_ended(pid, NULL) || !is_vmm_of(pid, p.control)) {
		/* Nothing of ours to kill: only its files go. */
		clean_run_dir(s->run_dir, true);
		unlink(p.layer);
		seterr(err, errsz, "sandbox=%s: pid %d is not its waiting VMM (it ended)", s->id, (int)pid);
		return -1;
	}
	if (control_op(p.control, "resume", CONTROL_SLOW_MS, why, sizeof why) == 0 &&
	    wait_agent(pid, &p, RESTORE_AGENT_MS, why, sizeof why) == 0 && post_init(&p, s, why, sizeof why) == 0) {
		log_info("vm.claim", "sandbox=%s pid=%d resumed, agent has its identity in %llu ms", s->id, (int)pid,
			 (unsigned long long)(mono_ms() - t0));
		return 0;
	}
	append_vmm_message(p.log, why, sizeof why);
	discard_vmm(pid, s, &p);
	seterr(err, errsz, "sandbox=%s: %s", s->id, why);
	log_error("vm.claim", "%s", err);
	return -1;
}

bool vm_alive(pid_t pid, const struct vm_spec *s)
{
	struct vm_paths p;
	if (pid <= 0 || make_paths(s, &p, NULL, 0) < 0 || process_ended(pid, NULL) || !is_vmm_of(pid, p.control))
		return false;
	return control_op(p.control, "ping", CONTROL_MS, NULL, 0) == 0;
}

/* Ends the VMM: control shutdown, then SIGKILL after timeout_ms. */
static int stop_vmm(pid_t pid, const struct vm_paths *p, const char *id, int timeout_ms)
{
	if (pid <= 0 || process_ended(pid, NULL))
		return 0;
	if (!is_vmm_of(pid, p->control)) {
		log_warn("vm.stop", "sandbox=%s: pid %d is not its VMM any more: left alone", id, (int)pid);
		return 0;
	}
	char why[256];
	if (control_op(p->control, "shutdown", timeout_ms < CONTROL_MS ? timeout_ms : CONTROL_MS, why, sizeof why) < 0)
		log_warn("vm.stop", "sandbox=%s: %s; killing it", id, why);
	else if (wait_ended(pid, timeout_ms, NULL))
		return 0;
	else
		log_warn("vm.stop", "sandbox=%s: pid %d still running %d ms after shutdown; killing it", id, (int)pid,
			 timeout_ms);
	kill(pid, SIGKILL);
	if (wait_ended(pid, STOP_AFTER_KILL_MS, NULL))
		return 0;
	log_error("vm.stop", "sandbox=%s: pid %d survives SIGKILL", id, (int)pid);
	return -1;
}

int vm_stop(pid_t pid, const struct vm_spec *s, int timeout_ms)
{
	struct vm_paths p;
	char err[256];
	if (make_paths(s, &p, err, sizeof err) < 0) {
		log_error("vm.stop", "%s", err);
		return -1;
	}
	uint64_t t0 = mono_ms();
	int rc = stop_vmm(pid, &p, s->id, timeout_ms);
	clean_run_dir(s->run_dir, false);
	if (pid > 0)
		log_info("vm.stop", "sandbox=%s pid=%d stopped in %llu ms", s->id, (int)pid,
			 (unsigned long long)(mono_ms() - t0));
	return rc;
}

/* Moves a finished snapshot from tmp to final, replacing an older one. */
static int install_snapshot(const char *tmp, const char *final, const char *parent, char *err, size_t errsz)
{
	char old[VM_PATH_MAX];
	if (snprintf(old, sizeof old, "%s.old.XXXXXX", final) >= (int)sizeof old || !mkdtemp(old)) {
		seterr(err, errsz, "cannot make a directory next to %s: %s", final, strerror(errno));
		return -1;
	}
	/* Renaming onto the empty directory just made is allowed; renaming
	 * onto a missing final is an ENOENT we do not mind. */
	bool had_old = rename(final, old) == 0;
	if (!had_old && errno != ENOENT) {
		seterr(err, errsz, "rename %s: %s", final, strerror(errno));
		rmdir(old);
		return -1;
	}
	if (rename(tmp, final) < 0) {
		seterr(err, errsz, "rename %s to %s: %s", tmp, final, strerror(errno));
		if (had_old)
			rename(old, final);
		rmdir(old);
		return -1;
	}
	fsync_dir(parent);
	remove_flat_dir(old);
	return 0;
}

/* A temporary directory beside final for a snapshot being written. */
static int snapshot_tmpdir(const char *final, char *tmp, char *err, size_t errsz)
{
	if (snprintf(tmp, VM_PATH_MAX, "%s.tmp.XXXXXX", final) >= VM_PATH_MAX || !mkdtemp(tmp)) {
		tmp[0] = '\0';
		seterr(err, errsz, "cannot make a directory next to %s: %s", final, strerror(errno));
		return -1;
	}
	return 0;
}

int vm_pause(pid_t pid, const struct vm_spec *s, char *err, size_t errsz)
{
	struct vm_paths p;
	char tmp[VM_PATH_MAX] = "", why[512];
	if (make_paths(s, &p, err, errsz) < 0)
		return -1;
	uint64_t t0 = mono_ms();
	if (pid <= 0 || process_ended(pid, NULL) || !is_vmm_of(pid, p.control)) {
		seterr(err, errsz, "sandbox=%s: pid %d is not its running VMM", s->id, (int)pid);
		return -1;
	}
	if (control_op(p.control, "pause", CONTROL_SLOW_MS, why, sizeof why) < 0) {
		seterr(err, errsz, "sandbox=%s: %s", s->id, why);
		return -1;
	}
	if (snapshot_tmpdir(p.paused, tmp, why, sizeof why) < 0 ||
	    control_snapshot(p.control, tmp, why, sizeof why) < 0 ||
	    install_snapshot(tmp, p.paused, s->sandbox_dir, why, sizeof why) < 0) {
		if (tmp[0])
			remove_flat_dir(tmp);
		char ignored[128];
		control_op(p.control, "resume", CONTROL_SLOW_MS, ignored, sizeof ignored);
		seterr(err, errsz, "sandbox=%s: snapshot for pause: %s", s->id, why);
		log_error("vm.pause", "%s", err);
		return -1;
	}
	uint64_t snap_ms = mono_ms() - t0;
	stop_vmm(pid, &p, s->id, CONTROL_MS);
	clean_run_dir(s->run_dir, false);
	unlink(p.layer); /* every cluster it held is in paused/disk0.layer */
	log_info("vm.pause", "sandbox=%s paused into %s: snapshot %llu ms, total %llu ms", s->id, p.paused,
		 (unsigned long long)snap_ms, (unsigned long long)(mono_ms() - t0));
	return 0;
}

/* Hard links of a paused sandbox's snapshot files into dir. */
static int link_snapshot(const char *from, const char *dir, char *err, size_t errsz)
{
	DIR *d = opendir(from);
	if (!d) {
		seterr(err, errsz, "%s: %s", from, strerror(errno));
		return -1;
	}
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		char src[VM_PATH_MAX], dst[VM_PATH_MAX];
		if (e->d_name[0] == '.' || path_join(src, from, e->d_name) || path_join(dst, dir, e->d_name))
			continue;
		if (link(src, dst) < 0) {
			seterr(err, errsz, "link %s: %s", src, strerror(errno));
			rc = -1;
		}
	}
	closedir(d);
	return rc;
}

int vm_checkpoint(pid_t pid, const struct vm_spec *s, const char *snap_dir, char *err, size_t errsz)
{
	struct vm_paths p;
	char tmp[VM_PATH_MAX] = "", why[512] = "";
	if (make_paths(s, &p, err, errsz) < 0)
		return -1;
	uint64_t t0 = mono_ms();
	bool running = pid > 0;
	if (running && (process_ended(pid, NULL) || !is_vmm_of(pid, p.control))) {
		seterr(err, errsz, "sandbox=%s: pid %d is not its running VMM", s->id, (int)pid);
		return -1;
	}
	int rc = snapshot_tmpdir(snap_dir, tmp, why, sizeof why);
	if (rc == 0 && running) {
		rc = control_op(p.control, "pause", CONTROL_SLOW_MS, why, sizeof why);
		if (rc == 0) {
			rc = control_snapshot(p.control, tmp, why, sizeof why);
			char rwhy[256];
			if (control_op(p.control, "resume", CONTROL_SLOW_MS, rwhy, sizeof rwhy) < 0) {
				log_error("vm.checkpoint", "sandbox=%s did not resume after its snapshot: %s", s->id,
					  rwhy);
				if (rc == 0) {
					seterr(why, sizeof why, "resume after the snapshot: %s", rwhy);
					rc = -1;
				}
			}
		}
	} else if (rc == 0) {
		rc = link_snapshot(p.paused, tmp, why, sizeof why);
	}
	if (rc == 0 && rename(tmp, snap_dir) < 0) {
		seterr(why, sizeof why, "rename %s: %s", tmp, strerror(errno));
		rc = -1;
	}
	if (rc < 0) {
		if (tmp[0])
			remove_flat_dir(tmp);
		seterr(err, errsz, "sandbox=%s: snapshot: %s", s->id, why);
		log_error("vm.checkpoint", "%s", err);
		return -1;
	}
	log_info("vm.checkpoint", "sandbox=%s %s into %s in %llu ms", s->id, running ? "snapshotted" : "linked",
		 snap_dir, (unsigned long long)(mono_ms() - t0));
	return 0;
}

/* --- templates ---------------------------------------------------------------------- */

struct build {
	const char *template_dir, *kernel, *rootfs;
	int cpus, mem_mib;
	void (*progress)(void *, int, const char *);
	void *arg;
	char run_dir[VM_PATH_MAX], layer[VM_PATH_MAX], snap[VM_PATH_MAX], tmp[VM_PATH_MAX];
	struct vm_paths p;
	pid_t pid;
};

static void report(struct build *b, int pct, const char *phase)
{
	if (b->progress)
		b->progress(b->arg, pct, phase);
}

static int build_check(const struct build *b, char *err, size_t errsz)
{
	if (!b->template_dir || !b->kernel || !b->rootfs) {
		seterr(err, errsz, "template build needs a directory, a kernel and a rootfs");
		return -1;
	}
	if (access(b->kernel, R_OK) < 0 || access(b->rootfs, R_OK) < 0) {
		seterr(err, errsz, "%s: %s", access(b->kernel, R_OK) < 0 ? b->kernel : b->rootfs, strerror(errno));
		return -1;
	}
	if (strchr(b->rootfs, ',')) { /* cube-vmm's --disk splits its value at commas */
		seterr(err, errsz, "rootfs path %s contains a comma", b->rootfs);
		return -1;
	}
	if (b->cpus < 1 || b->cpus > 32 || b->mem_mib < 64) {
		seterr(err, errsz, "template needs 1..32 vCPUs and at least 64 MiB (got %d, %d)", b->cpus, b->mem_mib);
		return -1;
	}
	return 0;
}

/* Sockets and the boot-time disk layer live in a private temporary
 * directory: short socket paths, and nothing half-made in template_dir. */
static int build_prepare(struct build *b, char *err, size_t errsz)
{
	const char *tmpdir = getenv("TMPDIR");
	if (snprintf(b->run_dir, sizeof b->run_dir, "%s/cube-template.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp") >=
		(int)sizeof b->run_dir ||
	    !mkdtemp(b->run_dir)) {
		seterr(err, errsz, "cannot make a temporary directory: %s", strerror(errno));
		b->run_dir[0] = '\0';
		return -1;
	}
	struct vm_spec spec = {.id = "template", .sandbox_dir = b->run_dir, .run_dir = b->run_dir};
	if (make_paths(&spec, &b->p, err, errsz) < 0)
		return -1;
	snprintf(b->layer, sizeof b->layer, "%s", b->p.layer);
	if (dir_make_all(b->template_dir, 0755) < 0) {
		seterr(err, errsz, "cannot make %s: %s", b->template_dir, strerror(errno));
		return -1;
	}
	if (path_join(b->snap, b->template_dir, TEMPLATE_SNAP_NAME)) {
		seterr(err, errsz, "template path too long");
		return -1;
	}
	return 0;
}

static int build_boot(struct build *b, char *err, size_t errsz)
{
	char vmm[VM_PATH_MAX], cpus[16], mem[16], disk[2 * VM_PATH_MAX + 16], vsock[VM_PATH_MAX + 16];
	resolve_vmm(NULL, vmm, sizeof vmm);
	snprintf(cpus, sizeof cpus, "%d", b->cpus);
	snprintf(mem, sizeof mem, "%d", b->mem_mib);
	snprintf(disk, sizeof disk, "%s,layer=%s", b->rootfs, b->layer);
	snprintf(vsock, sizeof vsock, "cid=3,uds=%s", b->p.vsock);
	char *const argv[] = {vmm,	   "run",	 "--kernel",  (char *)b->kernel,
			      "--cpus",	   cpus,	 "--mem",     mem,
			      "--disk",	   disk,	 "--cmdline", TEMPLATE_DEFAULT_ARGS,
			      "--vsock",   vsock,	 "--serial",  b->p.console,
			      "--control", b->p.control, "--id",      "template",
			      NULL};
	b->pid = spawn_session(argv, b->p.log, err, errsz);
	return b->pid > 0 ? 0 : -1;
}

static int build_snapshot(struct build *b, char *err, size_t errsz)
{
	char why[512];
	if (snapshot_tmpdir(b->snap, b->tmp, err, errsz) < 0)
		return -1;
	if (control_snapshot(b->p.control, b->tmp, why, sizeof why) < 0) {
		seterr(err, errsz, "%s", why);
		return -1;
	}
	return 0;
}

static void build_cleanup(struct build *b)
{
	kill_and_reap(b->pid > 0 && !process_ended(b->pid, NULL) ? b->pid : 0);
	if (b->tmp[0])
		remove_flat_dir(b->tmp);
	if (b->run_dir[0])
		remove_flat_dir(b->run_dir);
}

/* The agent's default cwd, kept in the snapshot: every sandbox of the
 * template starts its processes there. */
static int set_default_workdir(const struct vm_paths *p, const char *dir, char *err, size_t errsz)
{
	struct buf body = BUF_INIT;
	struct jw w;
	jw_init(&w, &body);
	jw_obj(&w);
	jw_kstr(&w, "defaultWorkdir", dir);
	jw_end(&w);
	static const char *const headers[] = {"Content-Type: application/json", NULL};
	int status = agent_request(p->vsock, "POST", "/init", headers, body.data, body.len, CONTROL_SLOW_MS);
	buf_free(&body);
	if (status == 204)
		return 0;
	seterr(err, errsz, "the working directory %s: %s", dir,
	       status == 400 ? "not a directory in the image"
	       : status < 0  ? strerror(errno)
			     : "the agent refused it");
	return -1;
}

/* After the boot: the agent, the interpreter's warm-up, the start command,
 * then a moment for boot-time work to die down. 0, or -1 with err set. */
static int build_ready_guest(struct build *b, struct template_start *start, uint64_t *agent_ms, char *err, size_t errsz)
{
	uint64_t t0 = mono_ms();
	if (wait_agent(b->pid, &b->p, BOOT_AGENT_MS, err, errsz) < 0)
		return -1;
	*agent_ms = mono_ms() - t0;
	report(b, 50, "agent");
	wait_interpreter(b->pid, &b->p);
	report(b, 55, "interpreter");
	if (start && start->cwd && *start->cwd && set_default_workdir(&b->p, start->cwd, err, errsz) < 0)
		return -1;
	if (start && start->argv && start->argv[0]) {
		report(b, 56, "start");
		if (run_start_command(start, b->pid, &b->p, err, errsz) < 0)
			return -1;
	}
	sleep_ms(SETTLE_MS);
	return 0;
}

int template_build(const char *template_dir, const char *kernel, const char *rootfs, int cpus, int mem_mib,
		   struct template_start *start, void (*progress)(void *arg, int pct, const char *phase), void *arg,
		   char *err, size_t errsz)
{
	struct build b = {.template_dir = template_dir,
			  .kernel = kernel,
			  .rootfs = rootfs,
			  .cpus = cpus,
			  .mem_mib = mem_mib,
			  .progress = progress,
			  .arg = arg};
	uint64_t t0 = mono_ms(), t_agent = 0, t_snap = 0;
	char why[512];
	int rc = -1;
	if (build_check(&b, err, errsz) < 0)
		return -1;
	report(&b, 0, "boot");
	if (build_prepare(&b, why, sizeof why) == 0 && build_boot(&b, why, sizeof why) == 0) {
		report(&b, 10, "boot");
		if (build_ready_guest(&b, start, &t_agent, why, sizeof why) == 0) {
			report(&b, 60, "snapshot");
			uint64_t ts = mono_ms();
			if (build_snapshot(&b, why, sizeof why) == 0) {
				t_snap = mono_ms() - ts;
				report(&b, 90, "snapshot");
				if (stop_vmm(b.pid, &b.p, "template", CONTROL_MS) == 0 &&
				    install_snapshot(b.tmp, b.snap, template_dir, why, sizeof why) == 0) {
					b.tmp[0] = '\0';
					rc = 0;
				}
			}
		}
	}
	if (rc < 0 && b.pid > 0 && b.run_dir[0])
		append_vmm_message(b.p.log, why, sizeof why);
	build_cleanup(&b);
	if (rc < 0) {
		seterr(err, errsz, "template %s: %s", template_dir, why);
		log_error("template.build", "%s", err);
		return -1;
	}
	report(&b, 100, "done");
	log_info("template.build", "template %s: agent ready in %llu ms, snapshot %llu ms, total %llu ms", template_dir,
		 (unsigned long long)t_agent, (unsigned long long)t_snap, (unsigned long long)(mono_ms() - t0));
	return 0;
}
