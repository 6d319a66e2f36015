/* snapshots.c - a sandbox's snapshot as a template (E2B's createSnapshot,
 * listSnapshots, deleteSnapshot and fork).
 *
 *   POST /sandboxes/{id}/snapshots {"name"?, "memory"?}  201 {"snapshotID","names"}
 *   GET  /snapshots?sandboxID=&name=&limit=&nextToken=    200 [{"snapshotID","names"}]
 *   POST /sandboxes/{id}/fork {"timeout"?, "count"?}      201 [{"sandbox"} | {"error"}]
 *   DELETE /templates/{snapshotID}                        (template_routes.c)
 *
 * A snapshot is a template, DIR/templates/<id>/: snap/ (vm_checkpoint: a
 * running sandbox is paused for it and resumed, keeping its id and end
 * time; a paused one has its paused/ snapshot hard-linked), template.json
 * with "snapshot":{"sandboxID","baseTemplate","fork"?} and the sandbox's
 * envVars, and guest-token (0600) when the sandbox was secure: its agent
 * still holds that token, and a start from the snapshot shows it once to
 * hand over the new identity. Sandbox.create(snapshotID) restores it like
 * any template, with the processes and files the sandbox had.
 *
 * The snapshot's disk stacks on the rootfs of its base template (the
 * template the first sandbox of the chain was made from), so that template
 * cannot be deleted while snapshots of it exist (template_routes.c).
 *
 * A fork takes one snapshot ("fork-<random>", hidden from both listings)
 * and starts count sandboxes from it; each succeeds or fails on its own.
 * That snapshot goes when its last sandbox does, or at the next api start
 * if none is left. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/http.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "apicore.h"
#include "create_req.h"
#include "template_jobs.h"

#define FORK_PREFIX	"fork-"
#define FORK_COUNT_MAX	20
#define SNAP_NAME_RAND	12
#define LIST_LIMIT_MAX	100
#define LIST_LIMIT_DFLT 100

bool snapshot_is_fork_name(const char *id)
{
	return strncmp(id, FORK_PREFIX, strlen(FORK_PREFIX)) == 0;
}

/* --- the job ------------------------------------------------------------------------ */

struct fork_batch;

struct snap_job {
	struct job job;
	struct api *a;
	struct sandbox_entry *e;
	struct http_conn *conn; /* NULL once the client went away */
	struct sandbox rec;	/* the sandbox as it was when the job started */
	char id[TEMPLATE_ID_MAX + 1], base[TEMPLATE_ID_MAX + 1];
	char template_dir[4200], sandbox_dir[4200], run_dir[4200];
	struct fork_batch *fork; /* NULL: a snapshot the client asked for */
	int rc;
	char err[512];
};

static void snap_conn_gone(void *arg)
{
	((struct snap_job *)arg)->conn = NULL;
}

/* template.json: a ready template whose snap/ is the sandbox's. */
static int write_template_json(struct snap_job *j)
{
	char now[32];
	time_format(wall_ms(), now);
	struct buf extra = BUF_INIT;
	struct jw w;
	jw_init(&w, &extra);
	jw_obj(&w);
	jw_key(&w, "snapshot");
	jw_obj(&w);
	jw_kstr(&w, "sandboxID", j->rec.id);
	jw_kstr(&w, "baseTemplate", j->base);
	if (j->fork)
		jw_kbool(&w, "fork", true);
	jw_end(&w);
	jw_key(&w, "envVars");
	kvs_write(&j->rec.env_vars, &w);
	jw_end(&w);
	struct json *obj = json_parse(extra.data, extra.len, NULL, 0);
	struct template_file f = {.name = j->id,
				  .state = "ready",
				  .source = "snapshot",
				  .created = now,
				  .progress = 100,
				  .cpus = j->rec.cpu_count,
				  .mem_mib = j->rec.memory_mb,
				  .disk_mb = j->rec.disk_size_mb,
				  .kernel = "",
				  .rootfs = "",
				  .extra = obj};
	int rc = template_file_write(j->template_dir, &f);
	json_free(obj);
	buf_free(&extra);
	return rc;
}

