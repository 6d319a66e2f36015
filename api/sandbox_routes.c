/* sandbox_routes.c - the E2B sandbox calls, /sandboxes and /v2/sandboxes
 * (the table in E2B-PROTOCOL.md section 1). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/json.h"
#include "../lib/log.h"
#include "apicore.h"
#include "template_jobs.h"
#include "create_req.h"
#include "metrics.h"

#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT	   100
#define REFRESH_MAX_S	   3600

/* --- views --------------------------------------------------------------------- */

static void write_time(struct jw *w, const char *key, int64_t ms)
{
	char t[32];
	time_format(ms, t);
	jw_kstr(w, key, t);
}

/* The `Sandbox` shape: create, connect and resume answer with it. domain is
 * null so that the client's own E2B_DOMAIN applies. */
void sandbox_write_created(const struct sandbox *rec, struct buf *out)
{
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	jw_kstr(&w, "sandboxID", rec->id);
	jw_kstr(&w, "templateID", rec->template_id);
	jw_kstr(&w, "clientID", rec->client_id);
	if (rec->alias)
		jw_kstr(&w, "alias", rec->alias);
	jw_kstr(&w, "envdVersion", ENVD_VERSION);
	if (rec->envd_access_token)
		jw_kstr(&w, "envdAccessToken", rec->envd_access_token);
	jw_key(&w, "trafficAccessToken");
	jw_str(&w, rec->traffic_access_token);
	jw_key(&w, "domain");
	jw_null(&w);
	jw_end(&w);
}

static void write_listed_members(const struct sandbox *rec, struct jw *w)
{
	jw_kstr(w, "templateID", rec->template_id);
	if (rec->alias)
		jw_kstr(w, "alias", rec->alias);
	jw_kstr(w, "sandboxID", rec->id);
	jw_kstr(w, "clientID", rec->client_id);
	write_time(w, "startedAt", rec->started_ms);
	write_time(w, "endAt", rec->end_ms);
	jw_kint(w, "cpuCount", rec->cpu_count);
	jw_kint(w, "memoryMB", rec->memory_mb);
	jw_kint(w, "diskSizeMB", rec->disk_size_mb);
	jw_kstr(w, "state", sandbox_state_name(rec->state));
	jw_kstr(w, "envdVersion", ENVD_VERSION);
	jw_key(w, "metadata");
	kvs_write(&rec->metadata, w);
}

void sandbox_write_listed(const struct sandbox *rec, struct jw *w)
{
	jw_obj(w);
	write_listed_members(rec, w);
	jw_end(w);
}

void sandbox_write_detail(const struct sandbox *rec, struct buf *out)
{
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	write_listed_members(rec, &w);
	jw_key(&w, "domain");
	jw_null(&w);
	if (rec->envd_access_token)
		jw_kstr(&w, "envdAccessToken", rec->envd_access_token);
	jw_kbool(&w, "allowInternetAccess", rec->allow_internet_access);
	jw_kbool(&w, "autoPause", rec->auto_pause);
	jw_end(&w);
}

/* --- helpers ------------------------------------------------------------------- */

static bool is_busy(const struct sandbox_entry *e, const char *what)
{
	return e->busy && strcmp(e->busy, what) == 0;
}

/* A sandbox whose VMM is still starting does not exist yet for clients. */
static struct sandbox_entry *visible(struct api *a, const char *id)
{
	struct sandbox_entry *e = sandbox_find(a, id);
	return e && !is_busy(e, "starting") ? e : NULL;
}

static struct sandbox_entry *find_or_404(struct api *a, struct http_conn *c, const char *id)
{
	struct sandbox_entry *e = sandbox_id_valid(id) ? visible(a, id) : NULL;
	if (!e)
		http_respond_error(c, 404, "sandbox \"%.80s\" not found", id);
	return e;
}

static bool refuse_if_busy(struct http_conn *c, const struct sandbox_entry *e)
{
	if (!e->busy)
		return false;
	http_respond_error(c, 409, "sandbox %s is %s, try again", e->rec.id, e->busy);
	return true;
}

struct json *sandbox_body_object(struct http_conn *c, struct http_req *req)
{
	if (req->body_len == 0)
		return json_parse("{}", 2, NULL, 0);
	char err[160];
	struct json *j = json_parse(req->body, req->body_len, err, sizeof err);
	if (!j) {
		http_respond_error(c, 400, "malformed JSON body: %s", err);
		return NULL;
	}
	if (j->type != JSON_OBJECT) {
		json_free(j);
		http_respond_error(c, 400, "the body must be a JSON object");
		return NULL;
	}
	return j;
}

