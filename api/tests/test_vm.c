/*
 * test_vm.c - api/vm.c against a stand-in VMM, and against the real one
 * where /dev/kvm runs Linux guests.
 *
 * The stand-in is this test binary itself: started with TEST_VM_FAKE set in
 * its environment it does not run tests but plays cube-vmm (a constructor
 * catches it before main). It speaks the real protocols: the vsock Unix
 * socket ("CONNECT 49983\n" -> "OK n\n", then HTTP answered 204), and the
 * control socket (ping, pause, resume, snapshot, shutdown); with --paused
 * (or after a pause) its agent does not answer until a resume. A snapshot is a
 * directory with state, memory and disk0.layer; its state holds the access
 * token the guest was given, so a "restored" guest asks for it again, as
 * the real agent does. Each /init is appended to <run_dir>/fake-init.log
 * with the X-Access-Token it came with. TEST_VM_FAKE=die plays a VMM that
 * refuses its snapshot.
 *
 * The real test (real_guest_lifecycle) needs build/cube-vmm, the guest
 * kernel and rootfs, and a /dev/kvm that boots stock Linux (kvm_intel or
 * kvm_amd, not PVM); elsewhere it prints SKIP and passes. The nested suite
 * (qemu-tests/l1/tests/20-api-vm.sh) runs the same calls on real guests.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../lib/connect.h"
#include "../../lib/loop.h"
#include "../../lib/tests/test.h"
#include "../vm.h"

/* --- the stand-in VMM ----------------------------------------------------------------- */

struct fake {
	const char *snapshot, *vsock, *control, *layer;
	char token[128];
	char init_log[512];
	bool paused;	 /* --paused, or a control pause: the agent does not answer */
	int ready_polls; /* GET /cubeos/ready: 503 twice (a kernel starting), then 200 */
};

static const char *arg_after(int argc, char **argv, const char *opt)
{
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], opt))
			return argv[i + 1];
	return NULL;
}

static int fake_listen(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 8) < 0)
		_exit(2);
	return fd;
}

static int fake_read_line(int fd, char *line, size_t size)
{
	size_t n = 0;
	while (n + 1 < size && read(fd, line + n, 1) == 1) {
		if (line[n] == '\n') {
			line[n] = '\0';
			return 0;
		}
		n++;
	}
	return -1;
}

static void fake_write_file(const char *dir, const char *name, const char *data)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, data, strlen(data)) < 0)
			_exit(2);
		close(fd);
	}
}

/* The run directory (where the control socket is): the stand-in's files. */
static void fake_run_dir(const struct fake *f, char *out, size_t outsz)
{
	snprintf(out, outsz, "%.*s", (int)(strrchr(f->control, '/') - f->control), f->control);
}

static void fake_envelope(int fd, unsigned flags, const char *json)
{
	size_t n = strlen(json);
	dprintf(fd, "%zx\r\n%c%c%c%c%c%s\r\n", n + 5, (char)flags, (char)(n >> 24), (char)(n >> 16), (char)(n >> 8),
		(char)n, json);
}

/* process.Process/Start, in a child so the stream stays open while other
 * connections come: the request is kept in fake-start.json (or
 * $FAKE_START_LOG); FAKE_START says
 * what the process does. "serve": it starts listening (fake-listening
 * appears, which the port bridge checks) 300 ms later and runs until the
 * client goes; "exit": it prints and exits 1; "mute": it runs and never
 * listens; "noexec": it cannot be started; "closed": the stream ends with
 * neither a start nor an error. */
