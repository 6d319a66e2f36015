/* test_templates.c - template builds, their status and logs, delete, and the
 * `cube` CLI against a real cube-api (fake backend, no KVM). */
#include <arpa/inet.h>
#include <dirent.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../lib/fileio.h"
#include "../../lib/http.h"
#include "../../lib/json.h"
#include "../../lib/sha256.h"
#include "../api.h"
#include "../cli.h"
#include "../registry.h"
#include "../template_jobs.h"
#include "fake_registry.h"
#include "fake_vm.h"
#include "oci_fixture.h"
#include "../../lib/tests/test.h"

#define KEY		"e2b_0123456789abcdef0123456789abcdef01234567"
#define API_HARNESS_KEY KEY
#include "api_harness.h"

static char top[256], state_dir[256], run_dir[256], rootfs[300], not_ext4[300], kernel[300];
static const char *inst_kernel = kernel;

/* --- fixture -------------------------------------------------------------------------- */

static void write_text(const char *path, const char *text)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s", path);
	*strrchr(dir, '/') = '\0';
	dir_make_all(dir, 0755);
	if (file_replace(path, text, strlen(text), 0644, false) < 0)
		abort();
}

/* A sparse 3 MiB file with an ext4 superblock magic and some data. */
static void make_image(const char *path, bool ext4)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	unsigned char magic[2] = {0x53, 0xEF};
	if (fd < 0 || ftruncate(fd, 3 << 20) < 0 || (ext4 && pwrite(fd, magic, 2, 1080) != 2) ||
	    pwrite(fd, "data", 4, 2 << 20) != 4)
		abort();
	close(fd);
}

static void setup(void)
{
	if (top[0])
		return;
	snprintf(top, sizeof top, "/tmp/test_templates.%d", (int)getpid());
	snprintf(state_dir, sizeof state_dir, "%s/state", top);
	snprintf(run_dir, sizeof run_dir, "%s/run", top);
	snprintf(rootfs, sizeof rootfs, "%s/src/rootfs.ext4", top);
	snprintf(not_ext4, sizeof not_ext4, "%s/src/plain.img", top);
	dir_make_all(run_dir, 0755);
	dir_make_all(state_dir, 0755);
	char path[512], text[512];
	snprintf(path, sizeof path, "%s/src", top);
	dir_make_all(path, 0755);
	make_image(rootfs, true);
	make_image(not_ext4, false);
	snprintf(kernel, sizeof kernel, "%s/src/vmlinux", top);
	write_text(kernel, "a kernel");
	tbuild_agent_path = kernel; /* the imports inject it: any file does */
	uint8_t d[32];
	char hex[65];
	sha256(KEY, strlen(KEY), d);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", d[i]);
	snprintf(path, sizeof path, "%s/config/apikeys.json", state_dir);
	snprintf(text, sizeof text, "{\"keys\":[{\"id\":\"a\",\"name\":\"t\",\"created\":1,\"sha256\":\"%s\"}]}\n",
		 hex);
	write_text(path, text);
	snprintf(path, sizeof path, "%s/templates/base/template.json", state_dir);
	write_text(path, "{\"templateID\":\"base\",\"name\":\"base\",\"state\":\"ready\",\"cpuCount\":2,"
			 "\"memoryMB\":512,\"createdAt\":\"2026-01-01T00:00:00.000Z\"}");
}

/* The backend's template_build, steerable: fail, or hold until released. */
static int build_fail;
static int build_hold;
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;

static int steered_build(const char *dir, const char *kern, const char *rfs, int cpus, int mem_mib,
			 struct template_start *start, void (*progress)(void *arg, int pct, const char *phase),
			 void *arg, char *err, size_t errsz)
{
	progress(arg, 0, "boot");
	progress(arg, 50, "agent");
	pthread_mutex_lock(&hold_mu);
	while (build_hold)
		pthread_cond_wait(&hold_cv, &hold_mu);
	pthread_mutex_unlock(&hold_mu);
	if (__atomic_load_n(&build_fail, __ATOMIC_SEQ_CST)) {
		snprintf(err, errsz, "fake backend: the agent did not answer");
		return -1;
	}
	return fake_template_build(dir, kern, rfs, cpus, mem_mib, start, progress, arg, err, errsz);
}

static void set_hold(int on)
{
	pthread_mutex_lock(&hold_mu);
	build_hold = on;
	pthread_cond_broadcast(&hold_cv);
	pthread_mutex_unlock(&hold_mu);
}

static bool inst_start(struct inst *in)
{
	setup();
	struct vm_ops ops = fake_vm_ops;
	ops.template_build = steered_build;
	struct api_config cfg = {.state_dir = state_dir,
				 .run_dir = run_dir,
				 .workers = 2,
				 .pool_size = 0,
				 .base_kernel = inst_kernel,
				 .base_rootfs = "/nonexistent/rootfs.ext4",
				 .templates_dir = "/nonexistent/templates"};
	return inst_run(in, &cfg, &ops);
}

/* POST /templates from the test rootfs; the build id in bid. */
static int create_tpl(struct inst *in, const char *name, char bid[64])
{
	char body[1024];
	snprintf(body, sizeof body, "{\"name\":\"%s\",\"fromRootfs\":\"%s\",\"cpuCount\":1,\"memoryMB\":256}", name,
		 rootfs);
	struct reply r;
	int s = call(in, "POST", "/templates", body, &r);
	snprintf(bid, 64, "%s", json_get_str(r.j, "buildID") ? json_get_str(r.j, "buildID") : "");
	reply_free(&r);
	return s;
}

/* Polls the status until it is not building; the final status in r. */
static const char *wait_build(struct inst *in, const char *name, const char *bid, struct reply *r)
{
	char path[256];
	snprintf(path, sizeof path, "/templates/%s/builds/%s/status", name, bid);
	for (int i = 0; i < 300; i++) {
		if (call(in, "GET", path, NULL, r) != 200)
			return "no status";
		const char *st = json_get_str(r->j, "status");
		if (st && strcmp(st, "building") != 0 && strcmp(st, "waiting") != 0)
			return st;
		reply_free(r);
		usleep(20000);
	}
	return "timeout";
}

static bool has_step(const struct json *entries, const char *step)
{
	for (const struct json *e = entries ? entries->child : NULL; e; e = e->next)
		if (json_get_str(e, "step") && strcmp(json_get_str(e, "step"), step) == 0)
			return true;
	return false;
}

static bool path_there(const char *fmt, const char *name)
{
	char path[600];
	snprintf(path, sizeof path, fmt, state_dir, name);
	return access(path, F_OK) == 0;
}