/* Writes the changed record; the client hears of a failure. */
static bool save_record(struct api *a, struct http_conn *c, const struct sandbox *rec)
{
	if (registry_save(a->cfg.state_dir, rec) == 0)
		return true;
	log_error("sandbox.save", "sandbox=%s cannot write its record: %s", rec->id, strerror(errno));
	http_respond_error(c, 500, "cannot write the record of sandbox %s: %s", rec->id, strerror(errno));
	return false;
}

static int64_t max64(int64_t x, int64_t y)
{
	return x > y ? x : y;
}

/* --- create ---------------------------------------------------------------------- */

static bool template_usable(struct http_conn *c, const struct template_info *t)
{
	if (strcmp(t->state, "ready") == 0)
		return true;
	if (strcmp(t->state, "building") == 0) {
		http_add_header(c, "Retry-After", "5");
		http_respond_error(c, 503, "template %s is still building (%d%%)", t->id, t->progress);
	} else {
		http_respond_error(c, 409, "template %s is not usable (state %s%s%s)", t->id, t->state,
				   t->error ? ": " : "", t->error ? t->error : "");
	}
	return false;
}

static void fill_record(struct api *a, struct sandbox *rec, const struct create_req *r, const struct template_info *t)
{
	char path[4096];
	do
		sandbox_new_id(rec->id);
	while (sandbox_find(a, rec->id));
	rec->template_id = strdup(t->id);
	rec->client_id = strdup("cubeos");
	if (t->name && strcmp(t->name, t->id) != 0)
		rec->alias = strdup(t->name);
	rec->started_ms = wall_ms();
	rec->end_ms = rec->started_ms + r->timeout_s * 1000;
	rec->cpu_count = t->cpu_count;
	rec->memory_mb = t->memory_mb;
	rec->disk_size_mb = t->disk_size_mb;
	rec->state = SANDBOX_RUNNING;
	for (size_t i = 0; i < r->metadata.n; i++)
		kvs_set(&rec->metadata, r->metadata.v[i].key, r->metadata.v[i].val);
	template_env_load(a, t->id, &rec->env_vars); /* an imported image's ENV; the create's own win */
	for (size_t i = 0; i < r->env_vars.n; i++)
		kvs_set(&rec->env_vars, r->env_vars.v[i].key, r->env_vars.v[i].val);
	rec->secure = r->secure;
	if (r->secure) {
		char tok[SANDBOX_TOKEN_LEN + 1];
		sandbox_new_token(tok);
		rec->envd_access_token = strdup(tok);
	}
	rec->allow_internet_access = r->allow_internet_access;
	rec->auto_pause = r->auto_pause;
	sandbox_run_dir(a, rec->id, path, sizeof path);
	size_t n = strlen(path) + 16;
	rec->vsock = malloc(n);
	rec->control = malloc(n);
	snprintf(rec->vsock, n, "%s/vsock.sock", path);
	snprintf(rec->control, n, "%s/control.sock", path);
}

static void create_sandbox(struct api *a, struct http_conn *c, struct http_req *req)
{
	struct create_req r;
	char err[256];
	if (create_req_parse(req->body, req->body_len, a->cfg.max_timeout_s, &r, err, sizeof err) < 0) {
		http_respond_error(c, 400, "%s", err);
		create_req_free(&r);
		return;
	}
	struct template_info t;
	if (template_find(a, r.template_id, &t) < 0) {
		http_respond_error(c, 404, "template \"%s\" not found", r.template_id);
		create_req_free(&r);
		return;
	}
	if (template_usable(c, &t) && admission_ok(a, c))
		sandbox_job_submit(a, sandbox_new_entry(a, &r, &t), JOB_START, c, 0, 0);
	template_info_clear(&t);
	create_req_free(&r);
}

struct sandbox_entry *sandbox_new_entry(struct api *a, const struct create_req *r, const struct template_info *t)
{
	struct sandbox_entry *e = calloc(1, sizeof *e);
	if (!e)
		abort();
	fill_record(a, &e->rec, r, t);
	pool_take(a->warm, &e->rec); /* a warm VMM: its id and pid, claimed by the start job */
	e->next = a->sandboxes;
	a->sandboxes = e;
	log_info("sandbox.create", "sandbox=%s template=%s timeout=%llds secure=%d from=%s", e->rec.id, t->id,
		 (long long)r->timeout_s, r->secure, e->rec.vmm_pid > 0 ? "pool" : "cold");
	return e;
}

