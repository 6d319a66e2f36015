/* template_jobs.c - template build jobs: phases, percentage, log, and their
 * files (see template_jobs.h). The routes are in template_routes.c. */
#include "template_jobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "apicore.h"
#include "create_req.h"

#define BUILD_JSON_MAX (256 * 1024)
#define COPY_CHUNK     (1 << 20)

struct tbuild {
	struct job job;
	struct api *a;
	struct tbuild *next; /* a->builds, loop thread */
	char name[TEMPLATE_ID_MAX + 1];
	char id[TBUILD_ID_LEN + 1];
	char dir[4096];
	char kernel[4096];
	char *source_ref, *source_options;
	char *source_secret; /* never written to disk; wiped when the build ends */
	struct json *extra;  /* members added to template.json (an import's env, ...) */
	const struct tbuild_source *source;
	int cpus, mem_mib;
	char created[32];
	/* The worker's view while it runs. */
	char phase[16];
	int pct;
	int disk_mb;
	int rc;
	char err[512];
};

/* --- files ------------------------------------------------------------------- */

void tbuild_path(const struct api *a, const char *name, const char *file, char *out, size_t n)
{
	snprintf(out, n, "%s/templates/%s/%s", a->cfg.state_dir, name, file);
}

static void write_build_json(struct tbuild *b, const char *status, const char *reason, bool final)
{
	char now[32], path[4200];
	time_format(wall_ms(), now);
	struct buf out = BUF_INIT;
	struct jw w;
	jw_init(&w, &out);
	jw_obj(&w);
	jw_kstr(&w, "buildID", b->id);
	jw_kstr(&w, "templateID", b->name);
	jw_kstr(&w, "status", status);
	jw_kstr(&w, "phase", b->phase);
	jw_kint(&w, "progress", b->pct);
	jw_kstr(&w, "createdAt", b->created);
	jw_kstr(&w, "updatedAt", now);
	if (final)
		jw_kstr(&w, "finishedAt", now);
	if (reason)
		jw_kstr(&w, "reason", reason);
	jw_key(&w, "source");
	jw_obj(&w);
	jw_kstr(&w, "type", b->source->type);
	jw_kstr(&w, "ref", b->source_ref);
	if (b->source_options) {
		jw_key(&w, "options");
		jw_raw(&w, b->source_options, strlen(b->source_options));
	}
	jw_end(&w);
	jw_kint(&w, "cpuCount", b->cpus);
	jw_kint(&w, "memoryMB", b->mem_mib);
	jw_end(&w);
	buf_putc(&out, '\n');
	snprintf(path, sizeof path, "%s/build.json", b->dir);
	if (file_replace(path, out.data, out.len, 0644, final) < 0)
		log_error("template.build", "template=%s cannot write %s: %s", b->name, path, strerror(errno));
	buf_free(&out);
}

/* template.json, in the shape templates.c lists and the warm pool reads. */
static void write_template_json(struct tbuild *b, const char *state, const char *error)
{
	char rootfs[4200];
	snprintf(rootfs, sizeof rootfs, "%s/rootfs.ext4", b->dir);
	struct template_file f = {.name = b->name,
				  .build_id = b->id,
				  .state = state,
				  .kernel = b->kernel,
				  .rootfs = rootfs,
				  .created = b->created,
				  .error = error,
				  .progress = b->pct,
				  .cpus = b->cpus,
				  .mem_mib = b->mem_mib,
				  .disk_mb = b->disk_mb,
				  .extra = b->extra};
	template_file_write(b->dir, &f);
}

/* One JSON line, appended in one write: a reader sees whole lines, or a
 * last partial one it skips. */
static void append_log(const char *dir, const char *level, const char *step, const char *msg)
{
	char now[32], path[4200];
	time_format(wall_ms(), now);
	struct buf line = BUF_INIT;
	struct jw w;
	jw_init(&w, &line);
	jw_obj(&w);
	jw_kstr(&w, "timestamp", now);
	jw_kstr(&w, "level", level);
	jw_kstr(&w, "step", step);
	jw_kstr(&w, "message", msg);
	jw_end(&w);
	buf_putc(&line, '\n');
	snprintf(path, sizeof path, "%s/build.log", dir);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || write_full(fd, line.data, line.len) < 0)
		log_warn("template.build", "cannot append to %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	buf_free(&line);
}

