/*
 * apicore.h - what the api's route files share (not for other daemons).
 *
 *   api.c             daemon object, routing, auth, JSON answers
 *   sandbox_routes.c  the sandbox calls
 *   sandbox_jobs.c    backend jobs (start, stop, pause, resume) and their ends
 *   sandbox_restore.c reload of the registry at start
 *   ttl.c             the expiry reaper
 *   templates.c       templates: listing, lookup
 *   template_defaults.c  the image's templates, built at start
 *   template_jobs.c   template builds (template_jobs.h); template_routes.c their calls
 *   pool.c            the warm pool of paused VMMs (pool.h)
 */
#ifndef CUBE_API_APICORE_H
#define CUBE_API_APICORE_H

#include "../lib/buf.h"
#include "../lib/http.h"
#include "api.h"
#include "auth.h"
#include "pool.h"
#include "registry.h"
#include "worker.h"

/* A sandbox the api knows. While busy (a backend job runs for it), other
 * changing calls get 409 and the TTL leaves it alone, so the job's pointer
 * to it stays valid until the job's done() ran. */
struct sandbox_entry {
	struct sandbox rec;
	const char *busy; /* NULL, or "starting", "stopping", "pausing", "resuming" */
	struct sandbox_entry *next;
};

struct api {
	struct loop *loop;
	struct api_config cfg; /* strings owned (copies) */
	struct vm_ops ops;
	struct http_server *srv;
	struct worker_pool *pool;
	struct auth auth;
	struct sandbox_entry *sandboxes;
	struct loop_timer ttl_timer;
	struct warm_pool *warm;
	struct tbuild *builds; /* template builds in progress (template_jobs.c) */
};

/* --- api.c ---------------------------------------------------------------- */
void respond_json(struct http_conn *c, int status, struct buf *body); /* frees body */
struct sandbox_entry *sandbox_find(struct api *a, const char *id);
void sandbox_unlink(struct api *a, struct sandbox_entry *e); /* and frees it */
/* Paths of one sandbox's directories. */
void sandbox_dir(const struct api *a, const char *id, char *out, size_t n);
void sandbox_run_dir(const struct api *a, const char *id, char *out, size_t n);
void template_dir(const struct api *a, const char *template_id, char *out, size_t n);

/* --- admission.c ----------------------------------------------------------- */
/* Room for one more sandbox? Else a 429 with Retry-After is sent: false. */
bool admission_ok(struct api *a, struct http_conn *c);
/* The same check without a client: 0, or 429 with the reason in why and
 * the seconds to wait in *retry_s. */
int admission_check(struct api *a, char *why, size_t whysz, int *retry_s);

/* --- sandbox_logs.c -------------------------------------------------------- */
/* GET /sandboxes/{id}/logs: the sandbox's console.log as E2B's logs and logEntries. */
void sandbox_logs(struct api *a, struct http_conn *c, const struct http_req *req, const struct sandbox_entry *e);

/* --- sandbox_routes.c ------------------------------------------------------ */
/* Handles /sandboxes... and /v2/sandboxes...; false if the path is not one. */
bool sandbox_route(struct api *a, struct http_conn *c, struct http_req *req);
/* Views of a record, as the SDK reads them. */
void sandbox_write_created(const struct sandbox *rec, struct buf *out);
void sandbox_write_listed(const struct sandbox *rec, struct jw *w);
void sandbox_write_detail(const struct sandbox *rec, struct buf *out);

/* --- sandbox_jobs.c -------------------------------------------------------- */
enum sandbox_job_kind { JOB_START, JOB_STOP, JOB_PAUSE, JOB_RESUME };
struct create_req;
struct template_info;
/* A new sandbox of template t for create request r, in the list and
 * marked for a start (give it to sandbox_job_submit or sandbox_start_then). */
struct sandbox_entry *sandbox_new_entry(struct api *a, const struct create_req *r, const struct template_info *t);
/* A start job without a client: done(arg, e, NULL) once it runs, or
 * done(arg, e, reason) before the failed entry goes. */