static bool same_file(const char *a, const char *b)
{
	size_t la, lb;
	char *x = file_read_all(a, 8 << 20, &la), *y = file_read_all(b, 8 << 20, &lb);
	bool same = x && y && la == lb && memcmp(x, y, la) == 0;
	free(x);
	free(y);
	return same;
}

static void docker_archive(struct buf *out);
static struct json *read_json_file(const char *fmt, const char *name);

/* --- builds ------------------------------------------------------------------------------ */

TEST(a_rootfs_build_goes_through_its_phases_to_ready)
{
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	char bid[64];
	struct reply r;
	char body[1024];
	snprintf(body, sizeof body, "{\"name\":\"mine\",\"fromRootfs\":\"%s\",\"cpuCount\":1,\"memoryMB\":256}",
		 rootfs);
	CHECK_EQ_INT(call(&in, "POST", "/templates", body, &r), 202);
	CHECK_STREQ(json_get_str(r.j, "templateID"), "mine");
	snprintf(bid, sizeof bid, "%s", json_get_str(r.j, "buildID") ? json_get_str(r.j, "buildID") : "");
	CHECK_EQ_INT(strlen(bid), 36);
	CHECK_EQ_INT(json_get_int(r.j, "cpuCount", 0), 1);
	CHECK_EQ_INT(json_get(r.j, "names")->count, 1);
	reply_free(&r);

	CHECK_STREQ(wait_build(&in, "mine", bid, &r), "ready");
	CHECK_STREQ(json_get_str(r.j, "phase"), "ready");
	CHECK_EQ_INT(json_get_int(r.j, "progress", 0), 100);
	CHECK_STREQ(json_get_str(r.j, "buildID"), bid);
	CHECK(json_get_str(r.j, "finishedAt") != NULL);
	const struct json *entries = json_get(r.j, "logEntries");
	CHECK(has_step(entries, "queued") && has_step(entries, "rootfs") && has_step(entries, "booting") &&
	      has_step(entries, "snapshotting") && has_step(entries, "ready"));
	CHECK(json_get(r.j, "logs") && json_get(r.j, "logs")->count == entries->count);
	CHECK(json_get(r.j, "reason") == NULL);
	size_t total = entries->count;
	reply_free(&r);

	/* The copy is the template's own, holes and data alike; the snapshot is there. */
	char copy[600];
	snprintf(copy, sizeof copy, "%s/templates/mine/rootfs.ext4", state_dir);
	CHECK(same_file(rootfs, copy));
	CHECK(path_there("%s/templates/%s/snap", "mine"));
	CHECK(path_there("%s/templates/%s/build.log", "mine"));

	/* The listing and the lookup know the build. */
	CHECK_EQ_INT(call(&in, "GET", "/templates/mine", NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "buildStatus"), "ready");
	CHECK_STREQ(json_get_str(r.j, "buildID"), bid);
	CHECK_EQ_INT(json_get_int(r.j, "memoryMB", 0), 256);
	CHECK_EQ_INT(json_get_int(r.j, "diskSizeMB", 0), 3);
	reply_free(&r);

	/* Paging the log: logsOffset and limit; level filters. */
	char path[256];
	snprintf(path, sizeof path, "/templates/mine/builds/%s/status?logsOffset=2&limit=1", bid);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK_EQ_INT(json_get(r.j, "logEntries")->count, 1);
	reply_free(&r);
	snprintf(path, sizeof path, "/templates/mine/builds/%s/status?logsOffset=%zu", bid, total);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK_EQ_INT(json_get(r.j, "logEntries")->count, 0);
	reply_free(&r);
	snprintf(path, sizeof path, "/templates/mine/builds/%s/status?level=error", bid);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK_EQ_INT(json_get(r.j, "logEntries")->count, 0);
	reply_free(&r);

	/* The logs route, the build id alone, and misses. */
	snprintf(path, sizeof path, "/templates/mine/builds/%s/logs?limit=3", bid);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK_EQ_INT(json_get(r.j, "logs")->count, 3);
	CHECK(json_get_str(json_get(r.j, "logs")->child, "timestamp") != NULL);
	reply_free(&r);
	snprintf(path, sizeof path, "/templates/builds/%s", bid);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "templateID"), "mine");
	reply_free(&r);
	CHECK_EQ_INT(status_of(&in, "GET", "/templates/builds/00000000-0000-4000-8000-000000000000", NULL), 404);
	CHECK_EQ_INT(status_of(&in, "GET", "/templates/mine/builds/other/status", NULL), 404);
	CHECK_EQ_INT(status_of(&in, "GET", "/templates/nope/builds/x/status", NULL), 404);
	/* A template without build.json (the image's) reports its state. */
	CHECK_EQ_INT(call(&in, "GET", "/templates/base/builds/base/status", NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "status"), "ready");
	reply_free(&r);

	/* A second create of a ready template is refused. */
	CHECK_EQ_INT(create_tpl(&in, "mine", bid), 409);
	inst_stop(&in);
}

