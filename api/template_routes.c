/* template_routes.c - the template calls that change templates or follow
 * their builds (template_jobs.h); listing and lookup are in templates.c.
 *
 *   POST   /templates                                  CubeOS create: fromRootfs | fromImage
 *   POST   /templates/upload?name=N&...                CubeOS create from a docker-save / OCI
 *                                                      layout tarball (the body, streamed)
 *   GET    /templates/{templateID}/builds/{buildID}/status   E2B TemplateBuildInfo (+ phase, progress)
 *   GET    /templates/{templateID}/builds/{buildID}/logs     E2B {"logs":[BuildLogEntry]}
 *   GET    /templates/builds/{buildID}                  CubeOS: the status by build id alone
 *   DELETE /templates/{templateID}                      204; 409 while built or used; 404
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "apicore.h"
#include "create_req.h"
#include "oci.h"
#include "template_jobs.h"

#define BUILD_JSON_MAX	 (256 * 1024)
#define BUILD_LOG_MAX	 (8 * 1024 * 1024)
#define LOGS_LIMIT_MAX	 100
#define CPU_MAX		 64
#define MEMORY_MIB_MIN	 128
#define MEMORY_MIB_MAX	 (256 * 1024)
#define LAYER_MIB_MAX	 (1024 * 1024)
#define EXPOSE_PORTS_MAX 64

/* --- POST /templates ------------------------------------------------------------- */

struct create_tpl {
	const char *name, *from_rootfs, *from_image, *dockerfile;
	int64_t cpus, mem_mib;
	bool has_image_options;
};

static int get_int_field(const struct json *j, const char *key, int64_t min, int64_t max, int64_t *out, char *err,
			 size_t errsz)
{
	const struct json *v = json_get(j, key);
	if (!v)
		return 0;
	if (!json_as_int(v, out) || *out < min || *out > max) {
		snprintf(err, errsz, "%s must be an integer from %lld to %lld", key, (long long)min, (long long)max);
		return -1;
	}
	return 0;
}

static int get_str_field(const struct json *j, const char *key, const char **out, char *err, size_t errsz)
{
	const struct json *v = json_get(j, key);
	if (!v)
		return 0;
	if (v->type != JSON_STRING || v->len == 0 || strlen(v->str) != v->len) {
		snprintf(err, errsz, "%s must be a non-empty string", key);
		return -1;
	}
	*out = v->str;
	return 0;
}

#define REGISTRY_FIELD_MAX 4096
#define REGISTRY_CA_MAX	   (256 * 1024)

static bool short_string(const struct json *v, size_t max)
{
	return v && v->type == JSON_STRING && v->len > 0 && v->len <= max && strlen(v->str) == v->len;
}

/* fromImageRegistry (E2B's shape; type "registry" only) and registryCA (PEM
 * certificates the pull trusts instead of the system store). */
static int check_registry_access(const struct json *j, char *err, size_t errsz)
{
	const struct json *reg = json_get(j, "fromImageRegistry");
	if (reg) {
		const char *type = json_get_str(reg, "type");
		if (reg->type != JSON_OBJECT || (type && strcmp(type, "registry") != 0)) {
			snprintf(err, errsz,
				 "fromImageRegistry: only {\"type\":\"registry\",\"username\",\"password\"} is "
				 "supported%s%.40s",
				 type ? ", not type " : "", type ? type : "");
			return -1;
		}
		if (!short_string(json_get(reg, "username"), REGISTRY_FIELD_MAX) ||
		    !short_string(json_get(reg, "password"), REGISTRY_FIELD_MAX)) {
			snprintf(err, errsz, "fromImageRegistry needs a username and a password (non-empty strings)");
			return -1;
		}
	}
	const struct json *ca = json_get(j, "registryCA");
	if (ca && (!short_string(ca, REGISTRY_CA_MAX) || !strstr(ca->str, "-----BEGIN CERTIFICATE-----"))) {
		snprintf(err, errsz,
			 "registryCA must be PEM certificates (-----BEGIN CERTIFICATE-----), at most %d KiB",
			 REGISTRY_CA_MAX / 1024);
		return -1;
	}
	return 0;
}

