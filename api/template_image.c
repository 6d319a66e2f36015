/* template_image.c - the OCI import producers of template builds
 * (template_jobs.h): a registry reference ("image") or an uploaded
 * docker-save / OCI layout tarball ("archive") becomes the template's
 * rootfs.ext4 through oci_build_rootfs (oci.h), on the build's worker.
 *
 * The importer's phases keep their names in the job; their percentages are
 * scaled into the producer's share (TBUILD_PCT_PRODUCE..TBUILD_PCT_BOOT):
 * pulling the most (the network), unpacking and mke2fs less. Its detail
 * lines go to build.log. The image config (image.json: Env, WorkingDir,
 * ExposedPorts, Entrypoint, Cmd) and the build's options become
 * template.json members: every sandbox of the template gets the image's
 * environment and working directory, and the build starts the image's
 * command (or the build's startCmd) before its snapshot. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/json.h"
#include "kv.h"
#include "oci.h"
#include "template_jobs.h"

#define IMAGE_JSON_MAX (1024 * 1024)
#define MIB	       (1024ull * 1024)

const char *tbuild_agent_path = "/usr/lib/cubeos/cube-agent";

/* Where each importer phase lands in the build's percentage. */
struct phase_share {
	const char *phase;
	int from, to;
};
static const struct phase_share shares[] = {
    {"pulling", TBUILD_PCT_PRODUCE, 24},
    {"unpacking", 24, 34},
    {"rootfs", 34, TBUILD_PCT_BOOT},
};

struct import {
	struct tbuild *b;
	char last_detail[256];
};

static void on_progress(void *arg, const char *phase, int pct, const char *detail)
{
	struct import *im = arg;
	for (size_t i = 0; i < sizeof shares / sizeof shares[0]; i++) {
		if (strcmp(shares[i].phase, phase) != 0)
			continue;
		int p = pct < 0 ? 0 : pct > 100 ? 100 : pct;
		tbuild_phase(im->b, phase, shares[i].from + (shares[i].to - shares[i].from) * p / 100);
	}
	/* Details name steps (a blob, a layer, mke2fs): each once in the log. */
	if (detail && *detail && strcmp(detail, im->last_detail) != 0) {
		snprintf(im->last_detail, sizeof im->last_detail, "%s", detail);
		tbuild_log(im->b, "info", "%s", detail);
	}
}

/* The reason a failed import gives, by the importer's error class. */
static const char *status_reason(int status)
{
	switch (status) {
	case OCI_ENOTFOUND: return "image not found";
	case OCI_EAUTH: return "the registry refused access";
	case OCI_EDIGEST: return "the image does not match its digest";
	case OCI_ENOSPC: return "no space left on the data disk";
	case OCI_ETOOBIG: return "the image is too big";
	case OCI_ENET: return "cannot reach the registry";
	case OCI_EUNSUPPORTED: return "unsupported image";
	case OCI_EINVAL: return "invalid image";
	default: return "import failed";
	}
}

/* "envVars": the image's Env ("K=V" strings), then the build's over it. */
static void merge_env(struct json *image, const struct json *opts, struct jw *w)
{
	struct kvs env = {0};
	const struct json *list = image ? json_get(image, "env") : NULL;
	for (const struct json *e = list && list->type == JSON_ARRAY ? list->child : NULL; e; e = e->next) {
		const char *eq = e->type == JSON_STRING ? strchr(e->str, '=') : NULL;
		if (!eq || eq == e->str)
			continue;
		char *key = strndup(e->str, (size_t)(eq - e->str));
		if (!key)
			abort();
		kvs_set(&env, key, eq + 1);
		free(key);
	}
	const struct json *vars = opts ? json_get(opts, "envVars") : NULL;
	for (const struct json *m = vars && vars->type == JSON_OBJECT ? vars->child : NULL; m; m = m->next)
		if (m->type == JSON_STRING)
			kvs_set(&env, m->key, m->str);
	jw_key(w, "envVars");
	kvs_write(&env, w);
	kvs_free(&env);
}

/* "start": the argv a build starts before its snapshot. The build's
 * startCmd (a shell line; "" for nothing) wins over the image's
 * ENTRYPOINT + CMD, as `docker run` would join them. */
static void record_start(const struct json *image, const struct json *opts, struct jw *w)
{
	const struct json *given = opts ? json_get(opts, "startCmd") : NULL;
	if (given && given->type == JSON_STRING) {
		if (!*given->str)
			return;
		jw_key(w, "start");
		jw_arr(w);
		jw_str(w, "/bin/sh");
		jw_str(w, "-c");
		jw_str(w, given->str);
		jw_end(w);
		return;
	}
	const struct json *parts[] = {image ? json_get(image, "entrypoint") : NULL,
				      image ? json_get(image, "cmd") : NULL};
	bool any = false;
	for (size_t i = 0; i < 2; i++)
		for (const struct json *e = parts[i] && parts[i]->type == JSON_ARRAY ? parts[i]->child : NULL; e;
		     e = e->next) {
			if (e->type != JSON_STRING)
				continue;
			if (!any) {
				jw_key(w, "start");
				jw_arr(w);
				any = true;
			}
			jw_str(w, e->str);
		}
	if (any)
		jw_end(w);
}

