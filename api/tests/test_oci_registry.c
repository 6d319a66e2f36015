/* test_oci_registry.c - oci_build_rootfs end to end against a fake registry
 * served by this test on loopback (the token dance, basic credentials,
 * index selection, a redirected blob, chunked answers, digest mismatches,
 * 404s, limits) and from docker-save and OCI layout archives built here;
 * the resulting ext4 is read back with debugfs. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/b64.h"
#include "../../lib/fileio.h"
#include "../../lib/log.h"
#include "../../lib/tests/test.h"
#include "../oci.h"
#include "fake_registry.h"
#include "oci_fixture.h"

/* --- running builds ------------------------------------------------------- */

struct run {
	char *dir;
	char out[300], config[300], ref[200];
	char err[1024];
	char phases[512], last_phase[32];
	int last_pull_pct;
	struct oci_build_opts o;
};

static void on_progress(void *arg, const char *phase, int pct, const char *detail)
{
	struct run *r = arg;
	size_t l = strlen(r->phases);
	if (strcmp(phase, r->last_phase) != 0)
		snprintf(r->phases + l, sizeof r->phases - l, " %s,", phase);
	snprintf(r->last_phase, sizeof r->last_phase, "%s", phase);
	if (strcmp(phase, "pulling") == 0)
		r->last_pull_pct = pct;
}

static void run_init(struct run *r, const char *tag)
{
	memset(r, 0, sizeof *r);
	r->dir = tmpdir_new();
	snprintf(r->out, sizeof r->out, "%s/rootfs.ext4", r->dir);
	snprintf(r->config, sizeof r->config, "%s/image.json", r->dir);
	snprintf(r->ref, sizeof r->ref, "127.0.0.1:%d/test/img:%s", fk.port, tag);
	r->o.image = r->ref;
	r->o.out = r->out;
	r->o.agent = "/bin/true";
	r->o.insecure_registry = true;
	r->o.writable_bytes = 8 << 20;
	r->o.timeout_ms = 5000;
	r->o.progress = on_progress;
	r->o.progress_arg = r;
}

static void run_free(struct run *r)
{
	rm_rf(r->dir);
	free(r->dir);
}

static int build(struct run *r)
{
	return oci_build_rootfs(&r->o, r->err, sizeof r->err);
}

/* debugfs -R CMD on the image; its stdout. */
static char *debugfs(const char *img_path, const char *cmd)
{
	static char out[8192];
	char line[600];
	snprintf(line, sizeof line, "debugfs -R '%s' '%s' 2>/dev/null", cmd, img_path);
	FILE *p = popen(line, "r");
	size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
	if (p)
		pclose(p);
	out[n] = '\0';
	return out;
}

static void check_rootfs(const char *image)
{
	CHECK(strstr(debugfs(image, "cat /app/hello"), "hello from layer 2") != NULL);
	if (geteuid() == 0) /* owners are kept only with the privilege to chown */
		CHECK(strstr(debugfs(image, "stat /app/hello"), "User:  1000   Group:  1000") != NULL);
	CHECK(strstr(debugfs(image, "cat /etc/passwd"), "user:x:1000:1000:user:/home/user:/bin/sh") != NULL);
	CHECK(strstr(debugfs(image, "cat /etc/passwd"), "nobody:x:65534") != NULL);
	CHECK(strstr(debugfs(image, "cat /etc/group"), "user:x:1000:") != NULL);
	CHECK(strstr(debugfs(image, "stat /sbin/init"), "Fast link dest: \"/usr/bin/cube-agent\"") != NULL);
	CHECK(strstr(debugfs(image, "cat /sbin/init.image"), "image's own init") != NULL);
	CHECK(strstr(debugfs(image, "stat /usr/bin/cube-agent"), "Mode:  0755") != NULL);
	CHECK(strstr(debugfs(image, "stat /tmp"), "Mode:  01777") != NULL);
	if (geteuid() == 0)
		CHECK(strstr(debugfs(image, "stat /home/user"), "User:  1000") != NULL);
	const char *ls = debugfs(image, "ls -l /");
	CHECK(strstr(ls, "proc") && strstr(ls, "sys") && strstr(ls, "dev") && strstr(ls, "run"));
	CHECK(strstr(debugfs(image, "ls /var/cache"), "junk") == NULL);
}