void sandbox_start_then(struct api *a, struct sandbox_entry *e,
			void (*done)(void *arg, struct sandbox_entry *e, const char *err), void *arg);
/* The optional JSON object body of a sandbox call (empty means {}), or NULL
 * after answering 400 (sandbox_routes.c). */
struct json *sandbox_body_object(struct http_conn *c, struct http_req *req);
/* Snapshots (snapshots.c): POST /sandboxes/{id}/snapshots and /fork, GET
 * /snapshots. */
void snapshot_create(struct api *a, struct http_conn *c, struct http_req *req, struct sandbox_entry *e);
void sandbox_fork(struct api *a, struct http_conn *c, struct http_req *req, struct sandbox_entry *e);
bool snapshot_route(struct api *a, struct http_conn *c, struct http_req *req);
/* How many sandboxes (running or paused) use the template (template_routes.c). */
int template_sandbox_count(struct api *a, const char *template_id);
/* Beside a snapshot of a secure sandbox: the token its agent holds. */
#define SNAPSHOT_GUEST_TOKEN "guest-token"
/* A fork's snapshot whose last sandbox went is removed (snapshots.c). */
void snapshot_forget_fork(struct api *a, const char *template_id);
/* At api start, after the sandboxes are known: the same for every fork. */
void snapshot_start(struct api *a);
/* Fork snapshots are named fork-<random>; no other template may be. */
bool snapshot_is_fork_name(const char *id);
/* Starts a backend job for e (marks it busy). conn may be NULL (TTL); when
 * set, the job answers it: start 201, stop 204, pause 204, resume
 * resume_status with the sandbox body. new_end_ms: endAt after a resume. */
void sandbox_job_submit(struct api *a, struct sandbox_entry *e, enum sandbox_job_kind kind, struct http_conn *conn,
			int resume_status, int64_t new_end_ms);
/* The /init document for the agent. */
void sandbox_init_json(const struct sandbox *rec, struct buf *out);

/* --- sandbox_restore.c ----------------------------------------------------- */
void sandboxes_restore(struct api *a);

/* --- ttl.c ------------------------------------------------------------------- */
void ttl_start(struct api *a);
void ttl_stop(struct api *a);

/* --- templates.c ----------------------------------------------------------- */
struct template_info {
	char id[160];
	char *name, *state, *error, *created_at, *updated_at;
	char *build_id; /* its last build (template_jobs.c), NULL: the id */
	int cpu_count, memory_mb, disk_size_mb;
	int progress;
	/* A snapshot of a sandbox (snapshots.c): the sandbox, and the template
	 * whose rootfs its disk stacks on; NULL for a built template. */
	char *snapshot_of, *base_template;
	bool fork; /* a fork's snapshot: hidden, gone with its last sandbox */
};
/* Calls fn with every template's directory name until it returns false. */
void template_each(struct api *a, bool (*fn)(void *arg, const char *dirname), void *arg);
/* Reads DIR/templates/<dirname>/template.json. 0, or -1 with errno. */
int template_load(struct api *a, const char *dirname, struct template_info *t);
/* Finds a template by directory name, templateID or name. 0, or -1 with
 * errno ENOENT. */
int template_find(struct api *a, const char *id, struct template_info *t);
void template_info_clear(struct template_info *t);
bool template_route(struct api *a, struct http_conn *c, struct http_req *req);
void templates_ensure_defaults(struct api *a);

/* What DIR/templates/<name>/template.json holds; NULL strings are left out. */
struct template_file {
	const char *name, *build_id, *state, *kernel, *rootfs, *source, *created, *error;
	int progress, cpus, mem_mib, disk_mb;
	const struct json *extra; /* more members, written as they are (an imported image's env) */
};
/* Writes <dir>/template.json atomically (synced unless still building). 0 or -1 (logged). */
int template_file_write(const char *dir, const struct template_file *f);

#endif