static void snap_run(struct job *job)
{
	struct snap_job *j = (struct snap_job *)job;
	struct vm_spec spec = {.id = j->rec.id,
			       .template_dir = j->template_dir,
			       .sandbox_dir = j->sandbox_dir,
			       .run_dir = j->run_dir,
			       .vmm_path = j->a->cfg.vmm_path};
	char snap[4300];
	snprintf(snap, sizeof snap, "%s/snap", j->template_dir);
	pid_t pid = j->rec.state == SANDBOX_RUNNING ? j->rec.vmm_pid : 0;
	j->rc = j->a->ops.checkpoint(pid, &spec, snap, j->err, sizeof j->err);
	if (j->rc == 0 && j->rec.envd_access_token) {
		char path[4300];
		snprintf(path, sizeof path, "%s/%s", j->template_dir, SNAPSHOT_GUEST_TOKEN);
		const char *tok = j->rec.envd_access_token;
		if (file_replace(path, tok, strlen(tok), 0600, true) < 0) {
			snprintf(j->err, sizeof j->err, "cannot write the guest token: %s", strerror(errno));
			j->rc = -1;
		}
	}
	if (j->rc == 0 && write_template_json(j) < 0) {
		snprintf(j->err, sizeof j->err, "cannot write the template record: %s", strerror(errno));
		j->rc = -1;
	}
	if (j->rc < 0 && registry_remove_tree(j->template_dir) < 0)
		log_warn("snapshot.create", "snapshot=%s cannot remove %s: %s", j->id, j->template_dir,
			 strerror(errno));
}

static void fork_start(struct fork_batch *b, int rc, const char *err);

static void snap_done(struct job *job)
{
	struct snap_job *j = (struct snap_job *)job;
	j->e->busy = NULL;
	if (j->rc < 0)
		log_error("snapshot.create", "sandbox=%s snapshot=%s failed: %s", j->rec.id, j->id, j->err);
	else
		log_info("snapshot.create", "sandbox=%s snapshot=%s base=%s%s", j->rec.id, j->id, j->base,
			 j->fork ? " (for a fork)" : "");
	if (j->fork) {
		fork_start(j->fork, j->rc, j->err);
	} else if (j->conn && j->rc < 0) {
		http_respond_error(j->conn, 500, "cannot snapshot sandbox %s: %s", j->rec.id, j->err);
	} else if (j->conn) {
		struct buf b = BUF_INIT;
		struct jw w;
		jw_init(&w, &b);
		jw_obj(&w);
		jw_kstr(&w, "snapshotID", j->id);
		jw_key(&w, "names");
		jw_arr(&w);
		jw_str(&w, j->id);
		jw_end(&w);
		jw_end(&w);
		respond_json(j->conn, 201, &b);
	}
	sandbox_clear(&j->rec);
	free(j);
}

/* The template the sandbox's disk stacks on: its own template, or that
 * template's base if it is a snapshot itself. */
static void base_of(struct api *a, const char *template_id, char *out, size_t outsz)
{
	struct template_info t;
	snprintf(out, outsz, "%s", template_id);
	if (template_find(a, template_id, &t) == 0 && t.base_template && *t.base_template)
		snprintf(out, outsz, "%s", t.base_template);
	template_info_clear(&t);
}

/* Claims DIR/templates/<id> (mkdir: two snapshots cannot take one name) and
 * starts the job. 0, or an HTTP status with a message in err. */
static int submit(struct api *a, struct http_conn *c, struct sandbox_entry *e, const char *id, struct fork_batch *fork,
		  char *err, size_t errsz)
{
	struct snap_job *j = calloc(1, sizeof *j);
	if (!j)
		abort();
	j->a = a;
	j->e = e;
	j->fork = fork;
	snprintf(j->id, sizeof j->id, "%s", id);
	template_dir(a, id, j->template_dir, sizeof j->template_dir);
	if (mkdir(j->template_dir, 0755) < 0) {
		int status = errno == EEXIST ? 409 : 500;
		snprintf(err, errsz, status == 409 ? "a template named %s exists already" : "cannot create %s: %s",
			 status == 409 ? id : j->template_dir, strerror(errno));
		free(j);
		return status;
	}
	sandbox_copy(&j->rec, &e->rec);
	base_of(a, e->rec.template_id, j->base, sizeof j->base);
	sandbox_dir(a, e->rec.id, j->sandbox_dir, sizeof j->sandbox_dir);
	sandbox_run_dir(a, e->rec.id, j->run_dir, sizeof j->run_dir);
	j->job.run = snap_run;
	j->job.done = snap_done;
	j->conn = fork ? NULL : c;
	if (j->conn)
		http_conn_on_abort(c, snap_conn_gone, j);
	e->busy = "snapshotting";
	worker_submit(a->pool, &j->job);
	return 0;
}

