/* pool.c - the warm pool (see pool.h).
 *
 * The loop keeps the books: per template a target size and the list of
 * waiting VMMs. Four kinds of job run on the worker pool:
 *
 *   leftovers  once at start: stops the VMMs an earlier api left (their
 *              markers in RUN/pool/) and empties DIR/pool/; fills wait for it
 *   scan       every pool_interval_ms: re-reads pool.json if it changed,
 *              lists the ready templates, pings every waiting VMM
 *   fill       restores one paused VMM (one in flight per template)
 *   discard    stops one VMM and removes its files
 *
 * A take is a pure book-keeping step on the loop; the claim (resume, /init)
 * is part of the sandbox's start job (sandbox_jobs.c). */
#include "pool.h"

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

#define POOL_CONFIG_MAX	    (64 * 1024)
#define POOL_RETRY_FIRST_MS 5000   /* after a failed fill */
#define POOL_RETRY_MAX_MS   300000 /* a template that cannot be restored is retried rarely */
/* A waiting VMM is discarded after this many scans in a row without an
 * answer: a ping can miss on a host starved of CPU, and replacing a good
 * VMM there only adds a restore to the load. A claim of a VMM that did die
 * meanwhile fails cleanly and starts cold. */
#define POOL_MISSES_MAX 2

struct pool_member {
	char id[SANDBOX_ID_LEN + 1];
	pid_t pid;
	int misses; /* scans in a row it did not answer */
	struct pool_member *next;
};

struct tpool {
	char template_id[POOL_TEMPLATE_MAX];
	int target;
	bool present;	  /* ready in the last scan */
	uint64_t snap_id; /* identity of its snap/state in the last scan */
	int filling;	  /* fill jobs in flight */
	int nready;
	struct pool_member *ready; /* oldest first */
	uint64_t retry_at;	   /* mono ms: no fill before this (after a failure) */
	unsigned retry_ms;
	unsigned fills, takes, discards; /* since start */
	struct tpool *next;
};

/* pool.json, as last read. */
struct size_rule {
	char name[POOL_TEMPLATE_MAX];
	int size;
};

struct config_stamp {
	bool seen; /* the file existed */
	uint64_t dev, ino, size;
	int64_t mtime_ns;
};

struct warm_pool {
	struct api *api;
	struct tpool *tpools;
	struct loop_timer timer;
	bool started; /* leftovers are gone: fills may begin */
	bool scanning;
	bool closing;
	int filling; /* fill jobs in flight, all templates */
	struct config_stamp stamp;
	struct size_rule *rules;
	size_t nrules;
};

/* --- paths ----------------------------------------------------------------------- */

static void member_pool_dir(const struct api *a, const char *id, char *out, size_t n)
{
	snprintf(out, n, "%s/pool/%s", a->cfg.state_dir, id);
}

static void member_marker(const struct api *a, const char *id, char *out, size_t n)
{
	snprintf(out, n, "%s/pool/%s.json", a->cfg.run_dir, id);
}

/* The spec of a pool VMM: the sandbox's run dir, the pool's layer dir. */
struct member_paths {
	char tdir[4096], pdir[4096], rdir[4096];
	struct vm_spec spec;
};

static void member_spec(const struct api *a, const char *template_id, const char *id, struct member_paths *mp)
{
	snprintf(mp->tdir, sizeof mp->tdir, "%s/templates/%s", a->cfg.state_dir, template_id);
	member_pool_dir(a, id, mp->pdir, sizeof mp->pdir);
	sandbox_run_dir(a, id, mp->rdir, sizeof mp->rdir);
	mp->spec = (struct vm_spec){.id = id,
				    .template_dir = mp->tdir,
				    .sandbox_dir = mp->pdir,
				    .run_dir = mp->rdir,
				    .init_json = NULL,
				    .vmm_path = a->cfg.vmm_path};
}

