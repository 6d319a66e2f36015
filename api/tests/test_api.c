/*
 * test_api.c - cube-api over loopback: the real HTTP server and routes,
 * driven by lib/http's blocking client, with the fake backend of fake_vm.h.
 *
 * Each api instance runs its event loop on a thread of this process; the
 * test thread talks to it only over TCP, and stops it through a pipe the
 * loop watches, so the api's state is only ever touched by its loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <dirent.h>

#include "../../lib/fileio.h"
#include "../../lib/http.h"
#include "../../lib/json.h"
#include "../../lib/log.h"
#include "../../lib/sha256.h"
#include "../api.h"
#include "../registry.h"
#include "fake_vm.h"
#include "../../lib/tests/test.h"

#define KEY		"e2b_0123456789abcdef0123456789abcdef01234567"
#define KEY2		"e2b_fedcba9876543210fedcba9876543210fedcba98"
#define API_HARNESS_KEY KEY
#include "api_harness.h"

static char state_dir[256], run_dir[256];

/* --- fixture: state directory ------------------------------------------------------ */

static bool path_exists(const char *dir, const char *fmt, const char *id)
{
	char rel[256], path[600];
	snprintf(rel, sizeof rel, fmt, id);
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	return access(path, F_OK) == 0;
}

static void write_file(const char *rel, const char *text)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", state_dir, rel);
	char dir[512];
	snprintf(dir, sizeof dir, "%s", path);
	*strrchr(dir, '/') = '\0';
	registry_mkdir_p(dir);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static void hex_sha(const char *key, char out[65])
{
	uint8_t d[32];
	sha256(key, strlen(key), d);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* Writes apikeys.json with the given keys (NULL-terminated). */
static void set_keys(const char *k1, const char *k2)
{
	char h1[65], h2[65], text[1024];
	hex_sha(k1, h1);
	if (k2) {
		hex_sha(k2, h2);
		snprintf(text, sizeof text,
			 "{\"keys\":[{\"id\":\"a\",\"name\":\"admin\",\"created\":1,\"sha256\":\"%s\"},"
			 "{\"id\":\"b\",\"name\":\"ci\",\"created\":2,\"sha256\":\"%s\"}]}\n",
			 h1, h2);
	} else {
		snprintf(text, sizeof text,
			 "{\"keys\":[{\"id\":\"a\",\"name\":\"admin\",\"created\":1,\"sha256\":\"%s\"}]}\n", h1);
	}
	/* Through a rename, as the console writes it. */
	write_file("config/apikeys.json.tmp", text);
	char from[512], to[512];
	snprintf(from, sizeof from, "%s/config/apikeys.json.tmp", state_dir);
	snprintf(to, sizeof to, "%s/config/apikeys.json", state_dir);
	rename(from, to);
}

static void setup_state(void)
{
	if (state_dir[0])
		return;
	snprintf(state_dir, sizeof state_dir, "/tmp/test_api.%d/state", (int)getpid());
	snprintf(run_dir, sizeof run_dir, "/tmp/test_api.%d/run", (int)getpid());
	registry_mkdir_p(state_dir);
	registry_mkdir_p(run_dir);
	set_keys(KEY, KEY2);
	write_file("templates/base/template.json",
		   "{\"templateID\":\"base\",\"name\":\"base\",\"state\":\"ready\",\"cpuCount\":2,"
		   "\"memoryMB\":512,\"diskSizeMB\":1024,\"createdAt\":\"2026-01-01T00:00:00.000Z\"}");
	write_file("templates/ci1/template.json",
		   "{\"templateID\":\"ci1\",\"name\":\"code-interpreter-v1\",\"state\":\"ready\",\"cpuCount\":1,"
		   "\"memoryMB\":1024}");
	write_file("templates/slow/template.json", "{\"templateID\":\"slow\",\"state\":\"building\",\"progress\":40}");
	write_file("templates/broken/template.json",
		   "{\"templateID\":\"broken\",\"state\":\"error\",\"error\":\"no agent\"}");
}

/* --- fixture: an api instance on a thread -------------------------------------------- */

/* The warm pool of the next inst_start (0: none). */
static int inst_pool_size;
static unsigned inst_pool_interval_ms;
/* Admission limits of the next inst_start (0 / NULL: the defaults). */
static int inst_max_sandboxes;
static const char *inst_meminfo;
/* The image's templates directory of the next inst_start (NULL: none). */
static const char *inst_templates_dir = "/nonexistent/templates";

static bool inst_start(struct inst *in, const char *kernel, const char *rootfs)
{
	setup_state();
	struct api_config cfg = {.state_dir = state_dir,
				 .run_dir = run_dir,
				 .ttl_interval_ms = 100,
				 .workers = 2,
				 .pool_size = inst_pool_size,
				 .pool_interval_ms = inst_pool_interval_ms,
				 .base_kernel = kernel ? kernel : "/nonexistent/vmlinux",
				 .base_rootfs = rootfs ? rootfs : "/nonexistent/rootfs.ext4",
				 .templates_dir = inst_templates_dir,
				 .max_sandboxes = inst_max_sandboxes,
				 .meminfo_path = inst_meminfo};
	return inst_run(in, &cfg, &fake_vm_ops);
}

/* --- client -------------------------------------------------------------------------- */

/* Creates a sandbox; returns its id in id (empty on failure). */
static int create(struct inst *in, const char *body, char id[64])
{
	struct reply r;
	int s = call(in, "POST", "/sandboxes", body, &r);
	const char *sid = json_get_str(r.j, "sandboxID");
	snprintf(id, 64, "%s", s == 201 && sid ? sid : "");
	reply_free(&r);
	return s;
}

static bool error_shape(const struct reply *r, int code)
{
	return r->j && json_get_int(r->j, "code", 0) == code && json_get_str(r->j, "message") != NULL;
}

static const char *state_of(struct inst *in, const char *id, char *out, size_t n)
{
	struct reply r;
	char path[128];
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	call(in, "GET", path, NULL, &r);
	snprintf(out, n, "%s", r.status == 200 && json_get_str(r.j, "state") ? json_get_str(r.j, "state") : "gone");
	reply_free(&r);
	return out;
}

static bool record_on_disk(const char *id)
{
	char path[512];
	snprintf(path, sizeof path, "%s/sandboxes/%s/sandbox.json", state_dir, id);
	return access(path, F_OK) == 0;
}

/* --- tests ---------------------------------------------------------------------------- */

TEST(health_needs_no_key)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	struct reply r;
	CHECK_EQ_INT(call_h(&in, "GET", "/health", NULL, NULL, NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "status"), "ok");
	reply_free(&r);
	inst_stop(&in);
}

TEST(auth_missing_wrong_revoked)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	struct reply r;
	CHECK_EQ_INT(call_h(&in, "GET", "/v2/sandboxes", NULL, NULL, NULL, &r), 401);
	CHECK(error_shape(&r, 401));
	reply_free(&r);
	CHECK_EQ_INT(
	    call_h(&in, "GET", "/v2/sandboxes", "e2b_0000000000000000000000000000000000000000", NULL, NULL, &r), 401);
	CHECK(error_shape(&r, 401));
	reply_free(&r);
	/* The header name is matched case-insensitively (call_h sends x-api-key). */
	CHECK_EQ_INT(call_h(&in, "GET", "/v2/sandboxes", KEY2, NULL, NULL, &r), 200);
	reply_free(&r);
	/* Revoked at the console: refused at once, the other key still works. */
	set_keys(KEY, NULL);
	CHECK_EQ_INT(call_h(&in, "GET", "/v2/sandboxes", KEY2, NULL, NULL, &r), 401);
	reply_free(&r);
	CHECK_EQ_INT(call_h(&in, "GET", "/v2/sandboxes", KEY, NULL, NULL, &r), 200);
	reply_free(&r);
	/* And made again: accepted at once. */
	set_keys(KEY, KEY2);
	CHECK_EQ_INT(call_h(&in, "GET", "/templates", KEY2, NULL, NULL, &r), 200);
	reply_free(&r);
	inst_stop(&in);
}

/* The admin socket (RUN/api.sock): no API key needed, and only root may open it. */
TEST(admin_socket_needs_no_key_and_is_root_only)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	char path[512];
	snprintf(path, sizeof path, "%s/api.sock", run_dir);
	struct stat st;
	CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0077) == 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)) {
		const char *const headers[] = {"Host: cube-api", NULL};
		struct http_response resp;
		memset(&resp, 0, sizeof resp);
		CHECK_EQ_INT(http_request(fd, "GET", "/v2/sandboxes", headers, NULL, 0, &resp, 5000, NULL, NULL), 0);
		CHECK_EQ_INT(resp.status, 200);
		http_response_free(&resp);
	}
	if (fd >= 0)
		close(fd);
	inst_stop(&in);
}