/* The options of an OCI import (cubemastercli's create-from-image flags). */
static int check_image_options(const struct json *j, struct create_tpl *r, char *err, size_t errsz)
{
	int64_t n;
	if (get_int_field(j, "writableLayerSizeMB", 1, LAYER_MIB_MAX, &n, err, errsz) < 0 ||
	    get_int_field(j, "probePort", 1, 65535, &n, err, errsz) < 0)
		return -1;
	const struct json *ports = json_get(j, "exposePorts");
	if (ports && (ports->type != JSON_ARRAY || ports->count > EXPOSE_PORTS_MAX)) {
		snprintf(err, errsz, "exposePorts must be an array of at most %d ports", EXPOSE_PORTS_MAX);
		return -1;
	}
	for (const struct json *p = ports ? ports->child : NULL; p; p = p->next)
		if (!json_as_int(p, &n) || n < 1 || n > 65535) {
			snprintf(err, errsz, "exposePorts: every port must be an integer from 1 to 65535");
			return -1;
		}
	const struct json *env = json_get(j, "envVars");
	if (env && env->type != JSON_OBJECT) {
		snprintf(err, errsz, "envVars must be an object of strings");
		return -1;
	}
	for (const struct json *e = env ? env->child : NULL; e; e = e->next)
		if (e->type != JSON_STRING || !e->key_len || strchr(e->key, '=')) {
			snprintf(err, errsz, "envVars: names must be non-empty without '=', values strings");
			return -1;
		}
	const struct json *insecure = json_get(j, "insecureRegistry");
	if (insecure && insecure->type != JSON_BOOL) {
		snprintf(err, errsz, "insecureRegistry must be true or false");
		return -1;
	}
	if (check_registry_access(j, err, errsz) < 0)
		return -1;
	const struct json *start = json_get(j, "startCmd");
	if (start && (start->type != JSON_STRING || strlen(start->str) != start->len)) {
		snprintf(err, errsz, "startCmd must be a string: a shell command line, or \"\" to start nothing");
		return -1;
	}
	r->has_image_options = json_get(j, "writableLayerSizeMB") || json_get(j, "probePort") || ports || env ||
			       insecure || start || json_get(j, "fromImageRegistry") || json_get(j, "registryCA");
	return 0;
}

/* 0, or an HTTP status with a message in err. */
static int parse_create(const struct json *j, struct create_tpl *r, char *err, size_t errsz)
{
	memset(r, 0, sizeof *r);
	if (!j || j->type != JSON_OBJECT) {
		snprintf(err, errsz, "the body must be a JSON object");
		return 400;
	}
	if (get_str_field(j, "name", &r->name, err, errsz) < 0 || get_str_field(j, "alias", &r->name, err, errsz) < 0 ||
	    get_str_field(j, "fromRootfs", &r->from_rootfs, err, errsz) < 0 ||
	    get_str_field(j, "fromImage", &r->from_image, err, errsz) < 0 ||
	    get_str_field(j, "dockerfile", &r->dockerfile, err, errsz) < 0 ||
	    get_int_field(j, "cpuCount", 1, CPU_MAX, &r->cpus, err, errsz) < 0 ||
	    get_int_field(j, "memoryMB", MEMORY_MIB_MIN, MEMORY_MIB_MAX, &r->mem_mib, err, errsz) < 0 ||
	    check_image_options(j, r, err, errsz) < 0)
		return 400;
	if (!r->name) {
		snprintf(err, errsz, "name is required");
		return 400;
	}
	int sources = !!r->from_rootfs + !!r->from_image + !!r->dockerfile;
	if (sources != 1) {
		snprintf(err, errsz,
			 "give exactly one of fromRootfs (an ext4 image on the appliance) and fromImage (an "
			 "OCI image reference)");
		return 400;
	}
	if (r->dockerfile) {
		snprintf(err, errsz,
			 "Dockerfile builds are not supported: build the image elsewhere and use fromImage");
		return 501;
	}
	if (r->from_rootfs && r->has_image_options) {
		snprintf(err, errsz,
			 "writableLayerSizeMB, exposePorts, probePort, startCmd, envVars, insecureRegistry, "
			 "fromImageRegistry and registryCA apply to fromImage only");
		return 400;
	}
	return 0;
}