/* --- list ------------------------------------------------------------------------ */

struct list_query {
	struct kvs metadata;
	bool want_running, want_paused;
	int64_t limit;
	bool has_after;
	int64_t after_ms;
	char after_id[SANDBOX_ID_MAX + 1];
};

/* Calls fn for every name=value pair of a query string, both decoded. */
static void query_each(const char *q, void (*fn)(void *arg, const char *k, const char *v), void *arg)
{
	while (q && *q) {
		size_t n = strcspn(q, "&");
		const char *eq = memchr(q, '=', n);
		size_t kn = eq ? (size_t)(eq - q) : n;
		char *k = http_url_decode(q, kn, true);
		char *v = eq ? http_url_decode(eq + 1, n - kn - 1, true) : strdup("");
		if (k && v && *k)
			fn(arg, k, v);
		free(k);
		free(v);
		q += n;
		if (*q == '&')
			q++;
	}
}

static void add_metadata_pair(void *arg, const char *k, const char *v)
{
	kvs_set(arg, k, v);
}

struct query_parse {
	struct list_query *lq;
	bool any_state;
	const char *error;
};

static void add_state_pair(void *arg, const char *k, const char *v)
{
	struct query_parse *p = arg;
	if (strcmp(k, "state") != 0)
		return;
	p->any_state = true;
	/* Both "state=running,paused" and "state=running&state=paused" occur. */
	char *copy = strdup(v), *save = NULL;
	for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		if (strcmp(s, "running") == 0)
			p->lq->want_running = true;
		else if (strcmp(s, "paused") == 0)
			p->lq->want_paused = true;
		else
			p->error = "state must be running and/or paused";
	}
	free(copy);
}

static int parse_next_token(const char *tok, struct list_query *lq)
{
	long long ms;
	int n = 0;
	if (sscanf(tok, "%lld-%n", &ms, &n) != 1 || n == 0 || !sandbox_id_valid(tok + n))
		return -1;
	lq->has_after = true;
	lq->after_ms = ms;
	snprintf(lq->after_id, sizeof lq->after_id, "%s", tok + n);
	return 0;
}

static const char *parse_list_query(const char *query, bool v2, struct list_query *lq)
{
	memset(lq, 0, sizeof *lq);
	lq->limit = LIST_DEFAULT_LIMIT;
	struct query_parse p = {.lq = lq};
	query_each(query, add_state_pair, &p);
	if (p.error)
		return p.error;
	if (!p.any_state) {
		/* The legacy list shows running sandboxes only, as E2B's does. */
		lq->want_running = true;
		lq->want_paused = v2;
	}
	char *meta = http_query_get(query, "metadata");
	if (meta)
		query_each(meta, add_metadata_pair, &lq->metadata);
	free(meta);
	char *limit = http_query_get(query, "limit");
	char *end = NULL;
	if (limit) {
		lq->limit = strtoll(limit, &end, 10);
		bool bad = !*limit || *end || lq->limit < 1 || lq->limit > LIST_MAX_LIMIT;
		free(limit);
		if (bad)
			return "limit must be an integer from 1 to 100";
	}
	char *tok = http_query_get(query, "nextToken");
	int rc = tok && *tok ? parse_next_token(tok, lq) : 0;
	free(tok);
	return rc < 0 ? "nextToken is malformed" : NULL;
}

static int by_start_then_id(const void *x, const void *y)
{
	const struct sandbox *a = *(const struct sandbox *const *)x, *b = *(const struct sandbox *const *)y;
	if (a->started_ms != b->started_ms)
		return a->started_ms < b->started_ms ? -1 : 1;
	return strcmp(a->id, b->id);
}

static bool after_token(const struct list_query *lq, const struct sandbox *rec)
{
	if (!lq->has_after)
		return true;
	if (rec->started_ms != lq->after_ms)
		return rec->started_ms > lq->after_ms;
	return strcmp(rec->id, lq->after_id) > 0;
}

static bool matches(const struct list_query *lq, const struct sandbox_entry *e)
{
	/* Not listed: a sandbox that does not exist yet, and one being killed
	 * (its TTL expired or a DELETE is under way): its sockets are gone and
	 * a client that saw it expire must not find it listed as running. */
	if (is_busy(e, "starting") || is_busy(e, "stopping"))
		return false;
	bool state_ok = e->rec.state == SANDBOX_RUNNING ? lq->want_running : lq->want_paused;
	return state_ok && kvs_contains(&e->rec.metadata, &lq->metadata) && after_token(lq, &e->rec);
}

