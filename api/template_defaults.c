/* template_defaults.c - the templates every appliance has, built at start.
 *
 * The image ships root filesystems made from Debian packages
 * (initramfs/template-rootfs.sh) on its read-only templates partition,
 * mounted at cfg.templates_dir: <templates_dir>/<name>/rootfs.ext4, today
 * `base` and `code-interpreter-v1`. Each becomes the template <name> in
 * DIR/templates/<name>/ once booted with the image's guest kernel and
 * snapshotted (vm_ops.template_build). Where the image has no templates
 * partition (a PXE or ISO boot), `base` comes from the small rootfs in the
 * initramfs (cfg.base_rootfs).
 *
 * A template is (re)built when it is missing, when a build was cut short by
 * a restart, or when its "source" (sizes and mtimes of the kernel and rootfs
 * it was built from) differs from the files the image has now: an image
 * update brings new templates without anyone deleting the old ones.
 *
 * The builds run one after the other on one worker, `base` first (the SDK's
 * default for commands): two at once would only halve the speed of both. */
#include <dirent.h>
#include <errno.h>
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

#define DEFAULT_TEMPLATES_MAX 16
#define TEMPLATE_JSON_MAX     (256 * 1024)
/* A build is a guest boot; one that dies (a guest crash under nested
 * emulation, a host short of memory for a moment) is tried again before
 * the template is marked failed, since nothing else would rebuild it
 * until the next start. A build that cannot work fails three times fast. */
#define DEFAULT_BUILD_ATTEMPTS 3

struct default_template {
	char name[64];
	char rootfs[4096];
	char source[256]; /* what it is built from, see source_of() */
	int disk_mb;
};

/* One job object walks the whole list: run builds list[next], done moves on. */
struct default_builds {
	struct job job;
	struct api *a;
	struct default_template list[DEFAULT_TEMPLATES_MAX];
	size_t n, next;
	char dir[4096];
	char created[32];
	int rc;
	char err[512];
};

/* "kernel=<size>:<mtime> rootfs=<size>:<mtime>": changes whenever an image
 * update replaces either file. */
static int source_of(const char *kernel, const char *rootfs, char *out, size_t n, int *disk_mb)
{
	struct stat k, r;
	if (stat(kernel, &k) < 0 || stat(rootfs, &r) < 0 || !S_ISREG(r.st_mode))
		return -1;
	snprintf(out, n, "kernel=%lld:%lld rootfs=%lld:%lld", (long long)k.st_size, (long long)k.st_mtime,
		 (long long)r.st_size, (long long)r.st_mtime);
	*disk_mb = (int)((r.st_size + (1 << 20) - 1) >> 20);
	return 0;
}

static void write_json(struct default_builds *b, const struct default_template *t, const char *state, int progress,
		       const char *error)
{
	struct api *a = b->a;
	struct template_file f = {.name = t->name,
				  .state = state,
				  .kernel = a->cfg.base_kernel,
				  .rootfs = t->rootfs,
				  .source = t->source,
				  .created = b->created,
				  .error = error,
				  .progress = progress,
				  .cpus = a->cfg.base_cpus,
				  .mem_mib = a->cfg.base_mem_mib,
				  .disk_mb = t->disk_mb};
	template_file_write(b->dir, &f);
}

static void on_progress(void *arg, int pct, const char *phase)
{
	struct default_builds *b = arg;
	const struct default_template *t = &b->list[b->next];
	log_info("template.build", "template=%s %d%% %s", t->name, pct, phase ? phase : "");
	write_json(b, t, "building", pct, NULL);
}

static void build_run(struct job *job)
{
	struct default_builds *b = (struct default_builds *)job;
	struct api *a = b->a;
	const struct default_template *t = &b->list[b->next];
	for (int attempt = 1; attempt <= DEFAULT_BUILD_ATTEMPTS; attempt++) {
		write_json(b, t, "building", 0, NULL);
		b->err[0] = '\0';
		b->rc = a->ops.template_build(b->dir, a->cfg.base_kernel, t->rootfs, a->cfg.base_cpus,
					      a->cfg.base_mem_mib, NULL, on_progress, b, b->err, sizeof b->err);
		if (b->rc < 0 && !b->err[0])
			snprintf(b->err, sizeof b->err, "the build failed");
		if (b->rc == 0)
			break;
		if (attempt < DEFAULT_BUILD_ATTEMPTS)
			log_warn("template.build", "template=%s attempt %d of %d failed, trying again: %s", t->name,
				 attempt, DEFAULT_BUILD_ATTEMPTS, b->err);
	}
	write_json(b, t, b->rc < 0 ? "error" : "ready", b->rc < 0 ? 0 : 100, b->rc < 0 ? b->err : NULL);
}

static bool submit_next(struct default_builds *b);

