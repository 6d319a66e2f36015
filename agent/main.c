/*
 * main.c - cube-agent: start-up, PID1 duties, identity handover and routing.
 *
 * In a sandbox the agent is PID1 of the guest; in tests it is an ordinary
 * process. Either way it serves envd on one port and the code interpreter on
 * another, over TCP and (in a guest) over vsock, which is how the host
 * reaches it without any network configuration.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/random.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/b64.h"
#include "agent.h"
#include "portbridge.h"

struct agent agent;

struct options {
	const char *listen;
	int envd_port;
	int interp_port;
	bool vsock;
	const char *init_file;
	const char *spool_dir;
};

/* --- identity handover: POST /init ------------------------------------------ *
 * Body (every field optional):
 *   {"sandboxId":"...", "envVars":{"K":"V"}, "accessToken":"...",
 *    "timestamp":"2026-11-23T11:00:00.123Z", "entropy":"<base64>",
 *    "defaultUser":"user", "defaultWorkdir":"/app"}
 * The host sends it after every boot or snapshot restore, so a clone learns
 * who it is, gets a correct clock and fresh randomness that no other clone
 * shares. Once a token is set, changing the identity needs that token. */

static void set_env_vars(const struct json *vars)
{
	char **env = calloc(vars->count + 1, sizeof *env);
	size_t n = 0;
	if (!env)
		abort();
	for (struct json *m = vars->child; m; m = m->next) {
		if (m->type != JSON_STRING || !m->key_len || strchr(m->key, '=') || strlen(m->key) != m->key_len)
			continue;
		if (asprintf(&env[n], "%s=%s", m->key, m->str) < 0)
			abort();
		n++;
	}
	env_free(agent.env);
	agent.env = env;
}

/* Parses RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac]Z" or integer unix ms. */
static bool parse_timestamp(const struct json *ts, struct timespec *out)
{
	if (ts->type == JSON_NUMBER && ts->is_int) {
		out->tv_sec = ts->i / 1000;
		out->tv_nsec = (ts->i % 1000) * 1000000;
		return true;
	}
	if (ts->type != JSON_STRING)
		return false;
	struct tm tm = {0};
	const char *rest = strptime(ts->str, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!rest)
		return false;
	long nsec = 0;
	if (*rest == '.') {
		long scale = 100000000;
		for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
			nsec += (*rest - '0') * scale;
	}
	if (*rest != 'Z' && *rest != 'z')
		return false;
	out->tv_sec = timegm(&tm);
	out->tv_nsec = nsec;
	return true;
}