static void answer_created(struct http_conn *c, const char *name, const char *build_id, int cpus, int mem_mib)
{
	char now[32];
	time_format(wall_ms(), now);
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	jw_kstr(&w, "templateID", name);
	jw_kstr(&w, "buildID", build_id);
	jw_kbool(&w, "public", false);
	jw_key(&w, "names");
	jw_arr(&w);
	jw_str(&w, name);
	jw_end(&w);
	jw_key(&w, "aliases");
	jw_arr(&w);
	jw_str(&w, name);
	jw_end(&w);
	jw_key(&w, "tags");
	jw_arr(&w);
	jw_end(&w);
	jw_kint(&w, "cpuCount", cpus);
	jw_kint(&w, "memoryMB", mem_mib);
	jw_kstr(&w, "envdVersion", ENVD_VERSION);
	jw_kstr(&w, "createdAt", now);
	jw_kstr(&w, "buildStatus", "waiting");
	jw_end(&w);
	respond_json(c, 202, &b);
}

/* The import options of the body, as the producer reads them. */
static void image_options(const struct json *j, struct buf *out)
{
	static const char *const keys[] = {"writableLayerSizeMB", "exposePorts", "probePort", "startCmd", "envVars",
					   "insecureRegistry"};
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const struct json *v = json_get(j, keys[i]);
		if (v) {
			jw_key(&w, keys[i]);
			jw_value(&w, v);
		}
	}
	jw_end(&w);
}

/* The pull's credentials and CA, for the build's memory only (tbuild_spec's
 * source_secret). False when the body has none. */
static bool image_secret(const struct json *j, struct buf *out)
{
	const struct json *reg = json_get(j, "fromImageRegistry"), *ca = json_get(j, "registryCA");
	if (!reg && !ca)
		return false;
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	if (reg) {
		jw_kstr(&w, "username", json_get_str(reg, "username"));
		jw_kstr(&w, "password", json_get_str(reg, "password"));
	}
	if (ca)
		jw_kstr(&w, "ca", ca->str);
	jw_end(&w);
	return true;
}

static void wipe(struct buf *b)
{
	if (b->data)
		explicit_bzero(b->data, b->len);
	buf_free(b);
}

static int query_to_json(const char *query, struct buf *out, char *err, size_t errsz);

int template_create_check(const char *body, size_t len, bool upload_query, char *err, size_t errsz)
{
	struct buf doc = BUF_INIT;
	if (upload_query && query_to_json(body, &doc, err, errsz) < 0) {
		buf_free(&doc);
		return 400;
	}
	struct json *j = upload_query ? json_parse(doc.data, doc.len, err, errsz) : json_parse(body, len, err, errsz);
	struct create_tpl r;
	int status = j ? parse_create(j, &r, err, errsz) : 400;
	struct oci_ref ref;
	if (!status && r.from_image && !upload_query && oci_ref_parse(r.from_image, &ref, err, errsz) != OCI_OK)
		status = 400;
	json_free(j);
	buf_free(&doc);
	return status;
}