/* --- what producers call (worker thread) ---------------------------------------- */

const char *tbuild_source_ref(const struct tbuild *b)
{
	return b->source_ref;
}

const char *tbuild_source_options(const struct tbuild *b)
{
	return b->source_options;
}

const char *tbuild_source_secret(const struct tbuild *b)
{
	return b->source_secret;
}

static void free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

const char *tbuild_dir(const struct tbuild *b)
{
	return b->dir;
}

void tbuild_set_template_extra(struct tbuild *b, struct json *obj)
{
	json_free(b->extra);
	b->extra = obj;
}

void tbuild_log(struct tbuild *b, const char *level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	append_log(b->dir, level, b->phase, msg);
	log_info("template.build", "template=%s build=%s %s: %s", b->name, b->id, b->phase, msg);
}

/* Moves the build on; a new phase is logged, a new percentage only saved. */
void tbuild_phase(struct tbuild *b, const char *phase, int pct)
{
	bool moved = strcmp(b->phase, phase) != 0;
	if (!moved && pct == b->pct)
		return;
	snprintf(b->phase, sizeof b->phase, "%s", phase);
	b->pct = pct < 0 ? 0 : pct > 100 ? 100 : pct;
	if (moved)
		tbuild_log(b, "info", "%s (%d%%)", phase, b->pct);
	write_build_json(b, "building", NULL, false);
	write_template_json(b, "building", NULL);
}

/* --- the rootfs producer: a copy of an ext4 image on the appliance ------------------- */

/* The template owns its copy: the snapshot names the rootfs by path, so the
 * source may go away or change without breaking the template's sandboxes.
 * Holes stay holes (SEEK_DATA/SEEK_HOLE): images from mkfs are sparse. */
static int copy_range(int in, int out, off_t from, off_t to, char *buf, struct tbuild *b, off_t size)
{
	while (from < to) {
		size_t want = (size_t)(to - from) < COPY_CHUNK ? (size_t)(to - from) : COPY_CHUNK;
		ssize_t n = pread(in, buf, want, from);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		if (pwrite(out, buf, (size_t)n, from) != n)
			return -1;
		from += n;
		int pct = TBUILD_PCT_PRODUCE + (int)((int64_t)(TBUILD_PCT_BOOT - TBUILD_PCT_PRODUCE) * from / size);
		tbuild_phase(b, "rootfs", pct);
	}
	return 0;
}