TEST(create_get_list_kill)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	struct reply r;
	CHECK_EQ_INT(call(&in, "POST", "/v2/sandboxes",
			  "{\"templateID\":\"base\",\"timeout\":120,\"metadata\":{\"owner\":\"t1\"},"
			  "\"envVars\":{\"FOO\":\"bar\"},\"secure\":true,\"network\":{\"allowOut\":[]}}",
			  &r),
		     201);
	char id[64], token[80];
	snprintf(id, sizeof id, "%s", json_get_str(r.j, "sandboxID") ? json_get_str(r.j, "sandboxID") : "");
	snprintf(token, sizeof token, "%s",
		 json_get_str(r.j, "envdAccessToken") ? json_get_str(r.j, "envdAccessToken") : "");
	CHECK(strlen(id) == 20 && sandbox_id_valid(id));
	CHECK_STREQ(json_get_str(r.j, "templateID"), "base");
	CHECK_STREQ(json_get_str(r.j, "envdVersion"), "0.6.13");
	CHECK(json_get_str(r.j, "clientID") != NULL);
	CHECK_EQ_INT(strlen(token), 64);
	CHECK(json_get(r.j, "domain") && json_get(r.j, "domain")->type == JSON_NULL);
	reply_free(&r);

	/* The agent's /init document. */
	pthread_mutex_lock(&fake_mu);
	struct json *init = json_parse(fake_last_init, strlen(fake_last_init), NULL, 0);
	pthread_mutex_unlock(&fake_mu);
	CHECK_STREQ(json_get_str(init, "sandboxId"), id);
	CHECK_STREQ(json_get_str(json_get(init, "envVars"), "FOO"), "bar");
	CHECK_STREQ(json_get_str(init, "accessToken"), token);
	CHECK_STREQ(json_get_str(init, "defaultUser"), "user");
	int64_t ts;
	CHECK(time_parse(json_get_str(init, "timestamp"), &ts) == 0);
	json_free(init);

	char path[128];
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "state"), "running");
	CHECK_STREQ(json_get_str(json_get(r.j, "metadata"), "owner"), "t1");
	CHECK_STREQ(json_get_str(r.j, "envdAccessToken"), token);
	CHECK_EQ_INT(json_get_int(r.j, "cpuCount", 0), 2);
	CHECK_EQ_INT(json_get_int(r.j, "memoryMB", 0), 512);
	int64_t start, end;
	CHECK(time_parse(json_get_str(r.j, "startedAt"), &start) == 0);
	CHECK(time_parse(json_get_str(r.j, "endAt"), &end) == 0);
	CHECK_EQ_INT(end - start, 120000);
	reply_free(&r);
	CHECK(record_on_disk(id));

	CHECK_EQ_INT(call(&in, "GET", "/sandboxes", NULL, &r), 200);
	CHECK(r.j && r.j->type == JSON_ARRAY && r.j->count == 1);
	CHECK_STREQ(json_get_str(r.j ? r.j->child : NULL, "sandboxID"), id);
	reply_free(&r);

	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	CHECK(!record_on_disk(id));
	CHECK_EQ_INT(call(&in, "DELETE", path, NULL, &r), 404);
	CHECK(error_shape(&r, 404));
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 404);
	CHECK(error_shape(&r, 404));
	reply_free(&r);
	/* The Python SDK's shape of create: templateID via an alias name. */
	char id2[64];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"code-interpreter-v1\"}", id2), 201);
	snprintf(path, sizeof path, "/sandboxes/%s", id2);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "templateID"), "ci1");
	CHECK_STREQ(json_get_str(r.j, "alias"), "code-interpreter-v1");
	/* No "secure" in the body: secured all the same (the current SDKs omit it). */
	CHECK(json_get_str(r.j, "envdAccessToken") && strlen(json_get_str(r.j, "envdAccessToken")) == 64);
	reply_free(&r);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
}

static void check_400(struct inst *in, const char *body, const char *needle)
{
	struct reply r;
	if (!CHECK_EQ_INT(call(in, "POST", "/sandboxes", body, &r), 400) || !CHECK(error_shape(&r, 400)) ||
	    !CHECK(strstr(json_get_str(r.j, "message"), needle) != NULL))
		fprintf(stderr, "    body %s -> %s\n", body, r.body);
	reply_free(&r);
}

TEST(create_errors)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	check_400(&in, "{\"templateID\":", "malformed JSON");
	check_400(&in, "", "malformed JSON");
	check_400(&in, "[1]", "JSON object");
	check_400(&in, "{}", "templateID is required");
	check_400(&in, "{\"templateID\":5}", "templateID must be a string");
	check_400(&in, "{\"templateID\":\"../etc\"}", "templateID");
	check_400(&in, "{\"templateID\":\"base\",\"timeout\":\"30\"}", "timeout");
	check_400(&in, "{\"templateID\":\"base\",\"timeout\":-1}", "timeout");
	check_400(&in, "{\"templateID\":\"base\",\"timeout\":9999999}", "timeout");
	check_400(&in, "{\"templateID\":\"base\",\"metadata\":{\"a\":1}}", "metadata.a");
	check_400(&in, "{\"templateID\":\"base\",\"metadata\":[]}", "metadata");
	check_400(&in, "{\"templateID\":\"base\",\"envVars\":{\"A\":true}}", "envVars.A");
	check_400(&in, "{\"templateID\":\"base\",\"envVars\":{\"A=B\":\"x\"}}", "'='");
	check_400(&in, "{\"templateID\":\"base\",\"secure\":\"yes\"}", "secure");
	check_400(&in, "{\"templateID\":\"base\",\"autoPause\":1}", "autoPause");

	struct reply r;
	CHECK_EQ_INT(call(&in, "POST", "/sandboxes", "{\"templateID\":\"nosuch\"}", &r), 404);
	CHECK(error_shape(&r, 404) && strstr(json_get_str(r.j, "message"), "nosuch"));
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "POST", "/sandboxes", "{\"templateID\":\"slow\"}", &r), 503);
	CHECK(error_shape(&r, 503) && strstr(json_get_str(r.j, "message"), "building"));
	CHECK_STREQ(r.retry_after, "5");
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "POST", "/sandboxes", "{\"templateID\":\"broken\"}", &r), 409);
	CHECK(error_shape(&r, 409) && strstr(json_get_str(r.j, "message"), "no agent"));
	reply_free(&r);

	/* Over the body limit: 413 before any handler. */
	size_t big = 2 * 1024 * 1024;
	char *huge = malloc(big + 1);
	memset(huge, ' ', big);
	huge[big] = '\0';
	const char *prefix = "{\"templateID\":\"base\",\"metadata\":{\"x\":\"";
	memcpy(huge, prefix, strlen(prefix));
	if (!CHECK_EQ_INT(call(&in, "POST", "/sandboxes", huge, &r), 413))
		fprintf(stderr, "    answer: %s\n", r.body);
	reply_free(&r);
	free(huge);

	/* Chunked, as Node sends it. */
	char id[64];
	CHECK_EQ_INT(
	    call_h(&in, "POST", "/sandboxes", KEY, "{\"templateID\":\"base\"}", "Transfer-Encoding: chunked", &r), 201);
	snprintf(id, sizeof id, "%s", json_get_str(r.j, "sandboxID") ? json_get_str(r.j, "sandboxID") : "x");
	reply_free(&r);
	char path[128];
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);

	/* Unknown calls and methods. */
	CHECK_EQ_INT(call(&in, "GET", "/nope", NULL, &r), 404);
	CHECK(error_shape(&r, 404));
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "PUT", "/sandboxes", NULL, &r), 405);
	CHECK(error_shape(&r, 405));
	reply_free(&r);
	CHECK_EQ_INT(status_of(&in, "GET", "/sandboxes/UPPER", NULL), 404);
	inst_stop(&in);
}

/* One failed restore is retried on a fresh VMM: the client gets its sandbox. */
TEST(a_start_that_fails_once_is_retried)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	int before = __atomic_load_n(&fake_starts, __ATOMIC_SEQ_CST);
	fake_fail_starts_once = 1;
	char id[64];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	CHECK_EQ_INT(__atomic_load_n(&fake_starts, __ATOMIC_SEQ_CST) - before, 1);
	CHECK_EQ_INT(fake_fail_starts_once, 0);
	CHECK(record_on_disk(id));
	char target[128];
	snprintf(target, sizeof target, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", target, NULL), 204);
	inst_stop(&in);
}