/* template.json's import members, from image.json and the build options. */
static void record_image(struct tbuild *b, const char *image_json, const struct json *opts, const char *what)
{
	size_t len;
	char *text = file_read_all(image_json, IMAGE_JSON_MAX, &len);
	struct json *image = text ? json_parse(text, len, NULL, 0) : NULL;
	free(text);
	struct buf out = BUF_INIT;
	struct jw w;
	jw_init(&w, &out);
	jw_obj(&w);
	jw_kstr(&w, "image", what);
	merge_env(image, opts, &w);
	const char *wd = image ? json_get_str(image, "workingDir") : NULL;
	if (wd && *wd)
		jw_kstr(&w, "workdir", wd);
	const struct json *ports = opts ? json_get(opts, "exposePorts") : NULL;
	if (ports) {
		jw_key(&w, "exposePorts");
		jw_value(&w, ports);
	}
	int64_t probe = opts ? json_get_int(opts, "probePort", 0) : 0;
	if (probe > 0)
		jw_kint(&w, "probePort", probe);
	record_start(image, opts, &w);
	jw_end(&w);
	tbuild_set_template_extra(b, json_parse(out.data, out.len, NULL, 0));
	buf_free(&out);
	json_free(image);
}

/* The build's registry access (tbuild_source_secret): credentials into o,
 * a CA written to ca_path (0600, removed after the pull). -1 if the CA
 * cannot be written. */
static int apply_secret(struct tbuild *b, struct json *secret, struct oci_build_opts *o, const char *ca_path, char *err,
			size_t errsz)
{
	if (!secret)
		return 0;
	o->username = json_get_str(secret, "username");
	o->password = json_get_str(secret, "password");
	const char *ca = json_get_str(secret, "ca");
	if (ca) {
		if (file_replace(ca_path, ca, strlen(ca), 0600, false) < 0) {
			snprintf(err, errsz, "cannot write the registry CA to %s: %s", ca_path, strerror(errno));
			return -1;
		}
		o->ca_file = ca_path;
	}
	if (o->username || ca)
		tbuild_log(b, "info", "registry access:%s%s%s", o->username ? " user " : "",
			   o->username ? o->username : "", ca ? ", its own CA" : "");
	return 0;
}

static void free_secret(struct json *secret)
{
	for (struct json *m = secret ? secret->child : NULL; m; m = m->next)
		if (m->type == JSON_STRING)
			explicit_bzero(m->str, m->len);
	json_free(secret);
}

static int produce_import(struct tbuild *b, const char *out, bool archive, char *err, size_t errsz)
{
	const char *ref = tbuild_source_ref(b);
	const char *opts_text = tbuild_source_options(b);
	struct json *opts = opts_text ? json_parse(opts_text, strlen(opts_text), NULL, 0) : NULL;
	char image_json[4200];
	snprintf(image_json, sizeof image_json, "%s/image.json", tbuild_dir(b));
	struct import im = {.b = b};
	struct oci_build_opts o = {
	    .image = archive ? NULL : ref,
	    .archive = archive ? ref : NULL,
	    .out = out,
	    .config_out = image_json,
	    .agent = tbuild_agent_path,
	    .insecure_registry = opts && json_get_bool(opts, "insecureRegistry", false),
	    .progress = on_progress,
	    .progress_arg = &im,
	};
	int64_t layer_mib = opts ? json_get_int(opts, "writableLayerSizeMB", 0) : 0;
	if (layer_mib > 0)
		o.writable_bytes = (uint64_t)layer_mib * MIB;
	const char *secret_text = tbuild_source_secret(b);
	struct json *secret = secret_text ? json_parse(secret_text, strlen(secret_text), NULL, 0) : NULL;
	char ca_path[4200];
	snprintf(ca_path, sizeof ca_path, "%s/registry-ca.pem", tbuild_dir(b));
	if (apply_secret(b, secret, &o, ca_path, err, errsz) < 0) {
		free_secret(secret);
		json_free(opts);
		return -1;
	}
	tbuild_phase(b, "pulling", TBUILD_PCT_PRODUCE);
	tbuild_log(b, "info", "importing %s %s%s", archive ? "the uploaded archive" : "image", archive ? "" : ref,
		   o.insecure_registry ? " (plain HTTP registry)" : "");
	char why[512] = "";
	int rc = oci_build_rootfs(&o, why, sizeof why);
	if (o.ca_file)
		unlink(ca_path);
	free_secret(secret);
	if (archive && unlink(ref) < 0 && errno != ENOENT)
		tbuild_log(b, "warn", "cannot remove the upload %s: %s", ref, strerror(errno));
	if (rc != OCI_OK) {
		snprintf(err, errsz, "%s (%s): %s", status_reason(rc), oci_status_name(rc), why);
		json_free(opts);
		return -1;
	}
	record_image(b, image_json, opts, archive ? "(uploaded archive)" : ref);
	json_free(opts);
	tbuild_log(b, "info", "rootfs ready");
	return 0;
}

static int produce_image(struct tbuild *b, const char *out, char *err, size_t errsz)
{
	return produce_import(b, out, false, err, errsz);
}

static int produce_archive(struct tbuild *b, const char *out, char *err, size_t errsz)
{
	return produce_import(b, out, true, err, errsz);
}

const struct tbuild_source tbuild_source_image = {.type = "image", .produce = produce_image};
const struct tbuild_source tbuild_source_archive = {.type = "archive", .produce = produce_archive};