static void list_sandboxes(struct api *a, struct http_conn *c, struct http_req *req, bool v2)
{
	struct list_query lq;
	const char *bad = parse_list_query(req->query, v2, &lq);
	if (bad) {
		kvs_free(&lq.metadata);
		http_respond_error(c, 400, "%s", bad);
		return;
	}
	size_t n = 0, cap = 16;
	const struct sandbox **v = malloc(cap * sizeof *v);
	for (struct sandbox_entry *e = a->sandboxes; e; e = e->next) {
		if (!matches(&lq, e))
			continue;
		if (n == cap)
			v = realloc(v, (cap *= 2) * sizeof *v);
		v[n++] = &e->rec;
	}
	qsort(v, n, sizeof *v, by_start_then_id);
	size_t shown = n > (size_t)lq.limit ? (size_t)lq.limit : n;
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_arr(&w);
	for (size_t i = 0; i < shown; i++)
		sandbox_write_listed(v[i], &w);
	jw_end(&w);
	if (shown < n) {
		char tok[128];
		snprintf(tok, sizeof tok, "%lld-%s", (long long)v[shown - 1]->started_ms, v[shown - 1]->id);
		http_add_header(c, "X-Next-Token", tok);
	}
	free(v);
	kvs_free(&lq.metadata);
	respond_json(c, 200, &b);
}

/* --- one sandbox -------------------------------------------------------------------- */

static void get_sandbox(struct http_conn *c, struct sandbox_entry *e)
{
	struct buf b = BUF_INIT;
	sandbox_write_detail(&e->rec, &b);
	respond_json(c, 200, &b);
}

static void kill_sandbox(struct api *a, struct http_conn *c, struct sandbox_entry *e)
{
	if (refuse_if_busy(c, e))
		return;
	log_info("sandbox.kill", "sandbox=%s kill requested", e->rec.id);
	sandbox_job_submit(a, e, JOB_STOP, c, 0, 0);
}

static void set_timeout(struct api *a, struct http_conn *c, struct http_req *req, struct sandbox_entry *e)
{
	struct json *j = sandbox_body_object(c, req);
	if (!j)
		return;
	char err[160];
	int64_t s = -1;
	int rc = json_member_range(j, "timeout", 0, a->cfg.max_timeout_s, &s, err, sizeof err);
	json_free(j);
	if (rc < 0 || s < 0) {
		http_respond_error(c, 400, "%s", rc < 0 ? err : "timeout is required");
		return;
	}
	if (refuse_if_busy(c, e))
		return;
	int64_t old = e->rec.end_ms;
	e->rec.end_ms = wall_ms() + s * 1000;
	if (!save_record(a, c, &e->rec)) {
		e->rec.end_ms = old;
		return;
	}
	log_info("sandbox.timeout", "sandbox=%s timeout=%llds", e->rec.id, (long long)s);
	http_respond(c, 204, NULL, NULL, 0);
}

/* Old SDKs keep a sandbox alive with refreshes: the end time only moves later. */
static void refresh(struct api *a, struct http_conn *c, struct http_req *req, struct sandbox_entry *e)
{
	struct json *j = sandbox_body_object(c, req);
	if (!j)
		return;
	char err[160];
	int64_t s = 0;
	int rc = json_member_range(j, "duration", 0, REFRESH_MAX_S, &s, err, sizeof err);
	json_free(j);
	if (rc < 0) {
		http_respond_error(c, 400, "%s", err);
		return;
	}
	e->rec.end_ms = max64(e->rec.end_ms, wall_ms() + s * 1000);
	if (save_record(a, c, &e->rec))
		http_respond(c, 204, NULL, NULL, 0);
}

static void pause_sandbox(struct api *a, struct http_conn *c, struct sandbox_entry *e)
{
	if (refuse_if_busy(c, e))
		return;
	if (e->rec.state == SANDBOX_PAUSED) {
		http_respond_error(c, 409, "sandbox %s is already paused", e->rec.id);
		return;
	}
	sandbox_job_submit(a, e, JOB_PAUSE, c, 0, 0);
}

/* connect (running: 200, paused: resumed, 201) and the deprecated resume
 * (paused only). */