TEST(create_requests_are_checked)
{
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	char body[1024];
	static const struct {
		const char *fmt; /* %s: the test rootfs */
		int status;
		const char *needle;
	} cases[] = {
	    {"not json", 400, NULL},
	    {"[]", 400, "object"},
	    {"{\"fromRootfs\":\"%s\"}", 400, "name is required"},
	    {"{\"name\":\"../x\",\"fromRootfs\":\"%s\"}", 400, "name must be"},
	    {"{\"name\":\"builds\",\"fromRootfs\":\"%s\"}", 400, "name must be"},
	    {"{\"name\":\"x\"}", 400, "exactly one"},
	    {"{\"name\":\"x\",\"fromRootfs\":\"%s\",\"fromImage\":\"alpine\"}", 400, "exactly one"},
	    {"{\"name\":\"x\",\"fromRootfs\":\"relative.ext4\"}", 400, "absolute"},
	    {"{\"name\":\"x\",\"fromRootfs\":\"/nonexistent.ext4\"}", 400, "No such file"},
	    {"{\"name\":\"x\",\"fromRootfs\":\"%s\",\"cpuCount\":0}", 400, "cpuCount"},
	    {"{\"name\":\"x\",\"fromRootfs\":\"%s\",\"memoryMB\":\"big\"}", 400, "memoryMB"},
	    {"{\"name\":\"x\",\"fromRootfs\":\"%s\",\"probePort\":80}", 400, "fromImage only"},
	    {"{\"name\":\"x\",\"fromImage\":\"alpine\",\"probePort\":0}", 400, "probePort"},
	    {"{\"name\":\"x\",\"fromImage\":\"alpine\",\"exposePorts\":[80,\"x\"]}", 400, "exposePorts"},
	    {"{\"name\":\"x\",\"fromImage\":\"alpine\",\"envVars\":{\"A\":1}}", 400, "envVars"},
	    {"{\"name\":\"x\",\"fromImage\":\"Bad Ref!\",\"envVars\":{\"A\":\"1\"}}", 400, "Bad Ref!"},
	    {"{\"name\":\"upload\",\"fromImage\":\"alpine\"}", 400, "name must be"},
	    {"{\"name\":\"x\",\"dockerfile\":\"FROM alpine\"}", 501, "Dockerfile"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(body, sizeof body, cases[i].fmt, rootfs);
		struct reply r;
		int s = call(&in, "POST", "/templates", body, &r);
		bool ok = CHECK_EQ_INT(s, cases[i].status) && CHECK(json_get_int(r.j, "code", 0) == cases[i].status);
		if (cases[i].needle)
			ok = CHECK(strstr(r.body, cases[i].needle) != NULL) && ok;
		if (!ok)
			fprintf(stderr, "  case %zu: %d %s\n", i, s, r.body);
		reply_free(&r);
	}
	snprintf(body, sizeof body, "{\"name\":\"x\",\"fromRootfs\":\"%s\"}", not_ext4);
	struct reply r;
	CHECK_EQ_INT(call(&in, "POST", "/templates", body, &r), 400);
	CHECK(strstr(r.body, "not an ext4 image") != NULL);
	reply_free(&r);
	CHECK(!path_there("%s/templates/%s", "x"));
	inst_stop(&in);

	/* No guest kernel: nothing can be built, said before anything is copied. */
	inst_kernel = "/nonexistent/vmlinux";
	if (!CHECK(inst_start(&in)))
		return;
	snprintf(body, sizeof body, "{\"name\":\"x\",\"fromRootfs\":\"%s\"}", rootfs);
	CHECK_EQ_INT(call(&in, "POST", "/templates", body, &r), 503);
	CHECK(strstr(r.body, "guest kernel /nonexistent/vmlinux") != NULL);
	reply_free(&r);
	CHECK(!path_there("%s/templates/%s", "x"));
	inst_stop(&in);
	inst_kernel = kernel;
}

TEST(a_failed_build_says_why_and_the_name_can_be_reused)
{
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	build_fail = 1;
	char bid[64];
	CHECK_EQ_INT(create_tpl(&in, "flaky", bid), 202);
	struct reply r;
	CHECK_STREQ(wait_build(&in, "flaky", bid, &r), "error");
	const struct json *reason = json_get(r.j, "reason");
	CHECK(reason && strstr(json_get_str(reason, "message"), "agent did not answer") != NULL);
	CHECK_STREQ(json_get_str(r.j, "phase"), "error");
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "GET", "/templates/flaky", NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "buildStatus"), "error");
	reply_free(&r);
	build_fail = 0;
	char bid2[64];
	CHECK_EQ_INT(create_tpl(&in, "flaky", bid2), 202);
	CHECK(strcmp(bid, bid2) != 0);
	CHECK_STREQ(wait_build(&in, "flaky", bid2, &r), "ready");
	/* The new build's log only: the old one went with the failed template. */
	CHECK(!has_step(json_get(r.j, "logEntries"), "error"));
	reply_free(&r);
	inst_stop(&in);
}

/* --- delete -------------------------------------------------------------------------------- */

TEST(delete_refuses_while_used_or_built_then_removes_atomically)
{
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	struct reply r;
	CHECK_EQ_INT(call(&in, "DELETE", "/templates/ghost", NULL, &r), 404);
	CHECK(json_get_int(r.j, "code", 0) == 404);
	reply_free(&r);

	/* Being built: 409 for delete and for another create. */
	set_hold(1);
	char bid[64];
	CHECK_EQ_INT(create_tpl(&in, "busy", bid), 202);
	CHECK_EQ_INT(call(&in, "DELETE", "/templates/busy", NULL, &r), 409);
	CHECK(strstr(r.body, "being built") != NULL);
	reply_free(&r);
	char other[64];
	CHECK_EQ_INT(create_tpl(&in, "busy", other), 409);
	set_hold(0);
	CHECK_STREQ(wait_build(&in, "busy", bid, &r), "ready");
	reply_free(&r);

	/* Used by a running and a paused sandbox. */
	char sid[2][64];
	for (int i = 0; i < 2; i++) {
		CHECK_EQ_INT(call(&in, "POST", "/sandboxes", "{\"templateID\":\"busy\"}", &r), 201);
		snprintf(sid[i], 64, "%s", json_get_str(r.j, "sandboxID") ? json_get_str(r.j, "sandboxID") : "");
		reply_free(&r);
	}
	char path[128];
	snprintf(path, sizeof path, "/sandboxes/%s/pause", sid[1]);
	CHECK_EQ_INT(status_of(&in, "POST", path, NULL), 204);
	CHECK_EQ_INT(call(&in, "DELETE", "/templates/busy", NULL, &r), 409);
	CHECK_STREQ(json_get_str(r.j, "message"), "template busy has 2 sandboxes (running or paused): kill them first");
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s", sid[0]);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	CHECK_EQ_INT(call(&in, "DELETE", "/templates/busy", NULL, &r), 409);
	CHECK_STREQ(json_get_str(r.j, "message"), "template busy has 1 sandbox (running or paused): kill them first");
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s", sid[1]);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);

	CHECK_EQ_INT(fake_running(), 0);
	/* Free: gone at once, nothing left behind. */
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/busy", NULL), 204);
	CHECK(!path_there("%s/templates/%s", "busy"));
	CHECK_EQ_INT(status_of(&in, "GET", "/templates/busy", NULL), 404);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/busy", NULL), 404);
	/* The trash is emptied on a worker, soon. */
	char tdir[300];
	snprintf(tdir, sizeof tdir, "%s/templates", state_dir);
	bool trash = true;
	for (int i = 0; i < 100 && trash; i++) {
		DIR *d = opendir(tdir);
		struct dirent *e;
		trash = false;
		while (d && (e = readdir(d)) != NULL)
			trash |= strncmp(e->d_name, ".trash-", 7) == 0;
		if (d)
			closedir(d);
		if (trash)
			usleep(20000);
	}
	CHECK(!trash);
	/* The name is free again. */
	CHECK_EQ_INT(create_tpl(&in, "busy", bid), 202);
	CHECK_STREQ(wait_build(&in, "busy", bid, &r), "ready");
	reply_free(&r);
	if (!CHECK_EQ_INT(call(&in, "DELETE", "/templates/busy", NULL, &r), 204))
		fprintf(stderr, "  %s\n", r.body);
	reply_free(&r);
	inst_stop(&in);
}