/* Stops a pool VMM and removes everything it had. Worker thread. */
static void member_destroy(const struct api *a, const char *template_id, const char *id, pid_t pid)
{
	struct member_paths mp;
	char marker[4096];
	member_spec(a, template_id, id, &mp);
	if (pid > 0)
		a->ops.stop(pid, &mp.spec, a->cfg.stop_timeout_ms);
	registry_remove_tree(mp.rdir);
	registry_remove_tree(mp.pdir);
	member_marker(a, id, marker, sizeof marker);
	unlink(marker);
}

/* --- books --------------------------------------------------------------------------- */

static bool pool_enabled(const struct warm_pool *p)
{
	return p->api->ops.prestart && p->api->ops.claim;
}

static struct tpool *tpool_find(struct warm_pool *p, const char *template_id)
{
	for (struct tpool *t = p->tpools; t; t = t->next)
		if (strcmp(t->template_id, template_id) == 0)
			return t;
	return NULL;
}

static struct tpool *tpool_get(struct warm_pool *p, const char *template_id)
{
	struct tpool *t = tpool_find(p, template_id);
	if (t)
		return t;
	t = calloc(1, sizeof *t);
	if (!t)
		abort();
	snprintf(t->template_id, sizeof t->template_id, "%s", template_id);
	t->next = p->tpools;
	p->tpools = t;
	return t;
}

static bool id_in_use(struct warm_pool *p, const char *id)
{
	if (sandbox_find(p->api, id))
		return true;
	for (struct tpool *t = p->tpools; t; t = t->next)
		for (struct pool_member *m = t->ready; m; m = m->next)
			if (strcmp(m->id, id) == 0)
				return true;
	return false;
}

static struct pool_member *member_pop(struct tpool *t)
{
	struct pool_member *m = t->ready;
	if (m) {
		t->ready = m->next;
		t->nready--;
	}
	return m;
}

static void member_append(struct tpool *t, struct pool_member *m)
{
	struct pool_member **pp = &t->ready;
	while (*pp)
		pp = &(*pp)->next;
	m->next = NULL;
	*pp = m;
	t->nready++;
}

/* Takes the member with this id out of the books, or NULL. */
static struct pool_member *member_unlink(struct tpool *t, const char *id)
{
	for (struct pool_member **pp = &t->ready; *pp; pp = &(*pp)->next) {
		struct pool_member *m = *pp;
		if (strcmp(m->id, id) == 0) {
			*pp = m->next;
			t->nready--;
			return m;
		}
	}
	return NULL;
}

/* --- discard ---------------------------------------------------------------------------- */

struct discard_job {
	struct job job;
	struct api *api;
	char template_id[POOL_TEMPLATE_MAX];
	char id[SANDBOX_ID_LEN + 1];
	pid_t pid;
};

static void discard_run(struct job *job)
{
	struct discard_job *j = (struct discard_job *)job;
	member_destroy(j->api, j->template_id, j->id, j->pid);
}

static void discard_done(struct job *job)
{
	free(job);
}

/* Out of the books already; the VMM is stopped on a worker. */
static void member_discard(struct warm_pool *p, struct tpool *t, struct pool_member *m, const char *why)
{
	log_info("pool.discard", "template=%s sandbox=%s pid=%d: %s", t->template_id, m->id, (int)m->pid, why);
	t->discards++;
	struct discard_job *j = calloc(1, sizeof *j);
	if (!j)
		abort();
	j->job.run = discard_run;
	j->job.done = discard_done;
	j->api = p->api;
	snprintf(j->template_id, sizeof j->template_id, "%s", t->template_id);
	snprintf(j->id, sizeof j->id, "%s", m->id);
	j->pid = m->pid;
	free(m);
	worker_submit(p->api->pool, &j->job);
}

/* --- fill ---------------------------------------------------------------------------------- */

struct fill_job {
	struct job job;
	struct warm_pool *pool;
	struct tpool *tp; /* stays: a tpool with a fill in flight is never freed */
	uint64_t snap_id; /* of the snapshot the fill was asked for */
	char id[SANDBOX_ID_LEN + 1];
	pid_t pid;
	uint64_t ms;
	char err[512];
};