static void random_name(const char *prefix, char *out, size_t outsz)
{
	char tok[SANDBOX_TOKEN_LEN + 1];
	sandbox_new_token(tok);
	snprintf(out, outsz, "%s%.*s", prefix, SNAP_NAME_RAND, tok);
}

/* --- POST /sandboxes/{id}/snapshots ---------------------------------------------------- */

void snapshot_create(struct api *a, struct http_conn *c, struct http_req *req, struct sandbox_entry *e)
{
	struct json *body = sandbox_body_object(c, req);
	if (!body)
		return;
	const struct json *name = json_get(body, "name"), *memory = json_get(body, "memory");
	char id[TEMPLATE_ID_MAX + 1], err[512];
	int status = 0;
	if (name && name->type != JSON_NULL &&
	    (name->type != JSON_STRING || !template_id_valid(name->str) || template_name_reserved(name->str) ||
	     snapshot_is_fork_name(name->str))) {
		snprintf(err, sizeof err,
			 "name must be 1-%d characters of A-Z a-z 0-9 . _ - starting with a letter or digit (not "
			 "\"builds\", \"aliases\", \"upload\" or fork-...)",
			 TEMPLATE_ID_MAX);
		status = 400;
	} else if (memory && memory->type != JSON_NULL && (memory->type != JSON_BOOL || !memory->boolean)) {
		snprintf(err, sizeof err, "only full snapshots are supported: memory must be true (the default)");
		status = 400;
	} else if (e->rec.state != SANDBOX_RUNNING && e->rec.state != SANDBOX_PAUSED) {
		snprintf(err, sizeof err, "sandbox %s cannot be snapshotted in its state", e->rec.id);
		status = 409;
	}
	if (!status) {
		struct template_info t;
		if (name && name->type == JSON_STRING)
			snprintf(id, sizeof id, "%s", name->str);
		else
			random_name("snap-", id, sizeof id);
		if (template_find(a, id, &t) == 0) {
			snprintf(err, sizeof err, "a template named %s exists already", id);
			status = 409;
		}
		template_info_clear(&t);
	}
	if (!status)
		status = submit(a, c, e, id, NULL, err, sizeof err);
	if (status) {
		log_info("snapshot.create", "sandbox=%s %d: %s", e->rec.id, status, err);
		http_respond_error(c, status, "%s", err);
	}
	json_free(body);
}

/* --- POST /sandboxes/{id}/fork --------------------------------------------------------- */

struct fork_result {
	struct buf created; /* the sandbox's create answer, or empty */
	int code;	    /* 0, or the error's status */
	char message[300];
};

struct fork_batch {
	struct api *a;
	struct http_conn *conn;
	char source[SANDBOX_ID_MAX + 1], snapshot[TEMPLATE_ID_MAX + 1];
	struct create_req req; /* each fork's create */
	int count, pending;
	struct fork_result results[FORK_COUNT_MAX];
};

static void fork_conn_gone(void *arg)
{
	((struct fork_batch *)arg)->conn = NULL;
}

static void fork_answer(struct fork_batch *b)
{
	if (b->conn) {
		http_conn_on_abort(b->conn, NULL, NULL);
		struct buf out = BUF_INIT;
		struct jw w;
		jw_init(&w, &out);
		jw_arr(&w);
		for (int i = 0; i < b->count; i++) {
			const struct fork_result *r = &b->results[i];
			jw_obj(&w);
			if (r->code) {
				jw_key(&w, "error");
				jw_obj(&w);
				jw_kint(&w, "code", r->code);
				jw_kstr(&w, "message", r->message);
				jw_end(&w);
			} else {
				jw_key(&w, "sandbox");
				jw_raw(&w, r->created.data, r->created.len);
			}
			jw_end(&w);
		}
		jw_end(&w);
		respond_json(b->conn, 201, &out);
	}
	for (int i = 0; i < b->count; i++)
		buf_free(&b->results[i].created);
	/* Every fork failed: nothing holds the snapshot. */
	snapshot_forget_fork(b->a, b->snapshot);
	create_req_free(&b->req);
	free(b);
}