static void add_entropy(const char *b64)
{
	size_t n = strlen(b64);
	struct {
		struct rand_pool_info info;
		unsigned char data[512];
	} pool;
	if (b64_decoded_maxlen(n) > sizeof pool.data)
		return;
	ssize_t got = b64_decode(b64, n, pool.data);
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (got <= 0 || fd < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	/* Credit the entropy (so the guest's pool counts as seeded) only in a
	 * guest; elsewhere just mix it in. */
	pool.info.entropy_count = (int)got * 8;
	pool.info.buf_size = (int)got;
	if (!agent.guest || ioctl(fd, RNDADDENTROPY, &pool) < 0) {
		if (write(fd, pool.data, (size_t)got) < 0)
			log_warn("init.entropy", "write to /dev/urandom failed: %s", strerror(errno));
	}
	close(fd);
}

/* Applies an identity document. Returns NULL or an error message. */
static const char *apply_identity(const struct json *doc)
{
	if (doc->type != JSON_OBJECT)
		return "body must be a JSON object";
	const struct json *vars = json_get(doc, "envVars");
	if (vars && vars->type != JSON_OBJECT)
		return "envVars must be an object of strings";
	const struct json *ts = json_get(doc, "timestamp");
	struct timespec now;
	if (ts && !parse_timestamp(ts, &now))
		return "timestamp must be RFC 3339 (UTC, Z) or unix milliseconds";
	const char *user = json_get_str(doc, "defaultUser");
	struct user u;
	if (user && user_lookup(user, &u) < 0)
		return "defaultUser does not exist";
	const char *workdir = json_get_str(doc, "defaultWorkdir");
	struct stat wd;
	if (workdir && *workdir &&
	    (workdir[0] != '/' || strlen(workdir) >= sizeof agent.default_workdir || stat(workdir, &wd) < 0 ||
	     !S_ISDIR(wd.st_mode)))
		return "defaultWorkdir must be an existing directory, given by its absolute path";

	const char *id = json_get_str(doc, "sandboxId");
	if (id) {
		snprintf(agent.sandbox_id, sizeof agent.sandbox_id, "%s", id);
		log_set_sandbox(agent.sandbox_id);
	}
	if (vars) {
		set_env_vars(vars);
		interp_env_changed();
	}
	const struct json *tok = json_get(doc, "accessToken");
	if (tok && tok->type == JSON_STRING) {
		free(agent.access_token);
		agent.access_token = tok->len ? strdup(tok->str) : NULL;
	}
	if (user)
		snprintf(agent.default_user, sizeof agent.default_user, "%s", user);
	if (workdir)
		snprintf(agent.default_workdir, sizeof agent.default_workdir, "%s", workdir);
	/* Only a guest agent owns the clock: CLOCK_REALTIME is not namespaced,
	 * so a test agent (even as PID1 of a pid namespace) must not set it. */
	if (ts && agent.guest && clock_settime(CLOCK_REALTIME, &now) < 0)
		log_warn("init.clock", "clock_settime: %s", strerror(errno));
	const char *entropy = json_get_str(doc, "entropy");
	if (entropy)
		add_entropy(entropy);
	log_info("init", "sandbox=%s env_vars=%zu token=%s", agent.sandbox_id, vars ? vars->count : 0,
		 agent.access_token ? "set" : "none");
	return NULL;
}

static void handle_init(struct http_conn *c, struct http_req *req)
{
	if (!check_access_token(c, req))
		return;
	char err[160];
	struct json *doc =
	    json_parse(req->body_len ? req->body : "{}", req->body_len ? req->body_len : 2, err, sizeof err);
	if (!doc) {
		http_respond_error(c, 400, "malformed JSON: %s", err);
		return;
	}
	const char *msg = apply_identity(doc);
	json_free(doc);
	if (msg)
		http_respond_error(c, 400, "%s", msg);
	else
		http_respond(c, 204, NULL, NULL, 0);
}

static void handle_envs(struct http_conn *c, struct http_req *req)
{
	if (!check_access_token(c, req))
		return;
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	for (char **e = agent.env; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		struct buf key = BUF_INIT;
		buf_append(&key, *e, (size_t)(eq - *e));
		jw_kstr(&w, key.data, eq + 1);
		buf_free(&key);
	}
	jw_end(&w);
	http_respond(c, 200, "application/json", b.data, b.len);
	buf_free(&b);
}

/* --- routing ------------------------------------------------------------------- */

static bool path_has_prefix(const char *path, const char *prefix)
{
	return strncmp(path, prefix, strlen(prefix)) == 0;
}

/* "/<package>.<Service>/<Method>": the shape of a Connect procedure. */
static bool looks_like_rpc(const char *p)
{
	const char *slash = strchr(p + 1, '/');
	if (p[0] != '/' || !slash || slash[1] == '\0' || strchr(slash + 1, '/'))
		return false;
	const char *dot = memchr(p + 1, '.', (size_t)(slash - p - 1));
	return dot && dot > p + 1 && dot + 1 < slash;
}

static void rpc_unimplemented(struct http_conn *c, const char *path)
{
	/* Connect answers an unknown procedure with 404 and code unimplemented. */
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	jw_kstr(&w, "code", "unimplemented");
	jw_key(&w, "message");
	struct buf msg = BUF_INIT;
	buf_printf(&msg, "%s is not implemented", path);
	jw_str(&w, msg.data);
	jw_end(&w);
	http_respond(c, 404, "application/json", b.data, b.len);
	buf_free(&msg);
	buf_free(&b);
}

static void envd_handle(struct http_conn *c, struct http_req *req, void *arg)
{
	const char *p = req->path;
	if (strcmp(p, "/health") == 0) {
		http_respond(c, 204, NULL, NULL, 0);
	} else if (strcmp(p, "/init") == 0) {
		if (strcmp(req->method, "POST") == 0)
			handle_init(c, req);
		else
			http_respond_error(c, 405, "/init needs POST");
	} else if (strcmp(p, "/envs") == 0) {
		handle_envs(c, req);
	} else if (strcmp(p, "/files") == 0) {
		files_handle(c, req);
	} else if (path_has_prefix(p, "/process.Process/") || path_has_prefix(p, "/filesystem.Filesystem/")) {
		const struct rpc_method *methods = p[1] == 'p' ? process_methods : filesystem_methods;
		if (!access_token_ok(req))
			rpc_error_conn(c, false, "unauthenticated", "invalid or missing access token (X-Access-Token)");
		else if (!rpc_dispatch(c, req, methods))
			rpc_unimplemented(c, p);
	} else if (looks_like_rpc(p)) {
		rpc_unimplemented(c, p);
	} else {
		http_respond_error(c, 404, "no route for %s %s", req->method, p);
	}
}

/* Uploads may be large (they are spooled to disk); everything else is a
 * JSON message and gets a modest limit. */
static uint64_t envd_body_limit(const struct http_head *h, void *arg)
{
	if (strncmp(h->target, "/files", 6) == 0 && (h->target[6] == '?' || h->target[6] == '\0'))
		return 64ull << 30;
	return 16u << 20;
}

/* --- start-up --------------------------------------------------------------------- */

/* As the guest's PID1 nothing is mounted yet. Failures are logged, not
 * fatal: a half-working sandbox can still be debugged, a dead one cannot. */
static void pid1_mounts(void)
{
	static const struct {
		const char *src, *dst, *type, *data;
	} m[] = {
	    {"proc", "/proc", "proc", NULL},
	    {"sysfs", "/sys", "sysfs", NULL},
	    {"cgroup2", "/sys/fs/cgroup", "cgroup2", NULL},
	    {"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
	    {"devpts", "/dev/pts", "devpts", "mode=0620,ptmxmode=0666"},
	    {"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
	    {"tmpfs", "/run", "tmpfs", "mode=0755"},
	    {"tmpfs", "/tmp", "tmpfs", "mode=1777"},
	};
	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
		mkdir(m[i].dst, 0755);
		if (mount(m[i].src, m[i].dst, m[i].type, MS_NOSUID, m[i].data) < 0 && errno != EBUSY)
			log_warn("pid1.mount", "%s: %s", m[i].dst, strerror(errno));
	}
}

/* The kernel only knows a hostname from ip= on its command line; the
 * template's /etc/hostname is what users expect to see. */
static void pid1_hostname(void)
{
	char name[65] = "";
	FILE *f = fopen("/etc/hostname", "re");
	if (f) {
		if (!fgets(name, sizeof name, f))
			name[0] = 0;
		fclose(f);
	}
	name[strcspn(name, " \t\r\n")] = 0;
	if (name[0] && sethostname(name, strlen(name)) < 0)
		log_warn("pid1.hostname", "%s: %s", name, strerror(errno));
}

/* Nothing else brings the loopback interface up in a guest (the kernel does
 * only with ip= on its command line), and servers on 127.0.0.1 or ::1 are
 * what the port bridge connects to. Up is enough: the kernel then gives lo
 * 127.0.0.1/8 and ::1 itself. */
static void pid1_loopback(void)
{
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool ok = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
	if (ok && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		ok = ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
	}
	if (!ok)
		log_warn("pid1.loopback", "cannot bring lo up: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* reboot, halt and poweroff (busybox and others) ask PID1 with SIGTERM,
 * SIGUSR1 and SIGUSR2. A microVM has no power-off device, so all three
 * end in a reboot, which the VMM takes as "the guest is done". */
static void on_guest_shutdown(void *arg, int signo)
{
	log_info("pid1.shutdown", "signal %d: stopping every process, then rebooting", signo);
	kill(-1, SIGTERM);
	sleep(1);
	kill(-1, SIGKILL);
	sync();
	reboot(RB_AUTOBOOT);
	log_error("pid1.shutdown", "reboot: %s", strerror(errno));
}

static int listen_vsock(int port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = (unsigned)port};
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 128) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void serve(struct http_server *s, const struct options *o, int port, const char *what)
{
	if (http_server_listen_tcp(s, o->listen, port) < 0) {
		log_error("agent.listen", "%s on %s:%d: %s", what, o->listen ? o->listen : "*", port, strerror(errno));
		exit(1);
	}
	if (o->vsock) {
		int fd = listen_vsock(port);
		if (fd < 0 || http_server_listen_fd(s, fd) < 0)
			log_warn("agent.listen", "%s on vsock port %d: %s", what, port, strerror(errno));
	}
	log_info("agent.listen", "%s on port %d%s", what, port, o->vsock ? " (tcp+vsock)" : "");
}

/* The bridge to every other guest port (portbridge.h) is offered over vsock
 * only: on TCP it would let the guest's network reach loopback-only
 * servers. */
static struct portbridge *serve_bridge(const struct options *o)
{
	if (!o->vsock)
		return NULL;
	struct portbridge *pb = portbridge_new(agent.loop, NULL);
	int fd = listen_vsock(PORTBRIDGE_VSOCK_PORT);
	if (!pb || fd < 0 || portbridge_listen_fd(pb, fd) < 0) {
		log_warn("agent.listen", "port bridge on vsock port %d: %s", PORTBRIDGE_VSOCK_PORT, strerror(errno));
		portbridge_free(pb);
		return NULL;
	}
	log_info("agent.listen", "port bridge on vsock port %d", PORTBRIDGE_VSOCK_PORT);
	return pb;
}

static void on_terminate(void *arg, int signo)
{
	log_info("agent.stop", "signal %d", signo);
	loop_stop(agent.loop);
}

static void usage(void)
{
	fprintf(stderr, "usage: cube-agent [--listen ADDR] [--envd-port N] [--interp-port N] [--vsock]\n"
			"                  [--init FILE.json] [--spool-dir DIR] [--guest] [--debug]\n"
			"  --guest   run as a sandbox's PID1: mount /proc, /sys, /dev..., listen on vsock,\n"
			"            and let POST /init set the clock (the kernel passes it after \" -- \")\n");
	exit(2);
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"envd-port", required_argument, NULL, 'e'},
	    {"interp-port", required_argument, NULL, 'i'},
	    {"vsock", no_argument, NULL, 'v'},
	    {"init", required_argument, NULL, 'I'},
	    {"spool-dir", required_argument, NULL, 's'},
	    {"debug", no_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {"guest", no_argument, NULL, 'g'},
	    {NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l': o->listen = optarg; break;
		case 'e': o->envd_port = atoi(optarg); break;
		case 'i': o->interp_port = atoi(optarg); break;
		case 'v': o->vsock = true; break;
		case 'I': o->init_file = optarg; break;
		case 's': o->spool_dir = optarg; break;
		case 'd': log_set_level(LOG_DEBUG); break;
		case 'g':
			agent.guest = true;
			o->vsock = true;
			break;
		default:
			/* The kernel hands PID1 any command-line word it does not
			 * know; a guest must boot anyway. */
			if (!agent.is_pid1)
				usage();
		}
	}
	if (agent.is_pid1) { /* started by a kernel as init: always the guest agent */
		agent.guest = true;
		o->vsock = true;
	} else if (optind != argc || o->envd_port <= 0 || o->envd_port > 65535 || o->interp_port <= 0 ||
		   o->interp_port > 65535)
		usage();
}

static void load_init_file(const char *path)
{
	struct buf b = BUF_INIT;
	FILE *f = fopen(path, "re");
	if (!f) {
		log_error("init.file", "%s: %s", path, strerror(errno));
		exit(1);
	}
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	char err[160];
	struct json *doc = json_parse(b.data ? b.data : "", b.len, err, sizeof err);
	const char *msg = doc ? apply_identity(doc) : err;
	if (msg) {
		log_error("init.file", "%s: %s", path, msg);
		exit(1);
	}
	json_free(doc);
	buf_free(&b);
}

int main(int argc, char **argv)
{
	struct options o = {.envd_port = ENVD_PORT, .interp_port = INTERP_PORT};
	log_set_component("agent");
	agent.is_pid1 = getpid() == 1;
	parse_options(argc, argv, &o);
	if (agent.guest) {
		pid1_mounts();
		pid1_hostname();
		pid1_loopback();
	}

	struct user u;
	snprintf(agent.default_user, sizeof agent.default_user, "%s", user_lookup("user", &u) == 0 ? "user" : "root");
	agent.env = calloc(1, sizeof *agent.env);
	agent.loop = loop_new();
	if (!agent.loop) {
		log_error("agent.start", "event loop: %s", strerror(errno));
		return 1;
	}
	if (o.init_file)
		load_init_file(o.init_file);
	if (!agent.guest) { /* a guest PID1 must never exit on a signal */
		loop_on_signal(agent.loop, SIGTERM, on_terminate, NULL);
		loop_on_signal(agent.loop, SIGINT, on_terminate, NULL);
	} else if (agent.is_pid1) {
		loop_on_signal(agent.loop, SIGTERM, on_guest_shutdown, NULL);
		loop_on_signal(agent.loop, SIGUSR1, on_guest_shutdown, NULL);
		loop_on_signal(agent.loop, SIGUSR2, on_guest_shutdown, NULL);
	}

	struct http_server_config envd_cfg = {
	    .body_limit = envd_body_limit,
	    .spool_dir = o.spool_dir,
	    .server_name = "cube-agent",
	};
	struct http_server *envd = http_server_new(agent.loop, &envd_cfg, envd_handle, NULL);
	struct http_server_config interp_cfg = {.server_name = "cube-agent", .spool_dir = o.spool_dir};
	struct http_server *interp = http_server_new(agent.loop, &interp_cfg, interp_handle, NULL);
	serve(envd, &o, o.envd_port, "envd");
	serve(interp, &o, o.interp_port, "interpreter");
	struct portbridge *bridge = serve_bridge(&o);
	interp_init();
	log_info("agent.ready", "envd %s, pid %d", ENVD_VERSION, (int)getpid());

	for (;;) {
		loop_run(agent.loop);
		if (!agent.guest)
			break;
		log_error("agent.loop", "event loop stopped; a guest PID1 keeps running it");
	}
	http_server_free(envd);
	http_server_free(interp);
	portbridge_free(bridge);
	return 0;
}
