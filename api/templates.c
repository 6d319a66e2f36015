/* templates.c - templates on disk (DIR/templates/<name>/template.json):
 * lookup for create, GET /templates and /templates/{id}. The templates every
 * appliance has are built in template_defaults.c. */
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

#define TEMPLATE_JSON_MAX (256 * 1024)

void template_info_clear(struct template_info *t)
{
	free(t->name);
	free(t->state);
	free(t->error);
	free(t->created_at);
	free(t->updated_at);
	free(t->build_id);
	free(t->snapshot_of);
	free(t->base_template);
	memset(t, 0, sizeof *t);
}

static char *dup_or(const char *s, const char *def)
{
	return s ? strdup(s) : (def ? strdup(def) : NULL);
}

int template_load(struct api *a, const char *dirname, struct template_info *t)
{
	memset(t, 0, sizeof *t);
	char path[4096];
	template_dir(a, dirname, path, sizeof path);
	strncat(path, "/template.json", sizeof path - strlen(path) - 1);
	size_t len;
	char *text = file_read_all(path, TEMPLATE_JSON_MAX, &len);
	if (!text)
		return -1;
	struct json *j = json_parse(text, len, NULL, 0);
	free(text);
	if (!j || j->type != JSON_OBJECT) {
		log_warn("template.load", "template=%s %s is not a JSON object", dirname, path);
		json_free(j);
		errno = EINVAL;
		return -1;
	}
	snprintf(t->id, sizeof t->id, "%s", dirname);
	t->name = dup_or(json_get_str(j, "name"), dirname);
	t->state = dup_or(json_get_str(j, "state"), "ready");
	t->error = dup_or(json_get_str(j, "error"), NULL);
	t->created_at = dup_or(json_get_str(j, "createdAt"), "1970-01-01T00:00:00.000Z");
	t->updated_at = dup_or(json_get_str(j, "updatedAt"), t->created_at);
	t->build_id = dup_or(json_get_str(j, "buildID"), NULL);
	t->cpu_count = (int)json_get_int(j, "cpuCount", 2);
	t->memory_mb = (int)json_get_int(j, "memoryMB", 512);
	t->disk_size_mb = (int)json_get_int(j, "diskSizeMB", 0);
	t->progress = (int)json_get_int(j, "progress", 0);
	const struct json *snap = json_get(j, "snapshot");
	if (snap && snap->type == JSON_OBJECT) {
		t->snapshot_of = dup_or(json_get_str(snap, "sandboxID"), "");
		t->base_template = dup_or(json_get_str(snap, "baseTemplate"), "");
		t->fork = json_get_bool(snap, "fork", false);
	}
	json_free(j);
	return 0;
}

struct find_ctx {
	struct api *a;
	const char *want;
	struct template_info *t;
	bool found;
};

static bool template_names(const struct template_info *t, const char *want)
{
	return strcmp(t->id, want) == 0 || (t->name && strcmp(t->name, want) == 0);
}

void template_each(struct api *a, bool (*fn)(void *arg, const char *dirname), void *arg)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/templates", a->cfg.state_dir);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (template_id_valid(e->d_name) && !fn(arg, e->d_name))
			break;
	closedir(d);
}

static bool find_one(void *arg, const char *dirname)
{
	struct find_ctx *f = arg;
	if (template_load(f->a, dirname, f->t) < 0)
		return true;
	if (template_names(f->t, f->want)) {
		f->found = true;
		return false;
	}
	template_info_clear(f->t);
	return true;
}

int template_find(struct api *a, const char *id, struct template_info *t)
{
	memset(t, 0, sizeof *t);
	if (!template_id_valid(id)) {
		errno = ENOENT;
		return -1;
	}
	if (template_load(a, id, t) == 0)
		return 0;
	struct find_ctx f = {.a = a, .want = id, .t = t};
	template_each(a, find_one, &f);
	if (f.found)
		return 0;
	errno = ENOENT;
	return -1;
}

/* --- routes ------------------------------------------------------------------ */