static void build_done(struct job *job)
{
	struct default_builds *b = (struct default_builds *)job;
	const char *name = b->list[b->next].name;
	if (b->rc < 0)
		log_error("template.build", "template=%s failed: %s", name, b->err);
	else
		log_info("template.build", "template=%s ready", name);
	b->next++;
	if (!submit_next(b))
		free(b);
}

/* Starts the build of list[next]; false when the list is done. */
static bool submit_next(struct default_builds *b)
{
	for (; b->next < b->n; b->next++) {
		const struct default_template *t = &b->list[b->next];
		template_dir(b->a, t->name, b->dir, sizeof b->dir);
		if (dir_make_all(b->dir, 0755) < 0) {
			log_error("template.build", "template=%s cannot create %s: %s", t->name, b->dir,
				  strerror(errno));
			continue;
		}
		time_format(wall_ms(), b->created);
		log_info("template.build", "template=%s building from %s and %s", t->name, b->a->cfg.base_kernel,
			 t->rootfs);
		worker_submit(b->a->pool, &b->job);
		return true;
	}
	return false;
}

/* Missing, interrupted ("building" with nobody building it), or made from
 * other files than the image has now; never one a user built under the
 * same name (after deleting the image's). */
static bool needs_build(struct api *a, const struct default_template *t)
{
	char path[4200];
	template_dir(a, t->name, path, sizeof path);
	strncat(path, "/template.json", sizeof path - strlen(path) - 1);
	size_t len;
	char *text = file_read_all(path, TEMPLATE_JSON_MAX, &len);
	if (!text)
		return errno == ENOENT;
	struct json *j = json_parse(text, len, NULL, 0);
	free(text);
	const char *state = j ? json_get_str(j, "state") : NULL;
	const char *source = j ? json_get_str(j, "source") : NULL;
	if (json_get_str(j, "buildID")) { /* made by a build job (POST /templates): the user's now */
		log_info("template.build", "template=%s was built through the API: the image's is not built over it",
			 t->name);
		json_free(j);
		return false;
	}
	bool stale = !state || strcmp(state, "building") == 0 || !source || strcmp(source, t->source) != 0;
	if (stale && state && strcmp(state, "building") != 0)
		log_info("template.build", "template=%s the image has a new kernel or rootfs: rebuilding", t->name);
	json_free(j);
	return stale;
}

static void add(struct api *a, struct default_builds *b, const char *name, const char *rootfs)
{
	if (b->n == DEFAULT_TEMPLATES_MAX || !template_id_valid(name) || strlen(name) >= sizeof b->list[0].name)
		return;
	for (size_t i = 0; i < b->n; i++)
		if (strcmp(b->list[i].name, name) == 0)
			return;
	struct default_template *t = &b->list[b->n];
	snprintf(t->name, sizeof t->name, "%s", name);
	snprintf(t->rootfs, sizeof t->rootfs, "%s", rootfs);
	if (strlen(rootfs) >= sizeof t->rootfs ||
	    source_of(a->cfg.base_kernel, t->rootfs, t->source, sizeof t->source, &t->disk_mb) < 0)
		return;
	b->n++;
}

static int by_name_base_first(const void *x, const void *y)
{
	const struct default_template *p = x, *q = y;
	int pb = strcmp(p->name, "base") == 0, qb = strcmp(q->name, "base") == 0;
	return pb != qb ? qb - pb : strcmp(p->name, q->name);
}

/* Every <templates_dir>/<name>/rootfs.ext4, then `base` from the initramfs
 * if the templates partition has none. */
static void collect(struct api *a, struct default_builds *b)
{
	DIR *d = a->cfg.templates_dir ? opendir(a->cfg.templates_dir) : NULL;
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		char rootfs[4096];
		if (e->d_name[0] == '.' || snprintf(rootfs, sizeof rootfs, "%s/%s/rootfs.ext4", a->cfg.templates_dir,
						    e->d_name) >= (int)sizeof rootfs)
			continue;
		add(a, b, e->d_name, rootfs);
	}
	if (d)
		closedir(d);
	add(a, b, "base", a->cfg.base_rootfs);
	qsort(b->list, b->n, sizeof b->list[0], by_name_base_first);
}

void templates_ensure_defaults(struct api *a)
{
	if (!a->ops.template_build)
		return;
	struct default_builds *b = calloc(1, sizeof *b);
	if (!b)
		abort();
	b->a = a;
	b->job.run = build_run;
	b->job.done = build_done;
	struct default_builds *all = calloc(1, sizeof *all);
	if (!all)
		abort();
	all->a = a;
	collect(a, all);
	for (size_t i = 0; i < all->n; i++)
		if (needs_build(a, &all->list[i]))
			b->list[b->n++] = all->list[i];
	free(all);
	if (!submit_next(b))
		free(b);
}