static void fake_start_stream(struct fake *f, int fd, const char *msg)
{
	char dir[512];
	fake_run_dir(f, dir, sizeof dir);
	/* FAKE_START_LOG: a build's run dir is gone when the test looks. */
	fake_write_file(getenv("FAKE_START_LOG") ? "/" : dir,
			getenv("FAKE_START_LOG") ? getenv("FAKE_START_LOG") : "fake-start.json", msg);
	if (fork() != 0)
		return;
	const char *how = getenv("FAKE_START") ? getenv("FAKE_START") : "serve";
	dprintf(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/connect+json\r\nTransfer-Encoding: chunked\r\n\r\n");
	if (!strcmp(how, "closed")) { /* an end without a start event or an error */
		fake_envelope(fd, CONNECT_FLAG_END_STREAM, "{}");
		dprintf(fd, "0\r\n\r\n");
		_exit(0);
	}
	if (!strcmp(how, "noexec")) { /* the agent's answer to a command that is not there */
		fake_envelope(fd, CONNECT_FLAG_END_STREAM,
			      "{\"error\":{\"code\":\"invalid_argument\",\"message\":\"error starting process "
			      "'/srv/app': exec: No such file or directory\"}}");
		dprintf(fd, "0\r\n\r\n");
		_exit(0);
	}
	fake_envelope(fd, 0, "{\"event\":{\"start\":{\"pid\":77}}}");
	if (!strcmp(how, "exit")) {
		fake_envelope(fd, 0,
			      "{\"event\":{\"data\":{\"stderr\":\"Ym9vbTogbm8gY29uZmlnCg==\"}}}"); /* boom: no config */
		fake_envelope(fd, 0,
			      "{\"event\":{\"end\":{\"exitCode\":1,\"exited\":true,\"status\":\"exit status 1\"}}}");
		fake_envelope(fd, CONNECT_FLAG_END_STREAM, "{}");
		dprintf(fd, "0\r\n\r\n");
		_exit(0);
	}
	if (!strcmp(how, "serve")) {
		usleep(300 * 1000);
		fake_write_file(dir, "fake-listening", "");
	}
	char b;
	while (read(fd, &b, 1) > 0) /* until the client detaches */
		;
	_exit(0);
}

/* The port bridge: "PORT n" answered OK once the started process listens. */
static void fake_bridge(struct fake *f, int fd)
{
	char line[64], path[600];
	fake_run_dir(f, path, sizeof path);
	strncat(path, "/fake-listening", sizeof path - strlen(path) - 1);
	if (fake_read_line(fd, line, sizeof line) == 0 && !strncmp(line, "PORT ", 5))
		dprintf(fd, access(path, F_OK) == 0 ? "OK\n" : "ERR refused\n");
}

/* One HTTP request on an agent stream; /init bodies are logged. */
static void fake_http(struct fake *f, int fd)
{
	char head[8192], body[8192] = "";
	size_t n = 0;
	while (n + 1 < sizeof head && read(fd, head + n, 1) == 1) {
		n++;
		head[n] = '\0';
		if (n >= 4 && !memcmp(head + n - 4, "\r\n\r\n", 4))
			break;
	}
	const char *cl = strcasestr(head, "\r\nContent-Length: ");
	size_t len = cl ? strtoul(cl + 18, NULL, 10) : 0, got = 0;
	while (got < len && got + 1 < sizeof body) {
		ssize_t r = read(fd, body + got, len - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	body[got] = '\0';
	if (!strncmp(head, "POST /process.Process/Start ", 28)) {
		fake_start_stream(f, fd, got > 5 ? body + 5 : "");
		return;
	}
	const char *tok = strcasestr(head, "\r\nX-Access-Token: ");
	char sent[128] = "";
	if (tok)
		snprintf(sent, sizeof sent, "%.*s", (int)strcspn(tok + 18, "\r"), tok + 18);
	const char *status = "204 No Content";
	if (!strncmp(head, "GET /cubeos/ready ", 18)) {
		status = ++f->ready_polls <= 2 ? "503 Service Unavailable" : "200 OK";
		const char *log = getenv("FAKE_READY_LOG"); /* the build's run dir is gone when the test looks */
		int lf = log ? open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
		if (lf >= 0) {
			dprintf(lf, "%.3s\n", status);
			close(lf);
		}
	}
	if (!strncmp(head, "POST /init ", 11)) {
		if (f->token[0] && strcmp(sent, f->token))
			status = "401 Unauthorized";
		const char *t = strstr(body, "\"accessToken\":\"");
		if (t && strcmp(status, "204 No Content") == 0)
			snprintf(f->token, sizeof f->token, "%.*s", (int)strcspn(t + 15, "\""), t + 15);
		char line[9000];
		snprintf(line, sizeof line, "token=%s %s %s\n", sent[0] ? sent : "-", status, body);
		int lf = open(f->init_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (lf >= 0) {
			if (write(lf, line, strlen(line)) < 0)
				_exit(2);
			close(lf);
		}
	}
	dprintf(fd, "HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n", status);
}

static void fake_agent(struct fake *f, int fd)
{
	char line[64];
	if (f->paused)
		return;
	if (fake_read_line(fd, line, sizeof line) == 0 &&
	    (!strcmp(line, "CONNECT 49983") || !strcmp(line, "CONNECT 49999"))) {
		/* FAKE_CONNECT_DELAY_MS: a guest starved of CPU, slow to accept
		 * a vsock connection (the VMM answers OK once the guest has). */
		if (getenv("FAKE_CONNECT_DELAY_MS"))
			usleep((useconds_t)atoi(getenv("FAKE_CONNECT_DELAY_MS")) * 1000);
		dprintf(fd, "OK 1024\n");
		/* FAKE_AGENT_MUTE: a wedged guest that takes connections and
		 * never answers; each one stays open in a child until the
		 * client gives up. */
		if (getenv("FAKE_AGENT_MUTE")) {
			char b;
			if (fork() == 0) {
				while (read(fd, &b, 1) > 0)
					;
				_exit(0);
			}
			return;
		}
		fake_http(f, fd);
	} else if (!strcmp(line, "CONNECT 49982")) {
		dprintf(fd, "OK 1025\n");
		fake_bridge(f, fd);
	}
}

/* One control request; returns true on shutdown. */
static bool fake_control(struct fake *f, int fd)
{
	char line[2048];
	if (fake_read_line(fd, line, sizeof line) < 0)
		return false;
	if (strstr(line, "\"snapshot\"")) {
		char dir[1024];
		const char *d = strstr(line, "\"dir\":\"");
		snprintf(dir, sizeof dir, "%.*s", d ? (int)strcspn(d + 7, "\"") : 0, d ? d + 7 : "");
		mkdir(dir, 0755);
		fake_write_file(dir, "memory", "guest memory");
		fake_write_file(dir, "disk0.layer", "frozen layer");
		fake_write_file(dir, "state", f->token);
	}
	if (strstr(line, "\"pause\""))
		f->paused = true;
	else if (strstr(line, "\"resume\""))
		f->paused = false;
	dprintf(fd, "{\"ok\":true}\n");
	return strstr(line, "\"shutdown\"") != NULL;
}

static void fake_vmm(int argc, char **argv)
{
	struct fake f = {0};
	signal(SIGPIPE, SIG_IGN); /* a client that went away must not end the stand-in */
	signal(SIGCHLD, SIG_IGN); /* its stream children reap themselves */
	if (!strcmp(getenv("TEST_VM_FAKE"), "die")) {
		fputs("{\"level\":\"error\",\"msg\":\"bad snapshot: checksum mismatch\"}\n", stderr);
		_exit(5);
	}
	f.control = arg_after(argc, argv, "--control");
	for (int i = 1; i < argc; i++)
		f.paused |= !strcmp(argv[i], "--paused");
	const char *layer = arg_after(argc, argv, "--disk-layer");
	if (layer && !strncmp(layer, "0=", 2)) /* the real VMM creates its top layer at once */
		close(open(layer + 2, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	f.snapshot = arg_after(argc, argv, "--snapshot");
	f.vsock = arg_after(argc, argv, "--vsock-uds");
	const char *vs = arg_after(argc, argv, "--vsock");
	if (vs && strstr(vs, "uds="))
		f.vsock = strstr(vs, "uds=") + 4;
	if (!f.control || !f.vsock)
		_exit(1);
	snprintf(f.init_log, sizeof f.init_log, "%.*s/fake-init.log", (int)(strrchr(f.control, '/') - f.control),
		 f.control);
	if (getenv("FAKE_INIT_LOG"))
		snprintf(f.init_log, sizeof f.init_log, "%s", getenv("FAKE_INIT_LOG"));
	if (f.snapshot) { /* a restored guest keeps the token it had */
		char st[512];
		snprintf(st, sizeof st, "%s/state", f.snapshot);
		int fd = open(st, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			_exit(5);
		ssize_t n = read(fd, f.token, sizeof f.token - 1);
		f.token[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	int lv = fake_listen(f.vsock), lc = fake_listen(f.control);
	for (;;) {
		struct pollfd p[2] = {{.fd = lv, .events = POLLIN}, {.fd = lc, .events = POLLIN}};
		if (poll(p, 2, -1) < 0)
			continue;
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			int c = accept4(p[i].fd, NULL, NULL, SOCK_CLOEXEC);
			if (c < 0)
				continue;
			bool stop = i == 0 ? (fake_agent(&f, c), false) : fake_control(&f, c);
			close(c);
			if (stop) {
				unlink(f.vsock);
				unlink(f.control);
				_exit(0);
			}
		}
	}
}

__attribute__((constructor)) static void maybe_fake_vmm(void)
{
	if (!getenv("TEST_VM_FAKE"))
		return;
	static char cmd[8192];
	char *argv[64];
	int argc = 0, fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, cmd, sizeof cmd - 1) : -1;
	if (n <= 0)
		_exit(1);
	for (ssize_t i = 0; i < n && argc < 63; i += (ssize_t)strlen(cmd + i) + 1)
		argv[argc++] = cmd + i;
	argv[argc] = NULL;
	fake_vmm(argc, argv);
}

/* --- helpers -------------------------------------------------------------------------- */

static char self_exe[512];
static char base[256];

static void setup(void)
{
	if (!self_exe[0]) {
		ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
		self_exe[n > 0 ? n : 0] = '\0';
	}
	snprintf(base, sizeof base, "/tmp/test_vm.XXXXXX");
	if (!mkdtemp(base))
		abort();
	setenv("TEST_VM_FAKE", "ok", 1);
}

static void teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", base);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", base);
	unsetenv("TEST_VM_FAKE");
}

struct sbx {
	char id[32], tpl[300], sb[300], run[300];
	struct vm_spec spec;
};

static void sbx_init(struct sbx *s, const char *id, const char *init_json)
{
	snprintf(s->id, sizeof s->id, "%s", id);
	snprintf(s->tpl, sizeof s->tpl, "%s/tpl", base);
	snprintf(s->sb, sizeof s->sb, "%s/sb/%s", base, id);
	snprintf(s->run, sizeof s->run, "%s/run/%s", base, id);
	s->spec = (struct vm_spec){.id = s->id,
				   .template_dir = s->tpl,
				   .sandbox_dir = s->sb,
				   .run_dir = s->run,
				   .init_json = init_json,
				   .vmm_path = self_exe};
}

static bool exists(const char *dir, const char *name)
{
	char p[600];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

static bool file_has(const char *dir, const char *name, const char *needle)
{
	char p[600], data[8192];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, data, sizeof data - 1);
	close(fd);
	data[n > 0 ? n : 0] = '\0';
	return strstr(data, needle) != NULL;
}

static bool pid_gone(pid_t pid)
{
	return kill(pid, 0) < 0 && errno == ESRCH;
}

/* What template_build needs: an (empty) kernel and rootfs, and the stand-in
 * as cube-vmm next to this program, where template_build looks for it. */
struct build_files {
	char dir[300], kernel[300], rootfs[300], vmm[600];
};

static bool build_files_make(struct build_files *b)
{
	snprintf(b->dir, sizeof b->dir, "%s/tpl", base);
	snprintf(b->kernel, sizeof b->kernel, "%s/vmlinux", base);
	snprintf(b->rootfs, sizeof b->rootfs, "%s/rootfs.ext4", base);
	close(open(b->kernel, O_WRONLY | O_CREAT, 0644));
	close(open(b->rootfs, O_WRONLY | O_CREAT, 0644));
	snprintf(b->vmm, sizeof b->vmm, "%.*s/cube-vmm", (int)(strrchr(self_exe, '/') - self_exe), self_exe);
	unlink(b->vmm);
	return CHECK(symlink(self_exe, b->vmm) == 0);
}

/* A template snapshot as template_build leaves it, made by the stand-in. */
static void make_template(void)
{
	struct build_files b;
	char err[512];
	if (!build_files_make(&b))
		return;
	int rc = template_build(b.dir, b.kernel, b.rootfs, 1, 128, NULL, NULL, NULL, err, sizeof err);
	unlink(b.vmm);
	if (!CHECK(rc == 0))
		fprintf(stderr, "  template_build: %s\n", err);
}

/* --- with the stand-in ------------------------------------------------------------------ */

struct progress_log {
	char phases[256];
	int last_pct;
};

static void on_progress(void *arg, int pct, const char *phase)
{
	struct progress_log *l = arg;
	size_t n = strlen(l->phases);
	snprintf(l->phases + n, sizeof l->phases - n, "%s%s:%d", n ? " " : "", phase, pct);
	l->last_pct = pct;
}

/* The start command: started through the agent with its cwd and env, the
 * snapshot taken once its probe port accepts; one that ends first, or
 * whose port never opens, fails the build with its output. */
TEST(template_build_starts_the_start_command_and_waits_for_its_port)
{
	setup();
	struct build_files b;
	build_files_make(&b);
	const char *dir = b.dir, *kernel = b.kernel, *rootfs = b.rootfs;
	char err[1024], start_log[400], init_log[400];
	snprintf(start_log, sizeof start_log, "%s/start.json", base);
	snprintf(init_log, sizeof init_log, "%s/init.log", base);
	setenv("FAKE_START_LOG", start_log, 1);
	setenv("FAKE_INIT_LOG", init_log, 1);

	const char *argv[] = {"/srv/app", "--port", "8080", NULL};
	struct template_start st = {
	    .argv = argv, .cwd = "/srv", .envs_json = "{\"MODE\":\"prod\"}", .probe_port = 8080};
	struct progress_log log = {.last_pct = -1};
	setenv("FAKE_START", "serve", 1);
	int rc = template_build(dir, kernel, rootfs, 1, 128, &st, on_progress, &log, err, sizeof err);
	if (!CHECK_EQ_INT(rc, 0))
		fprintf(stderr, "  %s\n", err);
	CHECK(strstr(log.phases, "interpreter:55 start:56 snapshot:60") != NULL);
	if (!CHECK(strstr(st.note, "started `/srv/app --port 8080` (pid 77); port 8080 accepted after ") == st.note))
		fprintf(stderr, "  note: %s\n", st.note);
	CHECK(file_has(base, "start.json",
		       "{\"process\":{\"cmd\":\"/srv/app\",\"args\":[\"--port\",\"8080\"],\"envs\":{\"MODE\":\"prod\"},"
		       "\"cwd\":\"/srv\"},\"stdin\":false}"));
	CHECK(file_has(base, "init.log", "{\"defaultWorkdir\":\"/srv\"}"));
	CHECK(exists(dir, "snap/state"));

	/* The process exits before its port opens: its status and output. */
	setenv("FAKE_START", "exit", 1);
	CHECK_EQ_INT(template_build(dir, kernel, rootfs, 1, 128, &st, NULL, NULL, err, sizeof err), -1);
	if (!CHECK(strstr(err, "the start command `/srv/app --port 8080` ended (exit status 1) before port 8080 "
			       "accepted connections; its output: boom: no config")))
		fprintf(stderr, "  %s\n", err);
	/* Without a probe its end is only noted: the image's `CMD sh` ends so. */
	st.probe_port = 0;
	CHECK_EQ_INT(template_build(dir, kernel, rootfs, 1, 128, &st, NULL, NULL, err, sizeof err), 0);
	CHECK(strstr(st.note, "ended (exit status 1) before the snapshot; its output: boom: no config") != NULL);

	/* It cannot be started at all: the agent's words. */
	setenv("FAKE_START", "noexec", 1);
	st.probe_port = 0;
	CHECK_EQ_INT(template_build(dir, kernel, rootfs, 1, 128, &st, NULL, NULL, err, sizeof err), -1);
	if (!CHECK(strstr(err, "cannot start `/srv/app --port 8080`: error starting process '/srv/app': exec: No such "
			       "file or directory")))
		fprintf(stderr, "  %s\n", err);

	setenv("FAKE_START", "closed", 1);
	err[0] = '\0';
	CHECK_EQ_INT(template_build(dir, kernel, rootfs, 1, 128, &st, NULL, NULL, err, sizeof err), -1);
	if (!CHECK(strstr(err, "cannot start `/srv/app --port 8080`: the agent ended the stream before starting it")))
		fprintf(stderr, "  %s\n", err);

	/* It runs, but nothing ever listens: the probe gives up. */
	setenv("FAKE_START", "mute", 1);
	st.probe_port = 8080;
	st.probe_timeout_ms = 1500;
	CHECK_EQ_INT(template_build(dir, kernel, rootfs, 1, 128, &st, NULL, NULL, err, sizeof err), -1);
	if (!CHECK(strstr(err, "port 8080 did not accept connections within 1 s of starting `/srv/app --port 8080`")))
		fprintf(stderr, "  %s\n", err);
	unsetenv("FAKE_START");
	unsetenv("FAKE_START_LOG");
	unsetenv("FAKE_INIT_LOG");
	unlink(b.vmm);
	teardown();
}

TEST(template_build_snapshots_through_a_temp_dir)
{
	setup();
	struct build_files b;
	build_files_make(&b);
	const char *dir = b.dir, *kernel = b.kernel, *rootfs = b.rootfs;
	char err[512];
	struct progress_log log = {.last_pct = -1};
	char ready_log[400], polls[64] = "";
	snprintf(ready_log, sizeof ready_log, "%s/ready.log", base);
	setenv("FAKE_READY_LOG", ready_log, 1);
	int rc = template_build(dir, kernel, rootfs, 1, 128, NULL, on_progress, &log, err, sizeof err);
	unsetenv("FAKE_READY_LOG");
	if (!CHECK_EQ_INT(rc, 0))
		fprintf(stderr, "  %s\n", err);
	CHECK(exists(dir, "snap/state") && exists(dir, "snap/memory") && exists(dir, "snap/disk0.layer"));
	CHECK_STREQ(log.phases, "boot:0 boot:10 agent:50 interpreter:55 snapshot:60 snapshot:90 done:100");
	/* The snapshot waited for the interpreter's start-up: 503, 503, then 200. */
	FILE *rl = fopen(ready_log, "r");
	if (CHECK(rl != NULL)) {
		size_t got = fread(polls, 1, sizeof polls - 1, rl);
		polls[got] = '\0';
		fclose(rl);
	}
	CHECK_STREQ(polls, "503\n503\n200\n");
	/* A rebuild replaces snap/ and leaves no temporary directory. */
	CHECK_EQ_INT(template_build(dir, kernel, rootfs, 1, 128, NULL, NULL, NULL, err, sizeof err), 0);
	char ls[400];
	snprintf(ls, sizeof ls, "test \"$(ls %s)\" = snap", dir);
	CHECK(system(ls) == 0);
	unlink(b.vmm);
	/* Bad arguments are refused before anything runs. */
	CHECK_EQ_INT(template_build(dir, "/nonexistent/vmlinux", rootfs, 1, 128, NULL, NULL, NULL, err, sizeof err),
		     -1);
	CHECK(strstr(err, "/nonexistent/vmlinux") != NULL);
	CHECK_EQ_INT(template_build(dir, kernel, rootfs, 0, 128, NULL, NULL, NULL, err, sizeof err), -1);
	teardown();
}

TEST(start_alive_stop)
{
	setup();
	make_template();
	struct sbx s;
	sbx_init(&s, "sbx1",
		 "{\"sandboxId\":\"sbx1\",\"envVars\":{\"A\":\"b\"},\"timestamp\":\"1999-01-01T00:00:00Z\"}");
	char err[512] = "";
	pid_t pid = vm_start(&s.spec, err, sizeof err);
	if (!CHECK(pid > 0)) {
		fprintf(stderr, "  vm_start: %s\n", err);
		teardown();
		return;
	}
	CHECK(vm_alive(pid, &s.spec));
	CHECK(exists(s.run, "vsock.sock") && exists(s.run, "control.sock"));
	/* The identity arrives with a fresh timestamp and entropy. */
	CHECK(file_has(s.run, "fake-init.log", "\"sandboxId\":\"sbx1\""));
	CHECK(file_has(s.run, "fake-init.log", "\"envVars\":{\"A\":\"b\"}"));
	CHECK(!file_has(s.run, "fake-init.log", "1999-01-01"));
	CHECK(file_has(s.run, "fake-init.log", "\"entropy\":\""));
	/* Another sandbox's spec does not match this pid. */
	struct sbx other;
	sbx_init(&other, "sbx2", NULL);
	CHECK(!vm_alive(pid, &other.spec));
	CHECK_EQ_INT(vm_stop(pid, &s.spec, 2000), 0);
	CHECK(pid_gone(pid));
	CHECK(!exists(s.run, "vsock.sock") && !exists(s.run, "control.sock"));
	CHECK(!vm_alive(pid, &s.spec));
	CHECK_EQ_INT(vm_stop(pid, &s.spec, 2000), 0); /* stopping twice is fine */
	teardown();
}

/* A guest that needs longer than the first /health try (2 s) to accept
 * every vsock connection is still started: the tries get longer. They used
 * to stay at 2 s, so such a guest was given up after 30 s and restored
 * again, on a host already short of CPU. */
TEST(start_waits_for_an_agent_slower_than_one_try)
{
	setup();
	make_template();
	struct sbx s;
	sbx_init(&s, "slow1", "{\"sandboxId\":\"slow1\"}");
	char err[512] = "";
	setenv("FAKE_CONNECT_DELAY_MS", "2500", 1);
	pid_t pid = vm_start(&s.spec, err, sizeof err);
	unsetenv("FAKE_CONNECT_DELAY_MS");
	if (!CHECK(pid > 0)) {
		fprintf(stderr, "  vm_start: %s\n", err);
		teardown();
		return;
	}
	CHECK(file_has(s.run, "fake-init.log", "\"sandboxId\":\"slow1\""));
	CHECK_EQ_INT(vm_stop(pid, &s.spec, 2000), 0);
	teardown();
}

/* A guest that accepts the agent's connection and never answers: the
 * start gives up at its deadline (30 s) instead of blocking a worker thread
 * for good (the HTTP exchange used to run on a blocking socket, which the
 * client's deadline does not cover). Run in a child, so a hang fails the
 * test instead of stopping the run. */
TEST(start_gives_up_on_a_mute_agent)
{
	setup();
	make_template();
	pid_t child = fork();
	if (child == 0) {
		struct sbx s;
		sbx_init(&s, "mute1", "{\"sandboxId\":\"mute1\"}");
		char err[512] = "";
		setenv("FAKE_AGENT_MUTE", "1", 1);
		pid_t pid = vm_start(&s.spec, err, sizeof err);
		_exit(pid < 0 && strstr(err, "did not answer") ? 0 : 1);
	}
	int st = -1;
	for (int i = 0; i < 450 && waitpid(child, &st, WNOHANG) == 0; i++)
		usleep(100000);
	if (waitpid(child, &st, WNOHANG) == 0) {
		kill(child, SIGKILL);
		waitpid(child, &st, 0);
		CHECK(!"vm_start still waiting for a mute agent after 45 s");
	} else {
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	teardown();
}

/* "CONNECT 49983" answered OK: the stand-in's guest runs (not paused). */
static bool agent_answers(const char *run_dir)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s/vsock.sock", run_dir);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char line[16] = "";
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
		  write(fd, "CONNECT 49983\n", 14) == 14 && read(fd, line, 3) == 3 && strncmp(line, "OK ", 3) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* A running sandbox's snapshot: paused for it, resumed after; a clone of it
 * shows the token the snapshot's agent holds. A paused one's is linked. */
TEST(checkpoint_snapshots_a_running_or_paused_sandbox)
{
	setup();
	make_template();
	struct sbx s;
	sbx_init(&s, "src1", "{\"sandboxId\":\"src1\",\"accessToken\":\"tok-src\"}");
	char err[512] = "", snapdir[400], snap[420];
	pid_t pid = vm_start(&s.spec, err, sizeof err);
	if (!CHECK(pid > 0)) {
		fprintf(stderr, "  vm_start: %s\n", err);
		teardown();
		return;
	}
	snprintf(snapdir, sizeof snapdir, "%s/snaptpl", base);
	mkdir(snapdir, 0755);
	snprintf(snap, sizeof snap, "%s/snap", snapdir);
	if (!CHECK_EQ_INT(vm_checkpoint(pid, &s.spec, snap, err, sizeof err), 0))
		fprintf(stderr, "  vm_checkpoint: %s\n", err);
	CHECK(exists(snap, "state") && exists(snap, "memory") && exists(snap, "disk0.layer"));
	CHECK(vm_alive(pid, &s.spec) && agent_answers(s.run)); /* resumed */
	/* Once there, it is not overwritten. */
	CHECK_EQ_INT(vm_checkpoint(pid, &s.spec, snap, err, sizeof err), -1);
	CHECK(agent_answers(s.run));

	/* A clone: its agent holds tok-src, so the new identity is posted with it. */
	struct sbx c;
	sbx_init(&c, "clone1", "{\"sandboxId\":\"clone1\",\"accessToken\":\"tok-new\"}");
	c.spec.template_dir = snapdir;
	c.spec.guest_token = "tok-src";
	pid_t cpid = vm_start(&c.spec, err, sizeof err);
	if (!CHECK(cpid > 0))
		fprintf(stderr, "  vm_start of the clone: %s\n", err);
	CHECK(file_has(c.run, "fake-init.log", "token=tok-src 204"));
	vm_stop(cpid, &c.spec, 2000);
	/* Without it the agent refuses the new identity. */
	sbx_init(&c, "clone2", "{\"sandboxId\":\"clone2\",\"accessToken\":\"tok-new\"}");
	c.spec.template_dir = snapdir;
	CHECK_EQ_INT(vm_start(&c.spec, err, sizeof err), -1);
	CHECK(strstr(err, "401") != NULL);

	/* Paused: its paused/ files hard-linked, nothing started. */
	CHECK_EQ_INT(vm_pause(pid, &s.spec, err, sizeof err), 0);
	char snap2[420], a[600], b[600];
	snprintf(snap2, sizeof snap2, "%s/snap2", snapdir);
	if (!CHECK_EQ_INT(vm_checkpoint(0, &s.spec, snap2, err, sizeof err), 0))
		fprintf(stderr, "  vm_checkpoint of a paused one: %s\n", err);
	snprintf(a, sizeof a, "%s/memory", snap2);
	snprintf(b, sizeof b, "%s/paused/memory", s.sb);
	struct stat sa, sb;
	CHECK(stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino);
	teardown();
}

TEST(pause_and_resume_keep_identity_and_token)
{
	setup();
	make_template();
	struct sbx s;
	sbx_init(&s, "sbx1", "{\"sandboxId\":\"sbx1\",\"accessToken\":\"tok123\"}");
	char err[512] = "";
	pid_t pid = vm_start(&s.spec, err, sizeof err);
	if (!CHECK(pid > 0)) {
		fprintf(stderr, "  vm_start: %s\n", err);
		teardown();
		return;
	}
	if (!CHECK_EQ_INT(vm_pause(pid, &s.spec, err, sizeof err), 0))
		fprintf(stderr, "  vm_pause: %s\n", err);
	CHECK(pid_gone(pid));
	CHECK(exists(s.sb, "paused/state") && exists(s.sb, "paused/memory") && exists(s.sb, "paused/disk0.layer"));
	CHECK(!exists(s.sb, "disk.layer"));
	CHECK(!exists(s.run, "vsock.sock"));
	CHECK(!vm_alive(pid, &s.spec));
	char ls[400];
	snprintf(ls, sizeof ls, "test \"$(ls %s)\" = paused", s.sb);
	CHECK(system(ls) == 0); /* no temporary directory left */
	pid_t pid2 = vm_resume(&s.spec, err, sizeof err);
	if (!CHECK(pid2 > 0))
		fprintf(stderr, "  vm_resume: %s\n", err);
	/* The resumed agent holds the token: /init had to send it. */
	CHECK(file_has(s.run, "fake-init.log", "token=tok123 204"));
	CHECK(!exists(s.sb, "paused"));
	CHECK(vm_alive(pid2, &s.spec));
	CHECK_EQ_INT(vm_stop(pid2, &s.spec, 2000), 0);
	CHECK(pid_gone(pid2));
	/* Pausing what is not running says so. */
	CHECK_EQ_INT(vm_pause(pid2, &s.spec, err, sizeof err), -1);
	CHECK(strstr(err, "not its running VMM") != NULL);
	teardown();
}

TEST(failed_start_says_why_and_leaves_nothing)
{
	setup();
	struct sbx s;
	sbx_init(&s, "bad1", "{}");
	char err[512] = "";
	/* No template snapshot. */
	CHECK_EQ_INT(vm_start(&s.spec, err, sizeof err), -1);
	CHECK(strstr(err, "no snapshot") != NULL);
	CHECK(access(s.run, F_OK) < 0);
	/* A VMM that dies at once: its last log message is in the error. */
	make_template();
	setenv("TEST_VM_FAKE", "die", 1);
	uint64_t t0 = mono_ms();
	CHECK_EQ_INT(vm_start(&s.spec, err, sizeof err), -1);
	CHECK(mono_ms() - t0 < 5000); /* not the agent deadline */
	CHECK(strstr(err, "exited with 5") != NULL);
	CHECK(strstr(err, "checksum mismatch") != NULL);
	CHECK(access(s.run, F_OK) < 0);
	CHECK(!exists(s.sb, "disk.layer"));
	setenv("TEST_VM_FAKE", "ok", 1);
	/* Bad identity documents and specs. */
	sbx_init(&s, "bad2", "[1,2]");
	CHECK_EQ_INT(vm_start(&s.spec, err, sizeof err), -1);
	CHECK(strstr(err, "init document") != NULL);
	CHECK(access(s.run, F_OK) < 0);
	struct vm_spec empty = {0};
	CHECK_EQ_INT(vm_start(&empty, err, sizeof err), -1);
	CHECK(!vm_alive(1, &empty));
	CHECK(vm_stop(-1, &s.spec, 100) == 0);
	teardown();
}

struct par {
	struct sbx s;
	pid_t pid;
	char err[512];
};

static void *par_start(void *arg)
{
	struct par *p = arg;
	p->pid = vm_start(&p->s.spec, p->err, sizeof p->err);
	return NULL;
}

static void *par_stop(void *arg)
{
	struct par *p = arg;
	if (vm_stop(p->pid, &p->s.spec, 2000) < 0)
		snprintf(p->err, sizeof p->err, "vm_stop failed");
	return NULL;
}

TEST(parallel_starts_from_threads)
{
	setup();
	make_template();
	enum { N = 4 };
	struct par p[N];
	pthread_t th[N];
	for (int i = 0; i < N; i++) {
		char id[16];
		snprintf(id, sizeof id, "par%d", i);
		memset(&p[i], 0, sizeof p[i]);
		sbx_init(&p[i].s, id, "{}");
		CHECK(pthread_create(&th[i], NULL, par_start, &p[i]) == 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < N; i++) {
		if (!CHECK(p[i].pid > 0))
			fprintf(stderr, "  %s: %s\n", p[i].s.id, p[i].err);
		CHECK(vm_alive(p[i].pid, &p[i].s.spec));
		for (int j = 0; j < i; j++)
			CHECK(p[i].pid != p[j].pid);
	}
	for (int i = 0; i < N; i++)
		CHECK(pthread_create(&th[i], NULL, par_stop, &p[i]) == 0);
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		CHECK(p[i].pid <= 0 || pid_gone(p[i].pid));
		CHECK(!p[i].err[0]);
	}
	teardown();
}

/* The API daemon's event loop reaps every child on SIGCHLD (lib/loop.c),
 * so a VMM may be reaped before vm.c looks: it must still see it end. */
static volatile int reaper_stop;

static void *reaper(void *arg)
{
	while (!reaper_stop) {
		waitpid(-1, NULL, WNOHANG);
		usleep(500);
	}
	return NULL;
}

TEST(children_reaped_by_someone_else)
{
	setup();
	make_template();
	reaper_stop = 0;
	pthread_t th;
	CHECK(pthread_create(&th, NULL, reaper, NULL) == 0);
	struct sbx s;
	sbx_init(&s, "reaped", "{}");
	char err[512] = "";
	pid_t pid = vm_start(&s.spec, err, sizeof err);
	if (CHECK(pid > 0)) {
		CHECK(vm_alive(pid, &s.spec));
		CHECK_EQ_INT(vm_pause(pid, &s.spec, err, sizeof err), 0);
		pid = vm_resume(&s.spec, err, sizeof err);
		CHECK(pid > 0);
		CHECK_EQ_INT(vm_stop(pid, &s.spec, 2000), 0);
		CHECK(pid_gone(pid));
	}
	setenv("TEST_VM_FAKE", "die", 1);
	uint64_t t0 = mono_ms();
	CHECK_EQ_INT(vm_start(&s.spec, err, sizeof err), -1);
	CHECK(mono_ms() - t0 < 5000);
	CHECK(strstr(err, "checksum mismatch") != NULL);
	reaper_stop = 1;
	pthread_join(th, NULL);
	teardown();
}

TEST(prestart_waits_paused_then_claim_hands_over_identity)
{
	setup();
	make_template();
	struct sbx s;
	sbx_init(&s, "warm1", NULL);
	char pool_sb[300], err[512] = "";
	snprintf(pool_sb, sizeof pool_sb, "%s/pool/warm1", base);
	s.spec.sandbox_dir = pool_sb; /* the pool keeps its layer apart until a claim */
	pid_t pid = vm_prestart(&s.spec, err, sizeof err);
	if (!CHECK(pid > 0)) {
		fprintf(stderr, "  vm_prestart: %s\n", err);
		teardown();
		return;
	}
	CHECK(vm_alive(pid, &s.spec));
	CHECK(exists(s.run, "control.sock") && exists(pool_sb, "disk.layer"));
	CHECK(!exists(s.run, "fake-init.log")); /* paused: no /init yet */
	/* The claim finds the layer where the sandbox keeps it. */
	char from[600], to[600];
	snprintf(from, sizeof from, "%s/disk.layer", pool_sb);
	snprintf(to, sizeof to, "%s/disk.layer", s.sb);
	char sbs[300];
	snprintf(sbs, sizeof sbs, "%s/sb", base);
	CHECK(mkdir(sbs, 0755) == 0 && mkdir(s.sb, 0755) == 0);
	CHECK(rename(from, to) == 0);
	s.spec.sandbox_dir = s.sb;
	s.spec.init_json = "{\"sandboxId\":\"warm1\",\"accessToken\":\"tokw\"}";
	if (!CHECK_EQ_INT(vm_claim(pid, &s.spec, err, sizeof err), 0))
		fprintf(stderr, "  vm_claim: %s\n", err);
	CHECK(file_has(s.run, "fake-init.log", "\"sandboxId\":\"warm1\""));
	CHECK(file_has(s.run, "fake-init.log", "\"entropy\":\""));
	CHECK(vm_alive(pid, &s.spec));
	/* From here it is an ordinary sandbox: pause, resume, stop. */
	CHECK_EQ_INT(vm_pause(pid, &s.spec, err, sizeof err), 0);
	pid = vm_resume(&s.spec, err, sizeof err);
	CHECK(pid > 0);
	CHECK(file_has(s.run, "fake-init.log", "token=tokw 204"));
	CHECK_EQ_INT(vm_stop(pid, &s.spec, 2000), 0);
	CHECK(pid_gone(pid));
	teardown();
}

TEST(prestart_and_claim_failures_leave_nothing)
{
	setup();
	struct sbx s;
	sbx_init(&s, "warm2", NULL);
	char err[512] = "";
	CHECK_EQ_INT(vm_prestart(&s.spec, err, sizeof err), -1); /* no template yet */
	CHECK(strstr(err, "no template snapshot") != NULL);
	make_template();
	setenv("TEST_VM_FAKE", "die", 1);
	CHECK_EQ_INT(vm_prestart(&s.spec, err, sizeof err), -1);
	CHECK(strstr(err, "checksum mismatch") != NULL);
	CHECK(access(s.run, F_OK) < 0 && !exists(s.sb, "disk.layer"));
	setenv("TEST_VM_FAKE", "ok", 1);
	/* A pool VMM that died while it waited: the claim says so and cleans up. */
	pid_t pid = vm_prestart(&s.spec, err, sizeof err);
	if (CHECK(pid > 0)) {
		kill(pid, SIGKILL);
		while (!pid_gone(pid) && waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		s.spec.init_json = "{\"sandboxId\":\"warm2\"}";
		CHECK_EQ_INT(vm_claim(pid, &s.spec, err, sizeof err), -1);
		CHECK(strstr(err, "not its waiting VMM") != NULL);
		CHECK(access(s.run, F_OK) < 0 && !exists(s.sb, "disk.layer"));
		/* The caller's cold path then works with the same spec. */
		pid = vm_start(&s.spec, err, sizeof err);
		CHECK(pid > 0);
		CHECK_EQ_INT(vm_stop(pid, &s.spec, 2000), 0);
	}
	/* Shutdown reaches a VMM that is still paused. */
	pid = vm_prestart(&s.spec, err, sizeof err);
	if (CHECK(pid > 0)) {
		CHECK_EQ_INT(vm_stop(pid, &s.spec, 2000), 0);
		CHECK(pid_gone(pid));
	}
	teardown();
}

/* --- with the real VMM ---------------------------------------------------------------- */

/* Why a real guest cannot run here, or NULL if it can. */
static const char *real_guest_unavailable(const char *build)
{
	static char why[300];
	const char *need[] = {"cube-vmm", "guest/vmlinux", "guest/rootfs.ext4"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(why, sizeof why, "%s/%s", build, need[i]);
		if (access(why, R_OK) < 0) {
			snprintf(why, sizeof why, "%s/%s missing (make build/cube-vmm guest-kernel guest-rootfs)",
				 build, need[i]);
			return why;
		}
	}
	if (access("/dev/kvm", R_OK | W_OK) < 0)
		return "no usable /dev/kvm";
	if (access("/sys/module/kvm_pvm", F_OK) == 0)
		return "/dev/kvm is PVM (kvm_pvm), which cannot boot a stock Linux guest; "
		       "qemu-tests/l1/tests/20-api-vm.sh runs this nested";
	if (access("/sys/module/kvm_intel", F_OK) < 0 && access("/sys/module/kvm_amd", F_OK) < 0)
		return "neither kvm_intel nor kvm_amd is loaded";
	return NULL;
}

TEST(real_guest_lifecycle)
{
	const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
	const char *why = real_guest_unavailable(build);
	if (why) {
		printf("SKIP %s: %s\n", test_current, why);
		return;
	}
	setup();
	unsetenv("TEST_VM_FAKE");
	char vmm[300], kernel[300], rootfs[300], err[512];
	snprintf(vmm, sizeof vmm, "%s/cube-vmm", build);
	snprintf(kernel, sizeof kernel, "%s/guest/vmlinux", build);
	snprintf(rootfs, sizeof rootfs, "%s/guest/rootfs.ext4", build);
	/* template_build looks for cube-vmm next to this program. */
	char link[600];
	snprintf(link, sizeof link, "%.*s/cube-vmm", (int)(strrchr(self_exe, '/') - self_exe), self_exe);
	char *real = realpath(vmm, NULL);
	unlink(link);
	CHECK(real && symlink(real, link) == 0);
	free(real);
	char dir[300];
	snprintf(dir, sizeof dir, "%s/tpl", base);
	int rc = template_build(dir, kernel, rootfs, 1, 256, NULL, NULL, NULL, err, sizeof err);
	unlink(link);
	if (!CHECK_EQ_INT(rc, 0)) {
		fprintf(stderr, "  template_build: %s\n", err);
		teardown();
		return;
	}
	struct sbx s;
	sbx_init(&s, "real1", "{\"sandboxId\":\"real1\"}");
	s.spec.vmm_path = vmm;
	pid_t pid = vm_start(&s.spec, err, sizeof err);
	if (CHECK(pid > 0)) {
		CHECK(vm_alive(pid, &s.spec));
		if (!CHECK_EQ_INT(vm_pause(pid, &s.spec, err, sizeof err), 0))
			fprintf(stderr, "  vm_pause: %s\n", err);
		pid = vm_resume(&s.spec, err, sizeof err);
		if (!CHECK(pid > 0))
			fprintf(stderr, "  vm_resume: %s\n", err);
		CHECK_EQ_INT(vm_stop(pid, &s.spec, 5000), 0);
	} else {
		fprintf(stderr, "  vm_start: %s\n", err);
	}
	teardown();
}