static void write_template(const struct template_info *t, struct jw *w)
{
	jw_obj(w);
	jw_kstr(w, "templateID", t->id);
	jw_kstr(w, "buildID", t->build_id ? t->build_id : t->id);
	jw_kint(w, "cpuCount", t->cpu_count);
	jw_kint(w, "memoryMB", t->memory_mb);
	jw_kint(w, "diskSizeMB", t->disk_size_mb);
	jw_kbool(w, "public", false);
	jw_key(w, "aliases");
	jw_arr(w);
	jw_str(w, t->name);
	jw_end(w);
	jw_key(w, "names");
	jw_arr(w);
	jw_str(w, t->name);
	jw_end(w);
	jw_kstr(w, "createdAt", t->created_at);
	jw_kstr(w, "updatedAt", t->updated_at);
	jw_key(w, "createdBy");
	jw_null(w);
	jw_key(w, "lastSpawnedAt");
	jw_null(w);
	jw_kint(w, "spawnCount", 0);
	jw_kint(w, "buildCount", 1);
	jw_kstr(w, "envdVersion", ENVD_VERSION);
	jw_kstr(w, "buildStatus", t->state);
	if (strcmp(t->state, "building") == 0)
		jw_kint(w, "progress", t->progress);
	if (t->error)
		jw_kstr(w, "error", t->error);
	jw_end(w);
}

struct list_ctx {
	struct api *a;
	struct jw *w;
};

static bool list_one(void *arg, const char *dirname)
{
	struct list_ctx *l = arg;
	struct template_info t;
	if (template_load(l->a, dirname, &t) == 0 && !t.fork)
		write_template(&t, l->w);
	template_info_clear(&t);
	return true;
}

static void list_templates(struct api *a, struct http_conn *c)
{
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_arr(&w);
	struct list_ctx l = {.a = a, .w = &w};
	template_each(a, list_one, &l);
	jw_end(&w);
	respond_json(c, 200, &b);
}

static void get_template(struct api *a, struct http_conn *c, const char *id)
{
	struct template_info t;
	if (template_find(a, id, &t) < 0) {
		http_respond_error(c, 404, "template \"%.128s\" not found", id);
		return;
	}
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	write_template(&t, &w);
	template_info_clear(&t);
	respond_json(c, 200, &b);
}

bool template_route(struct api *a, struct http_conn *c, struct http_req *req)
{
	const char *p = req->path;
	if (strncmp(p, "/templates", 10) != 0 || (p[10] != '\0' && p[10] != '/'))
		return false;
	bool get = strcmp(req->method, "GET") == 0;
	p += 10;
	if (!get)
		http_respond_error(c, 501, "%s %s is not supported yet: build templates with the cube CLI", req->method,
				   req->path);
	else if (*p == '\0' || strcmp(p, "/") == 0)
		list_templates(a, c);
	else if (!strchr(p + 1, '/'))
		get_template(a, c, p + 1);
	else
		http_respond_error(c, 404, "no such API call: %s %s", req->method, req->path);
	return true;
}

/* --- template.json ------------------------------------------------------------ */

int template_file_write(const char *dir, const struct template_file *f)
{
	char now[32], path[4200];
	time_format(wall_ms(), now);
	struct buf out = BUF_INIT;
	struct jw w;
	jw_init(&w, &out);
	jw_obj(&w);
	jw_kstr(&w, "templateID", f->name);
	jw_kstr(&w, "name", f->name);
	if (f->build_id)
		jw_kstr(&w, "buildID", f->build_id);
	jw_kstr(&w, "state", f->state);
	jw_kint(&w, "progress", f->progress);
	jw_kint(&w, "cpuCount", f->cpus);
	jw_kint(&w, "memoryMB", f->mem_mib);
	jw_kint(&w, "diskSizeMB", f->disk_mb);
	jw_kstr(&w, "kernel", f->kernel);
	jw_kstr(&w, "rootfs", f->rootfs);
	if (f->source)
		jw_kstr(&w, "source", f->source);
	jw_kstr(&w, "createdAt", f->created);
	jw_kstr(&w, "updatedAt", now);
	if (f->error)
		jw_kstr(&w, "error", f->error);
	for (const struct json *m = f->extra ? f->extra->child : NULL; m; m = m->next) {
		jw_key(&w, m->key);
		jw_value(&w, m);
	}
	jw_end(&w);
	buf_putc(&out, '\n');
	snprintf(path, sizeof path, "%s/template.json", dir);
	/* While building it changes every few seconds: only the last word is synced. */
	int rc = file_replace(path, out.data, out.len, 0644, strcmp(f->state, "building") != 0);
	if (rc < 0)
		log_error("template.build", "template=%s cannot write %s: %s", f->name, path, strerror(errno));
	buf_free(&out);
	return rc;
}