TEST(a_build_cut_short_by_a_restart_is_an_error_after_it)
{
	setup();
	char path[600];
	snprintf(path, sizeof path, "%s/templates/cut/build.json", state_dir);
	write_text(path,
		   "{\"buildID\":\"11111111-2222-4333-8444-555555555555\",\"templateID\":\"cut\","
		   "\"status\":\"building\",\"phase\":\"booting\",\"progress\":55,"
		   "\"createdAt\":\"2026-01-01T00:00:00.000Z\",\"source\":{\"type\":\"rootfs\",\"ref\":\"/x\"}}\n");
	snprintf(path, sizeof path, "%s/templates/cut/template.json", state_dir);
	write_text(path, "{\"templateID\":\"cut\",\"state\":\"building\",\"progress\":55}\n");
	snprintf(path, sizeof path, "%s/templates/.trash-0123/rootfs.ext4", state_dir);
	write_text(path, "left by a crash");
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	struct reply r;
	CHECK_EQ_INT(call(&in, "GET", "/templates/builds/11111111-2222-4333-8444-555555555555", NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "status"), "error");
	const struct json *reason = json_get(r.j, "reason");
	CHECK(reason && strstr(json_get_str(reason, "message"), "interrupted") != NULL);
	CHECK(has_step(json_get(r.j, "logEntries"), "error"));
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "GET", "/templates/cut", NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "buildStatus"), "error");
	reply_free(&r);
	CHECK(!path_there("%s/templates/%s", ".trash-0123"));
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/cut", NULL), 204);
	inst_stop(&in);
}

/* --- the CLI against the api ----------------------------------------------------------------- */

struct cli_run {
	int rc;
	char *out, *err;
};

static void cli(struct cli_run *res, const char *first, ...)
{
	char *argv[40] = {"cube"};
	int argc = 1;
	va_list ap;
	va_start(ap, first);
	for (const char *s = first; s && argc < 39; s = va_arg(ap, const char *))
		argv[argc++] = (char *)s;
	va_end(ap);
	size_t on, en;
	FILE *out = open_memstream(&res->out, &on), *err = open_memstream(&res->err, &en);
	res->rc = cli_main(argc, argv, out, err);
	fclose(out);
	fclose(err);
}

static void cli_free(struct cli_run *res)
{
	free(res->out);
	free(res->err);
}

static void *release_later(void *arg)
{
	usleep(300000);
	set_hold(0);
	return NULL;
}

TEST(cli_builds_watches_lists_and_deletes)
{
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	char api[64];
	snprintf(api, sizeof api, "http://127.0.0.1:%d", in.port);
	setenv("E2B_API_KEY", KEY, 1);
	struct cli_run c;

	/* Held in booting for a while, so watch sees it. */
	set_hold(1);
	pthread_t releaser;
	pthread_create(&releaser, NULL, release_later, NULL);
	cli(&c, "--api", api, "tpl", "create-from-rootfs", "--rootfs", rootfs, "--name", "clitpl", "--wait",
	    "--interval-ms", "20", NULL);
	CHECK_EQ_INT(c.rc, 0);
	CHECK(strstr(c.out, "template clitpl: build ") != NULL);
	pthread_join(releaser, NULL);
	CHECK(strstr(c.out, "] booting\n") != NULL);
	CHECK(strstr(c.out, "[100%] ready\n") != NULL);
	CHECK(strstr(c.out, "template clitpl ready (build ") != NULL);
	cli_free(&c);

	cli(&c, "--api", api, "tpl", "watch", "clitpl", NULL);
	CHECK_EQ_INT(c.rc, 0);
	CHECK(strstr(c.out, "template clitpl ready") != NULL);
	cli_free(&c);

	cli(&c, "--api", api, "tpl", "list", NULL);
	CHECK_EQ_INT(c.rc, 0);
	CHECK(strncmp(c.out, "TEMPLATE  ", 10) == 0);
	CHECK(strstr(c.out, "\nclitpl ") != NULL && strstr(c.out, "\nbase ") != NULL);
	cli_free(&c);

	cli(&c, "--api", api, "--json", "template", "list", NULL);
	CHECK_EQ_INT(c.rc, 0);
	CHECK(c.out[0] == '[');
	cli_free(&c);

	/* A build that fails: watch exits 1 with the reason. */
	build_fail = 1;
	cli(&c, "--api", api, "tpl", "create-from-rootfs", "--rootfs", rootfs, "--name", "clibad", "--wait",
	    "--interval-ms", "20", NULL);
	CHECK_EQ_INT(c.rc, 1);
	CHECK(strstr(c.err, "failed: fake backend: the agent did not answer") != NULL);
	cli_free(&c);
	build_fail = 0;

	/* An image the api refuses: the CLI says why and fails. */
	cli(&c, "--api", api, "tpl", "create-from-image", "--image", "Bad Ref!", "--writable-layer-size", "1G",
	    "--expose-port", "8080", "--probe", "8080", "--cpu", "2", "--memory", "1024", "--env", "A=b", NULL);
	CHECK_EQ_INT(c.rc, 1);
	CHECK(strstr(c.err, "Bad Ref!") != NULL && strstr(c.err, "HTTP 400") != NULL);
	cli_free(&c);

	/* An uploaded archive, named after its file, watched to the end. */
	struct buf tar = BUF_INIT;
	docker_archive(&tar);
	char tarpath[400];
	snprintf(tarpath, sizeof tarpath, "%s/src/cli-demo.tar", top);
	write_text(tarpath, ""); /* makes the directory */
	CHECK(file_replace(tarpath, tar.data, tar.len, 0644, false) == 0);
	buf_free(&tar);
	cli(&c, "--api", api, "tpl", "create-from-image", "--archive", tarpath, "--env", "A=b c", "--memory", "256",
	    "--wait", "--interval-ms", "20", NULL);
	if (!CHECK_EQ_INT(c.rc, 0))
		fprintf(stderr, "  out: %s\n  err: %s\n", c.out, c.err);
	CHECK(strstr(c.out, "template cli-demo: build") && strstr(c.out, "pulling") && strstr(c.out, "ready"));
	cli_free(&c);
	struct json *tj = read_json_file("%s/templates/%s/template.json", "cli-demo");
	CHECK(tj && json_get(tj, "envVars") && json_get_str(json_get(tj, "envVars"), "A") &&
	      strcmp(json_get_str(json_get(tj, "envVars"), "A"), "b c") == 0);
	CHECK_EQ_INT(json_get_int(tj, "memoryMB", 0), 256);
	json_free(tj);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/cli-demo", NULL), 204);
	cli(&c, "--api", api, "tpl", "create-from-image", "--archive", "/nonexistent.tar", NULL);
	CHECK_EQ_INT(c.rc, 1);
	CHECK(strstr(c.err, "--archive /nonexistent.tar") != NULL);
	cli_free(&c);

	/* Sandboxes: list, kill; a used template cannot go. */
	struct reply r;
	CHECK_EQ_INT(call(&in, "POST", "/sandboxes", "{\"templateID\":\"clitpl\"}", &r), 201);
	char sid[64];
	snprintf(sid, sizeof sid, "%s", json_get_str(r.j, "sandboxID") ? json_get_str(r.j, "sandboxID") : "");
	reply_free(&r);
	cli(&c, "--api", api, "sandbox", "list", NULL);
	CHECK_EQ_INT(c.rc, 0);
	CHECK(strstr(c.out, sid) != NULL && strstr(c.out, "running") != NULL);
	cli_free(&c);
	cli(&c, "--api", api, "tpl", "delete", "clitpl", NULL);
	CHECK_EQ_INT(c.rc, 1);
	CHECK(strstr(c.err, "has 1 sandbox (running or paused): kill them first (HTTP 409)") != NULL);
	cli_free(&c);
	cli(&c, "--api", api, "sandbox", "kill", sid, NULL);
	CHECK_EQ_INT(c.rc, 0);
	CHECK(strstr(c.out, "killed") != NULL);
	cli_free(&c);
	cli(&c, "--api", api, "sandbox", "list", NULL);
	CHECK_STREQ(c.out, "no sandboxes\n");
	cli_free(&c);

	/* Over the admin socket: no key needed. */
	unsetenv("E2B_API_KEY");
	char sock[400];
	snprintf(sock, sizeof sock, "unix:%s/api.sock", run_dir);
	cli(&c, "--api", sock, "tpl", "delete", "clitpl", NULL);
	CHECK_EQ_INT(c.rc, 0);
	CHECK_STREQ(c.out, "template clitpl deleted\n");
	cli_free(&c);
	cli(&c, "--api", sock, "tpl", "delete", "clibad", NULL);
	CHECK_EQ_INT(c.rc, 0);
	cli_free(&c);
	cli(&c, "--api", api, "tpl", "list", NULL);
	CHECK_EQ_INT(c.rc, 1);
	CHECK(strstr(c.err, "HTTP 401") != NULL && strstr(c.err, "E2B_API_KEY") != NULL);
	cli_free(&c);
	cli(&c, "--api", sock, "tpl", "delete", "clitpl", NULL);
	CHECK_EQ_INT(c.rc, 1);
	CHECK(strstr(c.err, "not found (HTTP 404)") != NULL);
	cli_free(&c);
	cli(&c, "--api", sock, "sandbox", "kill", "Bad-Id", NULL);
	CHECK_EQ_INT(c.rc, 2);
	cli_free(&c);
	inst_stop(&in);
	cli(&c, "--api", api, "tpl", "list", NULL);
	CHECK_EQ_INT(c.rc, 1);
	CHECK(strstr(c.err, "cannot reach the api") != NULL);
	cli_free(&c);
}