static void connect_sandbox(struct api *a, struct http_conn *c, struct http_req *req, struct sandbox_entry *e,
			    bool resume_only)
{
	struct json *j = sandbox_body_object(c, req);
	if (!j)
		return;
	char err[160];
	int64_t s = CREATE_DEFAULT_TIMEOUT_S;
	int rc = json_member_range(j, "timeout", 0, a->cfg.max_timeout_s, &s, err, sizeof err);
	json_free(j);
	if (rc < 0) {
		http_respond_error(c, 400, "%s", err);
		return;
	}
	if (refuse_if_busy(c, e))
		return;
	int64_t end = wall_ms() + s * 1000;
	if (e->rec.state == SANDBOX_PAUSED) {
		sandbox_job_submit(a, e, JOB_RESUME, c, 201, end);
		return;
	}
	if (resume_only) {
		http_respond_error(c, 409, "sandbox %s is already running", e->rec.id);
		return;
	}
	int64_t old = e->rec.end_ms;
	e->rec.end_ms = max64(old, end);
	if (e->rec.end_ms != old && !save_record(a, c, &e->rec)) {
		e->rec.end_ms = old;
		return;
	}
	struct buf b = BUF_INIT;
	sandbox_write_created(&e->rec, &b);
	respond_json(c, 200, &b);
}

static void sandbox_action(struct api *a, struct http_conn *c, struct http_req *req, struct sandbox_entry *e,
			   const char *action)
{
	bool post = strcmp(req->method, "POST") == 0, get = strcmp(req->method, "GET") == 0;
	if (post && strcmp(action, "timeout") == 0)
		set_timeout(a, c, req, e);
	else if (post && strcmp(action, "refreshes") == 0)
		refresh(a, c, req, e);
	else if (post && strcmp(action, "pause") == 0)
		pause_sandbox(a, c, e);
	else if (post && strcmp(action, "connect") == 0)
		connect_sandbox(a, c, req, e, false);
	else if (post && strcmp(action, "resume") == 0)
		connect_sandbox(a, c, req, e, true);
	else if (get && strcmp(action, "metrics") == 0)
		sandbox_metrics(a, c, e); /* metrics.c: a sample from the VMM, on a worker */
	else if (get && strcmp(action, "logs") == 0)
		sandbox_logs(a, c, req, e); /* sandbox_logs.c: its console, agent lines structured */
	else if (post && strcmp(action, "snapshots") == 0 && !refuse_if_busy(c, e))
		snapshot_create(a, c, req, e); /* snapshots.c */
	else if (post && strcmp(action, "fork") == 0 && !refuse_if_busy(c, e))
		sandbox_fork(a, c, req, e); /* snapshots.c */
	else if (post && (strcmp(action, "snapshots") == 0 || strcmp(action, "fork") == 0))
		; /* refused as busy */
	else
		http_respond_error(c, 404, "no such API call: %s %s", req->method, req->path);
}

/* --- routing ----------------------------------------------------------------------- */

static void route_collection(struct api *a, struct http_conn *c, struct http_req *req, bool v2)
{
	if (strcmp(req->method, "POST") == 0)
		create_sandbox(a, c, req);
	else if (strcmp(req->method, "GET") == 0)
		list_sandboxes(a, c, req, v2);
	else
		http_respond_error(c, 405, "%s is not allowed on %s", req->method, req->path);
}

static void route_item(struct api *a, struct http_conn *c, struct http_req *req, const char *id, const char *action)
{
	struct sandbox_entry *e = find_or_404(a, c, id);
	if (!e)
		return;
	if (action)
		sandbox_action(a, c, req, e, action);
	else if (strcmp(req->method, "GET") == 0)
		get_sandbox(c, e);
	else if (strcmp(req->method, "DELETE") == 0)
		kill_sandbox(a, c, e);
	else
		http_respond_error(c, 405, "%s is not allowed on %s", req->method, req->path);
}

bool sandbox_route(struct api *a, struct http_conn *c, struct http_req *req)
{
	const char *p = req->path;
	bool v2 = strncmp(p, "/v2/", 4) == 0;
	if (v2)
		p += 3;
	if (strncmp(p, "/sandboxes", 10) != 0 || (p[10] != '\0' && p[10] != '/'))
		return false;
	p += 10;
	if (*p == '\0' || strcmp(p, "/") == 0) {
		route_collection(a, c, req, v2);
		return true;
	}
	p++; /* '/' */
	char id[SANDBOX_ID_MAX + 2];
	size_t n = strcspn(p, "/");
	if (n >= sizeof id || strchr(p + n + (p[n] == '/'), '/')) {
		http_respond_error(c, 404, "no such API call: %s %s", req->method, req->path);
		return true;
	}
	memcpy(id, p, n);
	id[n] = '\0';
	const char *action = p[n] == '/' ? p + n + 1 : NULL;
	route_item(a, c, req, id, action);
	return true;
}