static void write_marker(const struct api *a, const char *template_id, const char *id, pid_t pid)
{
	char path[4096], dir[4096];
	snprintf(dir, sizeof dir, "%s/pool", a->cfg.run_dir);
	registry_mkdir_p(dir);
	member_marker(a, id, path, sizeof path);
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	jw_kstr(&w, "template", template_id);
	jw_key(&w, "pid");
	jw_int(&w, pid);
	jw_end(&w);
	/* Without it only an api restart loses track of this VMM: worth a warning, not a failure. */
	if (file_replace(path, b.data, b.len, 0600, false) < 0)
		log_warn("pool.fill", "template=%s sandbox=%s cannot write %s: %s", template_id, id, path,
			 strerror(errno));
	buf_free(&b);
}

static void fill_run(struct job *job)
{
	struct fill_job *j = (struct fill_job *)job;
	const struct api *a = j->pool->api;
	struct member_paths mp;
	uint64_t t0 = mono_ms();
	member_spec(a, j->tp->template_id, j->id, &mp);
	if (registry_mkdir_p(mp.pdir) < 0 || registry_mkdir_p(mp.rdir) < 0) {
		snprintf(j->err, sizeof j->err, "cannot create %.200s or %.200s: %s", mp.pdir, mp.rdir,
			 strerror(errno));
		j->pid = -1;
	} else {
		j->pid = a->ops.prestart(&mp.spec, j->err, sizeof j->err);
	}
	if (j->pid > 0) {
		write_marker(a, j->tp->template_id, j->id, j->pid);
	} else {
		registry_remove_tree(mp.pdir);
		registry_remove_tree(mp.rdir);
	}
	j->ms = mono_ms() - t0;
}

static void tpool_refill(struct warm_pool *p, struct tpool *t);

static void fill_failed(struct tpool *t, const char *id, const char *err)
{
	t->retry_ms = t->retry_ms ? t->retry_ms * 2 : POOL_RETRY_FIRST_MS;
	if (t->retry_ms > POOL_RETRY_MAX_MS)
		t->retry_ms = POOL_RETRY_MAX_MS;
	t->retry_at = mono_ms() + t->retry_ms;
	log_error("pool.fill", "template=%s sandbox=%s failed (next try in %u s): %s", t->template_id, id,
		  t->retry_ms / 1000, err[0] ? err : "backend failure");
}

/* Books the new VMM, unless it is not wanted any more. */
static void fill_succeeded(struct warm_pool *p, struct tpool *t, const struct fill_job *j)
{
	struct pool_member *m = calloc(1, sizeof *m);
	if (!m)
		abort();
	snprintf(m->id, sizeof m->id, "%s", j->id);
	m->pid = j->pid;
	t->retry_ms = 0;
	if (p->closing || t->nready >= t->target || j->snap_id != t->snap_id) {
		member_discard(p, t, m,
			       p->closing		  ? "the api is stopping"
			       : j->snap_id != t->snap_id ? "its template's snapshot changed meanwhile"
							  : "no longer wanted");
	} else {
		member_append(t, m);
		t->fills++;
		log_info("pool.fill", "template=%s sandbox=%s pid=%d paused and waiting (%llu ms), %d/%d ready",
			 t->template_id, m->id, (int)m->pid, (unsigned long long)j->ms, t->nready, t->target);
	}
}

static void fill_done(struct job *job)
{
	struct fill_job *j = (struct fill_job *)job;
	struct warm_pool *p = j->pool;
	struct tpool *t = j->tp;
	t->filling--;
	p->filling--;
	if (j->pid > 0)
		fill_succeeded(p, t, j);
	else
		fill_failed(t, j->id, j->err);
	free(j);
	/* This fill may have held back other templates' (fills_max). */
	tpool_refill(p, t);
	for (struct tpool *o = p->tpools; o; o = o->next)
		tpool_refill(p, o);
}

/* Fills in flight at once, all templates: at least one worker stays free
 * for creates, which matter more. */
static int fills_max(const struct warm_pool *p)
{
	int n = p->api->cfg.workers / 2;
	return n > 0 ? n : 1;
}