/* The static binaries themselves (when `make` built them): build/cube and
 * its alias, against the api of this process. The api's loop reaps every
 * child of the process, so a middle child waits for the binary and sends
 * its exit status after the output, as a last byte. */
static int run_binary(const char *bin, char *const argv[], char *out, size_t n)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		pid_t child = fork();
		if (child == 0) {
			dup2(p[1], 1);
			dup2(p[1], 2);
			execv(bin, argv);
			_exit(127);
		}
		int st = 0;
		waitpid(child, &st, 0);
		unsigned char code = WIFEXITED(st) ? (unsigned char)WEXITSTATUS(st) : 255;
		if (write(p[1], &code, 1) != 1)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	size_t got = 0;
	ssize_t r;
	while (got + 1 < n && (r = read(p[0], out + got, n - 1 - got)) > 0)
		got += (size_t)r;
	close(p[0]);
	if (got == 0)
		return -1;
	int code = (unsigned char)out[got - 1];
	out[got - 1] = '\0';
	return code == 255 ? -1 : code;
}

TEST(the_cube_binaries_against_the_api)
{
	const char *cube = getenv("CUBE_CLI") ? getenv("CUBE_CLI") : "build/cube";
	char alias[512];
	snprintf(alias, sizeof alias, "%.*scubemastercli",
		 (int)(strrchr(cube, '/') ? strrchr(cube, '/') - cube + 1 : 0), cube);
	if (access(cube, X_OK) < 0 || access(alias, X_OK) < 0) {
		fprintf(stderr, "  skipped: %s or %s not built (run make)\n", cube, alias);
		return;
	}
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	char api[64], out[8192];
	snprintf(api, sizeof api, "http://127.0.0.1:%d", in.port);
	char *list[] = {"cube", "--api", api, "--api-key", KEY, "tpl", "list", NULL};
	CHECK_EQ_INT(run_binary(cube, list, out, sizeof out), 0);
	CHECK(strncmp(out, "TEMPLATE", 8) == 0 && strstr(out, "\nbase ") != NULL);
	char *create[] = {"cubemastercli", "--api",    api,	  "--api-key", KEY,	"tpl", "create-from-image",
			  "--image",	   "Bad Ref!", "--probe", "8080",      "--env", "A=1", NULL};
	if (!CHECK_EQ_INT(run_binary(alias, create, out, sizeof out), 1))
		fprintf(stderr, "  output: %s\n", out);
	CHECK(strstr(out, "cubemastercli: create: ") != NULL && strstr(out, "Bad Ref!") != NULL);
	char *help[] = {"cubemastercli", "--help", NULL};
	CHECK_EQ_INT(run_binary(alias, help, out, sizeof out), 0);
	CHECK(strstr(out, "usage: cubemastercli") != NULL);
	char *bad[] = {"cube", "tpl", "create-from-image", NULL};
	CHECK_EQ_INT(run_binary(cube, bad, out, sizeof out), 2);
	inst_stop(&in);
}

/* --- OCI imports --------------------------------------------------------------------------- */

/* A `docker save` tarball: one layer with bin/hello and etc/motd, a config
 * with Env, WorkingDir and ExposedPorts. */
