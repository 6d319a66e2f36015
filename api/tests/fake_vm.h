/*
 * fake_vm.h - a vm_ops backend for the api tests: no KVM, no processes.
 *
 * A "VMM" is an entry in a table of fake pids; stop, pause and a test's
 * fake_set_dead mark it dead, vm_alive reads the table. Pool VMMs
 * (prestart) are fake pids too; a claim of a dead one fails, as it would. The table lives in
 * the test process, so a second api instance (the restart test) sees the
 * same VMMs as the first. Calls come from the api's worker threads, hence
 * the mutex.
 */
#ifndef CUBE_API_FAKE_VM_H
#define CUBE_API_FAKE_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../api.h"

#define FAKE_PID_BASE 3000000
#define FAKE_PIDS     1024

static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
static bool fake_alive_tab[FAKE_PIDS];
static int fake_next;
static bool fake_fail_start;
/* Fail only this many next starts (a guest that did not come up once). */
static int fake_fail_starts_once;
static char fake_last_init[8192];
static char fake_last_guest_token[256]; /* spec->guest_token of the last start or claim */
static int fake_checkpoints;
static bool fake_fail_checkpoint;
static int fake_stops, fake_pauses, fake_resumes, fake_builds;
/* The warm pool: restores left paused, claims of them, and cold starts. */
static int fake_prestarts, fake_claims, fake_starts;
static bool fake_fail_prestart;
/* The next this many liveness checks of a running VMM say no, as the
 * control ping of a VMM on a host starved of CPU can. */
static int fake_alive_misses;

static pid_t fake_new_pid(const struct vm_spec *spec)
{
	pthread_mutex_lock(&fake_mu);
	int n = fake_next++ % FAKE_PIDS;
	fake_alive_tab[n] = true;
	if (spec->init_json)
		snprintf(fake_last_init, sizeof fake_last_init, "%s", spec->init_json);
	snprintf(fake_last_guest_token, sizeof fake_last_guest_token, "%s", spec->guest_token ? spec->guest_token : "");
	pthread_mutex_unlock(&fake_mu);
	return FAKE_PID_BASE + n;
}

static bool fake_set_dead(pid_t pid)
{
	int n = pid - FAKE_PID_BASE;
	if (n < 0 || n >= FAKE_PIDS)
		return false;
	pthread_mutex_lock(&fake_mu);
	bool was = fake_alive_tab[n];
	fake_alive_tab[n] = false;
	pthread_mutex_unlock(&fake_mu);
	return was;
}

static pid_t fake_start(const struct vm_spec *spec, char *err, size_t errsz)
{
	if (fake_fail_start) {
		snprintf(err, errsz, "fake backend: cannot open /dev/kvm");
		return -1;
	}
	if (__atomic_load_n(&fake_fail_starts_once, __ATOMIC_SEQ_CST) > 0 &&
	    __atomic_sub_fetch(&fake_fail_starts_once, 1, __ATOMIC_SEQ_CST) >= 0) {
		snprintf(err, errsz, "fake backend: guest triple fault");
		return -1;
	}
	__atomic_add_fetch(&fake_starts, 1, __ATOMIC_SEQ_CST);
	return fake_new_pid(spec);
}

/* Like the real VMM, the paused one creates its disk layer at once. */
static pid_t fake_prestart(const struct vm_spec *spec, char *err, size_t errsz)
{
	if (fake_fail_prestart) {
		snprintf(err, errsz, "fake backend: no snapshot");
		return -1;
	}
	char path[4200];
	snprintf(path, sizeof path, "%s/disk.layer", spec->sandbox_dir);
	FILE *f = fopen(path, "w");
	if (f)
		fclose(f);
	__atomic_add_fetch(&fake_prestarts, 1, __ATOMIC_SEQ_CST);
	return fake_new_pid(&(struct vm_spec){.init_json = NULL});
}

static bool fake_alive(pid_t pid, const struct vm_spec *spec);

static int fake_claim(pid_t pid, const struct vm_spec *spec, char *err, size_t errsz)
{
	if (!fake_alive(pid, spec)) {
		snprintf(err, errsz, "fake backend: pool pid %d is gone", (int)pid);
		return -1;
	}
	pthread_mutex_lock(&fake_mu);
	snprintf(fake_last_init, sizeof fake_last_init, "%s", spec->init_json ? spec->init_json : "");
	pthread_mutex_unlock(&fake_mu);
	__atomic_add_fetch(&fake_claims, 1, __ATOMIC_SEQ_CST);
	return 0;
}

/* How many fake VMMs run. */
static int fake_running(void)
{
	int n = 0;
	pthread_mutex_lock(&fake_mu);
	for (int i = 0; i < FAKE_PIDS; i++)
		n += fake_alive_tab[i];
	pthread_mutex_unlock(&fake_mu);
	return n;
}

static int fake_stop(pid_t pid, const struct vm_spec *spec, int timeout_ms)
{
	__atomic_add_fetch(&fake_stops, 1, __ATOMIC_SEQ_CST);
	return fake_set_dead(pid) ? 0 : -1;
}

