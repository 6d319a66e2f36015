/*
 * guestctl - talks to a sandbox's agent the way the host does: through the
 * VMM's vsock Unix socket ("CONNECT <port>\n" -> "OK <n>\n", then the stream
 * is the guest's port) and plain HTTP/1.1 on top (lib/http.h's client).
 *
 *   guestctl TARGET health [--wait MS [--pid P]] GET /health, retried for MS
 *                                              (until process P, the VMM, exits)
 *   guestctl TARGET init JSON                  POST /init
 *   guestctl TARGET run CMD [--user U]         process.Process/Start, prints output,
 *                                              exits with the command's exit code
 *   guestctl TARGET write PATH < data          POST /files?path=PATH (octet-stream)
 *   guestctl TARGET read PATH > data           GET /files?path=PATH
 *
 * TARGET is the VMM's vsock Unix socket, "vsock:CID" (AF_VSOCK, for a VMM
 * that uses the kernel's vhost-vsock, such as QEMU) or "tcp:HOST:PORT" (an
 * agent run by hand). --port picks the guest port (default 49983, envd).
 * --time prints "guestctl-time: elapsed_ms=N end_ms=M" on stderr, where
 * end_ms is CLOCK_MONOTONIC, so scripts can time from an earlier stamp.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "../lib/b64.h"
#include "../lib/buf.h"
#include "../lib/connect.h"
#include "../lib/http.h"
#include "../lib/json.h"

#define ENVD_PORT	   49983
#define DEFAULT_TIMEOUT_MS 60000
#define RETRY_PAUSE_MS	   20
#define EXIT_TOOL	   125 /* guestctl itself failed (not the command) */

struct opts {
	const char *target;
	const char *cmd;
	const char *arg;
	const char *user;
	int port;
	int wait_ms;
	int timeout_ms;
	int pid; /* --pid: stop waiting once this process (the VMM) is gone */
	bool time;
	bool quiet;
};

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void usage(void)
{
	fprintf(stderr, "usage: guestctl TARGET health|init JSON|run CMD|write PATH|read PATH\n"
			"           [--port N] [--wait MS] [--pid P] [--timeout MS] [--user U] [--time] [--quiet]\n"
			"TARGET: VMM vsock Unix socket path, vsock:CID or tcp:HOST:PORT\n");
	exit(EXIT_TOOL);
}

/* --- connecting ----------------------------------------------------------------- */

/* Reads one "\n"-terminated line byte by byte, so no byte of the guest's
 * stream that follows the handshake is consumed here. */
static int read_line(int fd, char *line, size_t n, uint64_t deadline)
{
	size_t len = 0;
	while (len + 1 < n) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint64_t now = now_ms();
		if (now >= deadline || poll(&p, 1, (int)(deadline - now)) == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		ssize_t r = read(fd, line + len, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			errno = r == 0 ? ECONNRESET : errno;
			return -1;
		}
		if (line[len] == '\n')
			break;
		len++;
	}
	line[len] = '\0';
	return 0;
}

/* The VMM's convention: "CONNECT <port>\n", answered by "OK <n>\n". */
static int connect_uds(const char *path, int port, int timeout_ms)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof a.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		goto fail;
	char req[32], line[64];
	int n = snprintf(req, sizeof req, "CONNECT %d\n", port);
	if (write(fd, req, (size_t)n) != n || read_line(fd, line, sizeof line, now_ms() + (uint64_t)timeout_ms) < 0)
		goto fail;
	if (strncmp(line, "OK ", 3) != 0) {
		errno = ECONNREFUSED; /* the guest has no listener on that port (yet) */
		goto fail;
	}
	return fd;
fail:
	if (fd >= 0) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return -1;
}