static void create_template(struct api *a, struct http_conn *c, struct http_req *req)
{
	char err[512];
	struct json *j = json_parse(req->body, req->body_len, err, sizeof err);
	struct create_tpl r;
	int status = j ? parse_create(j, &r, err, sizeof err) : 400;
	struct oci_ref ref;
	if (!status && r.from_image && oci_ref_parse(r.from_image, &ref, err, sizeof err) != OCI_OK)
		status = 400;
	if (!status && r.from_rootfs && tbuild_check_ext4(r.from_rootfs, err, sizeof err) < 0)
		status = 400;
	char build_id[TBUILD_ID_LEN + 1] = "";
	struct buf opts = BUF_INIT, secret = BUF_INIT;
	if (!status) {
		struct tbuild_spec spec = {.name = r.name,
					   .source = &tbuild_source_rootfs,
					   .source_ref = r.from_rootfs,
					   .cpus = (int)r.cpus,
					   .mem_mib = (int)r.mem_mib};
		if (r.from_image) {
			image_options(j, &opts);
			spec.source = &tbuild_source_image;
			spec.source_ref = r.from_image;
			spec.source_options = opts.data;
			spec.source_secret = image_secret(j, &secret) ? secret.data : NULL;
		}
		status = tbuild_submit(a, &spec, build_id, err, sizeof err);
	}
	buf_free(&opts);
	wipe(&secret);
	if (status) {
		log_info("template.create", "%d: %s", status, err);
		http_respond_error(c, status, "%s", err);
	} else {
		answer_created(c, r.name, build_id, r.cpus > 0 ? (int)r.cpus : a->cfg.base_cpus,
			       r.mem_mib > 0 ? (int)r.mem_mib : a->cfg.base_mem_mib);
	}
	json_free(j);
}

/* --- POST /templates/upload ------------------------------------------------------- *
 * The body is the tarball (docker save, or an OCI layout; .tar or .tar.gz),
 * the options are query parameters: name (required), cpuCount, memoryMB,
 * writableLayerSizeMB, probePort, startCmd, exposePorts=80,443, env=K=V
 * (repeatable).
 * The server spools a large body to an unlinked file on the data disk and
 * answers 413 past template_upload_max before anything is kept. */

uint64_t template_upload_max = 8ull << 30;

static bool is_upload_path(const char *p)
{
	return strncmp(p, "/templates/upload", 17) == 0 && (p[17] == '\0' || p[17] == '?' || strcmp(p + 17, "/") == 0);
}

uint64_t template_body_limit(const struct http_head *h, uint64_t dflt)
{
	return strcmp(h->method, "POST") == 0 && h->target && is_upload_path(h->target) ? template_upload_max : dflt;
}

