/*
 * template_jobs.h - template builds: one job per build, with phases, a
 * percentage and a log, kept on disk so a restarted api still answers for
 * them.
 *
 *   DIR/templates/<name>/build.json   the last build of the template:
 *       {"buildID","templateID","status":"waiting|building|ready|error",
 *        "phase","progress","createdAt","updatedAt","finishedAt"?,
 *        "reason"?,"source":{"type":"rootfs|image|archive","ref","options"?},
 *        "cpuCount","memoryMB"}
 *   DIR/templates/<name>/build.log    its log, one JSON object a line:
 *       {"timestamp","level","step","message"}
 *   DIR/templates/<name>/template.json  what templates.c lists (state
 *       building/ready/error, progress, buildID); an import adds "image",
 *       "envVars" (the image's Env, then the build's envVars over it: every
 *       sandbox of the template starts with them, its create's own winning),
 *       "workdir", "exposePorts", "probePort" (recorded, informational)
 *   DIR/templates/<name>/image.json  an import's image config summary (oci.h)
 *
 * Phases, in order: queued, pulling, unpacking, rootfs, booting,
 * snapshotting, then ready or error. Where the rootfs comes from is the
 * build's producer (struct tbuild_source): a copy of an ext4 image already on
 * the appliance, or an OCI import (template_image.c: a registry reference or
 * an uploaded docker-save / OCI layout tarball; pulling, unpacking, rootfs).
 * Then vm_ops.template_build boots it, waits for the
 * agent and snapshots, its progress feeding the percentage.
 *
 * A build that was running when the api stopped is marked error
 * "interrupted" at the next start.
 */
#ifndef CUBE_API_TEMPLATE_JOBS_H
#define CUBE_API_TEMPLATE_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/http.h"
#include "../lib/json.h"

struct api;
struct tbuild;

#define TBUILD_ID_LEN 36 /* a UUID: 8-4-4-4-12 hex digits */

/* Percentages at which the phases start: the producer's share first, then
 * the boot and the snapshot. */
#define TBUILD_PCT_PRODUCE 2
#define TBUILD_PCT_BOOT	   40
#define TBUILD_PCT_SNAP	   70

/* Makes <template dir>/rootfs.ext4 (out) on a worker thread. It reports
 * through tbuild_phase and tbuild_log; 0, or -1 with a message in err. */
struct tbuild_source {
	const char *type; /* "rootfs", "image", "archive" */
	int (*produce)(struct tbuild *b, const char *out, char *err, size_t errsz);
};

/* The producer that copies an ext4 image already on the appliance. */
extern const struct tbuild_source tbuild_source_rootfs;
/* OCI imports (template_image.c): source_ref is a registry reference, or
 * the path of an uploaded tarball (the producer removes it when done). */
extern const struct tbuild_source tbuild_source_image;
extern const struct tbuild_source tbuild_source_archive;

/* The agent the imports inject (tests point it elsewhere). */
extern const char *tbuild_agent_path; /* default /usr/lib/cubeos/cube-agent */

struct tbuild_spec {
	const char *name; /* the template's id and directory */
	const struct tbuild_source *source;
	const char *source_ref; /* rootfs: the path to copy; image: the reference */
	/* NULL, or a JSON object the producer reads (an import's
	 * writableLayerSizeMB, exposePorts, probePort, envVars, ...). */
	const char *source_options;
	/* NULL, or a JSON object the producer reads and nothing ever writes
	 * down (registry "username", "password", "ca" PEM): kept in memory
	 * only, so a build cut short by a restart cannot resume with it. */
	const char *source_secret;
	int cpus, mem_mib; /* <= 0: the api's defaults */
};

/* Worker thread, for producers. */
const char *tbuild_source_ref(const struct tbuild *b);
const char *tbuild_source_options(const struct tbuild *b); /* JSON text, or NULL */
const char *tbuild_source_secret(const struct tbuild *b);  /* JSON text, or NULL */
void tbuild_phase(struct tbuild *b, const char *phase, int pct);
/* The template's own directory (where out lives). */
const char *tbuild_dir(const struct tbuild *b);
/* Members of obj (a JSON object) are added to template.json from now on;
 * obj becomes the build's. */
void tbuild_set_template_extra(struct tbuild *b, struct json *obj);
void tbuild_log(struct tbuild *b, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Loop thread. Starts a build of spec->name; the template must not exist,
 * or its last build must have failed (an existing template is deleted
 * first). 0 with the new id in build_id, or an HTTP status (400, 409, 500,
 * 501 no backend, 503 no guest kernel) with a message in err. */
int tbuild_submit(struct api *a, const struct tbuild_spec *spec, char build_id[TBUILD_ID_LEN + 1], char *err,
		  size_t errsz);
/* True while a build of the template runs (in this api). */
bool tbuild_running(struct api *a, const char *name);

/* At api start: builds left "waiting"/"building" by an earlier api become
 * error "interrupted"; deleted templates left in the trash are removed. */
void template_jobs_start(struct api *a);

/* Shared with template_routes.c. */
void tbuild_path(const struct api *a, const char *name, const char *file, char *out, size_t n);
/* 0 if path is an absolute path to a regular file holding an ext4 image. */
int tbuild_check_ext4(const char *path, char *err, size_t errsz);
/* Names the routes use under /templates/. */
bool template_name_reserved(const char *name);
/* Removes DIR/templates/<name> at once (renamed to a hidden trash name,
 * then removed). 0, or -1 with a message in err. */
int template_trash(struct api *a, const char *name, char *err, size_t errsz);

/* The envVars template.json of template id (a directory name) sets, added
 * to env (kvs_set: later sets win, so call it before the create's own). */
struct kvs;
void template_env_load(struct api *a, const char *id, struct kvs *env);

/* Uploads (POST /templates/upload): the largest body accepted, and the
 * server's per-request body limit (http_server_config.body_limit) that
 * applies it to that route only; other requests get dflt. */
extern uint64_t template_upload_max; /* default 8 GiB */
uint64_t template_body_limit(const struct http_head *h, uint64_t dflt);

/* POST /templates, the build status and logs, DELETE /templates/{id}
 * (template_routes.c). False if the request is not one of them. */
bool template_jobs_route(struct api *a, struct http_conn *c, struct http_req *req);
/* The checks POST /templates applies to a JSON body, or (upload_query) POST
 * /templates/upload to its query string (body is then NUL-terminated): 0 if
 * accepted, else the HTTP status with the reason in err. For the fuzzer. */
int template_create_check(const char *body, size_t len, bool upload_query, char *err, size_t errsz);

#endif