static void docker_archive(struct buf *out)
{
	struct buf layer = BUF_INIT, config = BUF_INIT, manifest = BUF_INIT;
	static const struct tw_meta exe = {0755, 0, 0, 1700000000, 0, 0};
	tw_dir(&layer, "bin/", NULL);
	tw_file(&layer, "bin/hello", "#!/bin/sh\necho hello\n", &exe);
	tw_dir(&layer, "etc/", NULL);
	tw_file(&layer, "etc/motd", "from the image\n", NULL);
	tw_dir(&layer, "srv/", NULL);
	tw_end(&layer);
	char layer_digest[72], config_digest[72];
	digest_of(layer.data, layer.len, layer_digest);
	buf_printf(&config,
		   "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/bin:/usr/bin\","
		   "\"GREETING=image\",\"ONLY_IMAGE=1\"],\"WorkingDir\":\"/srv\",\"ExposedPorts\":{\"8080/tcp\":{}},"
		   "\"Entrypoint\":[\"/bin/hello\"],\"Cmd\":[\"--serve\",\"8080\"]},"
		   "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
		   layer_digest);
	digest_of(config.data, config.len, config_digest);
	char config_name[100];
	snprintf(config_name, sizeof config_name, "%s.json", config_digest + 7);
	buf_printf(&manifest, "[{\"Config\":\"%s\",\"RepoTags\":[\"demo:1\"],\"Layers\":[\"l1/layer.tar\"]}]",
		   config_name);
	tw_dir(out, "l1/", NULL);
	tw_raw(out, "l1/layer.tar", '0', &tw_default, NULL, layer.data, layer.len);
	tw_raw(out, config_name, '0', &tw_default, NULL, config.data, config.len);
	tw_raw(out, "manifest.json", '0', &tw_default, NULL, manifest.data, manifest.len);
	tw_end(out);
	buf_free(&layer);
	buf_free(&config);
	buf_free(&manifest);
}

static int upload(struct inst *in, const char *query, const void *body, size_t len, struct reply *r)
{
	memset(r, 0, sizeof *r);
	const char *headers[] = {"X-API-Key: " KEY, "Content-Type: application/octet-stream", NULL};
	int fd = http_connect_tcp("127.0.0.1", in->port, 2000);
	if (fd < 0)
		return -1;
	char target[1024];
	snprintf(target, sizeof target, "/templates/upload%s", query);
	struct http_response resp;
	int rc = http_request(fd, "POST", target, headers, body, len, &resp, 10000, NULL, NULL);
	close(fd);
	if (rc < 0)
		return -1;
	r->status = resp.status;
	snprintf(r->body, sizeof r->body, "%.*s", (int)resp.body.len, resp.body.data ? resp.body.data : "");
	r->j = json_parse(resp.body.data ? resp.body.data : "", resp.body.len, NULL, 0);
	http_response_free(&resp);
	return r->status;
}

/* No upload left in DIR/templates. */
static bool no_uploads_left(void)
{
	char tdir[300];
	snprintf(tdir, sizeof tdir, "%s/templates", state_dir);
	DIR *d = opendir(tdir);
	struct dirent *e;
	bool left = false;
	while (d && (e = readdir(d)) != NULL)
		left |= strncmp(e->d_name, ".upload-", 8) == 0;
	if (d)
		closedir(d);
	return !left;
}

static struct json *read_json_file(const char *fmt, const char *name)
{
	char path[600];
	snprintf(path, sizeof path, fmt, state_dir, name);
	size_t len;
	char *text = file_read_all(path, 1 << 20, &len);
	struct json *j = text ? json_parse(text, len, NULL, 0) : NULL;
	free(text);
	return j;
}

TEST(an_uploaded_image_becomes_a_template_with_its_env)
{
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	tbuild_agent_path = kernel; /* any file: it is copied into the image */
	struct buf tar = BUF_INIT;
	docker_archive(&tar);
	struct reply r;
	CHECK_EQ_INT(upload(&in,
			    "?name=demo&cpuCount=1&memoryMB=256&writableLayerSizeMB=16&exposePorts=8080,9000"
			    "&probePort=8080&env=GREETING%3Dbuild&env=EXTRA%3Da%20b",
			    tar.data, tar.len, &r),
		     202);
	char bid[64];
	snprintf(bid, sizeof bid, "%s", json_get_str(r.j, "buildID") ? json_get_str(r.j, "buildID") : "");
	CHECK_STREQ(json_get_str(r.j, "templateID"), "demo");
	reply_free(&r);
	if (!CHECK_STREQ(wait_build(&in, "demo", bid, &r), "ready"))
		fprintf(stderr, "  %s\n", r.body);
	const struct json *entries = json_get(r.j, "logEntries");
	CHECK(has_step(entries, "queued") && has_step(entries, "pulling") && has_step(entries, "unpacking") &&
	      has_step(entries, "rootfs") && has_step(entries, "booting") && has_step(entries, "snapshotting") &&
	      has_step(entries, "ready"));
	reply_free(&r);
	CHECK(path_there("%s/templates/%s/rootfs.ext4", "demo"));
	CHECK(path_there("%s/templates/%s/image.json", "demo"));
	CHECK(no_uploads_left());

	/* template.json: the image's Env under the build's, the rest recorded. */
	struct json *t = read_json_file("%s/templates/%s/template.json", "demo");
	const struct json *env = t ? json_get(t, "envVars") : NULL;
	CHECK(env != NULL);
	CHECK_STREQ(json_get_str(env, "PATH"), "/bin:/usr/bin");
	CHECK_STREQ(json_get_str(env, "GREETING"), "build");
	CHECK_STREQ(json_get_str(env, "ONLY_IMAGE"), "1");
	CHECK_STREQ(json_get_str(env, "EXTRA"), "a b");
	CHECK_STREQ(json_get_str(t, "workdir"), "/srv");
	CHECK_EQ_INT(json_get_int(t, "probePort", 0), 8080);
	CHECK(json_get(t, "exposePorts") && json_get(t, "exposePorts")->count == 2);
	CHECK(json_get_int(t, "diskSizeMB", 0) > 16);
	const struct json *start = t ? json_get(t, "start") : NULL;
	CHECK(start && start->count == 3 && strcmp(start->child->str, "/bin/hello") == 0);
	json_free(t);
	/* The build started ENTRYPOINT + CMD in WORKDIR with the env, and
	 * waited for the probe port; its log says so. */
	if (!CHECK(strstr(fake_last_start, "argv=/bin/hello|--serve|8080 cwd=/srv probe=8080 envs={") ==
		   fake_last_start))
		fprintf(stderr, "  start: %s\n", fake_last_start);
	CHECK(strstr(fake_last_start, "\"GREETING\":\"build\"") != NULL);
	char logs[160];
	snprintf(logs, sizeof logs, "/templates/demo/builds/%s/logs", bid);
	CHECK_EQ_INT(call(&in, "GET", logs, NULL, &r), 200);
	if (!CHECK(strstr(r.body, "started `/bin/hello` (pid 42)") != NULL))
		fprintf(stderr, "  log: %.600s\n", r.body);
	reply_free(&r);

	/* A sandbox of it starts with that env, its create's own winning. */
	CHECK_EQ_INT(call(&in, "POST", "/sandboxes",
			  "{\"templateID\":\"demo\",\"envVars\":{\"EXTRA\":\"mine\",\"NEW\":\"x\"}}", &r),
		     201);
	char sid[64];
	snprintf(sid, sizeof sid, "%s", json_get_str(r.j, "sandboxID") ? json_get_str(r.j, "sandboxID") : "");
	reply_free(&r);
	struct json *sb = read_json_file("%s/sandboxes/%s/sandbox.json", sid);
	env = sb ? json_get(sb, "envVars") : NULL;
	CHECK(env != NULL);
	CHECK_STREQ(json_get_str(env, "GREETING"), "build");
	CHECK_STREQ(json_get_str(env, "EXTRA"), "mine");
	CHECK_STREQ(json_get_str(env, "NEW"), "x");
	CHECK_STREQ(json_get_str(env, "PATH"), "/bin:/usr/bin");
	json_free(sb);
	char path[128];
	snprintf(path, sizeof path, "/sandboxes/%s", sid);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/demo", NULL), 204);
	buf_free(&tar);
	inst_stop(&in);
}

