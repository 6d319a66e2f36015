/* sandbox_jobs.c - backend calls for one sandbox, off the event loop.
 *
 * A job works on a private copy of the record: the worker thread calls the
 * backend and writes sandbox.json (a paused record is fsync'd, which must not
 * happen on the loop), then done() on the loop installs the copy and answers
 * the client, if there is one (TTL jobs have none). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../lib/b64.h"
#include "../lib/fileio.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "apicore.h"
#include "create_req.h"

struct sandbox_job {
	struct job job;
	struct api *api;
	struct sandbox_entry *entry;
	struct http_conn *conn; /* NULL if none, or once the client went away */
	enum sandbox_job_kind kind;
	int resume_status;
	struct sandbox rec; /* the copy the thread works on */
	char sandbox_dir[4096], run_dir[4096], template_dir[4096];
	int rc;
	bool warm; /* started from a VMM of the warm pool */
	char err[512];
	void (*started)(void *arg, struct sandbox_entry *e, const char *err); /* sandbox_start_then */
	char guest_token[SANDBOX_TOKEN_LEN + 64];
	void *started_arg;
};

static const char *const job_busy_names[] = {
    [JOB_START] = "starting", [JOB_STOP] = "stopping", [JOB_PAUSE] = "pausing", [JOB_RESUME] = "resuming"};

void sandbox_init_json(const struct sandbox *rec, struct buf *out)
{
	struct jw w;
	char now[32];
	time_format(wall_ms(), now);
	/* Fresh entropy after every restore: clones of one snapshot would
	 * otherwise share their kernel's random state. */
	unsigned char seed[64];
	char seed_b64[128];
	bool seeded = getrandom(seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed;
	if (seeded)
		b64_encode(seed, sizeof seed, seed_b64);
	jw_init(&w, out);
	jw_obj(&w);
	jw_kstr(&w, "sandboxId", rec->id);
	jw_key(&w, "envVars");
	kvs_write(&rec->env_vars, &w);
	/* Always sent: a clone of a secure sandbox's snapshot holds that
	 * sandbox's token until it is replaced, or cleared with "". */
	jw_kstr(&w, "accessToken", rec->envd_access_token ? rec->envd_access_token : "");
	jw_kstr(&w, "timestamp", now);
	if (seeded)
		jw_kstr(&w, "entropy", seed_b64);
	jw_kstr(&w, "defaultUser", "user");
	jw_end(&w);
}

/* A snapshot of a secure sandbox holds its token (snapshots.c wrote it
 * beside the snapshot): a start from it must show that one to the agent. */
static void read_guest_token(struct sandbox_job *j)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", j->template_dir, SNAPSHOT_GUEST_TOKEN);
	size_t len;
	char *tok = file_read_all(path, sizeof j->guest_token, &len);
	snprintf(j->guest_token, sizeof j->guest_token, "%s", tok && len ? tok : "");
	if (tok)
		explicit_bzero(tok, len);
	free(tok);
}

static void fill_spec(struct sandbox_job *j, struct vm_spec *spec, struct buf *init)
{
	if (j->kind == JOB_START)
		read_guest_token(j);
	sandbox_init_json(&j->rec, init);
	*spec = (struct vm_spec){.id = j->rec.id,
				 .template_dir = j->template_dir,
				 .sandbox_dir = j->sandbox_dir,
				 .run_dir = j->run_dir,
				 .init_json = init->data,
				 .guest_token = j->guest_token[0] ? j->guest_token : NULL,
				 .vmm_path = j->api->cfg.vmm_path};
}

static void forget_on_disk(struct sandbox_job *j)
{
	if (registry_remove(j->api->cfg.state_dir, j->rec.id) < 0)
		log_warn("sandbox.cleanup", "sandbox=%s cannot remove %s: %s", j->rec.id, j->sandbox_dir,
			 strerror(errno));
	registry_remove_tree(j->run_dir);
}

static void save_or_fail(struct sandbox_job *j)
{
	if (registry_save(j->api->cfg.state_dir, &j->rec) < 0) {
		snprintf(j->err, sizeof j->err, "cannot write the sandbox record: %s", strerror(errno));
		j->rc = -1;
	}
}

/* Runs a restore (ops.start from the template, ops.resume from the paused
 * snapshot). One that fails (its guest did not come up) says more about
 * that moment on the host than about the snapshot: one more try, on a fresh
 * VMM, before the client gets a 500. A failed restore leaves its snapshot
 * as it was (a resume removes paused/ only on success) and has removed its
 * run dir, so that is made again. */