struct fork_slot {
	struct fork_batch *b;
	int i;
};

static void fork_started(void *arg, struct sandbox_entry *e, const char *err)
{
	struct fork_slot *s = arg;
	struct fork_result *r = &s->b->results[s->i];
	if (err) {
		r->code = 500;
		snprintf(r->message, sizeof r->message, "cannot start the fork: %s", err);
	} else {
		sandbox_write_created(&e->rec, &r->created);
	}
	struct fork_batch *b = s->b;
	free(s);
	if (--b->pending == 0)
		fork_answer(b);
}

/* The snapshot is there (rc 0) or not: start the forks, each on its own. */
static void fork_start(struct fork_batch *b, int rc, const char *err)
{
	if (rc < 0) {
		if (b->conn) {
			http_conn_on_abort(b->conn, NULL, NULL);
			http_respond_error(b->conn, 500, "cannot snapshot sandbox %s for the fork: %s", b->source, err);
		}
		create_req_free(&b->req);
		free(b);
		return;
	}
	struct template_info t;
	bool found = template_find(b->a, b->snapshot, &t) == 0;
	b->pending = b->count + 1; /* held until every start is submitted */
	for (int i = 0; i < b->count; i++) {
		struct fork_result *r = &b->results[i];
		int retry_s;
		if (!found) {
			r->code = 500;
			snprintf(r->message, sizeof r->message, "the fork's snapshot %s cannot be read", b->snapshot);
		} else if ((r->code = admission_check(b->a, r->message, sizeof r->message, &retry_s)) == 0) {
			struct fork_slot *s = malloc(sizeof *s);
			if (!s)
				abort();
			*s = (struct fork_slot){b, i};
			sandbox_start_then(b->a, sandbox_new_entry(b->a, &b->req, &t), fork_started, s);
			continue;
		}
		b->pending--;
	}
	template_info_clear(&t);
	if (--b->pending == 0)
		fork_answer(b);
}

void sandbox_fork(struct api *a, struct http_conn *c, struct http_req *req, struct sandbox_entry *e)
{
	struct json *body = sandbox_body_object(c, req);
	if (!body)
		return;
	int64_t count = 1, timeout_s = CREATE_DEFAULT_TIMEOUT_S;
	char err[512];
	if (json_member_range(body, "count", 1, FORK_COUNT_MAX, &count, err, sizeof err) < 0 ||
	    json_member_range(body, "timeout", 0, a->cfg.max_timeout_s, &timeout_s, err, sizeof err) < 0) {
		http_respond_error(c, 400, "%s", err);
		json_free(body);
		return;
	}
	json_free(body);
	if (e->rec.state != SANDBOX_RUNNING) {
		http_respond_error(c, 409, "sandbox %s is not running: connect to it first", e->rec.id);
		return;
	}
	struct fork_batch *b = calloc(1, sizeof *b);
	if (!b)
		abort();
	b->a = a;
	b->conn = c;
	b->count = (int)count;
	snprintf(b->source, sizeof b->source, "%s", e->rec.id);
	random_name(FORK_PREFIX, b->snapshot, sizeof b->snapshot);
	snprintf(b->req.template_id, sizeof b->req.template_id, "%s", b->snapshot);
	b->req.timeout_s = timeout_s;
	for (size_t i = 0; i < e->rec.metadata.n; i++)
		kvs_set(&b->req.metadata, e->rec.metadata.v[i].key, e->rec.metadata.v[i].val);
	b->req.secure = e->rec.secure;
	b->req.allow_internet_access = e->rec.allow_internet_access;
	b->req.auto_pause = e->rec.auto_pause;
	int status = submit(a, c, e, b->snapshot, b, err, sizeof err);
	if (status) {
		http_respond_error(c, status, "%s", err);
		create_req_free(&b->req);
		free(b);
		return;
	}
	http_conn_on_abort(c, fork_conn_gone, b);
	log_info("sandbox.fork", "sandbox=%s count=%d snapshot=%s", e->rec.id, b->count, b->snapshot);
}

/* --- a fork's snapshot goes with its last sandbox -------------------------------------- */