/* What a build starts: startCmd over the image's command, "" for nothing;
 * a probe port with nothing to start fails before any boot. */
TEST(the_start_command_comes_from_the_image_or_the_build)
{
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	tbuild_agent_path = kernel;
	struct buf tar = BUF_INIT;
	docker_archive(&tar);
	struct reply r;
	char bid[64];
	CHECK_EQ_INT(upload(&in, "?name=own&startCmd=exec%20%2Fbin%2Fhello%20--own", tar.data, tar.len, &r), 202);
	snprintf(bid, sizeof bid, "%s", json_get_str(r.j, "buildID") ? json_get_str(r.j, "buildID") : "");
	reply_free(&r);
	CHECK_STREQ(wait_build(&in, "own", bid, &r), "ready");
	reply_free(&r);
	CHECK(strstr(fake_last_start, "argv=/bin/sh|-c|exec /bin/hello --own cwd=/srv probe=0 ") == fake_last_start);

	CHECK_EQ_INT(upload(&in, "?name=none&startCmd=", tar.data, tar.len, &r), 202);
	snprintf(bid, sizeof bid, "%s", json_get_str(r.j, "buildID") ? json_get_str(r.j, "buildID") : "");
	reply_free(&r);
	CHECK_STREQ(wait_build(&in, "none", bid, &r), "ready");
	reply_free(&r);
	CHECK_STREQ(fake_last_start, ""); /* nothing to start */

	int builds = fake_builds;
	CHECK_EQ_INT(upload(&in, "?name=noprobe&startCmd=&probePort=8080", tar.data, tar.len, &r), 202);
	snprintf(bid, sizeof bid, "%s", json_get_str(r.j, "buildID") ? json_get_str(r.j, "buildID") : "");
	reply_free(&r);
	CHECK_STREQ(wait_build(&in, "noprobe", bid, &r), "error");
	const struct json *reason = json_get(r.j, "reason");
	const char *msg = reason ? json_get_str(reason, "message") : "";
	if (!CHECK(msg && strstr(msg, "probePort 8080 is given but nothing starts")))
		fprintf(stderr, "  reason: %s\n", msg);
	reply_free(&r);
	CHECK_EQ_INT(fake_builds, builds); /* no guest was booted for it */

	CHECK_EQ_INT(call(&in, "POST", "/templates", "{\"name\":\"x\",\"fromImage\":\"a/b:1\",\"startCmd\":7}", &r),
		     400);
	CHECK(strstr(r.body, "startCmd must be a string") != NULL);
	reply_free(&r);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/own", NULL), 204);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/none", NULL), 204);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/noprobe", NULL), 204);
	buf_free(&tar);
	inst_stop(&in);
}

static bool file_contains(const char *name, const char *file, const char *needle)
{
	char path[600];
	snprintf(path, sizeof path, "%s/templates/%s/%s", state_dir, name, file);
	size_t len;
	char *text = file_read_all(path, 1 << 24, &len);
	bool has = text && memmem(text, len, needle, strlen(needle)) != NULL;
	free(text);
	return has;
}

static const char *build_from(struct inst *in, const char *name, const char *body_fmt, struct reply *r)
{
	char body[2048], bid[64];
	snprintf(body, sizeof body, body_fmt, fk.port);
	if (!CHECK_EQ_INT(call(in, "POST", "/templates", body, r), 202)) {
		fprintf(stderr, "  %s\n", r->body);
		return "refused";
	}
	snprintf(bid, sizeof bid, "%s", json_get_str(r->j, "buildID") ? json_get_str(r->j, "buildID") : "");
	reply_free(r);
	return wait_build(in, name, bid, r);
}

/* fromImageRegistry's credentials reach the registry's token endpoint and
 * are never written down; registryCA is trusted for the pull only. */