static bool all_digits(const char *s)
{
	if (!*s || strlen(s) > 18)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* The query as the JSON body POST /templates takes, so both are checked by
 * the same rules; -1 with a message on a parameter it does not know. */
static int query_to_json(const char *query, struct buf *out, char *err, size_t errsz)
{
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	jw_kstr(&w, "fromImage", "uploaded-archive"); /* a placeholder: one source */
	struct buf env = BUF_INIT, ports = BUF_INIT;
	struct jw ew, pw;
	jw_init(&ew, &env);
	jw_obj(&ew);
	jw_init(&pw, &ports);
	jw_arr(&pw);
	int rc = 0;
	for (const char *p = query; rc == 0 && *p;) {
		size_t n = strcspn(p, "&");
		const char *eq = memchr(p, '=', n);
		char *key = http_url_decode(p, eq ? (size_t)(eq - p) : n, true);
		char *val = eq ? http_url_decode(eq + 1, n - (size_t)(eq + 1 - p), true) : strdup("");
		if (!key || !val)
			abort();
		if (strcmp(key, "name") == 0 || strcmp(key, "startCmd") == 0) {
			jw_kstr(&w, key, val);
		} else if (strcmp(key, "cpuCount") == 0 || strcmp(key, "memoryMB") == 0 ||
			   strcmp(key, "writableLayerSizeMB") == 0 || strcmp(key, "probePort") == 0) {
			jw_key(&w, key);
			all_digits(val) ? jw_int(&w, strtoll(val, NULL, 10)) : jw_str(&w, val);
		} else if (strcmp(key, "env") == 0 && strchr(val, '=')) {
			char *e = strchr(val, '=');
			*e = '\0';
			jw_key(&ew, val);
			jw_str(&ew, e + 1);
		} else if (strcmp(key, "exposePorts") == 0) {
			for (char *s = val, *t; (t = strsep(&s, ",")) != NULL;)
				all_digits(t) ? jw_int(&pw, strtoll(t, NULL, 10)) : jw_str(&pw, t);
		} else if (*key) {
			snprintf(
			    err, errsz,
			    "unknown parameter \"%.64s\" (name, cpuCount, memoryMB, writableLayerSizeMB, probePort, "
			    "startCmd, exposePorts, env=K=V)",
			    key);
			rc = -1;
		}
		free(key);
		free(val);
		p += n + (p[n] == '&');
	}
	jw_end(&ew);
	jw_end(&pw);
	if (env.len > 2) {
		jw_key(&w, "envVars");
		jw_raw(&w, env.data, env.len);
	}
	if (ports.len > 2) {
		jw_key(&w, "exposePorts");
		jw_raw(&w, ports.data, ports.len);
	}
	jw_end(&w);
	buf_free(&env);
	buf_free(&ports);
	return rc;
}

/* The body to DIR/templates/.upload-<random> (swept at the next start if
 * the api stops before the build ends). 0, or an HTTP status. */
static int save_upload(struct api *a, struct http_conn *c, char *path, size_t n, char *err, size_t errsz)
{
	char dir[4200], tok[SANDBOX_TOKEN_LEN + 1];
	snprintf(dir, sizeof dir, "%s/templates", a->cfg.state_dir);
	sandbox_new_token(tok);
	snprintf(path, n, "%s/.upload-%.16s", dir, tok);
	if (dir_make_all(dir, 0755) < 0 || http_req_body_save(c, path, 0600) < 0) {
		int e = errno;
		unlink(path);
		snprintf(err, errsz, "cannot store the upload: %s", strerror(e));
		return e == ENOSPC ? 507 : 500;
	}
	return 0;
}

static void upload_template(struct api *a, struct http_conn *c, struct http_req *req)
{
	char err[512] = "";
	struct buf body = BUF_INIT;
	struct json *j = NULL;
	struct create_tpl r;
	int status = query_to_json(req->query, &body, err, sizeof err) < 0 ? 400 : 0;
	if (!status) {
		j = json_parse(body.data, body.len, err, sizeof err);
		status = j ? parse_create(j, &r, err, sizeof err) : 400;
	}
	if (!status && req->body_len == 0) {
		snprintf(err, sizeof err, "the body must be the image tarball (docker save or an OCI layout)");
		status = 400;
	}
	char path[4300] = "", build_id[TBUILD_ID_LEN + 1] = "";
	if (!status)
		status = save_upload(a, c, path, sizeof path, err, sizeof err);
	if (!status) {
		struct buf opts = BUF_INIT;
		image_options(j, &opts);
		struct tbuild_spec spec = {.name = r.name,
					   .source = &tbuild_source_archive,
					   .source_ref = path,
					   .source_options = opts.data,
					   .cpus = (int)r.cpus,
					   .mem_mib = (int)r.mem_mib};
		status = tbuild_submit(a, &spec, build_id, err, sizeof err);
		buf_free(&opts);
		if (status)
			unlink(path); /* no build owns it */
	}
	if (status) {
		log_info("template.upload", "%d: %s", status, err);
		http_respond_error(c, status, "%s", err);
	} else {
		log_info("template.upload", "template=%s build=%s: %zu bytes", r.name, build_id, req->body_len);
		answer_created(c, r.name, build_id, r.cpus > 0 ? (int)r.cpus : a->cfg.base_cpus,
			       r.mem_mib > 0 ? (int)r.mem_mib : a->cfg.base_mem_mib);
	}
	json_free(j);
	buf_free(&body);
}

/* --- build status and logs ------------------------------------------------------------ */

static int level_rank(const char *level)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++)
		if (level && strcmp(level, names[i]) == 0)
			return i;
	return 1;
}