/* One fill at a time per template: the workers stay free for creates. */
static void tpool_refill(struct warm_pool *p, struct tpool *t)
{
	if (p->closing || !p->started || !pool_enabled(p) || t->filling || t->nready >= t->target ||
	    mono_ms() < t->retry_at || p->filling >= fills_max(p))
		return;
	struct fill_job *j = calloc(1, sizeof *j);
	if (!j)
		abort();
	j->job.run = fill_run;
	j->job.done = fill_done;
	j->pool = p;
	j->tp = t;
	j->snap_id = t->snap_id;
	do
		sandbox_new_id(j->id);
	while (id_in_use(p, j->id));
	t->filling++;
	p->filling++;
	worker_submit(p->api->pool, &j->job);
}

/* --- scan ---------------------------------------------------------------------------------- */

struct checked {
	char template_id[POOL_TEMPLATE_MAX];
	char id[SANDBOX_ID_LEN + 1];
	pid_t pid;
	bool alive;
};

/* The member with this id if it is still in the books (not taken meanwhile). */
static struct pool_member *member_find(struct tpool *t, const char *id)
{
	for (struct pool_member *m = t ? t->ready : NULL; m; m = m->next)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

struct ready_template {
	char id[POOL_TEMPLATE_MAX], name[POOL_TEMPLATE_MAX];
	uint64_t snap_id; /* a rebuilt template has a new one: its waiting VMMs are stale */
};

struct scan_job {
	struct job job;
	struct warm_pool *pool;
	struct config_stamp stamp; /* in: as last read; out: as now */
	bool config_changed;
	struct size_rule *rules; /* out, when config_changed */
	size_t nrules;
	struct ready_template *templates; /* out */
	size_t ntemplates;
	struct checked *members; /* in: the waiting VMMs; out: alive or not */
	size_t nmembers;
};

static bool stamp_same(const struct config_stamp *a, const struct config_stamp *b)
{
	return a->seen == b->seen && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns;
}

/* pool.json: {"base": 2, "*": 1}. Bad entries are skipped with a warning. */
static void parse_config(const char *text, size_t len, const char *path, struct scan_job *j)
{
	char perr[160];
	struct json *doc = json_parse(text, len, perr, sizeof perr);
	if (!doc || doc->type != JSON_OBJECT) {
		log_warn("pool.config", "%s: %s: ignored", path, doc ? "not a JSON object" : perr);
		json_free(doc);
		return;
	}
	j->rules = calloc(doc->count ? doc->count : 1, sizeof *j->rules);
	if (!j->rules)
		abort();
	for (struct json *m = doc->child; m; m = m->next) {
		int64_t n;
		if (!json_as_int(m, &n) || n < 0 || n > POOL_MAX_PER_TEMPLATE || strlen(m->key) >= POOL_TEMPLATE_MAX) {
			log_warn("pool.config", "%s: \"%s\" must be a number 0..%d: ignored", path, m->key,
				 POOL_MAX_PER_TEMPLATE);
			continue;
		}
		snprintf(j->rules[j->nrules].name, POOL_TEMPLATE_MAX, "%s", m->key);
		j->rules[j->nrules++].size = (int)n;
	}
	json_free(doc);
}

static void scan_config(const struct api *a, struct scan_job *j)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/config/pool.json", a->cfg.state_dir);
	struct stat st;
	struct config_stamp now = {0};
	if (stat(path, &st) == 0)
		now = (struct config_stamp){.seen = true,
					    .dev = st.st_dev,
					    .ino = st.st_ino,
					    .size = (uint64_t)st.st_size,
					    .mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec};
	if (stamp_same(&now, &j->stamp))
		return;
	j->stamp = now;
	j->config_changed = true;
	if (!now.seen)
		return; /* removed: back to the default for every template */
	size_t len;
	char *text = file_read_all(path, POOL_CONFIG_MAX, &len);
	if (!text) {
		log_warn("pool.config", "cannot read %s: %s: default sizes", path, strerror(errno));
		return;
	}
	parse_config(text, len, path, j);
	free(text);
}