TEST(backend_failure_is_500_and_leaves_nothing)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	fake_fail_start = true;
	struct reply r;
	CHECK_EQ_INT(call(&in, "POST", "/sandboxes", "{\"templateID\":\"base\"}", &r), 500);
	CHECK(error_shape(&r, 500) && strstr(json_get_str(r.j, "message"), "/dev/kvm"));
	reply_free(&r);
	fake_fail_start = false;
	CHECK_EQ_INT(call(&in, "GET", "/v2/sandboxes", NULL, &r), 200);
	CHECK(r.j && r.j->count == 0);
	reply_free(&r);
	char path[512];
	snprintf(path, sizeof path, "%s/sandboxes", state_dir);
	int entries = 0;
	DIR *d = opendir(path);
	for (struct dirent *e; d && (e = readdir(d));)
		entries += e->d_name[0] != '.';
	if (d)
		closedir(d);
	CHECK_EQ_INT(entries, 0);
	inst_stop(&in);
}

TEST(timeout_pause_connect_resume)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	char id[64], path[128], st[32];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\",\"timeout\":60}", id), 201);
	struct reply r;

	snprintf(path, sizeof path, "/sandboxes/%s/timeout", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"timeout\":600}"), 204);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{}"), 400);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"timeout\":true}"), 400);
	CHECK_EQ_INT(status_of(&in, "POST", "/sandboxes/zzzz/timeout", "{\"timeout\":5}"), 404);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	int64_t end;
	CHECK(time_parse(json_get_str(r.j, "endAt"), &end) == 0);
	CHECK(end > wall_ms() + 590000 && end <= wall_ms() + 600000);
	reply_free(&r);

	snprintf(path, sizeof path, "/sandboxes/%s/pause", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, NULL), 204);
	CHECK_STREQ(state_of(&in, id, st, sizeof st), "paused");
	CHECK_EQ_INT(call(&in, "POST", path, NULL, &r), 409);
	CHECK(error_shape(&r, 409));
	reply_free(&r);
	/* Paused sandboxes are listed by v2 only. */
	CHECK_EQ_INT(call(&in, "GET", "/sandboxes", NULL, &r), 200);
	CHECK(r.j && r.j->count == 0);
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "GET", "/v2/sandboxes?state=paused", NULL, &r), 200);
	CHECK(r.j && r.j->count == 1);
	reply_free(&r);

	snprintf(path, sizeof path, "/v2/sandboxes/%s/connect", id);
	CHECK_EQ_INT(call(&in, "POST", path, "{\"timeout\":30}", &r), 201);
	CHECK_STREQ(json_get_str(r.j, "sandboxID"), id);
	reply_free(&r);
	CHECK_STREQ(state_of(&in, id, st, sizeof st), "running");
	CHECK_EQ_INT(call(&in, "POST", path, "{\"timeout\":30}", &r), 200);
	CHECK_STREQ(json_get_str(r.j, "envdVersion"), "0.6.13");
	reply_free(&r);

	snprintf(path, sizeof path, "/sandboxes/%s/resume", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{}"), 409);
	snprintf(path, sizeof path, "/sandboxes/%s/pause", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, NULL), 204);
	/* A resume whose guest crashes is tried once more from the same snapshot. */
	fake_resume_failures = 1;
	snprintf(path, sizeof path, "/sandboxes/%s/resume", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"timeout\":30}"), 201);
	CHECK_EQ_INT(fake_resume_failures, 0);
	CHECK_STREQ(state_of(&in, id, st, sizeof st), "running");
	/* Twice in a row: a clear 500, and the sandbox stays paused, its snapshot kept. */
	snprintf(path, sizeof path, "/sandboxes/%s/pause", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, NULL), 204);
	fake_resume_failures = 2;
	snprintf(path, sizeof path, "/sandboxes/%s/resume", id);
	CHECK_EQ_INT(call(&in, "POST", path, "{\"timeout\":30}", &r), 500);
	CHECK(error_shape(&r, 500));
	CHECK(strstr(r.body, "triple fault") != NULL);
	reply_free(&r);
	CHECK_STREQ(state_of(&in, id, st, sizeof st), "paused");
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"timeout\":30}"), 201);
	CHECK_STREQ(state_of(&in, id, st, sizeof st), "running");
	snprintf(path, sizeof path, "/sandboxes/%s/connect", id);
	CHECK_EQ_INT(status_of(&in, "POST", "/sandboxes/nosuchid/connect", "{\"timeout\":30}"), 404);

	snprintf(path, sizeof path, "/sandboxes/%s/metrics", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK(r.j && r.j->type == JSON_ARRAY);
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s/logs", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK(json_get(r.j, "logs") && json_get(r.j, "logs")->type == JSON_ARRAY);
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
}

static bool template_dir_has(const char *id, const char *file)
{
	char path[600];
	snprintf(path, sizeof path, "%s/templates/%s/%s", state_dir, id, file);
	return access(path, F_OK) == 0;
}

/* How many entries a JSON array answer has that name id under key. */
static int count_named(const struct json *arr, const char *key, const char *id)
{
	int n = 0;
	for (const struct json *e = arr && arr->type == JSON_ARRAY ? arr->child : NULL; e; e = e->next)
		n += json_get_str(e, key) && strcmp(json_get_str(e, key), id) == 0;
	return n;
}

/* createSnapshot: the running sandbox goes on; the snapshot is a template
 * that starts sandboxes with its agent's token shown once; listSnapshots
 * filters; deleteSnapshot is DELETE /templates; the base template stays
 * while snapshots stack on it. */
TEST(snapshots_of_a_sandbox_are_templates)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	char id[64], path[160], st[32];
	CHECK_EQ_INT(create(&in,
			    "{\"templateID\":\"base\",\"secure\":true,\"envVars\":{\"FROM\":\"source\"},"
			    "\"timeout\":600}",
			    id),
		     201);
	struct reply r;
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	char token[128], end_before[64];
	snprintf(token, sizeof token, "%s",
		 json_get_str(r.j, "envdAccessToken") ? json_get_str(r.j, "envdAccessToken") : "");
	snprintf(end_before, sizeof end_before, "%s", json_get_str(r.j, "endAt") ? json_get_str(r.j, "endAt") : "");
	reply_free(&r);

	snprintf(path, sizeof path, "/sandboxes/%s/snapshots", id);
	CHECK_EQ_INT(call(&in, "POST", path, "{}", &r), 201);
	char snap[160];
	snprintf(snap, sizeof snap, "%s", json_get_str(r.j, "snapshotID") ? json_get_str(r.j, "snapshotID") : "");
	CHECK(strncmp(snap, "snap-", 5) == 0);
	CHECK(json_get(r.j, "names") && json_get(r.j, "names")->count == 1);
	reply_free(&r);
	/* The source runs on, same end time. */
	CHECK_STREQ(state_of(&in, id, st, sizeof st), "running");
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "endAt"), end_before);
	reply_free(&r);
	CHECK(template_dir_has(snap, "snap/state") && template_dir_has(snap, "guest-token"));
	char tokpath[600];
	snprintf(tokpath, sizeof tokpath, "%s/templates/%s/guest-token", state_dir, snap);
	struct stat sb;
	CHECK(stat(tokpath, &sb) == 0 && (sb.st_mode & 0777) == 0600);

	/* Named, listed, filtered. */
	snprintf(path, sizeof path, "/sandboxes/%s/snapshots", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"name\":\"my-snap\"}"), 201);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"name\":\"my-snap\"}"), 409);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"name\":\"base\"}"), 409);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"name\":\"bad name!\"}"), 400);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"name\":\"fork-mine\"}"), 400);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"memory\":false}"), 400);
	CHECK_EQ_INT(status_of(&in, "POST", "/sandboxes/nosuchsandbox/snapshots", "{}"), 404);
	snprintf(path, sizeof path, "/snapshots?sandboxID=%s", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	CHECK(r.j && r.j->count == 2 && count_named(r.j, "snapshotID", snap) == 1 &&
	      count_named(r.j, "snapshotID", "my-snap") == 1);
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "GET", "/snapshots?sandboxID=other", NULL, &r), 200);
	CHECK(r.j && r.j->count == 0);
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "GET", "/snapshots?limit=1", NULL, &r), 200);
	CHECK(r.j && r.j->count == 1 && r.next_token[0]);
	char next[300];
	snprintf(next, sizeof next, "/snapshots?limit=1&nextToken=%s", r.next_token);
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "GET", next, NULL, &r), 200);
	CHECK(r.j && r.j->count == 1);
	reply_free(&r);
	CHECK_EQ_INT(status_of(&in, "GET", "/snapshots?limit=0", NULL), 400);

	/* A sandbox of the snapshot: the source's env; its agent shown the old token once. */
	char body[300], clone[64];
	snprintf(body, sizeof body, "{\"templateID\":\"%s\",\"secure\":false}", snap);
	CHECK_EQ_INT(create(&in, body, clone), 201);
	CHECK_STREQ(fake_last_guest_token, token);
	CHECK(strstr(fake_last_init, "\"FROM\":\"source\"") != NULL);
	CHECK(strstr(fake_last_init, "\"accessToken\":\"\"") != NULL); /* not secure: the old token is cleared */
	/* A secure one gets a token of its own. */
	char clone2[64];
	snprintf(body, sizeof body, "{\"templateID\":\"%s\"}", snap);
	CHECK_EQ_INT(create(&in, body, clone2), 201);
	CHECK_STREQ(fake_last_guest_token, token);
	CHECK(strstr(fake_last_init, "\"accessToken\":\"") != NULL && strstr(fake_last_init, token) == NULL);
	snprintf(path, sizeof path, "/sandboxes/%s", clone2);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);

	/* Deleting: the snapshot while a sandbox uses it, the base while snapshots stack on it. */
	snprintf(path, sizeof path, "/templates/%s", snap);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 409);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	CHECK_EQ_INT(call(&in, "DELETE", "/templates/base", NULL, &r), 409);
	CHECK(strstr(r.body, "snapshot") != NULL);
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s", clone);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	snprintf(path, sizeof path, "/templates/%s", snap);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 404);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/my-snap", NULL), 204);
	CHECK_EQ_INT(call(&in, "GET", "/snapshots", NULL, &r), 200);
	CHECK(r.j && r.j->count == 0);
	reply_free(&r);

	/* A paused sandbox can be snapshotted too; a failed snapshot leaves nothing. */
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	snprintf(path, sizeof path, "/sandboxes/%s/pause", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, NULL), 204);
	snprintf(path, sizeof path, "/sandboxes/%s/snapshots", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"name\":\"of-paused\"}"), 201);
	CHECK_STREQ(state_of(&in, id, st, sizeof st), "paused");
	fake_fail_checkpoint = true;
	CHECK_EQ_INT(call(&in, "POST", path, "{\"name\":\"failing\"}", &r), 500);
	CHECK(error_shape(&r, 500));
	reply_free(&r);
	fake_fail_checkpoint = false;
	CHECK(!template_dir_has("failing", "template.json"));
	CHECK_EQ_INT(status_of(&in, "GET", "/templates/failing", NULL), 404);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/templates/of-paused", NULL), 204);
	inst_stop(&in);
}