static pid_t restore_with_one_retry(struct sandbox_job *j, const struct vm_spec *spec,
				    pid_t (*restore)(const struct vm_spec *, char *, size_t), const char *event,
				    const char *what)
{
	j->err[0] = '\0';
	pid_t pid = restore(spec, j->err, sizeof j->err);
	if (pid > 0)
		return pid;
	log_warn(event, "sandbox=%s %s failed, trying once more: %s", j->rec.id, what, j->err);
	if (registry_mkdir_p(j->sandbox_dir) < 0 || registry_mkdir_p(j->run_dir) < 0)
		return -1;
	j->err[0] = '\0';
	return restore(spec, j->err, sizeof j->err);
}

/* pool_take left the pool's VMM in vmm_pid: claim it, and if that fails
 * start cold after all (the pool VMM is gone then, and so are its files). */
static pid_t start_vmm(struct sandbox_job *j, const struct vm_spec *spec)
{
	pid_t warm = j->rec.vmm_pid;
	j->rec.vmm_pid = 0;
	if (warm > 0 && pool_claim(j->api, warm, spec, j->err, sizeof j->err) == 0) {
		j->warm = true;
		return warm;
	}
	return restore_with_one_retry(j, spec, j->api->ops.start, "sandbox.start", "start");
}

static void run_start(struct sandbox_job *j, const struct vm_spec *spec)
{
	bool from_pool = j->rec.vmm_pid > 0;
	if (registry_mkdir_p(j->sandbox_dir) < 0 || registry_mkdir_p(j->run_dir) < 0) {
		snprintf(j->err, sizeof j->err, "cannot create the sandbox directories: %s", strerror(errno));
		j->rc = -1;
		if (from_pool) /* not ours to keep: the pool's VMM must not run on unseen */
			j->api->ops.stop(j->rec.vmm_pid, spec, j->api->cfg.stop_timeout_ms);
	} else {
		pid_t pid = start_vmm(j, spec);
		j->rc = pid > 0 ? 0 : -1;
		if (pid > 0) {
			j->rec.vmm_pid = pid;
			save_or_fail(j);
			if (j->rc < 0)
				j->api->ops.stop(pid, spec, j->api->cfg.stop_timeout_ms);
		}
	}
	if (j->rc < 0)
		forget_on_disk(j);
	if (from_pool) /* a sandbox now (record written) or gone: no longer the pool's */
		pool_forget(j->api, j->rec.id);
}

static void run_pause(struct sandbox_job *j, const struct vm_spec *spec)
{
	j->rc = j->api->ops.pause(j->rec.vmm_pid, spec, j->err, sizeof j->err);
	if (j->rc < 0)
		return;
	j->rec.state = SANDBOX_PAUSED;
	j->rec.vmm_pid = 0;
	save_or_fail(j);
}

static void run_resume(struct sandbox_job *j, const struct vm_spec *spec)
{
	registry_mkdir_p(j->run_dir); /* /run is a tmpfs: gone after a reboot */
	pid_t pid = restore_with_one_retry(j, spec, j->api->ops.resume, "sandbox.resume", "resume");
	j->rc = pid > 0 ? 0 : -1;
	if (pid <= 0)
		return;
	j->rec.state = SANDBOX_RUNNING;
	j->rec.vmm_pid = pid;
	save_or_fail(j);
}

static void job_run(struct job *job)
{
	struct sandbox_job *j = (struct sandbox_job *)job;
	struct vm_spec spec;
	struct buf init = BUF_INIT;
	fill_spec(j, &spec, &init);
	j->err[0] = '\0';
	switch (j->kind) {
	case JOB_START: run_start(j, &spec); break;
	case JOB_STOP:
		if (j->rec.vmm_pid > 0)
			j->rc = j->api->ops.stop(j->rec.vmm_pid, &spec, j->api->cfg.stop_timeout_ms);
		forget_on_disk(j);
		break;
	case JOB_PAUSE: run_pause(j, &spec); break;
	case JOB_RESUME: run_resume(j, &spec); break;
	}
	buf_free(&init);
}

static void job_conn_gone(void *arg)
{
	struct sandbox_job *j = arg;
	j->conn = NULL;
}

/* Moves the thread's copy into the live entry. */
static void install_record(struct sandbox_job *j)
{
	sandbox_clear(&j->entry->rec);
	j->entry->rec = j->rec;
	memset(&j->rec, 0, sizeof j->rec);
}

static void answer_sandbox(struct sandbox_job *j, int status, bool created_view)
{
	if (!j->conn)
		return;
	struct buf b = BUF_INIT;
	if (created_view)
		sandbox_write_created(&j->entry->rec, &b);
	else
		sandbox_write_detail(&j->entry->rec, &b);
	respond_json(j->conn, status, &b);
}

static void answer_error(struct sandbox_job *j, const char *what)
{
	if (j->conn)
		http_respond_error(j->conn, 500, "cannot %s sandbox %s: %s", what, j->rec.id,
				   j->err[0] ? j->err : "backend failure");
}