/* Changes when the file is replaced or rewritten; 0 if it is missing. */
static uint64_t file_identity(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return 0;
	return (uint64_t)st.st_ino * 1000003u ^ (uint64_t)st.st_mtim.tv_sec * 1000000000u ^
	       (uint64_t)st.st_mtim.tv_nsec;
}

/* A template is pooled when its template.json says ready (no state: ready). */
static void scan_templates(const struct api *a, struct scan_job *j)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/templates", a->cfg.state_dir);
	DIR *d = opendir(dir);
	if (!d)
		return;
	size_t cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!template_id_valid(e->d_name) || strlen(e->d_name) >= POOL_TEMPLATE_MAX)
			continue;
		char path[4096 + 300];
		size_t len;
		snprintf(path, sizeof path, "%s/%s/template.json", dir, e->d_name);
		char *text = file_read_all(path, POOL_CONFIG_MAX, &len);
		struct json *doc = text ? json_parse(text, len, NULL, 0) : NULL;
		free(text);
		const char *state = json_get_str(doc, "state"), *name = json_get_str(doc, "name");
		if (doc && doc->type == JSON_OBJECT && (!state || strcmp(state, "ready") == 0)) {
			if (j->ntemplates == cap) {
				cap = cap ? cap * 2 : 8;
				j->templates = realloc(j->templates, cap * sizeof *j->templates);
				if (!j->templates)
					abort();
			}
			struct ready_template *t = &j->templates[j->ntemplates++];
			snprintf(t->id, sizeof t->id, "%s", e->d_name);
			snprintf(t->name, sizeof t->name, "%s", name ? name : e->d_name);
			snprintf(path, sizeof path, "%s/%s/snap/state", dir, e->d_name);
			t->snap_id = file_identity(path);
		}
		json_free(doc);
	}
	closedir(d);
}

static void scan_run(struct job *job)
{
	struct scan_job *j = (struct scan_job *)job;
	const struct api *a = j->pool->api;
	scan_config(a, j);
	scan_templates(a, j);
	for (size_t i = 0; i < j->nmembers; i++) {
		struct checked *c = &j->members[i];
		struct member_paths mp;
		member_spec(a, c->template_id, c->id, &mp);
		c->alive = a->ops.alive(c->pid, &mp.spec);
	}
}

static int size_for(const struct warm_pool *p, const struct ready_template *t)
{
	int any = -1;
	for (size_t i = 0; i < p->nrules; i++) {
		if (strcmp(p->rules[i].name, t->id) == 0 || strcmp(p->rules[i].name, t->name) == 0)
			return p->rules[i].size;
		if (strcmp(p->rules[i].name, "*") == 0)
			any = p->rules[i].size;
	}
	return any >= 0 ? any : p->api->cfg.pool_size;
}

static void apply_config(struct warm_pool *p, struct scan_job *j)
{
	if (!j->config_changed)
		return;
	p->stamp = j->stamp;
	free(p->rules);
	p->rules = j->rules;
	p->nrules = j->nrules;
	j->rules = NULL;
	int others = p->api->cfg.pool_size;
	for (size_t i = 0; i < p->nrules; i++)
		if (strcmp(p->rules[i].name, "*") == 0)
			others = p->rules[i].size;
	log_info("pool.config", "%s: %zu entries, templates not named get %d",
		 p->stamp.seen ? "pool.json read" : "no pool.json", p->nrules, others);
}

static void drop_dead(struct warm_pool *p, const struct scan_job *j)
{
	for (size_t i = 0; i < j->nmembers; i++) {
		const struct checked *c = &j->members[i];
		struct tpool *t = tpool_find(p, c->template_id);
		struct pool_member *m = member_find(t, c->id); /* NULL: taken meanwhile */
		if (!m)
			continue;
		m->misses = c->alive ? 0 : m->misses + 1;
		if (m->misses == 1)
			log_info("pool.check",
				 "template=%s sandbox=%s pid=%d did not answer: discarded if the next check "
				 "fails too",
				 t->template_id, m->id, (int)m->pid);
		if (m->misses >= POOL_MISSES_MAX)
			member_discard(p, t, member_unlink(t, c->id), "its VMM is not alive");
	}
}