/* The build's log entries, oldest first (a partial last line is skipped). */
static struct json **read_log(struct api *a, const char *name, size_t *n)
{
	char path[4200];
	tbuild_path(a, name, "build.log", path, sizeof path);
	size_t len;
	char *text = file_read_all(path, BUILD_LOG_MAX, &len);
	*n = 0;
	struct json **v = NULL;
	size_t cap = 0;
	for (char *line = text, *nl; line && (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
		struct json *e = json_parse(line, (size_t)(nl - line), NULL, 0);
		if (!e || e->type != JSON_OBJECT) {
			json_free(e);
			continue;
		}
		if (*n == cap) {
			cap = cap ? 2 * cap : 64;
			v = realloc(v, cap * sizeof *v);
			if (!v)
				abort();
		}
		v[(*n)++] = e;
	}
	free(text);
	return v;
}

static void free_log(struct json **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_free(v[i]);
	free(v);
}

static void write_entry(struct jw *w, const struct json *e)
{
	jw_obj(w);
	jw_kstr(w, "timestamp", json_get_str(e, "timestamp") ? json_get_str(e, "timestamp") : "");
	jw_kstr(w, "level", json_get_str(e, "level") ? json_get_str(e, "level") : "info");
	jw_kstr(w, "message", json_get_str(e, "message") ? json_get_str(e, "message") : "");
	if (json_get_str(e, "step"))
		jw_kstr(w, "step", json_get_str(e, "step"));
	jw_end(w);
}

static int64_t query_int(struct http_req *req, const char *name, int64_t def, int64_t min, int64_t max)
{
	char *s = http_query_get(req->query, name);
	if (!s)
		return def;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	bool ok = !errno && end != s && !*end;
	free(s);
	return !ok ? def : v < min ? min : v > max ? max : v;
}

/* A template without build.json (the image's templates) reports its state. */
struct build_view {
	struct json *build; /* build.json, or NULL */
	const char *template_id, *build_id, *status, *phase, *reason;
	int progress;
};

static void write_status(struct api *a, struct http_req *req, const struct build_view *v, struct buf *out)
{
	size_t n;
	struct json **log = read_log(a, v->template_id, &n);
	int64_t offset = query_int(req, "logsOffset", 0, 0, INT32_MAX);
	int64_t limit = query_int(req, "limit", LOGS_LIMIT_MAX, 0, LOGS_LIMIT_MAX);
	char *level = http_query_get(req->query, "level");
	int min = level_rank(level);
	free(level);
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	jw_kstr(&w, "templateID", v->template_id);
	jw_kstr(&w, "buildID", v->build_id);
	jw_kstr(&w, "status", v->status);
	jw_kstr(&w, "phase", v->phase);
	jw_kint(&w, "progress", v->progress);
	static const char *const times[] = {"createdAt", "updatedAt", "finishedAt"};
	for (int i = 0; i < 3; i++)
		if (v->build && json_get_str(v->build, times[i]))
			jw_kstr(&w, times[i], json_get_str(v->build, times[i]));
	if (v->reason) {
		jw_key(&w, "reason");
		jw_obj(&w);
		jw_kstr(&w, "message", v->reason);
		jw_kstr(&w, "step", v->phase);
		jw_end(&w);
	}
	/* logsOffset counts entries of the level asked for, as the SDK pages. */
	for (int pass = 0; pass < 2; pass++) {
		jw_key(&w, pass ? "logEntries" : "logs");
		jw_arr(&w);
		int64_t seen = 0, sent = 0;
		for (size_t i = 0; i < n && sent < limit; i++) {
			if (level_rank(json_get_str(log[i], "level")) < min || seen++ < offset)
				continue;
			sent++;
			if (pass) {
				write_entry(&w, log[i]);
				continue;
			}
			char line[1400];
			snprintf(line, sizeof line, "%s [%s] %s", json_get_str(log[i], "timestamp"),
				 json_get_str(log[i], "level"), json_get_str(log[i], "message"));
			jw_str(&w, line);
		}
		jw_end(&w);
	}
	jw_end(&w);
	free_log(log, n);
}

static struct json *read_build_json(struct api *a, const char *name)
{
	char path[4200];
	tbuild_path(a, name, "build.json", path, sizeof path);
	size_t len;
	char *text = file_read_all(path, BUILD_JSON_MAX, &len);
	struct json *j = text ? json_parse(text, len, NULL, 0) : NULL;
	free(text);
	if (j && j->type != JSON_OBJECT) {
		json_free(j);
		j = NULL;
	}
	return j;
}

/* Fills v for template t; false if build_id is not its build. */
static bool view_build(struct api *a, const struct template_info *t, const char *build_id, struct build_view *v)
{
	memset(v, 0, sizeof *v);
	v->template_id = t->id;
	v->build = read_build_json(a, t->id);
	if (v->build) {
		v->build_id = json_get_str(v->build, "buildID");
		v->status = json_get_str(v->build, "status");
		v->phase = json_get_str(v->build, "phase");
		v->reason = json_get_str(v->build, "reason");
		v->progress = (int)json_get_int(v->build, "progress", 0);
	} else {
		v->build_id = t->id;
		v->status = t->state;
		v->phase = strcmp(t->state, "building") == 0 ? "booting" : t->state;
		v->reason = t->error;
		v->progress = strcmp(t->state, "ready") == 0 ? 100 : t->progress;
	}
	if (!v->build_id || !v->status || !v->phase || (build_id && strcmp(build_id, v->build_id) != 0)) {
		json_free(v->build);
		return false;
	}
	if (tbuild_running(a, t->id) && (strcmp(v->status, "ready") == 0 || strcmp(v->status, "error") == 0))
		v->status = "building"; /* the worker wrote the end; the loop has not seen it yet */
	return true;
}

static void build_status(struct api *a, struct http_conn *c, struct http_req *req, const char *tid, const char *bid,
			 bool logs_only)
{
	struct template_info t;
	if (template_find(a, tid, &t) < 0) {
		http_respond_error(c, 404, "template \"%.128s\" not found", tid);
		return;
	}
	struct build_view v;
	if (!view_build(a, &t, bid, &v)) {
		http_respond_error(c, 404, "build \"%.64s\" of template %s not found", bid, t.id);
		template_info_clear(&t);
		return;
	}
	struct buf b = BUF_INIT;
	if (!logs_only) {
		write_status(a, req, &v, &b);
	} else {
		size_t n;
		struct json **log = read_log(a, t.id, &n);
		int64_t cursor = query_int(req, "cursor", 0, 0, INT64_MAX);
		int64_t limit = query_int(req, "limit", LOGS_LIMIT_MAX, 0, LOGS_LIMIT_MAX);
		char *dir = http_query_get(req->query, "direction");
		char *level = http_query_get(req->query, "level");
		bool backward = dir && strcmp(dir, "backward") == 0;
		int min = level_rank(level);
		free(dir);
		free(level);
		struct jw w;
		jw_init(&w, &b);
		jw_obj(&w);
		jw_key(&w, "logs");
		jw_arr(&w);
		int64_t sent = 0;
		for (size_t k = 0; k < n && sent < limit; k++) {
			const struct json *e = log[backward ? n - 1 - k : k];
			int64_t ms = 0;
			if (time_parse(json_get_str(e, "timestamp") ? json_get_str(e, "timestamp") : "", &ms) < 0 ||
			    level_rank(json_get_str(e, "level")) < min || (!backward && ms < cursor) ||
			    (backward && cursor && ms > cursor))
				continue;
			write_entry(&w, e);
			sent++;
		}
		jw_end(&w);
		jw_end(&w);
		free_log(log, n);
	}
	json_free(v.build);
	template_info_clear(&t);
	respond_json(c, 200, &b);
}

/* GET /templates/builds/{buildID}: the CLI's `watch BUILD` knows no template. */
static void status_by_build(struct api *a, struct http_conn *c, struct http_req *req, const char *bid)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/templates", a->cfg.state_dir);
	char found[TEMPLATE_ID_MAX + 1] = "";
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && !found[0] && (e = readdir(d)) != NULL) {
		if (!template_id_valid(e->d_name))
			continue;
		struct json *j = read_build_json(a, e->d_name);
		const char *id = j ? json_get_str(j, "buildID") : NULL;
		if (id && strcmp(id, bid) == 0)
			snprintf(found, sizeof found, "%.128s", e->d_name);
		json_free(j);
	}
	if (d)
		closedir(d);
	if (!found[0]) {
		http_respond_error(c, 404, "build \"%.64s\" not found", bid);
		return;
	}
	build_status(a, c, req, found, bid, false);
}