/* The sandbox is gone: its entry goes, and a fork's snapshot with its
 * last sandbox. */
static void forget_entry(struct sandbox_job *j)
{
	char tid[TEMPLATE_ID_MAX + 1];
	snprintf(tid, sizeof tid, "%s", j->entry->rec.template_id ? j->entry->rec.template_id : "");
	sandbox_unlink(j->api, j->entry);
	snapshot_forget_fork(j->api, tid);
}

static void done_start(struct sandbox_job *j)
{
	if (j->rc < 0) {
		log_error("sandbox.start", "sandbox=%s template=%s failed: %s", j->rec.id, j->rec.template_id, j->err);
		answer_error(j, "start");
		if (j->started)
			j->started(j->started_arg, j->entry, j->err[0] ? j->err : "backend failure");
		forget_entry(j);
		return;
	}
	log_info("sandbox.start", "sandbox=%s template=%s pid=%d from=%s", j->rec.id, j->rec.template_id,
		 (int)j->rec.vmm_pid, j->warm ? "pool" : "cold");
	install_record(j);
	answer_sandbox(j, 201, true);
	if (j->started)
		j->started(j->started_arg, j->entry, NULL);
}

static void done_stop(struct sandbox_job *j)
{
	log_info("sandbox.stop", "sandbox=%s stopped%s", j->rec.id, j->rc < 0 ? " (the VMM did not stop cleanly)" : "");
	forget_entry(j);
	if (j->conn)
		http_respond(j->conn, 204, NULL, NULL, 0);
}

static void done_pause(struct sandbox_job *j)
{
	if (j->rc < 0) {
		log_error("sandbox.pause", "sandbox=%s failed: %s", j->rec.id, j->err);
		answer_error(j, "pause");
		/* An expired sandbox that cannot be paused must still go away. */
		if (!j->conn && j->entry->rec.state == SANDBOX_RUNNING)
			sandbox_job_submit(j->api, j->entry, JOB_STOP, NULL, 0, 0);
		return;
	}
	log_info("sandbox.pause", "sandbox=%s paused", j->rec.id);
	install_record(j);
	if (j->conn)
		http_respond(j->conn, 204, NULL, NULL, 0);
}

static void done_resume(struct sandbox_job *j)
{
	if (j->rc < 0) {
		log_error("sandbox.resume", "sandbox=%s failed: %s", j->rec.id, j->err);
		answer_error(j, "resume");
		return;
	}
	log_info("sandbox.resume", "sandbox=%s resumed pid=%d", j->rec.id, (int)j->rec.vmm_pid);
	install_record(j);
	answer_sandbox(j, j->resume_status, true);
}

static void job_done(struct job *job)
{
	struct sandbox_job *j = (struct sandbox_job *)job;
	j->entry->busy = NULL;
	switch (j->kind) {
	case JOB_START: done_start(j); break;
	case JOB_STOP: done_stop(j); break;
	case JOB_PAUSE: done_pause(j); break;
	case JOB_RESUME: done_resume(j); break;
	}
	sandbox_clear(&j->rec);
	free(j);
}

static struct sandbox_job *job_new(struct api *a, struct sandbox_entry *e, enum sandbox_job_kind kind,
				   struct http_conn *conn, int resume_status, int64_t new_end_ms)
{
	struct sandbox_job *j = calloc(1, sizeof *j);
	if (!j)
		abort();
	j->job.run = job_run;
	j->job.done = job_done;
	j->api = a;
	j->entry = e;
	j->conn = conn;
	j->kind = kind;
	j->resume_status = resume_status;
	sandbox_copy(&j->rec, &e->rec);
	if (kind == JOB_RESUME)
		j->rec.end_ms = new_end_ms;
	sandbox_dir(a, e->rec.id, j->sandbox_dir, sizeof j->sandbox_dir);
	sandbox_run_dir(a, e->rec.id, j->run_dir, sizeof j->run_dir);
	template_dir(a, e->rec.template_id, j->template_dir, sizeof j->template_dir);
	e->busy = job_busy_names[kind];
	if (conn)
		http_conn_on_abort(conn, job_conn_gone, j);
	return j;
}

void sandbox_job_submit(struct api *a, struct sandbox_entry *e, enum sandbox_job_kind kind, struct http_conn *conn,
			int resume_status, int64_t new_end_ms)
{
	worker_submit(a->pool, &job_new(a, e, kind, conn, resume_status, new_end_ms)->job);
}

void sandbox_start_then(struct api *a, struct sandbox_entry *e,
			void (*done)(void *arg, struct sandbox_entry *e, const char *err), void *arg)
{
	struct sandbox_job *j = job_new(a, e, JOB_START, NULL, 0, 0);
	j->started = done;
	j->started_arg = arg;
	worker_submit(a->pool, &j->job);
}