/* Targets from the scan; surplus and orphaned members go; empty books of
 * vanished templates are freed. */
static void reconcile(struct warm_pool *p, const struct scan_job *j)
{
	for (struct tpool *t = p->tpools; t; t = t->next) {
		t->present = false;
		t->target = 0;
	}
	for (size_t i = 0; i < j->ntemplates; i++) {
		int n = pool_enabled(p) ? size_for(p, &j->templates[i]) : 0;
		if (n == 0 && !tpool_find(p, j->templates[i].id))
			continue;
		struct tpool *t = tpool_get(p, j->templates[i].id);
		t->present = true;
		t->target = n;
		if (t->snap_id != j->templates[i].snap_id) {
			while (t->nready)
				member_discard(p, t, member_pop(t), "its template's snapshot changed");
			t->snap_id = j->templates[i].snap_id;
		}
	}
	for (struct tpool **pp = &p->tpools; *pp;) {
		struct tpool *t = *pp;
		while (t->nready > t->target)
			member_discard(p, t, member_pop(t),
				       t->present ? "the pool of its template shrank"
						  : "its template is gone or not ready");
		if (!t->present && !t->filling && !t->nready) {
			*pp = t->next;
			free(t);
			continue;
		}
		tpool_refill(p, t);
		pp = &t->next;
	}
}

static void scan_free(struct scan_job *j)
{
	free(j->rules);
	free(j->templates);
	free(j->members);
	free(j);
}

static void pool_tick(void *arg);

static void scan_done(struct job *job)
{
	struct scan_job *j = (struct scan_job *)job;
	struct warm_pool *p = j->pool;
	p->scanning = false;
	if (!p->closing) {
		apply_config(p, j);
		drop_dead(p, j);
		reconcile(p, j);
		loop_timer_arm(p->api->loop, &p->timer, p->api->cfg.pool_interval_ms, pool_tick, p);
	}
	scan_free(j);
}

static void pool_tick(void *arg)
{
	struct warm_pool *p = arg;
	if (p->closing || p->scanning)
		return;
	struct scan_job *j = calloc(1, sizeof *j);
	if (!j)
		abort();
	j->job.run = scan_run;
	j->job.done = scan_done;
	j->pool = p;
	j->stamp = p->stamp;
	size_t n = 0;
	for (struct tpool *t = p->tpools; t; t = t->next)
		n += (size_t)t->nready;
	j->members = calloc(n ? n : 1, sizeof *j->members);
	if (!j->members)
		abort();
	for (struct tpool *t = p->tpools; t; t = t->next)
		for (struct pool_member *m = t->ready; m; m = m->next) {
			struct checked *c = &j->members[j->nmembers++];
			snprintf(c->template_id, sizeof c->template_id, "%s", t->template_id);
			snprintf(c->id, sizeof c->id, "%s", m->id);
			c->pid = m->pid;
		}
	p->scanning = true;
	worker_submit(p->api->pool, &j->job);
}

/* --- leftovers of an earlier api ---------------------------------------------------------- */

struct leftovers_job {
	struct job job;
	struct warm_pool *pool;
	int stopped, adopted;
};