/* --- DELETE /templates/{id} ------------------------------------------------------------ */

int template_sandbox_count(struct api *a, const char *template_id)
{
	int n = 0;
	for (struct sandbox_entry *e = a->sandboxes; e; e = e->next)
		n += e->rec.template_id && strcmp(e->rec.template_id, template_id) == 0;
	return n;
}

struct snapshots_of {
	struct api *a;
	const char *base;
	int n;
	char first[sizeof((struct template_info *)0)->id];
};

static bool count_one_snapshot(void *arg, const char *dirname)
{
	struct snapshots_of *s = arg;
	struct template_info t;
	if (template_load(s->a, dirname, &t) == 0 && t.base_template && strcmp(t.base_template, s->base) == 0 &&
	    strcmp(t.id, s->base) != 0 && s->n++ == 0)
		snprintf(s->first, sizeof s->first, "%s", t.id);
	template_info_clear(&t);
	return true;
}

static void delete_template(struct api *a, struct http_conn *c, const char *id)
{
	struct template_info t;
	if (template_find(a, id, &t) < 0) {
		http_respond_error(c, 404, "template \"%.128s\" not found", id);
		return;
	}
	int n = template_sandbox_count(a, t.id);
	struct snapshots_of snaps = {.a = a, .base = t.id};
	if (n == 0)
		template_each(a, count_one_snapshot, &snaps);
	char err[512];
	if (tbuild_running(a, t.id) || strcmp(t.state, "building") == 0) {
		http_respond_error(c, 409, "template %s is being built: wait until its build ends", t.id);
	} else if (n > 0) {
		http_respond_error(c, 409, "template %s has %d sandbox%s (running or paused): kill them first", t.id, n,
				   n == 1 ? "" : "es");
	} else if (snaps.n > 0) {
		http_respond_error(c, 409,
				   "template %s has %d snapshot%s (%s%s) whose disks stack on it: delete them first",
				   t.id, snaps.n, snaps.n == 1 ? "" : "s", snaps.first, snaps.n > 1 ? ", ..." : "");
	} else {
		pool_drop_template(a->warm, t.id);
		if (template_trash(a, t.id, err, sizeof err) < 0) {
			log_error("template.delete", "template=%s %s", t.id, err);
			http_respond_error(c, 500, "%s", err);
		} else {
			log_info("template.delete", "template=%s deleted", t.id);
			http_respond(c, 204, NULL, NULL, 0);
		}
	}
	template_info_clear(&t);
}