TEST(pull_with_token_dance_index_and_redirects)
{
	fake_registry_reset();
	fk.require_token = true;
	struct run r;
	run_init(&r, "multi");
	if (!CHECK(build(&r) == OCI_OK)) {
		run_free(&r);
		return;
	}
	CHECK_EQ_INT(fk.token_requests, 1); /* one token for the whole pull */
	CHECK_STREQ(fk.last_scope, "repository%3Atest%2Fimg%3Apull");
	CHECK_EQ_INT(fk.redirects_followed, 3); /* config + 2 layers */
	CHECK(fk.storage_saw_auth);		/* same origin: the token goes along */
	CHECK_STREQ(r.phases, " pulling, unpacking, rootfs,");
	CHECK_EQ_INT(r.last_pull_pct, 100);
	check_rootfs(r.out);
	size_t len;
	char *cfg = file_read_all(r.config, 65536, &len);
	if (CHECK(cfg != NULL)) {
		CHECK(strstr(cfg, "\"env\":[\"PATH=/usr/bin:/bin\",\"GREETING=hi\"]") != NULL);
		CHECK(strstr(cfg, "\"workingDir\":\"/app\"") != NULL);
		CHECK(strstr(cfg, "\"exposedPorts\":[\"8080/tcp\"]") != NULL);
		CHECK(strstr(cfg, "\"source\":\"registry\"") != NULL);
	}
	free(cfg);
	struct stat st;
	CHECK(stat(r.out, &st) == 0 && st.st_size > (8 << 20));
	char work[400];
	snprintf(work, sizeof work, "%s.work", r.out);
	CHECK(access(work, F_OK) < 0); /* scratch removed */
	run_free(&r);
}

TEST(pull_by_digest_chunked_with_credentials)
{
	fake_registry_reset();
	fk.require_token = true;
	fk.require_creds = true;
	fk.chunked = true;
	struct run r;
	run_init(&r, "x");
	snprintf(r.ref, sizeof r.ref, "127.0.0.1:%d/test/img@%s", fk.port, img.manifest.digest);
	CHECK(build(&r) == OCI_EAUTH); /* anonymous: refused */
	CHECK(strstr(r.err, "refused anonymous access") != NULL);
	r.o.username = "u";
	r.o.password = "wrong";
	CHECK(build(&r) == OCI_EAUTH);
	CHECK(strstr(r.err, "refused the credentials") != NULL);
	r.o.password = "p";
	CHECK(build(&r) == OCI_OK);
	check_rootfs(r.out);
	run_free(&r);
}

static bool cancel_when_unpacking(void *arg)
{
	return strstr(((struct run *)arg)->phases, "unpacking") != NULL;
}

TEST(cancel_between_steps)
{
	fake_registry_reset();
	struct run r;
	run_init(&r, "single");
	r.o.cancelled = cancel_when_unpacking;
	CHECK(build(&r) == OCI_ECANCELED);
	CHECK(access(r.out, F_OK) < 0);
	run_free(&r);
}

TEST(errors_are_classified)
{
	fake_registry_reset();
	struct run r;
	run_init(&r, "nosuchtag");
	CHECK(build(&r) == OCI_ENOTFOUND);
	CHECK(strstr(r.err, "not found") && strstr(r.err, "MANIFEST_UNKNOWN"));
	snprintf(r.ref, sizeof r.ref, "127.0.0.1:%d/other/repo:x", fk.port);
	CHECK(build(&r) == OCI_ENOTFOUND);
	snprintf(r.ref, sizeof r.ref, "127.0.0.1:%d/test/img:single", fk.port);
	fk.corrupt_layer2 = true;
	CHECK(build(&r) == OCI_EDIGEST);
	CHECK(strstr(r.err, "digest mismatch") && strstr(r.err, img.layer2.digest));
	CHECK(access(r.out, F_OK) < 0); /* nothing half-made */
	fk.corrupt_layer2 = false;
	r.o.max_blob_bytes = 16;
	CHECK(build(&r) == OCI_ETOOBIG);
	r.o.max_blob_bytes = 0;
	snprintf(r.ref, sizeof r.ref, "127.0.0.1:1/test/img:single"); /* nobody listens */
	CHECK(build(&r) == OCI_ENET);
	snprintf(r.ref, sizeof r.ref, "127.0.0.1:%d/test/img:single", fk.port);
	r.o.insecure_registry = false; /* TLS to a plain HTTP server: it waits for a head */
	r.o.timeout_ms = 300;
	CHECK(build(&r) == OCI_ENET);
	CHECK(strstr(r.err, "timed out") != NULL);
	r.o.timeout_ms = 5000;
	r.o.insecure_registry = true;
	r.o.agent = "/nonexistent/agent";
	CHECK(build(&r) == OCI_EINVAL);
	run_free(&r);
}