static bool wait_template_gone(const char *id, int ms)
{
	for (int i = 0; i < ms / 20; i++) {
		if (!template_dir_has(id, "template.json"))
			return true;
		usleep(20 * 1000);
	}
	return false;
}

/* fork: one snapshot, count sandboxes from it, each on its own; the
 * snapshot is hidden and goes with its last sandbox. */
TEST(fork_starts_sandboxes_from_one_snapshot)
{
	struct inst in;
	inst_max_sandboxes = 3; /* the source and two forks: the third is refused on its own */
	bool started = inst_start(&in, NULL, NULL);
	inst_max_sandboxes = 0;
	if (!CHECK(started))
		return;
	char id[64], path[160];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\",\"metadata\":{\"team\":\"a\"}}", id), 201);
	struct reply r;
	snprintf(path, sizeof path, "/sandboxes/%s/fork", id);
	int checkpoints = fake_checkpoints;
	CHECK_EQ_INT(call(&in, "POST", path, "{\"count\":3,\"timeout\":120}", &r), 201);
	CHECK_EQ_INT(fake_checkpoints, checkpoints + 1);
	CHECK(r.j && r.j->type == JSON_ARRAY && r.j->count == 3);
	char forks[3][64] = {"", "", ""};
	int ok = 0, failed = 0;
	for (const struct json *e = r.j ? r.j->child : NULL; e; e = e->next) {
		const struct json *sb = json_get(e, "sandbox"), *err = json_get(e, "error");
		if (sb && json_get_str(sb, "sandboxID"))
			snprintf(forks[ok++], 64, "%s", json_get_str(sb, "sandboxID"));
		if (err && json_get_int(err, "code", 0) == 429 && json_get_str(err, "message"))
			failed++;
	}
	if (!CHECK(ok == 2 && failed == 1))
		fprintf(stderr, "  %s\n", r.body);
	reply_free(&r);
	/* The forks are sandboxes like any, with the source's metadata; their template is hidden. */
	CHECK_EQ_INT(call(&in, "GET", "/v2/sandboxes?metadata=team%3Da", NULL, &r), 200);
	CHECK(r.j && r.j->count == 3); /* the source and two forks */
	char tpl[160] = "";
	for (const struct json *e = r.j ? r.j->child : NULL; e; e = e->next)
		if (strcmp(json_get_str(e, "sandboxID"), id) != 0)
			snprintf(tpl, sizeof tpl, "%s", json_get_str(e, "templateID"));
	reply_free(&r);
	CHECK(strncmp(tpl, "fork-", 5) == 0);
	CHECK_EQ_INT(call(&in, "GET", "/snapshots", NULL, &r), 200);
	CHECK(r.j && r.j->count == 0);
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "GET", "/templates", NULL, &r), 200);
	CHECK_EQ_INT(count_named(r.j, "templateID", tpl), 0);
	reply_free(&r);
	CHECK_EQ_INT(status_of(&in, "POST", "/templates", "{\"name\":\"fork-x\",\"fromImage\":\"a/b:1\"}"), 400);

	/* Bad requests. */
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"count\":0}"), 400);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"count\":21}"), 400);
	CHECK_EQ_INT(status_of(&in, "POST", path, "[1]"), 400);
	CHECK_EQ_INT(status_of(&in, "POST", "/sandboxes/nosuchsandbox/fork", "{}"), 404);

	/* The snapshot stays while a fork lives, and goes with the last. */
	snprintf(path, sizeof path, "/sandboxes/%s", forks[0]);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	CHECK(template_dir_has(tpl, "template.json"));
	snprintf(path, sizeof path, "/sandboxes/%s", forks[1]);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	CHECK(wait_template_gone(tpl, 2000));

	/* A fork of a paused sandbox is refused. */
	snprintf(path, sizeof path, "/sandboxes/%s/pause", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, NULL), 204);
	snprintf(path, sizeof path, "/sandboxes/%s/fork", id);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{}"), 409);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
}