static int connect_vsock(unsigned cid, int port)
{
	struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = (unsigned)port};
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int connect_target(const struct opts *o)
{
	int fd;
	if (strncmp(o->target, "vsock:", 6) == 0) {
		fd = connect_vsock((unsigned)strtoul(o->target + 6, NULL, 10), o->port);
	} else if (strncmp(o->target, "tcp:", 4) == 0) {
		char host[256];
		snprintf(host, sizeof host, "%s", o->target + 4);
		char *colon = strrchr(host, ':');
		int port = o->port;
		if (colon) {
			*colon = '\0';
			port = atoi(colon + 1);
		}
		fd = http_connect_tcp(host, port, o->timeout_ms);
	} else {
		fd = connect_uds(o->target, o->port, o->timeout_ms);
	}
	if (fd >= 0) /* the HTTP client waits with poll and expects EAGAIN */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* --- plain requests ------------------------------------------------------------- */

/* "Authorization: Basic base64(user:)" selects the agent's user, as envd's does. */
static void auth_header(const char *user, char *out, size_t n)
{
	char plain[128], enc[200];
	snprintf(plain, sizeof plain, "%s:", user);
	b64_encode(plain, strlen(plain), enc);
	snprintf(out, n, "Authorization: Basic %s", enc);
}

/* One request on a fresh connection. Returns the HTTP status, or -1. */
static int request(const struct opts *o, const char *method, const char *target, const char *ctype, const void *body,
		   size_t len, struct http_response *resp, void (*on_data)(void *arg, const char *p, size_t n),
		   void *arg)
{
	memset(resp, 0, sizeof *resp); /* freeable even when the connection fails */
	int fd = connect_target(o);
	if (fd < 0)
		return -1;
	char auth[256], ct[128];
	const char *headers[4] = {NULL};
	int nh = 0;
	if (ctype) {
		snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
		headers[nh++] = ct;
	}
	if (o->user) {
		auth_header(o->user, auth, sizeof auth);
		headers[nh++] = auth;
	}
	int rc = http_request(fd, method, target, headers, body, len, resp, o->timeout_ms, on_data, arg);
	int e = errno;
	close(fd);
	errno = e;
	return rc < 0 ? -1 : resp->status;
}

static void print_body_if_error(const struct opts *o, const char *what, int status, const struct buf *body)
{
	if (status < 0)
		fprintf(stderr, "guestctl: %s %s: %s\n", what, o->target, strerror(errno));
	else if (status >= 300)
		fprintf(stderr, "guestctl: %s: HTTP %d %s\n", what, status, body->data ? body->data : "");
}

static int cmd_health(const struct opts *o)
{
	uint64_t deadline = now_ms() + (uint64_t)o->wait_ms;
	for (;;) {
		struct http_response r;
		int st = request(o, "GET", "/health", NULL, NULL, 0, &r, NULL, NULL);
		bool ok = st >= 200 && st < 300;
		if (ok || now_ms() >= deadline) {
			if (!o->quiet || !ok)
				print_body_if_error(o, "health", st, &r.body);
			if (ok && !o->quiet)
				printf("healthy (HTTP %d)\n", st);
			http_response_free(&r);
			return ok ? 0 : 1;
		}
		http_response_free(&r);
		if (o->pid > 0 && kill(o->pid, 0) < 0 && errno == ESRCH) {
			fprintf(stderr, "guestctl: health: process %d (the VMM) has exited\n", o->pid);
			return 1;
		}
		usleep(RETRY_PAUSE_MS * 1000);
	}
}

static int cmd_init(const struct opts *o)
{
	struct http_response r;
	int st = request(o, "POST", "/init", "application/json", o->arg, strlen(o->arg), &r, NULL, NULL);
	print_body_if_error(o, "init", st, &r.body);
	http_response_free(&r);
	return st >= 200 && st < 300 ? 0 : 1;
}

static char *files_target(const char *path)
{
	struct buf t = BUF_INIT;
	buf_puts(&t, "/files?path=");
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("/-_.~", *p))
			buf_putc(&t, (char)*p);
		else
			buf_printf(&t, "%%%02X", *p);
	}
	return buf_steal(&t);
}

static void write_stdout(void *arg, const char *p, size_t n)
{
	fwrite(p, 1, n, stdout);
}

static int cmd_read(const struct opts *o)
{
	char *target = files_target(o->arg);
	struct http_response r;
	/* The body goes straight to stdout only once the status is known to be
	 * good, so the error JSON of a 404 is not mistaken for file content. */
	int st = request(o, "GET", target, NULL, NULL, 0, &r, NULL, NULL);
	if (st == 200)
		write_stdout(NULL, r.body.data ? r.body.data : "", r.body.len);
	print_body_if_error(o, "read", st, &r.body);
	http_response_free(&r);
	free(target);
	return st == 200 ? 0 : 1;
}

static int cmd_write(const struct opts *o)
{
	struct buf in = BUF_INIT;
	for (;;) {
		char *p = buf_reserve(&in, 65536);
		ssize_t n = read(0, p, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		buf_commit(&in, (size_t)n);
	}
	char *target = files_target(o->arg);
	struct http_response r;
	int st = request(o, "POST", target, "application/octet-stream", in.data ? in.data : "", in.len, &r, NULL, NULL);
	print_body_if_error(o, "write", st, &r.body);
	http_response_free(&r);
	free(target);
	buf_free(&in);
	return st == 200 ? 0 : 1;
}

/* --- run: the Connect server stream of process.Process/Start -------------------- */

struct stream {
	struct connect_reader reader; /* the response body, split into envelopes */
	int exit_code;		      /* -1 until the end event arrives */
	bool ended;		      /* end-stream envelope seen */
	char error[256];
};

static void emit_output(const struct json *data)
{
	static const char *const kinds[] = {"stdout", "stderr", "pty"};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		const char *s = json_get_str(data, kinds[i]);
		if (!s)
			continue;
		size_t n = strlen(s);
		char *dec = malloc(b64_decoded_maxlen(n) + 1);
		ssize_t dl = dec ? b64_decode(s, n, dec) : -1;
		FILE *f = i == 1 ? stderr : stdout;
		if (dl > 0) {
			fwrite(dec, 1, (size_t)dl, f);
			fflush(f);
		}
		free(dec);
	}
}