void snapshot_forget_fork(struct api *a, const char *template_id)
{
	char dir[4200];
	template_dir(a, template_id, dir, sizeof dir);
	if (!snapshot_is_fork_name(template_id) || template_sandbox_count(a, template_id) > 0 || access(dir, F_OK) < 0)
		return;
	char err[512];
	pool_drop_template(a->warm, template_id);
	if (template_trash(a, template_id, err, sizeof err) < 0)
		log_warn("snapshot.fork", "snapshot=%s %s", template_id, err);
	else
		log_info("snapshot.fork", "snapshot=%s removed: its last sandbox is gone", template_id);
}

static bool forget_unused_fork(void *arg, const char *dirname)
{
	struct api *a = arg;
	snapshot_forget_fork(a, dirname);
	return true;
}

void snapshot_start(struct api *a)
{
	template_each(a, forget_unused_fork, a);
}

/* --- GET /snapshots ---------------------------------------------------------------------- */

struct list_ctx {
	struct api *a;
	const char *sandbox, *name, *after;
	struct template_info found[LIST_LIMIT_MAX + 1];
	int n, limit;
};

static int by_id(const void *x, const void *y)
{
	return strcmp(((const struct template_info *)x)->id, ((const struct template_info *)y)->id);
}

/* Snapshots in id order: a page is what follows nextToken (the last id). */
static bool list_one(void *arg, const char *dirname)
{
	struct list_ctx *l = arg;
	if (l->after && strcmp(dirname, l->after) <= 0)
		return true;
	struct template_info *t = &l->found[l->n];
	if (template_load(l->a, dirname, t) < 0)
		return true;
	bool want = t->snapshot_of && !t->fork && (!l->sandbox || strcmp(t->snapshot_of, l->sandbox) == 0) &&
		    (!l->name || strcmp(t->id, l->name) == 0);
	if (!want) {
		template_info_clear(t);
		return true;
	}
	l->n++;
	if (l->n == l->limit + 1) { /* keep the limit+1 smallest: one more says there is a next page */
		qsort(l->found, (size_t)l->n, sizeof l->found[0], by_id);
		template_info_clear(&l->found[--l->n]);
	}
	return true;
}

static void list_snapshots(struct api *a, struct http_conn *c, struct http_req *req)
{
	const char *q = req->query;
	char *sandbox = http_query_get(q, "sandboxID"), *name = http_query_get(q, "name"),
	     *after = http_query_get(q, "nextToken"), *limit = http_query_get(q, "limit");
	struct list_ctx *l = calloc(1, sizeof *l);
	if (!l)
		abort();
	*l = (struct list_ctx){.a = a, .sandbox = sandbox, .name = name, .after = after, .limit = LIST_LIMIT_DFLT};
	char *end = NULL;
	long lim = limit ? strtol(limit, &end, 10) : LIST_LIMIT_DFLT;
	if (limit && (!*limit || *end || lim < 1 || lim > LIST_LIMIT_MAX)) {
		http_respond_error(c, 400, "limit must be an integer from 1 to %d", LIST_LIMIT_MAX);
	} else {
		l->limit = (int)lim;
		template_each(a, list_one, l);
		qsort(l->found, (size_t)l->n, sizeof l->found[0], by_id);
		struct buf b = BUF_INIT;
		struct jw w;
		jw_init(&w, &b);
		jw_arr(&w);
		for (int i = 0; i < l->n; i++) {
			jw_obj(&w);
			jw_kstr(&w, "snapshotID", l->found[i].id);
			jw_key(&w, "names");
			jw_arr(&w);
			jw_str(&w, l->found[i].id);
			jw_end(&w);
			jw_end(&w);
		}
		jw_end(&w);
		/* A full page may have a next one: its token is the last id. */
		if (l->n == l->limit)
			http_add_header(c, "X-Next-Token", l->found[l->n - 1].id);
		respond_json(c, 200, &b);
	}
	for (int i = 0; i < l->n; i++)
		template_info_clear(&l->found[i]);
	free(l);
	free(sandbox);
	free(name);
	free(after);
	free(limit);
}

bool snapshot_route(struct api *a, struct http_conn *c, struct http_req *req)
{
	if (strcmp(req->path, "/snapshots") != 0 && strcmp(req->path, "/snapshots/") != 0)
		return false;
	if (strcmp(req->method, "GET") == 0)
		list_snapshots(a, c, req);
	else
		http_respond_error(c, 405, "%s is not allowed on %s (delete a snapshot with DELETE /templates/{id})",
				   req->method, req->path);
	return true;
}