TEST(logs_come_from_the_sandbox_console)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	char id[64], path[600];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	/* What a guest writes on its serial console: kernel lines and the agent's structured ones. */
	snprintf(path, sizeof path, "%s/sandboxes/%s", run_dir, id);
	CHECK_EQ_INT(dir_make_all(path, 0755), 0);
	strncat(path, "/console.log", sizeof path - strlen(path) - 1);
	FILE *f = fopen(path, "w");
	if (!CHECK(f != NULL))
		return;
	fputs(
	    "[    0.512] virtio_blk virtio0: [vda] 4194304 512-byte logical blocks\r\n"
	    "{\"ts\":\"2099-01-01T10:00:00.000Z\",\"level\":\"info\",\"comp\":\"cube-agent\",\"event\":\"process."
	    "start\","
	    "\"msg\":\"pid 42 started\",\"pid\":42}\n"
	    "\n"
	    "{\"ts\":\"2099-01-01T10:00:05.000Z\",\"level\":\"warn\",\"comp\":\"cube-agent\",\"event\":\"files.write\","
	    "\"msg\":\"disk almost full\"}\n"
	    "a line after it\n"
	    "{not json\n",
	    f);
	fclose(f);

	struct reply r;
	snprintf(path, sizeof path, "/sandboxes/%s/logs", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	const struct json *entries = json_get(r.j, "logEntries"), *logs = json_get(r.j, "logs");
	if (CHECK(entries && entries->type == JSON_ARRAY && entries->count == 5 && logs && logs->count == 5)) {
		const struct json *e1 = entries->child->next, *e2 = e1->next, *e3 = e2->next;
		CHECK_STREQ(json_get_str(entries->child, "level"), "info");
		CHECK_STREQ(json_get_str(json_get(entries->child, "fields"), "source"), "console");
		CHECK_STREQ(json_get_str(e1, "timestamp"), "2099-01-01T10:00:00.000Z");
		CHECK_STREQ(json_get_str(e1, "message"), "pid 42 started");
		CHECK_STREQ(json_get_str(json_get(e1, "fields"), "event"), "process.start");
		CHECK_STREQ(json_get_str(json_get(e1, "fields"), "pid"), "42");
		CHECK_STREQ(json_get_str(e2, "level"), "warn");
		/* A line without a time of its own: the last time seen. */
		CHECK_STREQ(json_get_str(e3, "timestamp"), "2099-01-01T10:00:05.000Z");
		CHECK_STREQ(json_get_str(e3, "message"), "a line after it");
		CHECK_STREQ(json_get_str(logs->child, "line"),
			    "[    0.512] virtio_blk virtio0: [vda] 4194304 512-byte logical blocks");
	}
	reply_free(&r);

	/* start (ms since the epoch) and limit select, as E2B's API does. */
	snprintf(path, sizeof path, "/sandboxes/%s/logs?start=4070944802000&limit=2", id); /* 2099-01-01 10:00:02 */
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	entries = json_get(r.j, "logEntries");
	if (CHECK(entries && entries->count == 2))
		CHECK_STREQ(json_get_str(entries->child, "message"), "disk almost full");
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s/logs?limit=5000", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 400);
	CHECK(error_shape(&r, 400));
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s/logs?start=yesterday", id);
	CHECK_EQ_INT(status_of(&in, "GET", path, NULL), 400);
	CHECK_EQ_INT(status_of(&in, "GET", "/sandboxes/nosuchsandbox/logs", NULL), 404);

	/* source=vmm: the sandbox's VMM log instead of its console. */
	snprintf(path, sizeof path, "%s/sandboxes/%s/vmm.log", run_dir, id);
	f = fopen(path, "w");
	if (!CHECK(f != NULL))
		return;
	fputs("{\"ts\":\"2099-01-01T10:00:01.000Z\",\"level\":\"error\",\"comp\":\"vmm\",\"event\":\"vm.triple_"
	      "fault\",\"msg\":\"vcpu=0 triple fault\"}\n",
	      f);
	fclose(f);
	snprintf(path, sizeof path, "/sandboxes/%s/logs?source=vmm", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	entries = json_get(r.j, "logEntries");
	if (CHECK(entries && entries->count == 1)) {
		CHECK_STREQ(json_get_str(entries->child, "level"), "error");
		CHECK_STREQ(json_get_str(json_get(entries->child, "fields"), "event"), "vm.triple_fault");
	}
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s/logs?source=console&limit=1", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 200);
	entries = json_get(r.j, "logEntries");
	if (CHECK(entries && entries->count == 1))
		CHECK_STREQ(json_get_str(json_get(entries->child, "fields"), "source"), "console");
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s/logs?source=host", id);
	CHECK_EQ_INT(call(&in, "GET", path, NULL, &r), 400);
	CHECK(error_shape(&r, 400));
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
}

static void write_meminfo(const char *path, long long avail_kib)
{
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fprintf(f, "MemTotal:        4015532 kB\nMemFree:          100000 kB\nMemAvailable:   %8lld kB\n", avail_kib);
	fclose(f);
}

TEST(creates_beyond_the_limits_are_429)
{
	char meminfo[512], a[64], b[64], id[64], path[128];
	snprintf(meminfo, sizeof meminfo, "%s/meminfo", run_dir);
	write_meminfo(meminfo, 4 << 20);
	inst_max_sandboxes = 2;
	inst_meminfo = meminfo;
	struct inst in;
	bool ok = inst_start(&in, NULL, NULL);
	inst_max_sandboxes = 0;
	inst_meminfo = NULL;
	if (!CHECK(ok))
		return;
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", a), 201);
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", b), 201);
	struct reply r;
	CHECK_EQ_INT(call(&in, "POST", "/sandboxes", "{\"templateID\":\"base\"}", &r), 429);
	CHECK(error_shape(&r, 429) && strstr(json_get_str(r.j, "message"), "maximum of 2 sandboxes"));
	CHECK_STREQ(r.retry_after, "5");
	reply_free(&r);
	/* A paused sandbox holds no memory: it does not count. */
	snprintf(path, sizeof path, "/sandboxes/%s/pause", a);
	CHECK_EQ_INT(status_of(&in, "POST", path, NULL), 204);
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	/* Low memory: refused whatever the count, until memory is back. */
	snprintf(path, sizeof path, "/sandboxes/%s", b);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	write_meminfo(meminfo, 100 * 1024);
	CHECK_EQ_INT(call(&in, "POST", "/sandboxes", "{\"templateID\":\"base\"}", &r), 429);
	CHECK(error_shape(&r, 429) && strstr(json_get_str(r.j, "message"), "low on memory (100 MiB available"));
	CHECK_STREQ(r.retry_after, "10");
	reply_free(&r);
	write_meminfo(meminfo, 4 << 20);
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	snprintf(path, sizeof path, "/sandboxes/%s", a);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
}

/* Polls until the sandbox reaches want (or "gone"), up to ms. */
static bool wait_state(struct inst *in, const char *id, const char *want, int ms)
{
	char st[32];
	for (int t = 0; t < ms; t += 50) {
		if (strcmp(state_of(in, id, st, sizeof st), want) == 0)
			return true;
		usleep(50 * 1000);
	}
	fprintf(stderr, "    sandbox %s is %s, wanted %s\n", id, st, want);
	return false;
}

TEST(ttl_kills_or_pauses)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	char killed[64], paused[64], kept[64];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\",\"timeout\":1}", killed), 201);
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\",\"timeout\":1,\"autoPause\":true}", paused), 201);
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\",\"timeout\":60}", kept), 201);
	CHECK(wait_state(&in, killed, "gone", 4000));
	CHECK(!record_on_disk(killed));
	CHECK(wait_state(&in, paused, "paused", 4000));
	char st[32];
	CHECK_STREQ(state_of(&in, kept, st, sizeof st), "running");
	/* setTimeout(0) expires it at the next check. */
	char path[128];
	snprintf(path, sizeof path, "/sandboxes/%s/timeout", kept);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"timeout\":0}"), 204);
	CHECK(wait_state(&in, kept, "gone", 4000));
	snprintf(path, sizeof path, "/sandboxes/%s", paused);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
}

static int count_pages(struct inst *in, const char *first, int *pages)
{
	char target[512];
	snprintf(target, sizeof target, "%s", first);
	int total = 0;
	*pages = 0;
	for (;;) {
		struct reply r;
		if (call(in, "GET", target, NULL, &r) != 200 || !r.j) {
			reply_free(&r);
			return -1;
		}
		total += (int)r.j->count;
		(*pages)++;
		reply_free(&r);
		if (!r.next_token[0] || *pages > 20)
			break;
		snprintf(target, sizeof target, "%s&nextToken=%s", first, r.next_token);
	}
	return total;
}

TEST(list_pagination_and_metadata_filter)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	char ids[5][64];
	for (int i = 0; i < 5; i++) {
		char body[256];
		snprintf(body, sizeof body, "{\"templateID\":\"base\",\"metadata\":{\"n\":\"%d\",\"group\":\"%s\"}}", i,
			 i % 2 ? "odd one" : "even");
		CHECK_EQ_INT(create(&in, body, ids[i]), 201);
	}
	int pages;
	CHECK_EQ_INT(count_pages(&in, "/v2/sandboxes?limit=2", &pages), 5);
	CHECK_EQ_INT(pages, 3);
	CHECK_EQ_INT(count_pages(&in, "/v2/sandboxes?limit=100", &pages), 5);
	CHECK_EQ_INT(pages, 1);
	/* metadata=group%3Dodd%2520one: "group=odd%20one" once decoded, as the SDK sends it. */
	CHECK_EQ_INT(count_pages(&in, "/v2/sandboxes?metadata=group%3Dodd%2520one&limit=1", &pages), 2);
	CHECK_EQ_INT(count_pages(&in, "/v2/sandboxes?metadata=group%3Deven%26n%3D2", &pages), 1);
	CHECK_EQ_INT(count_pages(&in, "/sandboxes?metadata=group%3Dnone", &pages), 0);
	CHECK_EQ_INT(count_pages(&in, "/v2/sandboxes?state=running&state=paused", &pages), 5);
	CHECK_EQ_INT(count_pages(&in, "/v2/sandboxes?state=paused", &pages), 0);
	CHECK_EQ_INT(status_of(&in, "GET", "/v2/sandboxes?limit=0", NULL), 400);
	CHECK_EQ_INT(status_of(&in, "GET", "/v2/sandboxes?limit=x", NULL), 400);
	CHECK_EQ_INT(status_of(&in, "GET", "/v2/sandboxes?state=dead", NULL), 400);
	CHECK_EQ_INT(status_of(&in, "GET", "/v2/sandboxes?nextToken=garbage", NULL), 400);
	for (int i = 0; i < 5; i++) {
		char path[128];
		snprintf(path, sizeof path, "/sandboxes/%s", ids[i]);
		CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	}
	inst_stop(&in);
}