/* --- routing ---------------------------------------------------------------------------- */

/* Splits the path after /templates/ into at most 4 segments; -1 if more. */
static int split(char *p, char *seg[4])
{
	int n = 0;
	for (char *s = strtok(p, "/"); s; s = strtok(NULL, "/")) {
		if (n == 4)
			return -1;
		seg[n++] = s;
	}
	return n;
}

bool template_jobs_route(struct api *a, struct http_conn *c, struct http_req *req)
{
	const char *p = req->path;
	if (strncmp(p, "/templates", 10) != 0 || (p[10] != '\0' && p[10] != '/'))
		return false;
	bool get = strcmp(req->method, "GET") == 0;
	if (strcmp(req->method, "POST") == 0 && (p[10] == '\0' || strcmp(p + 10, "/") == 0)) {
		create_template(a, c, req);
		return true;
	}
	if (strcmp(req->method, "POST") == 0 && is_upload_path(p)) {
		upload_template(a, c, req);
		return true;
	}
	char copy[1024];
	if (snprintf(copy, sizeof copy, "%s", p + 10) >= (int)sizeof copy)
		return false;
	char *seg[4];
	int n = split(copy, seg);
	if (n == 1 && strcmp(req->method, "DELETE") == 0 && !template_name_reserved(seg[0])) {
		delete_template(a, c, seg[0]);
		return true;
	}
	if (get && n == 2 && strcmp(seg[0], "builds") == 0) {
		status_by_build(a, c, req, seg[1]);
		return true;
	}
	if (get && n == 4 && strcmp(seg[1], "builds") == 0 &&
	    (strcmp(seg[3], "status") == 0 || strcmp(seg[3], "logs") == 0)) {
		build_status(a, c, req, seg[0], seg[2], strcmp(seg[3], "logs") == 0);
		return true;
	}
	return false;
}