/* One RUN/pool/<id>.json. */
static void leftover_one(struct leftovers_job *j, const char *dir, const char *name)
{
	const struct api *a = j->pool->api;
	char id[SANDBOX_ID_MAX + 1], path[4096 + 300], record[4096];
	size_t n = strlen(name);
	if (n < 6 || n - 5 > SANDBOX_ID_MAX || strcmp(name + n - 5, ".json") != 0)
		return;
	snprintf(id, sizeof id, "%.*s", (int)(n - 5), name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (!sandbox_id_valid(id)) {
		unlink(path);
		return;
	}
	/* A claim that got as far as the record: it is a sandbox now. */
	snprintf(record, sizeof record, "%s/sandboxes/%s/sandbox.json", a->cfg.state_dir, id);
	if (access(record, F_OK) == 0) {
		unlink(path);
		j->adopted++;
		return;
	}
	size_t len;
	char *text = file_read_all(path, POOL_CONFIG_MAX, &len);
	struct json *doc = text ? json_parse(text, len, NULL, 0) : NULL;
	free(text);
	const char *tpl = json_get_str(doc, "template");
	pid_t pid = (pid_t)json_get_int(doc, "pid", 0);
	log_info("pool.discard", "template=%s sandbox=%s pid=%d: left by an earlier api", tpl ? tpl : "?", id,
		 (int)pid);
	member_destroy(a, tpl && template_id_valid(tpl) ? tpl : "unknown", id, pid);
	json_free(doc);
	j->stopped++;
}

static void leftovers_run(struct job *job)
{
	struct leftovers_job *j = (struct leftovers_job *)job;
	const struct api *a = j->pool->api;
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/pool", a->cfg.run_dir);
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL)
			if (e->d_name[0] != '.')
				leftover_one(j, dir, e->d_name);
		closedir(d);
	}
	/* Layers of VMMs that are gone (a reboot empties RUN, not DIR). */
	snprintf(dir, sizeof dir, "%s/pool", a->cfg.state_dir);
	if (registry_remove_tree(dir) < 0)
		log_warn("pool.start", "cannot remove %s: %s", dir, strerror(errno));
}

static void leftovers_done(struct job *job)
{
	struct leftovers_job *j = (struct leftovers_job *)job;
	struct warm_pool *p = j->pool;
	if (j->stopped || j->adopted)
		log_info("pool.start", "earlier api's pool: %d VMMs stopped, %d had become sandboxes", j->stopped,
			 j->adopted);
	p->started = true;
	free(j);
	if (!p->closing)
		pool_tick(p);
}

/* --- interface ------------------------------------------------------------------------------ */

struct warm_pool *pool_new(struct api *a)
{
	struct warm_pool *p = calloc(1, sizeof *p);
	struct leftovers_job *j = calloc(1, sizeof *j);
	if (!p || !j)
		abort();
	p->api = a;
	j->job.run = leftovers_run;
	j->job.done = leftovers_done;
	j->pool = p;
	worker_submit(a->pool, &j->job);
	return p;
}

void pool_close(struct warm_pool *p)
{
	if (!p || p->closing)
		return;
	p->closing = true;
	loop_timer_disarm(p->api->loop, &p->timer);
	for (struct tpool *t = p->tpools; t; t = t->next)
		while (t->nready)
			member_discard(p, t, member_pop(t), "the api is stopping");
}

void pool_free(struct warm_pool *p)
{
	if (!p)
		return;
	while (p->tpools) {
		struct tpool *t = p->tpools;
		p->tpools = t->next;
		while (t->ready)
			free(member_pop(t));
		free(t);
	}
	free(p->rules);
	free(p);
}

void pool_take(struct warm_pool *p, struct sandbox *rec)
{
	struct tpool *t = p ? tpool_find(p, rec->template_id) : NULL;
	if (!t)
		return;
	struct pool_member *m = member_pop(t);
	if (m) {
		char rdir[4096];
		snprintf(rec->id, sizeof rec->id, "%s", m->id);
		sandbox_run_dir(p->api, rec->id, rdir, sizeof rdir);
		size_t n = strlen(rdir) + 16;
		free(rec->vsock);
		free(rec->control);
		rec->vsock = malloc(n);
		rec->control = malloc(n);
		if (!rec->vsock || !rec->control)
			abort();
		snprintf(rec->vsock, n, "%s/vsock.sock", rdir);
		snprintf(rec->control, n, "%s/control.sock", rdir);
		rec->vmm_pid = m->pid;
		t->takes++;
		log_info("pool.take", "template=%s sandbox=%s pid=%d, %d/%d left", t->template_id, m->id, (int)m->pid,
			 t->nready, t->target);
		free(m);
	} else if (t->target) {
		log_info("pool.take", "template=%s pool empty: cold start", t->template_id);
	}
	tpool_refill(p, t);
}