TEST(registry_survives_a_restart)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	char run[64], pau[64], lost[64], path[128], st[32];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\",\"metadata\":{\"k\":\"v\"}}", run), 201);
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", pau), 201);
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", lost), 201);
	snprintf(path, sizeof path, "/sandboxes/%s/pause", pau);
	CHECK_EQ_INT(status_of(&in, "POST", path, NULL), 204);
	inst_stop(&in);

	/* The VMM of one sandbox dies while the api is down. */
	struct sandbox rec;
	if (CHECK(registry_load(state_dir, lost, &rec) == 0)) {
		fake_set_dead(rec.vmm_pid);
		sandbox_clear(&rec);
	}
	/* A power loss left two empty records (running records are not synced):
	 * one of a running sandbox, one next to a paused snapshot. */
	write_file("sandboxes/emptyrecord000000000a/sandbox.json", "");
	write_file("sandboxes/emptyrecord000000000a/disk.layer", "layer");
	write_file("sandboxes/emptyrecord000000000b/sandbox.json", "");
	write_file("sandboxes/emptyrecord000000000b/paused/state", "snapshot");
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	CHECK(!path_exists(state_dir, "sandboxes/%s", "emptyrecord000000000a"));
	CHECK(path_exists(state_dir, "sandboxes/%s/paused/state", "emptyrecord000000000b"));
	snprintf(path, sizeof path, "%s/sandboxes/emptyrecord000000000b", state_dir);
	registry_remove_tree(path);
	CHECK_STREQ(state_of(&in, run, st, sizeof st), "running");
	CHECK_STREQ(state_of(&in, pau, st, sizeof st), "paused");
	CHECK_STREQ(state_of(&in, lost, st, sizeof st), "gone");
	CHECK(!record_on_disk(lost));
	struct reply r;
	CHECK_EQ_INT(call(&in, "GET", "/v2/sandboxes?metadata=k%3Dv", NULL, &r), 200);
	CHECK(r.j && r.j->count == 1);
	reply_free(&r);
	snprintf(path, sizeof path, "/sandboxes/%s/connect", pau);
	CHECK_EQ_INT(status_of(&in, "POST", path, "{\"timeout\":10}"), 201);
	snprintf(path, sizeof path, "/sandboxes/%s", pau);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	snprintf(path, sizeof path, "/sandboxes/%s", run);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
}

/* A restart while the host is starved: the VMMs are alive but miss their
 * first pings. They must stay sandboxes (they used to be removed, their
 * record and disk layer deleted under a still running VMM, and a kill then
 * got 404). */
TEST(restart_keeps_sandboxes_whose_vmm_answers_late)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	char a[64], b[64], st[32], path[128];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", a), 201);
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", b), 201);
	inst_stop(&in);
	int running = fake_running();
	fake_alive_misses = 3; /* both miss the first check, one the second too */
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	CHECK_EQ_INT(fake_alive_misses, 0);
	CHECK_STREQ(state_of(&in, a, st, sizeof st), "running");
	CHECK_STREQ(state_of(&in, b, st, sizeof st), "running");
	CHECK(record_on_disk(a) && record_on_disk(b));
	CHECK_EQ_INT(fake_running(), running);
	snprintf(path, sizeof path, "/sandboxes/%s", a);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);

	/* One that never answers goes, and its VMM is stopped with it. */
	fake_alive_misses = 1000;
	int stops = fake_stops;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	fake_alive_misses = 0;
	CHECK_STREQ(state_of(&in, b, st, sizeof st), "gone");
	CHECK(!record_on_disk(b));
	CHECK_EQ_INT(fake_stops - stops, 1);
	CHECK_EQ_INT(fake_running(), running - 2);
	inst_stop(&in);
}

TEST(templates_list_get_and_base_build)
{
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	struct reply r;
	CHECK_EQ_INT(call(&in, "GET", "/templates", NULL, &r), 200);
	CHECK(r.j && r.j->type == JSON_ARRAY && r.j->count == 4);
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "GET", "/templates/code-interpreter-v1", NULL, &r), 200);
	CHECK_STREQ(json_get_str(r.j, "templateID"), "ci1");
	CHECK_STREQ(json_get_str(r.j, "buildStatus"), "ready");
	CHECK_EQ_INT(json_get_int(r.j, "memoryMB", 0), 1024);
	reply_free(&r);
	CHECK_EQ_INT(call(&in, "GET", "/templates/none", NULL, &r), 404);
	CHECK(error_shape(&r, 404));
	reply_free(&r);
	inst_stop(&in);

	/* No base template, but a kernel and rootfs: it is built at start. */
	char base[512], kernel[512], rootfs[512];
	snprintf(base, sizeof base, "%s/templates/base", state_dir);
	registry_remove_tree(base);
	snprintf(kernel, sizeof kernel, "%s/vmlinux", run_dir);
	snprintf(rootfs, sizeof rootfs, "%s/rootfs.ext4", run_dir);
	fclose(fopen(kernel, "w"));
	fclose(fopen(rootfs, "w"));
	int builds = fake_builds;
	if (!CHECK(inst_start(&in, kernel, rootfs)))
		return;
	bool ready = false;
	for (int i = 0; i < 100 && !ready; i++) {
		call(&in, "GET", "/templates/base", NULL, &r);
		ready = r.status == 200 && json_get_str(r.j, "buildStatus") &&
			strcmp(json_get_str(r.j, "buildStatus"), "ready") == 0;
		reply_free(&r);
		if (!ready)
			usleep(20000);
	}
	CHECK(ready);
	CHECK_EQ_INT(fake_builds, builds + 1);
	char id[64];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	char path[128];
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
}

/* Waits until GET /templates/{id} says ready. */
static bool template_becomes_ready(struct inst *in, const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/templates/%s", id);
	for (int i = 0; i < 200; i++) {
		struct reply r;
		call(in, "GET", path, NULL, &r);
		bool ready = r.status == 200 && json_get_str(r.j, "buildStatus") &&
			     strcmp(json_get_str(r.j, "buildStatus"), "ready") == 0;
		reply_free(&r);
		if (ready)
			return true;
		usleep(20000);
	}
	return false;
}

static void write_sized(const char *path, size_t size)
{
	FILE *f = fopen(path, "w");
	if (!f || ftruncate(fileno(f), (off_t)size) < 0)
		abort();
	fclose(f);
}

TEST(image_templates_are_built_once_and_rebuilt_when_the_image_changes)
{
	char tdir[512], path[600], kernel[512];
	snprintf(tdir, sizeof tdir, "%s/image-templates", run_dir);
	snprintf(kernel, sizeof kernel, "%s/vmlinux", run_dir);
	write_sized(kernel, 1000);
	const char *names[] = {"base", "extra"};
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s/%s", tdir, names[i]);
		CHECK_EQ_INT(dir_make_all(path, 0755), 0);
		strncat(path, "/rootfs.ext4", sizeof path - strlen(path) - 1);
		write_sized(path, 4 << 20);
		snprintf(path, sizeof path, "%s/templates/%s", state_dir, names[i]);
		registry_remove_tree(path);
	}
	inst_templates_dir = tdir;

	/* First start: both are built, from the image's files. The first
	 * build's guest crashes: it is tried again, not left failed. */
	int builds = fake_builds;
	fake_build_failures = 1;
	struct inst in;
	if (!CHECK(inst_start(&in, kernel, "/nonexistent/rootfs.ext4")))
		return;
	CHECK(template_becomes_ready(&in, "base"));
	CHECK(template_becomes_ready(&in, "extra"));
	CHECK_EQ_INT(fake_builds, builds + 2);
	CHECK_EQ_INT(fake_build_failures, 0);
	struct reply r;
	CHECK_EQ_INT(call(&in, "GET", "/templates/extra", NULL, &r), 200);
	CHECK_EQ_INT(json_get_int(r.j, "diskSizeMB", 0), 4);
	reply_free(&r);
	inst_stop(&in);

	/* Nothing changed: nothing is rebuilt. */
	if (!CHECK(inst_start(&in, kernel, "/nonexistent/rootfs.ext4")))
		return;
	usleep(200000);
	CHECK_EQ_INT(fake_builds, builds + 2);
	inst_stop(&in);

	/* An image update changed one rootfs: that template alone is rebuilt. */
	snprintf(path, sizeof path, "%s/extra/rootfs.ext4", tdir);
	write_sized(path, 8 << 20);
	if (!CHECK(inst_start(&in, kernel, "/nonexistent/rootfs.ext4")))
		return;
	for (int i = 0; i < 200 && fake_builds < builds + 3; i++)
		usleep(20000);
	CHECK(template_becomes_ready(&in, "extra"));
	CHECK_EQ_INT(fake_builds, builds + 3);
	CHECK_EQ_INT(call(&in, "GET", "/templates/extra", NULL, &r), 200);
	CHECK_EQ_INT(json_get_int(r.j, "diskSizeMB", 0), 8);
	reply_free(&r);
	inst_stop(&in);

	/* A template a user built under that name (a build job's buildID) is
	 * theirs: a changed image file does not rebuild over it. */
	write_file("templates/extra/template.json",
		   "{\"templateID\":\"extra\",\"name\":\"extra\",\"state\":\"ready\",\"buildID\":\"b1\"}");
	snprintf(path, sizeof path, "%s/extra/rootfs.ext4", tdir);
	write_sized(path, 12 << 20);
	if (!CHECK(inst_start(&in, kernel, "/nonexistent/rootfs.ext4")))
		return;
	usleep(200000);
	CHECK_EQ_INT(fake_builds, builds + 3);
	inst_stop(&in);
	inst_templates_dir = "/nonexistent/templates";
	snprintf(path, sizeof path, "%s/templates/extra", state_dir); /* the pool tests count templates */
	registry_remove_tree(path);
}