TEST(registry_credentials_and_ca_are_used_and_never_stored)
{
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	tbuild_agent_path = kernel;
	fake_registry_build_image();
	fake_registry_start();
	fk.require_token = fk.require_creds = true;
	fk.creds = "robot:s3cret-Pa55word";
	struct reply r;
	const char *st =
	    build_from(&in, "priv",
		       "{\"name\":\"priv\",\"fromImage\":\"127.0.0.1:%d/test/img:single\",\"insecureRegistry\":"
		       "true,\"fromImageRegistry\":{\"type\":\"registry\",\"username\":\"robot\",\"password\":"
		       "\"s3cret-Pa55word\"},\"registryCA\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END "
		       "CERTIFICATE-----\\n\"}",
		       &r);
	if (!CHECK_STREQ(st, "ready"))
		fprintf(stderr, "  %s\n", r.body);
	reply_free(&r);
	CHECK(fk.token_requests > 0);
	CHECK(file_contains("priv", "build.log", "registry access: user robot, its own CA"));
	static const char *const files[] = {"build.json", "build.log", "template.json", "image.json"};
	for (size_t i = 0; i < 4; i++)
		if (!CHECK(!file_contains("priv", files[i], "s3cret-Pa55word")))
			fprintf(stderr, "  the password is in %s\n", files[i]);
	CHECK(!path_there("%s/templates/%s/registry-ca.pem", "priv"));

	/* The same through the CLI: the password from a file. */
	char api[64], pwfile[400], ref[128];
	snprintf(api, sizeof api, "http://127.0.0.1:%d", in.port);
	snprintf(pwfile, sizeof pwfile, "%s/src/registry-password", top);
	write_text(pwfile, "s3cret-Pa55word\n");
	snprintf(ref, sizeof ref, "127.0.0.1:%d/test/img:single", fk.port);
	struct cli_run c;
	cli(&c, "--api", api, "--api-key", KEY, "tpl", "create-from-image", "--image", ref, "--insecure-registry",
	    "--registry-user", "robot", "--registry-password-file", pwfile, "--name", "cli-priv", "--wait",
	    "--interval-ms", "20", NULL);
	if (!CHECK_EQ_INT(c.rc, 0))
		fprintf(stderr, "  out: %s\n  err: %s\n", c.out, c.err);
	cli_free(&c);
	setenv("CUBE_REGISTRY_PASSWORD", "guess", 1);
	cli(&c, "--api", api, "--api-key", KEY, "tpl", "create-from-image", "--image", ref, "--insecure-registry",
	    "--registry-user", "robot", "--name", "cli-wrong", "--wait", "--interval-ms", "20", NULL);
	unsetenv("CUBE_REGISTRY_PASSWORD");
	CHECK_EQ_INT(c.rc, 1);
	CHECK(strstr(c.err, "the registry refused access") != NULL);
	cli_free(&c);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/cli-priv", NULL), 204);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/cli-wrong", NULL), 204);

	/* A wrong password, or none: the registry's refusal is the reason. */
	st = build_from(&in, "wrong",
			"{\"name\":\"wrong\",\"fromImage\":\"127.0.0.1:%d/test/img:single\",\"insecureRegistry\":true,"
			"\"fromImageRegistry\":{\"username\":\"robot\",\"password\":\"guess\"}}",
			&r);
	CHECK_STREQ(st, "error");
	const struct json *reason = json_get(r.j, "reason");
	const char *msg = reason ? json_get_str(reason, "message") : "";
	if (!CHECK(msg && strstr(msg, "the registry refused access") == msg))
		fprintf(stderr, "  reason: %s\n", msg);
	reply_free(&r);
	st = build_from(&in, "anon",
			"{\"name\":\"anon\",\"fromImage\":\"127.0.0.1:%d/test/img:single\",\"insecureRegistry\":true}",
			&r);
	CHECK_STREQ(st, "error");
	reply_free(&r);

	/* Refused at once. */
	static const char *const bad[][2] = {
	    {"{\"name\":\"x\",\"fromImage\":\"a/b:1\",\"fromImageRegistry\":{\"type\":\"aws\"}}", "not type aws"},
	    {"{\"name\":\"x\",\"fromImage\":\"a/b:1\",\"fromImageRegistry\":{\"username\":\"u\"}}",
	     "needs a username and a password"},
	    {"{\"name\":\"x\",\"fromImage\":\"a/b:1\",\"registryCA\":\"not pem\"}", "registryCA must be PEM"},
	    {"{\"name\":\"x\",\"fromRootfs\":\"/"
	     "r.ext4\",\"fromImageRegistry\":{\"username\":\"u\",\"password\":\"p\"}}",
	     "apply to fromImage only"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK_EQ_INT(call(&in, "POST", "/templates", bad[i][0], &r), 400);
		if (!CHECK(strstr(r.body, bad[i][1]) != NULL))
			fprintf(stderr, "  %s -> %s\n", bad[i][0], r.body);
		reply_free(&r);
	}
	fake_registry_reset();
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/priv", NULL), 204);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/wrong", NULL), 204);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/anon", NULL), 204);
	inst_stop(&in);
}

TEST(image_builds_and_uploads_fail_clearly)
{
	struct inst in;
	if (!CHECK(inst_start(&in)))
		return;
	tbuild_agent_path = kernel;
	struct reply r;
	/* Not an image: the build fails with the importer's class in its reason. */
	static const char junk[] = "this is not a tarball at all";
	CHECK_EQ_INT(upload(&in, "?name=junk", junk, sizeof junk - 1, &r), 202);
	char bid[64];
	snprintf(bid, sizeof bid, "%s", json_get_str(r.j, "buildID") ? json_get_str(r.j, "buildID") : "");
	reply_free(&r);
	CHECK_STREQ(wait_build(&in, "junk", bid, &r), "error");
	const struct json *reason = json_get(r.j, "reason");
	const char *msg = reason ? json_get_str(reason, "message") : "";
	if (!CHECK(msg && strstr(msg, "invalid image (") == msg))
		fprintf(stderr, "  reason: %s\n", msg);
	reply_free(&r);
	CHECK(no_uploads_left());

	/* A registry nobody listens on. */
	CHECK_EQ_INT(call(&in, "POST", "/templates",
			  "{\"name\":\"unreachable\",\"fromImage\":\"127.0.0.1:1/demo:1\",\"insecureRegistry\":true}",
			  &r),
		     202);
	snprintf(bid, sizeof bid, "%s", json_get_str(r.j, "buildID") ? json_get_str(r.j, "buildID") : "");
	reply_free(&r);
	CHECK_STREQ(wait_build(&in, "unreachable", bid, &r), "error");
	reason = json_get(r.j, "reason");
	msg = reason ? json_get_str(reason, "message") : "";
	if (!CHECK(msg && strstr(msg, "cannot reach the registry") == msg))
		fprintf(stderr, "  reason: %s\n", msg);
	CHECK_STREQ(json_get_str(reason, "step"), "error");
	reply_free(&r);

	/* Refused before anything is stored. */
	CHECK_EQ_INT(upload(&in, "?cpuCount=1", junk, 4, &r), 400);
	CHECK(strstr(r.body, "name is required") != NULL);
	reply_free(&r);
	CHECK_EQ_INT(upload(&in, "?name=x&color=red", junk, 4, &r), 400);
	CHECK(strstr(r.body, "unknown parameter") && strstr(r.body, "color"));
	reply_free(&r);
	CHECK_EQ_INT(upload(&in, "?name=x&cpuCount=many", junk, 4, &r), 400);
	CHECK(strstr(r.body, "cpuCount") != NULL);
	reply_free(&r);
	CHECK_EQ_INT(upload(&in, "?name=x", "", 0, &r), 400);
	CHECK(strstr(r.body, "tarball") != NULL);
	reply_free(&r);
	uint64_t saved = template_upload_max;
	template_upload_max = 1024;
	char big[4096];
	memset(big, 'x', sizeof big);
	CHECK_EQ_INT(upload(&in, "?name=big", big, sizeof big, &r), 413);
	reply_free(&r);
	template_upload_max = saved;
	CHECK(!path_there("%s/templates/%s", "x"));
	CHECK(!path_there("%s/templates/%s", "big"));
	CHECK(no_uploads_left());
	/* The small-body limit still holds elsewhere. */
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/junk", NULL), 204);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/unreachable", NULL), 204);
	inst_stop(&in);
}

TEST(zz_cleanup)
{
	CHECK(registry_remove_tree(top) == 0);
}