static void handle_message(void *arg, unsigned flags, const char *msg, size_t len)
{
	struct stream *s = arg;
	char err[160];
	struct json *j = json_parse(msg, len, err, sizeof err);
	if (!j) {
		snprintf(s->error, sizeof s->error, "malformed stream message: %s", err);
		return;
	}
	if (flags & CONNECT_FLAG_END_STREAM) {
		s->ended = true;
		const struct json *e = json_get(j, "error");
		if (e)
			snprintf(s->error, sizeof s->error, "%s: %s",
				 json_get_str(e, "code") ? json_get_str(e, "code") : "",
				 json_get_str(e, "message") ? json_get_str(e, "message") : "");
	} else {
		const struct json *ev = json_get(j, "event");
		const struct json *data = ev ? json_get(ev, "data") : NULL;
		const struct json *end = ev ? json_get(ev, "end") : NULL;
		if (data)
			emit_output(data);
		if (end) /* proto3 JSON omits a zero exitCode */
			s->exit_code = (int)json_get_int(end, "exitCode", 0);
	}
	json_free(j);
}

/* Called with de-chunked body bytes. */
static void on_stream_data(void *arg, const char *p, size_t n)
{
	struct stream *s = arg;
	connect_reader_feed(&s->reader, p, n);
}

static int cmd_run(const struct opts *o)
{
	struct buf msg = BUF_INIT, body = BUF_INIT;
	struct jw w;
	jw_init(&w, &msg);
	jw_obj(&w);
	jw_key(&w, "process");
	jw_obj(&w);
	jw_kstr(&w, "cmd", "/bin/bash");
	jw_key(&w, "args");
	jw_arr(&w);
	jw_str(&w, "-l");
	jw_str(&w, "-c");
	jw_str(&w, o->arg);
	jw_end(&w);
	jw_end(&w);
	jw_end(&w);
	connect_envelope(&body, 0, msg.data, msg.len);

	struct stream s = {.exit_code = -1};
	s.reader.on_message = handle_message;
	s.reader.arg = &s;
	struct http_response r;
	int st = request(o, "POST", "/process.Process/Start", "application/connect+json", body.data, body.len, &r,
			 on_stream_data, &s);
	int rc = s.exit_code;
	if (st != 200) {
		print_body_if_error(o, "run", st, &r.body);
		rc = EXIT_TOOL;
	} else if (s.reader.failed) {
		fprintf(stderr, "guestctl: run: a stream message over %u bytes\n", CONNECT_MESSAGE_MAX);
		rc = EXIT_TOOL;
	} else if (s.error[0] || !s.ended || rc < 0) {
		fprintf(stderr, "guestctl: run: %s\n", s.error[0] ? s.error : "stream ended without an exit status");
		rc = rc < 0 ? EXIT_TOOL : rc;
	}
	http_response_free(&r);
	connect_reader_free(&s.reader);
	buf_free(&msg);
	buf_free(&body);
	return rc;
}

/* --- main ----------------------------------------------------------------------- */

static int int_arg(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		usage();
	return atoi(argv[++*i]);
}

static void parse(int argc, char **argv, struct opts *o)
{
	const char *pos[3] = {NULL};
	int npos = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--port"))
			o->port = int_arg(argc, argv, &i);
		else if (!strcmp(a, "--wait"))
			o->wait_ms = int_arg(argc, argv, &i);
		else if (!strcmp(a, "--timeout"))
			o->timeout_ms = int_arg(argc, argv, &i);
		else if (!strcmp(a, "--pid"))
			o->pid = int_arg(argc, argv, &i);
		else if (!strcmp(a, "--user") && i + 1 < argc)
			o->user = argv[++i];
		else if (!strcmp(a, "--time"))
			o->time = true;
		else if (!strcmp(a, "--quiet"))
			o->quiet = true;
		else if (npos < 3)
			pos[npos++] = a;
		else
			usage();
	}
	o->target = pos[0];
	o->cmd = pos[1];
	o->arg = pos[2];
	bool needs_arg = o->cmd && strcmp(o->cmd, "health") != 0;
	if (!o->target || !o->cmd || (needs_arg && !o->arg))
		usage();
}

int main(int argc, char **argv)
{
	struct opts o = {.port = ENVD_PORT, .timeout_ms = DEFAULT_TIMEOUT_MS};
	parse(argc, argv, &o);
	uint64_t t0 = now_ms();
	int rc;
	if (!strcmp(o.cmd, "health"))
		rc = cmd_health(&o);
	else if (!strcmp(o.cmd, "init"))
		rc = cmd_init(&o);
	else if (!strcmp(o.cmd, "run"))
		rc = cmd_run(&o);
	else if (!strcmp(o.cmd, "write"))
		rc = cmd_write(&o);
	else if (!strcmp(o.cmd, "read"))
		rc = cmd_read(&o);
	else
		usage();
	fflush(stdout);
	if (o.time) {
		uint64_t t1 = now_ms();
		fprintf(stderr, "guestctl-time: elapsed_ms=%llu end_ms=%llu\n", (unsigned long long)(t1 - t0),
			(unsigned long long)t1);
	}
	return rc;
}