/* --- the warm pool ------------------------------------------------------------------- */

struct pool_view {
	int status, size, ready, takes, fills, discards;
	int n;
	char ids[8][32];
	int pids[8];
};

/* GET /admin/pool, the entry of one template (zeros if it has none). */
static void pool_view(struct inst *in, const char *template_id, struct pool_view *v)
{
	memset(v, 0, sizeof *v);
	struct reply r;
	v->status = call(in, "GET", "/admin/pool", NULL, &r);
	for (struct json *t = json_get(r.j, "templates") ? json_get(r.j, "templates")->child : NULL; t; t = t->next) {
		if (!json_get_str(t, "templateID") || strcmp(json_get_str(t, "templateID"), template_id) != 0)
			continue;
		v->size = (int)json_get_int(t, "size", -1);
		v->ready = (int)json_get_int(t, "ready", -1);
		v->takes = (int)json_get_int(t, "takes", -1);
		v->fills = (int)json_get_int(t, "fills", -1);
		v->discards = (int)json_get_int(t, "discards", -1);
		for (struct json *m = json_get(t, "members") ? json_get(t, "members")->child : NULL; m && v->n < 8;
		     m = m->next, v->n++) {
			snprintf(v->ids[v->n], sizeof v->ids[v->n], "%s",
				 json_get_str(m, "id") ? json_get_str(m, "id") : "");
			v->pids[v->n] = (int)json_get_int(m, "pid", 0);
		}
	}
	reply_free(&r);
}

/* Waits (up to 5 s) until the template's pool has `ready` waiting VMMs
 * and, if min_fills >= 0, at least that many fills since start. */
static bool wait_pool(struct inst *in, const char *template_id, int ready, int min_fills, struct pool_view *v)
{
	for (int i = 0; i < 250; i++) {
		pool_view(in, template_id, v);
		if (v->ready == ready && v->fills >= min_fills)
			return true;
		usleep(20000);
	}
	fprintf(stderr, "    pool %s: ready %d (want %d), fills %d (want >= %d)\n", template_id, v->ready, ready,
		v->fills, min_fills);
	return false;
}

static void set_pool_json(const char *text)
{
	char path[512];
	snprintf(path, sizeof path, "%s/config/pool.json", state_dir);
	if (!text) {
		unlink(path);
		return;
	}
	write_file("config/pool.json.tmp", text);
	char from[512];
	snprintf(from, sizeof from, "%s/config/pool.json.tmp", state_dir);
	rename(from, path);
}

TEST(pool_fills_takes_and_refills)
{
	struct inst in;
	int prestarts = fake_prestarts, starts = fake_starts, claims = fake_claims;
	inst_pool_size = 2;
	inst_pool_interval_ms = 50;
	bool ok = inst_start(&in, NULL, NULL);
	inst_pool_size = 0;
	if (!CHECK(ok))
		return;
	struct pool_view v, ci;
	struct reply r;
	CHECK_EQ_INT(call_h(&in, "GET", "/admin/pool", NULL, NULL, NULL, &r), 401);
	reply_free(&r);
	/* Every ready template fills to the default; building or broken ones do not. */
	CHECK(wait_pool(&in, "base", 2, 2, &v));
	CHECK(wait_pool(&in, "ci1", 2, 2, &ci));
	CHECK_EQ_INT(v.status, 200);
	CHECK_EQ_INT(v.size, 2);
	pool_view(&in, "slow", &ci);
	CHECK_EQ_INT(ci.size, 0);
	CHECK_EQ_INT(fake_prestarts - prestarts, 4);
	CHECK_EQ_INT(fake_starts, starts);
	/* Pool VMMs are not sandboxes. */
	CHECK_EQ_INT(call(&in, "GET", "/v2/sandboxes", NULL, &r), 200);
	CHECK(r.j && r.j->count == 0);
	reply_free(&r);
	CHECK(!record_on_disk(v.ids[0]) && path_exists(state_dir, "pool/%s/disk.layer", v.ids[0]));
	CHECK(path_exists(run_dir, "pool/%s.json", v.ids[0]));

	/* A create takes the oldest one: its id, resumed, with the identity. */
	CHECK_EQ_INT(call(&in, "POST", "/sandboxes", "{\"templateID\":\"base\",\"envVars\":{\"W\":\"1\"}}", &r), 201);
	char id[64];
	snprintf(id, sizeof id, "%s", json_get_str(r.j, "sandboxID") ? json_get_str(r.j, "sandboxID") : "");
	reply_free(&r);
	CHECK_STREQ(id, v.ids[0]);
	CHECK_EQ_INT(fake_claims - claims, 1);
	CHECK_EQ_INT(fake_starts, starts);
	pthread_mutex_lock(&fake_mu);
	struct json *init = json_parse(fake_last_init, strlen(fake_last_init), NULL, 0);
	pthread_mutex_unlock(&fake_mu);
	CHECK_STREQ(json_get_str(init, "sandboxId"), id);
	CHECK_STREQ(json_get_str(json_get(init, "envVars"), "W"), "1");
	json_free(init);
	struct sandbox rec;
	if (CHECK(registry_load(state_dir, id, &rec) == 0)) {
		CHECK_EQ_INT(rec.vmm_pid, v.pids[0]);
		CHECK(strstr(rec.vsock, id) != NULL);
		sandbox_clear(&rec);
	}
	/* Its layer moved to the sandbox; nothing of the pool is left for it. */
	CHECK(path_exists(state_dir, "sandboxes/%s/disk.layer", id));
	CHECK(!path_exists(state_dir, "pool/%s", id));
	CHECK(!path_exists(run_dir, "pool/%s.json", id));
	/* Refilled in the background. */
	CHECK(wait_pool(&in, "base", 2, 3, &v));
	CHECK_EQ_INT(v.takes, 1);
	CHECK_EQ_INT(call(&in, "GET", "/v2/sandboxes", NULL, &r), 200);
	CHECK(r.j && r.j->count == 1);
	reply_free(&r);
	char path[128];
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	CHECK_EQ_INT(status_of(&in, "POST", "/admin/pool", "{}"), 405);
	inst_stop(&in);
}

TEST(pool_replaces_a_dead_member_and_stops_all_at_shutdown)
{
	struct inst in;
	inst_pool_size = 2;
	inst_pool_interval_ms = 50;
	bool ok = inst_start(&in, NULL, NULL);
	inst_pool_size = 0;
	if (!CHECK(ok))
		return;
	struct pool_view v;
	CHECK(wait_pool(&in, "base", 2, 2, &v));
	int dead = v.pids[0], discards = v.discards;
	fake_set_dead(dead);
	bool replaced = false;
	for (int i = 0; i < 250 && !replaced; i++) {
		usleep(20000);
		pool_view(&in, "base", &v);
		replaced = v.ready == 2 && v.discards > discards && v.pids[0] != dead && v.pids[1] != dead;
	}
	CHECK(replaced);
	CHECK(!path_exists(run_dir, "pool/%s.json", v.ids[0]) || v.pids[0] != dead);
	/* A running sandbox survives the api's stop; the pool's VMMs do not. */
	char id[64], keep[2][32];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	struct pool_view b, c;
	CHECK(wait_pool(&in, "base", 2, -1, &b));
	CHECK(wait_pool(&in, "ci1", 2, -1, &c));
	snprintf(keep[0], sizeof keep[0], "%s", b.ids[0]);
	snprintf(keep[1], sizeof keep[1], "%s", c.ids[0]);
	int running = fake_running();
	inst_stop(&in);
	CHECK_EQ_INT(fake_running(), running - 4);
	CHECK(!fake_alive(b.pids[0], NULL) && !fake_alive(b.pids[1], NULL));
	CHECK(!fake_alive(c.pids[0], NULL) && !fake_alive(c.pids[1], NULL));
	CHECK(!path_exists(run_dir, "pool/%s.json", keep[0]) && !path_exists(state_dir, "pool/%s", keep[1]));
	struct sandbox rec;
	if (CHECK(registry_load(state_dir, id, &rec) == 0)) {
		CHECK(fake_alive(rec.vmm_pid, NULL));
		sandbox_clear(&rec);
	}
	/* Restarted without a pool: the sandbox is still there. */
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	char st[32], path[128];
	CHECK_STREQ(state_of(&in, id, st, sizeof st), "running");
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
}