static int copy_sparse(int in, int out, off_t size, struct tbuild *b)
{
	char *buf = malloc(COPY_CHUNK);
	if (!buf)
		return -1;
	int rc = 0;
	off_t pos = 0;
	while (rc == 0 && pos < size) {
		off_t data = lseek(in, pos, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break; /* only a hole is left */
		if (data < 0) {
			data = pos; /* no SEEK_DATA here: copy it all */
		}
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			hole = size;
		rc = copy_range(in, out, data, hole, buf, b, size);
		pos = hole;
	}
	free(buf);
	if (rc == 0 && ftruncate(out, size) < 0)
		rc = -1;
	return rc;
}

static int produce_rootfs_copy(struct tbuild *b, const char *out, char *err, size_t errsz)
{
	const char *src = tbuild_source_ref(b);
	tbuild_phase(b, "rootfs", TBUILD_PCT_PRODUCE);
	tbuild_log(b, "info", "copying %s", src);
	int in = open(src, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (in < 0 || fstat(in, &st) < 0) {
		snprintf(err, errsz, "cannot open %s: %s", src, strerror(errno));
		if (in >= 0)
			close(in);
		return -1;
	}
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", out);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int rc = fd < 0 ? -1 : copy_sparse(in, fd, st.st_size, b);
	if (rc == 0 && fsync(fd) < 0)
		rc = -1;
	int e = errno;
	close(in);
	if (fd >= 0)
		close(fd);
	if (rc == 0 && rename(tmp, out) < 0) {
		rc = -1;
		e = errno;
	}
	if (rc < 0) {
		unlink(tmp);
		snprintf(err, errsz, "cannot copy %s to %s: %s", src, out, strerror(e));
		return -1;
	}
	b->disk_mb = (int)((st.st_size + (1 << 20) - 1) >> 20);
	tbuild_log(b, "info", "rootfs ready: %d MiB", b->disk_mb);
	return 0;
}

const struct tbuild_source tbuild_source_rootfs = {.type = "rootfs", .produce = produce_rootfs_copy};

/* An ext4 superblock starts at byte 1024; its magic 0xEF53 is at 56 in it. */
int tbuild_check_ext4(const char *path, char *err, size_t errsz)
{
	struct stat st;
	if (path[0] != '/') {
		snprintf(err, errsz, "fromRootfs must be an absolute path on the appliance");
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errsz, "%s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	unsigned char magic[2] = {0};
	ssize_t n = pread(fd, magic, 2, 1024 + 56);
	close(fd);
	if (n != 2 || magic[0] != 0x53 || magic[1] != 0xEF) {
		snprintf(err, errsz, "%s is not an ext4 image", path);
		return -1;
	}
	return 0;
}

/* --- the job ------------------------------------------------------------------------------ */

/* vm_ops.template_build reports boot 0/10, agent 50, snapshot 60/90, done 100. */
static void on_vm_progress(void *arg, int pct, const char *phase)
{
	struct tbuild *b = arg;
	bool snap = phase && (strcmp(phase, "snapshot") == 0 || strcmp(phase, "done") == 0);
	int overall = TBUILD_PCT_BOOT + (99 - TBUILD_PCT_BOOT) * (pct < 0 ? 0 : pct > 100 ? 100 : pct) / 100;
	tbuild_phase(b, snap ? "snapshotting" : "booting", overall);
}

#define START_ARGV_MAX 256

/* What template.json's import members (template_image.c) ask the build to
 * start: "start" (argv), "workdir", "envVars", "probePort". The strings
 * point into b->extra and env (which the caller frees). 0, or -1 with a
 * message in err. */
static int start_from_extra(const struct tbuild *b, struct template_start *st, const char **argv, struct buf *env,
			    char *err, size_t errsz)
{
	memset(st, 0, sizeof *st);
	const struct json *list = b->extra ? json_get(b->extra, "start") : NULL;
	size_t n = 0;
	for (const struct json *e = list && list->type == JSON_ARRAY ? list->child : NULL; e; e = e->next) {
		if (n + 1 == START_ARGV_MAX) {
			snprintf(err, errsz, "the start command has more than %d words", START_ARGV_MAX - 1);
			return -1;
		}
		if (e->type == JSON_STRING)
			argv[n++] = e->str;
	}
	argv[n] = NULL;
	st->probe_port = b->extra ? (int)json_get_int(b->extra, "probePort", 0) : 0;
	if (st->probe_port && !n) {
		snprintf(err, errsz,
			 "probePort %d is given but nothing starts: the image has no ENTRYPOINT or CMD and the "
			 "build no startCmd",
			 st->probe_port);
		return -1;
	}
	st->argv = n ? argv : NULL;
	st->cwd = b->extra ? json_get_str(b->extra, "workdir") : NULL;
	const struct json *vars = b->extra ? json_get(b->extra, "envVars") : NULL;
	if (vars && vars->type == JSON_OBJECT) {
		struct jw w;
		jw_init(&w, env);
		jw_value(&w, vars);
		st->envs_json = env->data;
	}
	return 0;
}

/* Boots the rootfs, starts what the import asks for, and snapshots. */
static int build_boot_and_snapshot(struct tbuild *b, const char *rootfs)
{
	struct api *a = b->a;
	const char *argv[START_ARGV_MAX];
	struct template_start st;
	struct buf env = BUF_INIT;
	int rc = start_from_extra(b, &st, argv, &env, b->err, sizeof b->err);
	if (rc == 0) {
		tbuild_phase(b, "booting", TBUILD_PCT_BOOT);
		rc = a->ops.template_build(b->dir, b->kernel, rootfs, b->cpus, b->mem_mib, &st, on_vm_progress, b,
					   b->err, sizeof b->err);
		if (rc < 0 && !b->err[0])
			snprintf(b->err, sizeof b->err, "the boot or the snapshot failed");
		if (rc == 0 && st.note[0])
			tbuild_log(b, "info", "%s", st.note);
	}
	buf_free(&env);
	return rc;
}

static void build_run(struct job *job)
{
	struct tbuild *b = (struct tbuild *)job;
	char rootfs[4200];
	snprintf(rootfs, sizeof rootfs, "%s/rootfs.ext4", b->dir);
	b->rc = b->source->produce(b, rootfs, b->err, sizeof b->err);
	struct stat st;
	if (b->rc == 0 && !b->disk_mb && stat(rootfs, &st) == 0)
		b->disk_mb = (int)((st.st_size + (1 << 20) - 1) >> 20);
	if (b->rc == 0)
		b->rc = build_boot_and_snapshot(b, rootfs);
	if (b->rc < 0) {
		append_log(b->dir, "error", b->phase, b->err);
		snprintf(b->phase, sizeof b->phase, "error");
		write_template_json(b, "error", b->err);
		write_build_json(b, "error", b->err, true);
	} else {
		snprintf(b->phase, sizeof b->phase, "ready");
		b->pct = 100;
		append_log(b->dir, "info", "ready", "template ready");
		write_template_json(b, "ready", NULL);
		write_build_json(b, "ready", NULL, true);
	}
}

static void unlink_build(struct api *a, struct tbuild *b)
{
	for (struct tbuild **pp = &a->builds; *pp; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			return;
		}
}

static void build_done(struct job *job)
{
	struct tbuild *b = (struct tbuild *)job;
	if (b->rc < 0)
		log_error("template.build", "template=%s build=%s failed: %s", b->name, b->id, b->err);
	else
		log_info("template.build", "template=%s build=%s ready", b->name, b->id);
	unlink_build(b->a, b);
	json_free(b->extra);
	free(b->source_ref);
	free(b->source_options);
	free_secret(b->source_secret);
	free(b);
}

/* Until done() ran on the loop the build counts as running, even when its
 * files are final already; the status route says "building" meanwhile, so
 * whoever sees the end may create the template again at once. */
bool tbuild_running(struct api *a, const char *name)
{
	for (struct tbuild *b = a->builds; b; b = b->next)
		if (strcmp(b->name, name) == 0)
			return true;
	return false;
}

/* A UUID (version 4) from the registry's random tokens. */
static void new_build_id(char out[TBUILD_ID_LEN + 1])
{
	char hex[SANDBOX_TOKEN_LEN + 1];
	sandbox_new_token(hex);
	hex[12] = '4';
	hex[16] = "89ab"[hex[16] % 4];
	snprintf(out, TBUILD_ID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

/* The state in DIR/templates/<name>/template.json; NULL when there is none. */
static char *existing_state(struct api *a, const char *name)
{
	char path[4200];
	tbuild_path(a, name, "template.json", path, sizeof path);
	size_t len;
	char *text = file_read_all(path, BUILD_JSON_MAX, &len);
	if (!text) {
		char dir[4200];
		tbuild_path(a, name, "", dir, sizeof dir);
		return access(dir, F_OK) == 0 ? strdup("error") : NULL; /* a directory without a record */
	}
	struct json *j = json_parse(text, len, NULL, 0);
	free(text);
	const char *s = j ? json_get_str(j, "state") : NULL;
	char *state = strdup(s ? s : "error");
	json_free(j);
	return state;
}

/* The name is free, or its template failed (then it is put aside). */
static int claim_name(struct api *a, const char *name, char *err, size_t errsz)
{
	if (tbuild_running(a, name)) {
		snprintf(err, errsz, "template %s is being built", name);
		return 409;
	}
	char *state = existing_state(a, name);
	if (!state)
		return 0;
	int status = 0;
	if (strcmp(state, "error") != 0) {
		snprintf(err, errsz, "template %s exists (%s): delete it first", name, state);
		status = 409;
	} else if (template_trash(a, name, err, errsz) < 0) {
		status = 500;
	}
	free(state);
	return status;
}

int tbuild_submit(struct api *a, const struct tbuild_spec *spec, char build_id[TBUILD_ID_LEN + 1], char *err,
		  size_t errsz)
{
	if (!a->ops.template_build) {
		snprintf(err, errsz, "this api cannot build templates (no backend)");
		return 501;
	}
	if (!spec->name || !template_id_valid(spec->name) || template_name_reserved(spec->name)) {
		snprintf(err, errsz,
			 "name must be 1-%d characters of A-Z a-z 0-9 . _ - (not \"builds\", \"aliases\", \"upload\" "
			 "or fork-...)",
			 TEMPLATE_ID_MAX);
		return 400;
	}
	if (access(a->cfg.base_kernel, R_OK) < 0) {
		snprintf(err, errsz, "cannot build templates: the guest kernel %s: %s", a->cfg.base_kernel,
			 strerror(errno));
		return 503;
	}
	int status = claim_name(a, spec->name, err, errsz);
	if (status)
		return status;
	struct tbuild *b = calloc(1, sizeof *b);
	if (!b)
		abort();
	b->a = a;
	snprintf(b->name, sizeof b->name, "%s", spec->name);
	template_dir(a, b->name, b->dir, sizeof b->dir);
	snprintf(b->kernel, sizeof b->kernel, "%s", a->cfg.base_kernel);
	b->source = spec->source;
	b->source_ref = strdup(spec->source_ref ? spec->source_ref : "");
	b->source_options = spec->source_options ? strdup(spec->source_options) : NULL;
	b->source_secret = spec->source_secret ? strdup(spec->source_secret) : NULL;
	b->cpus = spec->cpus > 0 ? spec->cpus : a->cfg.base_cpus;
	b->mem_mib = spec->mem_mib > 0 ? spec->mem_mib : a->cfg.base_mem_mib;
	new_build_id(b->id);
	time_format(wall_ms(), b->created);
	snprintf(b->phase, sizeof b->phase, "queued");
	if (dir_make_all(b->dir, 0755) < 0) {
		snprintf(err, errsz, "cannot create %s: %s", b->dir, strerror(errno));
		free(b->source_ref);
		free(b->source_options);
		free_secret(b->source_secret);
		free(b);
		return 500;
	}
	write_build_json(b, "waiting", NULL, true);
	write_template_json(b, "building", NULL);
	append_log(b->dir, "info", "queued", "build queued");
	log_info("template.build", "template=%s build=%s queued: %s %s, %d vCPU, %d MiB", b->name, b->id,
		 b->source->type, b->source_ref, b->cpus, b->mem_mib);
	b->job.run = build_run;
	b->job.done = build_done;
	b->next = a->builds;
	a->builds = b;
	snprintf(build_id, TBUILD_ID_LEN + 1, "%s", b->id);
	worker_submit(a->pool, &b->job);
	return 0;
}

/* --- deleting, and the start of the api ---------------------------------------------------- */

bool template_name_reserved(const char *name)
{
	return strcmp(name, "builds") == 0 || strcmp(name, "aliases") == 0 || strcmp(name, "upload") == 0 ||
	       snapshot_is_fork_name(name);
}

struct trash_job {
	struct job job;
	char path[4300];
	int rc;
};

/* A snapshot's memory file and a rootfs can be GiBs: freeing their blocks
 * runs on a worker, not on the loop. */
static void trash_run(struct job *job)
{
	struct trash_job *t = (struct trash_job *)job;
	t->rc = registry_remove_tree(t->path) < 0 ? errno : 0;
}

static void trash_done(struct job *job)
{
	struct trash_job *t = (struct trash_job *)job;
	if (t->rc)
		log_warn("template.delete", "cannot remove %s: %s (removed at the next start)", t->path,
			 strerror(t->rc));
	free(t);
}

/* Renames DIR/templates/<name> to a hidden trash name (listings skip names
 * starting with '.'), so the template is gone at once and whole; the tree is
 * removed afterwards. */
int template_trash(struct api *a, const char *name, char *err, size_t errsz)
{
	char dir[4200], trash[4300], tok[SANDBOX_TOKEN_LEN + 1];
	template_dir(a, name, dir, sizeof dir);
	sandbox_new_token(tok);
	snprintf(trash, sizeof trash, "%s/templates/.trash-%.16s", a->cfg.state_dir, tok);
	if (rename(dir, trash) < 0) {
		snprintf(err, errsz, "cannot remove %s: %s", dir, strerror(errno));
		return -1;
	}
	struct trash_job *t = calloc(1, sizeof *t);
	if (!t)
		abort();
	snprintf(t->path, sizeof t->path, "%s", trash);
	t->job.run = trash_run;
	t->job.done = trash_done;
	worker_submit(a->pool, &t->job);
	return 0;
}

static void mark_interrupted(struct api *a, const char *name)
{
	char path[4200];
	tbuild_path(a, name, "build.json", path, sizeof path);
	size_t len;
	char *text = file_read_all(path, BUILD_JSON_MAX, &len);
	struct json *j = text ? json_parse(text, len, NULL, 0) : NULL;
	free(text);
	const char *status = j ? json_get_str(j, "status") : NULL;
	if (!status || (strcmp(status, "building") != 0 && strcmp(status, "waiting") != 0)) {
		json_free(j);
		return;
	}
	struct tbuild b = {.a = a};
	snprintf(b.name, sizeof b.name, "%.128s", name);
	template_dir(a, name, b.dir, sizeof b.dir);
	snprintf(b.id, sizeof b.id, "%s", json_get_str(j, "buildID") ? json_get_str(j, "buildID") : "");
	snprintf(b.created, sizeof b.created, "%s", json_get_str(j, "createdAt") ? json_get_str(j, "createdAt") : "");
	snprintf(b.kernel, sizeof b.kernel, "%s", a->cfg.base_kernel);
	struct json *src = json_get(j, "source");
	/* Only its type is written: the one the build had. */
	const char *type = src ? json_get_str(src, "type") : NULL;
	b.source = type && strcmp(type, "image") == 0	  ? &tbuild_source_image
		   : type && strcmp(type, "archive") == 0 ? &tbuild_source_archive
							  : &tbuild_source_rootfs;
	b.source_ref = (char *)(src ? json_get_str(src, "ref") : NULL);
	b.cpus = (int)json_get_int(j, "cpuCount", a->cfg.base_cpus);
	b.mem_mib = (int)json_get_int(j, "memoryMB", a->cfg.base_mem_mib);
	snprintf(b.phase, sizeof b.phase, "error");
	const char *why = "interrupted: the api stopped during the build";
	append_log(b.dir, "error", "error", why);
	write_build_json(&b, "error", why, true);
	write_template_json(&b, "error", why);
	log_warn("template.build", "template=%s build=%s %s", name, b.id, why);
	json_free(j);
}

void template_jobs_start(struct api *a)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/templates", a->cfg.state_dir);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, ".trash-", 7) == 0 || strncmp(e->d_name, ".upload-", 8) == 0) {
			char trash[4500];
			snprintf(trash, sizeof trash, "%s/%s", path, e->d_name);
			registry_remove_tree(trash);
		} else if (template_id_valid(e->d_name)) {
			mark_interrupted(a, e->d_name);
		}
	}
	closedir(d);
}

/* --- the template's environment ------------------------------------------------------------ */

void template_env_load(struct api *a, const char *id, struct kvs *env)
{
	char path[4200];
	tbuild_path(a, id, "template.json", path, sizeof path);
	size_t len;
	char *text = file_read_all(path, BUILD_JSON_MAX, &len);
	struct json *j = text ? json_parse(text, len, NULL, 0) : NULL;
	free(text);
	const struct json *vars = j && j->type == JSON_OBJECT ? json_get(j, "envVars") : NULL;
	for (const struct json *m = vars && vars->type == JSON_OBJECT ? vars->child : NULL; m; m = m->next)
		if (m->type == JSON_STRING && m->key_len && !strchr(m->key, '='))
			kvs_set(env, m->key, m->str);
	json_free(j);
}