/* --- archives -------------------------------------------------------------- */

static void archive_add(struct buf *tar, const char *name, const struct buf *data)
{
	tw_raw(tar, name, '0', &tw_default, NULL, data->data, data->len);
}

static int build_archive(struct run *r, struct buf *tar, bool gz)
{
	char path[400];
	snprintf(path, sizeof path, "%s/image.tar%s", r->dir, gz ? ".gz" : "");
	struct buf z = BUF_INIT;
	if (gz)
		gzip_buf(tar, &z);
	const struct buf *w = gz ? &z : tar;
	FILE *f = fopen(path, "w");
	fwrite(w->data, 1, w->len, f);
	fclose(f);
	buf_free(&z);
	r->o.image = NULL;
	r->o.archive = path;
	return build(r);
}

TEST(docker_save_archive)
{
	struct run r;
	run_init(&r, "x");
	struct buf tar = BUF_INIT, mj = BUF_INIT;
	buf_printf(&mj,
		   "[{\"Config\":\"%s.json\",\"RepoTags\":[\"test/img:1\"],\"Layers\":[\"aaa/layer.tar\","
		   "\"bbb/layer.tar\"]}]",
		   img.config.digest + 7);
	char name[200];
	snprintf(name, sizeof name, "%s.json", img.config.digest + 7);
	tw_dir(&tar, "aaa/", NULL);
	archive_add(&tar, "aaa/layer.tar", &img.layer1.data); /* gzip inside: told by magic */
	tw_dir(&tar, "bbb/", NULL);
	archive_add(&tar, "bbb/layer.tar", &img.layer2.data);
	archive_add(&tar, name, &img.config.data);
	archive_add(&tar, "manifest.json", &mj);
	tw_end(&tar);
	CHECK(build_archive(&r, &tar, false) == OCI_OK);
	check_rootfs(r.out);
	char *cfg = file_read_all(r.config, 65536, NULL);
	CHECK(cfg && strstr(cfg, "\"source\":\"archive\""));
	free(cfg);
	/* A manifest.json naming a layer outside the archive. */
	struct buf bad = BUF_INIT, mj2 = BUF_INIT;
	buf_printf(&mj2, "[{\"Config\":\"%s\",\"Layers\":[\"../../../../etc/passwd\"]}]", name);
	archive_add(&bad, name, &img.config.data);
	archive_add(&bad, "manifest.json", &mj2);
	tw_end(&bad);
	CHECK(build_archive(&r, &bad, false) == OCI_ENOTFOUND);
	buf_free(&tar);
	buf_free(&mj);
	buf_free(&bad);
	buf_free(&mj2);
	run_free(&r);
}

TEST(oci_layout_archive_gzipped)
{
	struct run r;
	run_init(&r, "x");
	struct buf tar = BUF_INIT, layout = BUF_INIT, index = BUF_INIT;
	buf_puts(&layout, "{\"imageLayoutVersion\":\"1.0.0\"}");
	buf_printf(&index,
		   "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
		   "\"digest\":\"%s\",\"size\":%zu}]}",
		   img.index.digest, img.index.data.len);
	archive_add(&tar, "oci-layout", &layout);
	archive_add(&tar, "index.json", &index);
	tw_dir(&tar, "blobs/", NULL);
	tw_dir(&tar, "blobs/sha256/", NULL);
	const struct blob *all[] = {&img.index, &img.manifest, &img.config, &img.layer1, &img.layer2};
	for (size_t i = 0; i < 5; i++) {
		char name[120];
		snprintf(name, sizeof name, "blobs/sha256/%s", all[i]->digest + 7);
		archive_add(&tar, name, &all[i]->data);
	}
	tw_end(&tar);
	CHECK(build_archive(&r, &tar, true) == OCI_OK);
	check_rootfs(r.out);
	/* The same archive with a blob changed: caught. */
	size_t at = (size_t)(memmem(tar.data, tar.len, img.layer2.data.data, img.layer2.data.len) - (void *)tar.data);
	tar.data[at + 600] ^= 1;
	CHECK(build_archive(&r, &tar, false) == OCI_EDIGEST);
	buf_free(&tar);
	buf_free(&layout);
	buf_free(&index);
	run_free(&r);
}

__attribute__((constructor)) static void setup(void)
{
	log_set_level(LOG_ERROR); /* the failures this test provokes are logged as warnings */
	fake_registry_build_image();
	fake_registry_start();
}