/* A waiting VMM that misses one ping (a starved host) is kept: replacing it
 * would only add a restore to the load. */
TEST(pool_keeps_a_member_that_misses_one_ping)
{
	struct inst in;
	inst_pool_size = 2;
	inst_pool_interval_ms = 50;
	bool ok = inst_start(&in, NULL, NULL);
	inst_pool_size = 0;
	if (!CHECK(ok))
		return;
	struct pool_view b, c, b2, c2;
	CHECK(wait_pool(&in, "base", 2, 2, &b));
	CHECK(wait_pool(&in, "ci1", 2, 2, &c));
	__atomic_store_n(&fake_alive_misses, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < 100 && __atomic_load_n(&fake_alive_misses, __ATOMIC_SEQ_CST); i++)
		usleep(20000);
	CHECK_EQ_INT(fake_alive_misses, 0);
	usleep(300000); /* several scans more */
	pool_view(&in, "base", &b2);
	pool_view(&in, "ci1", &c2);
	CHECK_EQ_INT(b2.discards, b.discards);
	CHECK_EQ_INT(c2.discards, c.discards);
	CHECK(b2.pids[0] == b.pids[0] && b2.pids[1] == b.pids[1]);
	CHECK(c2.pids[0] == c.pids[0] && c2.pids[1] == c.pids[1]);
	inst_stop(&in);
}

TEST(pool_size_zero_and_empty_pools_start_cold)
{
	struct inst in;
	int prestarts = fake_prestarts, starts = fake_starts, claims = fake_claims;
	if (!CHECK(inst_start(&in, NULL, NULL))) /* pool size 0 */
		return;
	char id[64], path[128];
	usleep(200000);
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	CHECK_EQ_INT(fake_starts - starts, 1);
	CHECK_EQ_INT(fake_prestarts, prestarts);
	CHECK_EQ_INT(fake_claims, claims);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);

	/* pool.json: base 1, everything else none. */
	set_pool_json("{\"base\":1,\"*\":0}");
	inst_pool_size = 2;
	inst_pool_interval_ms = 50;
	bool ok = inst_start(&in, NULL, NULL);
	if (!CHECK(ok))
		return;
	struct pool_view v;
	CHECK(wait_pool(&in, "base", 1, 1, &v));
	pool_view(&in, "ci1", &v);
	CHECK_EQ_INT(v.ready, 0);
	/* Changed while running: base to 0, its VMM goes; creates are cold. */
	set_pool_json("{\"base\":0,\"code-interpreter-v1\":1}");
	CHECK(wait_pool(&in, "base", 0, -1, &v));
	CHECK(wait_pool(&in, "ci1", 1, 1, &v)); /* named by its alias */
	/* A rebuilt template: its waiting VMM is stale and replaced. */
	int stale = v.pids[0], discards = v.discards;
	write_file("templates/ci1/snap/state", "rebuilt");
	bool replaced = false;
	for (int i = 0; i < 250 && !replaced; i++) {
		usleep(20000);
		pool_view(&in, "ci1", &v);
		replaced = v.ready == 1 && v.discards > discards && v.pids[0] != stale;
	}
	CHECK(replaced);
	CHECK(!fake_alive(stale, NULL));
	starts = fake_starts;
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	CHECK_EQ_INT(fake_starts - starts, 1);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	/* The same through the API: PUT /admin/pool checks the whole body, then
	 * replaces pool.json, which the next scan applies. */
	struct reply pr;
	CHECK_EQ_INT(call(&in, "PUT", "/admin/pool", "{\"base\":\"two\"}", &pr), 400);
	CHECK(error_shape(&pr, 400));
	reply_free(&pr);
	CHECK_EQ_INT(status_of(&in, "PUT", "/admin/pool", "{\"../x\":1}"), 400);
	CHECK_EQ_INT(status_of(&in, "PUT", "/admin/pool", "{\"base\":65}"), 400);
	CHECK_EQ_INT(status_of(&in, "PUT", "/admin/pool", "[1]"), 400);
	CHECK_EQ_INT(status_of(&in, "DELETE", "/admin/pool", NULL), 405);
	CHECK(wait_pool(&in, "base", 0, -1, &v)); /* the bad ones changed nothing */
	CHECK_EQ_INT(call(&in, "PUT", "/admin/pool", "{\"base\":1,\"*\":0}", &pr), 200);
	CHECK_EQ_INT(json_get_int(pr.j, "base", -1), 1);
	reply_free(&pr);
	CHECK(wait_pool(&in, "base", 1, 1, &v));
	CHECK(wait_pool(&in, "ci1", 0, -1, &v));
	inst_stop(&in);

	/* A member that died unnoticed (no check runs here): the create that
	 * takes it still succeeds, cold. */
	set_pool_json("{\"base\":1,\"*\":0}");
	inst_pool_interval_ms = 60000;
	ok = inst_start(&in, NULL, NULL);
	inst_pool_size = 0;
	inst_pool_interval_ms = 0;
	if (!CHECK(ok))
		return;
	CHECK(wait_pool(&in, "base", 1, 1, &v));
	fake_set_dead(v.pids[0]);
	starts = fake_starts;
	claims = fake_claims;
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	CHECK_STREQ(id, v.ids[0]);
	CHECK_EQ_INT(fake_starts - starts, 1);
	CHECK_EQ_INT(fake_claims, claims);
	CHECK(!path_exists(run_dir, "pool/%s.json", id) && !path_exists(state_dir, "pool/%s", id));
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
	set_pool_json(NULL);
}

TEST(pool_that_cannot_fill_leaves_creates_cold)
{
	struct inst in;
	int starts = fake_starts;
	fake_fail_prestart = true;
	inst_pool_size = 1;
	inst_pool_interval_ms = 50;
	bool ok = inst_start(&in, NULL, NULL);
	inst_pool_size = 0;
	inst_pool_interval_ms = 0;
	if (!CHECK(ok)) {
		fake_fail_prestart = false;
		return;
	}
	usleep(300000);
	struct pool_view v;
	pool_view(&in, "base", &v);
	CHECK_EQ_INT(v.size, 1);
	CHECK_EQ_INT(v.ready, 0);
	CHECK_EQ_INT(v.fills, 0);
	char id[64], path[128];
	CHECK_EQ_INT(create(&in, "{\"templateID\":\"base\"}", id), 201);
	CHECK_EQ_INT(fake_starts - starts, 1);
	snprintf(path, sizeof path, "/sandboxes/%s", id);
	CHECK_EQ_INT(status_of(&in, "DELETE", path, NULL), 204);
	inst_stop(&in);
	fake_fail_prestart = false;
	char dir[512];
	snprintf(dir, sizeof dir, "%s/pool", state_dir);
	CHECK(access(dir, F_OK) < 0 || rmdir(dir) == 0); /* no half-made member left */
}

TEST(pool_leftovers_of_an_earlier_api_are_stopped)
{
	/* As a crashed api leaves them: a marker, a running VMM, a layer. */
	const char *id = "leftover0000000000aa";
	pid_t pid = fake_new_pid(&(struct vm_spec){.init_json = NULL});
	char rel[128], text[128];
	snprintf(rel, sizeof rel, "pool/%s/disk.layer", id);
	write_file(rel, "");
	write_file("pool/stray/disk.layer", "");
	char marker[512];
	snprintf(marker, sizeof marker, "%s/pool", run_dir);
	registry_mkdir_p(marker);
	snprintf(marker, sizeof marker, "%s/pool/%s.json", run_dir, id);
	snprintf(text, sizeof text, "{\"template\":\"base\",\"pid\":%d}", (int)pid);
	FILE *f = fopen(marker, "w");
	fputs(text, f);
	fclose(f);
	struct inst in;
	if (!CHECK(inst_start(&in, NULL, NULL)))
		return;
	struct reply r;
	bool started = false;
	for (int i = 0; i < 250 && !started; i++) {
		call(&in, "GET", "/admin/pool", NULL, &r);
		started = json_get_bool(r.j, "started", false);
		reply_free(&r);
		if (!started)
			usleep(20000);
	}
	CHECK(started);
	CHECK(!fake_alive(pid, NULL));
	CHECK(access(marker, F_OK) < 0);
	CHECK(!path_exists(state_dir, "pool/%s", id) && !path_exists(state_dir, "pool/%s", "stray"));
	inst_stop(&in);
}

/* Last: removes the test's directories. */
TEST(zz_cleanup)
{
	char top[256];
	snprintf(top, sizeof top, "/tmp/test_api.%d", (int)getpid());
	CHECK(registry_remove_tree(top) == 0);
}