void pool_drop_template(struct warm_pool *p, const char *template_id)
{
	struct tpool *t = p ? tpool_find(p, template_id) : NULL;
	if (!t)
		return;
	t->target = 0;
	t->snap_id = 0; /* a fill still in flight is discarded when it ends */
	while (t->nready)
		member_discard(p, t, member_pop(t), "its template is being removed or rebuilt");
}

int pool_claim(struct api *a, pid_t pid, const struct vm_spec *spec, char *err, size_t errsz)
{
	char pdir[4096], from[4200], to[4200];
	member_pool_dir(a, spec->id, pdir, sizeof pdir);
	snprintf(from, sizeof from, "%s/disk.layer", pdir);
	snprintf(to, sizeof to, "%s/disk.layer", spec->sandbox_dir);
	const char *tpl = strrchr(spec->template_dir, '/');
	tpl = tpl ? tpl + 1 : spec->template_dir;
	int rc;
	/* A missing layer is the backend's business (a fake makes none). */
	if (registry_mkdir_p(spec->sandbox_dir) < 0 || (rename(from, to) < 0 && errno != ENOENT)) {
		snprintf(err, errsz, "cannot move the disk layer %s to %s: %s", from, to, strerror(errno));
		a->ops.stop(pid, spec, a->cfg.stop_timeout_ms);
		rc = -1;
	} else {
		rc = a->ops.claim(pid, spec, err, errsz);
	}
	registry_remove_tree(pdir);
	if (rc < 0) {
		log_warn("pool.discard", "template=%s sandbox=%s pid=%d: claim failed, starting cold: %s", tpl,
			 spec->id, (int)pid, err);
		pool_forget(a, spec->id);
	}
	return rc;
}

void pool_forget(struct api *a, const char *id)
{
	char marker[4096];
	member_marker(a, id, marker, sizeof marker);
	unlink(marker);
}

/* --- GET /admin/pool --------------------------------------------------------------------------- */

static void write_tpool(const struct tpool *t, struct jw *w)
{
	jw_obj(w);
	jw_kstr(w, "templateID", t->template_id);
	jw_key(w, "size");
	jw_int(w, t->target);
	jw_key(w, "ready");
	jw_int(w, t->nready);
	jw_key(w, "filling");
	jw_int(w, t->filling);
	jw_key(w, "fills");
	jw_uint(w, t->fills);
	jw_key(w, "takes");
	jw_uint(w, t->takes);
	jw_key(w, "discards");
	jw_uint(w, t->discards);
	jw_key(w, "members");
	jw_arr(w);
	for (const struct pool_member *m = t->ready; m; m = m->next) {
		jw_obj(w);
		jw_kstr(w, "id", m->id);
		jw_key(w, "pid");
		jw_int(w, m->pid);
		jw_end(w);
	}
	jw_end(w);
	jw_end(w);
}

bool pool_route(struct api *a, struct http_conn *c, struct http_req *req)
{
	if (strcmp(req->path, "/admin/pool") != 0)
		return false;
	if (strcmp(req->method, "GET") != 0) {
		http_add_header(c, "Allow", "GET, PUT");
		http_respond_error(c, 405, "%s /admin/pool: only GET and PUT", req->method);
		return true;
	}
	struct warm_pool *p = a->warm;
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	jw_key(&w, "defaultSize");
	jw_int(&w, a->cfg.pool_size);
	jw_key(&w, "enabled");
	jw_bool(&w, p && pool_enabled(p));
	jw_key(&w, "started");
	jw_bool(&w, p && p->started);
	jw_key(&w, "templates");
	jw_arr(&w);
	for (const struct tpool *t = p ? p->tpools : NULL; t; t = t->next)
		write_tpool(t, &w);
	jw_end(&w);
	jw_end(&w);
	respond_json(c, 200, &b);
	return true;
}