static int fake_pause(pid_t pid, const struct vm_spec *spec, char *err, size_t errsz)
{
	if (!fake_set_dead(pid)) {
		snprintf(err, errsz, "fake backend: pid %d is not running", (int)pid);
		return -1;
	}
	char path[4200];
	snprintf(path, sizeof path, "%s/paused", spec->sandbox_dir);
	mkdir(path, 0755);
	__atomic_add_fetch(&fake_pauses, 1, __ATOMIC_SEQ_CST);
	return 0;
}

/* A running sandbox (its fake pid alive) or a paused one (paused/ there):
 * snap_dir gets a state file, as vm_checkpoint leaves it. */
static int fake_checkpoint(pid_t pid, const struct vm_spec *spec, const char *snap_dir, char *err, size_t errsz)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/paused", spec->sandbox_dir);
	pthread_mutex_lock(&fake_mu);
	bool ok = pid > 0 ? fake_alive_tab[(pid - FAKE_PID_BASE) % FAKE_PIDS] : stat(path, &st) == 0;
	pthread_mutex_unlock(&fake_mu);
	if (!ok || fake_fail_checkpoint) {
		snprintf(err, errsz, "fake backend: %s", ok ? "the snapshot failed" : "nothing to snapshot");
		return -1;
	}
	mkdir(snap_dir, 0755);
	snprintf(path, sizeof path, "%s/state", snap_dir);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "snapshot of %s\n", spec->id);
		fclose(f);
	}
	__atomic_add_fetch(&fake_checkpoints, 1, __ATOMIC_SEQ_CST);
	return 0;
}

/* Set > 0: that many resumes fail the way a guest crash does (the snapshot stays). */
static int fake_resume_failures;

static pid_t fake_resume(const struct vm_spec *spec, char *err, size_t errsz)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/paused", spec->sandbox_dir);
	if (stat(path, &st) < 0) {
		snprintf(err, errsz, "fake backend: no snapshot in %s", path);
		return -1;
	}
	if (__atomic_load_n(&fake_resume_failures, __ATOMIC_SEQ_CST) > 0) {
		__atomic_sub_fetch(&fake_resume_failures, 1, __ATOMIC_SEQ_CST);
		snprintf(err, errsz, "cube-vmm ended before the agent answered: exit code 3: guest triple fault");
		return -1;
	}
	__atomic_add_fetch(&fake_resumes, 1, __ATOMIC_SEQ_CST);
	return fake_new_pid(spec);
}

static bool fake_alive(pid_t pid, const struct vm_spec *spec)
{
	int n = pid - FAKE_PID_BASE;
	if (n < 0 || n >= FAKE_PIDS)
		return false;
	pthread_mutex_lock(&fake_mu);
	bool a = fake_alive_tab[n];
	if (a && fake_alive_misses > 0) {
		fake_alive_misses--;
		a = false;
	}
	pthread_mutex_unlock(&fake_mu);
	return a;
}

/* Set > 0: that many builds fail the way a guest crash does. */
static int fake_build_failures;
/* What the last build was asked to start: "argv=a|b cwd=... probe=N
 * envs={...}", or "" for nothing. */
static char fake_last_start[2048];

static void fake_record_start(const struct template_start *st)
{
	char *p = fake_last_start;
	size_t left = sizeof fake_last_start;
	p[0] = '\0';
	if (!st || !st->argv)
		return;
	int n = snprintf(p, left, "argv=");
	for (const char *const *a = st->argv; *a && n > 0 && (size_t)n < left; a++) {
		p += n;
		left -= (size_t)n;
		n = snprintf(p, left, "%s%s", a == st->argv ? "" : "|", *a);
	}
	size_t used = strlen(fake_last_start);
	snprintf(fake_last_start + used, sizeof fake_last_start - used, " cwd=%s probe=%d envs=%s",
		 st->cwd ? st->cwd : "-", st->probe_port, st->envs_json ? st->envs_json : "-");
}

static int fake_template_build(const char *template_dir, const char *kernel, const char *rootfs, int cpus, int mem_mib,
			       struct template_start *start, void (*progress)(void *arg, int pct, const char *phase),
			       void *arg, char *err, size_t errsz)
{
	fake_record_start(start);
	if (start && start->argv)
		snprintf(start->note, sizeof start->note, "started `%s` (pid 42)", start->argv[0]);
	progress(arg, 10, "boot");
	if (__atomic_load_n(&fake_build_failures, __ATOMIC_SEQ_CST) > 0) {
		__atomic_sub_fetch(&fake_build_failures, 1, __ATOMIC_SEQ_CST);
		snprintf(err, errsz, "vmm: exit code 3: guest triple fault");
		return -1;
	}
	progress(arg, 90, "snapshot");
	char path[4200];
	snprintf(path, sizeof path, "%s/snap", template_dir);
	mkdir(path, 0755);
	__atomic_add_fetch(&fake_builds, 1, __ATOMIC_SEQ_CST);
	return 0;
}

static const struct vm_ops fake_vm_ops = {
    .start = fake_start,
    .stop = fake_stop,
    .pause = fake_pause,
    .resume = fake_resume,
    .alive = fake_alive,
    .prestart = fake_prestart,
    .claim = fake_claim,
    .checkpoint = fake_checkpoint,
    .template_build = fake_template_build,
};

#endif
