/* test_registry.c - sandbox.json round trips, ids, times, the create body parser. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "../create_req.h"
#include "../registry.h"
#include "../../lib/tests/test.h"

TEST(ids_and_tokens)
{
	char id[SANDBOX_ID_LEN + 1], tok[SANDBOX_TOKEN_LEN + 1];
	sandbox_new_id(id);
	CHECK_EQ_INT(strlen(id), 20);
	CHECK(sandbox_id_valid(id));
	sandbox_new_token(tok);
	CHECK_EQ_INT(strlen(tok), 64);
	CHECK(!sandbox_id_valid(""));
	CHECK(!sandbox_id_valid("a-b"));
	CHECK(!sandbox_id_valid("../x"));
	CHECK(!sandbox_id_valid("ABC"));
	CHECK(template_id_valid("code-interpreter-v1"));
	CHECK(!template_id_valid(".."));
	CHECK(!template_id_valid("a/b"));
}

TEST(time_round_trip)
{
	char t[32];
	time_format(1795431600123LL, t);
	CHECK_STREQ(t, "2026-11-23T11:00:00.123Z");
	int64_t ms;
	CHECK(time_parse(t, &ms) == 0 && ms == 1795431600123LL);
	CHECK(time_parse("2026-11-23T11:00:00Z", &ms) == 0 && ms == 1795431600000LL);
	CHECK(time_parse("2026-11-23T11:00:00.5+00:00", &ms) == 0 && ms == 1795431600500LL);
	CHECK(time_parse("2026-11-23 11:00:00Z", &ms) < 0);
	CHECK(time_parse("2026-11-23T11:00:00", &ms) < 0);
	CHECK(time_parse(NULL, &ms) < 0);
}

TEST(record_round_trip_on_disk)
{
	char dir[128];
	snprintf(dir, sizeof dir, "/tmp/test_registry.%d", (int)getpid());
	struct sandbox rec = {0}, back;
	snprintf(rec.id, sizeof rec.id, "abc123");
	rec.template_id = strdup("base");
	rec.client_id = strdup("cubeos");
	rec.started_ms = 1795431600123LL;
	rec.end_ms = rec.started_ms + 300000;
	rec.cpu_count = 2;
	rec.memory_mb = 512;
	rec.state = SANDBOX_PAUSED;
	kvs_set(&rec.metadata, "k", "v \"quoted\"");
	kvs_set(&rec.env_vars, "FOO", "bar");
	rec.secure = true;
	rec.envd_access_token = strdup("tok");
	rec.vmm_pid = 0;
	rec.vsock = strdup("/run/cubeos/sandboxes/abc123/vsock.sock");
	CHECK(registry_save(dir, &rec) == 0);
	CHECK(registry_load(dir, "abc123", &back) == 0);
	CHECK_STREQ(back.template_id, "base");
	CHECK(back.started_ms == rec.started_ms && back.end_ms == rec.end_ms);
	CHECK(back.state == SANDBOX_PAUSED && back.secure && back.cpu_count == 2);
	CHECK_STREQ(kvs_get(&back.metadata, "k"), "v \"quoted\"");
	CHECK_STREQ(kvs_get(&back.env_vars, "FOO"), "bar");
	CHECK_STREQ(back.envd_access_token, "tok");
	CHECK_STREQ(back.vsock, rec.vsock);
	CHECK(back.alias == NULL && back.traffic_access_token == NULL);
	sandbox_clear(&back);
	errno = 0;
	CHECK(registry_load(dir, "../etc", &back) < 0 && errno == EINVAL);
	CHECK(registry_load(dir, "nosuch", &back) < 0 && errno == ENOENT);
	CHECK(registry_remove(dir, "abc123") == 0);
	CHECK(registry_load(dir, "abc123", &back) < 0 && errno == ENOENT);
	sandbox_clear(&rec);
	CHECK(registry_remove_tree(dir) == 0);
}

TEST(damaged_record_is_einval)
{
	char dir[128], path[256];
	snprintf(dir, sizeof dir, "/tmp/test_registry.d%d", (int)getpid());
	snprintf(path, sizeof path, "%s/sandboxes/x1", dir);
	registry_mkdir_p(path);
	snprintf(path, sizeof path, "%s/sandboxes/x1/sandbox.json", dir);
	FILE *f = fopen(path, "w");
	fputs("{\"sandboxID\":\"x1\",\"templateID\":\"base\",\"state\":\"weird\"}", f);
	fclose(f);
	struct sandbox rec;
	errno = 0;
	CHECK(registry_load(dir, "x1", &rec) < 0 && errno == EINVAL);
	CHECK(registry_remove_tree(dir) == 0);
}

TEST(create_body_defaults)
{
	struct create_req r;
	char err[256];
	const char *b = "{\"templateID\":\"base\",\"metadata\":null,\"unknown\":[1,2]}";
	CHECK(create_req_parse(b, strlen(b), 86400, &r, err, sizeof err) == 0);
	CHECK_STREQ(r.template_id, "base");
	CHECK_EQ_INT(r.timeout_s, 300);
	CHECK(r.allow_internet_access && r.secure && !r.auto_pause && r.metadata.n == 0);
	create_req_free(&r);
	b = "{\"templateID\":\"base\",\"secure\":false}"; /* only an explicit false is unsecured */
	CHECK(create_req_parse(b, strlen(b), 86400, &r, err, sizeof err) == 0 && !r.secure);
	create_req_free(&r);
	b = "{\"templateID\":\"base\",\"envVars\":{\"A\":\"a\\u0000b\"}}";
	CHECK(create_req_parse(b, strlen(b), 86400, &r, err, sizeof err) < 0 && strstr(err, "envVars.A"));
	create_req_free(&r);
}
