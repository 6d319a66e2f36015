/* sandbox_restore.c - at start, the registry on disk becomes the registry in
 * memory. VMMs run in their own session, so they outlive an api restart:
 * running records whose VMM is alive are kept, the others are cleaned up.
 * Paused records are kept (their snapshot is on the data disk).
 *
 * "Alive" includes a control ping, which a VMM on a host starved of CPU can
 * miss (the api restarts exactly when the appliance is busy). A record is
 * only given up after RESTORE_CHECKS checks some seconds apart, and then its
 * VMM is stopped before its files go: never a VMM running on with its disk
 * layer deleted and no record left to kill it by. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "apicore.h"

#define RESTORE_CHECKS	 3
#define RESTORE_PAUSE_MS 2000 /* between two rounds of checks, for all records at once */

static void spec_of(struct api *a, const struct sandbox *rec, struct vm_spec *spec, char sdir[4096], char rdir[4096],
		    char tdir[4096])
{
	sandbox_dir(a, rec->id, sdir, 4096);
	sandbox_run_dir(a, rec->id, rdir, 4096);
	template_dir(a, rec->template_id, tdir, 4096);
	*spec = (struct vm_spec){.id = rec->id,
				 .template_dir = tdir,
				 .sandbox_dir = sdir,
				 .run_dir = rdir,
				 .init_json = NULL,
				 .vmm_path = a->cfg.vmm_path};
}

static bool vmm_alive(struct api *a, const struct sandbox *rec)
{
	char sdir[4096], rdir[4096], tdir[4096];
	struct vm_spec spec;
	spec_of(a, rec, &spec, sdir, rdir, tdir);
	return rec->vmm_pid > 0 && a->ops.alive(rec->vmm_pid, &spec);
}

/* Stops whatever is left of its VMM (vm_stop leaves a pid that is not this
 * sandbox's VMM alone), then removes its record and files. */
static void forget(struct api *a, const struct sandbox *rec)
{
	char sdir[4096], rdir[4096], tdir[4096];
	struct vm_spec spec;
	spec_of(a, rec, &spec, sdir, rdir, tdir);
	if (rec->vmm_pid > 0)
		a->ops.stop(rec->vmm_pid, &spec, a->cfg.stop_timeout_ms);
	if (registry_remove(a->cfg.state_dir, rec->id) < 0)
		log_warn("sandbox.restore", "sandbox=%s cannot remove its directory: %s", rec->id, strerror(errno));
	registry_remove_tree(rdir);
}

static void keep(struct api *a, struct sandbox_entry *e)
{
	e->next = a->sandboxes;
	a->sandboxes = e;
	log_info("sandbox.restore", "sandbox=%s %s, pid %d", e->rec.id, sandbox_state_name(e->rec.state),
		 (int)e->rec.vmm_pid);
}

/* Records read from disk whose VMM has not answered yet. */
struct pending {
	struct api *api;
	struct sandbox_entry *list;
};

/* A record that cannot be read. Records of running sandboxes are written
 * without fsync (their VMMs die with the machine anyway), so after a power
 * loss or a kernel panic some are empty: without a paused snapshot next to
 * it, the directory is only a dead sandbox's disk layer, and goes. With one
 * (paused records are written durably, so this is real damage) it stays for
 * a look. */
static void unreadable(struct api *a, const char *id, int err)
{
	char sdir[4096], paused[4200], rdir[4096];
	sandbox_dir(a, id, sdir, sizeof sdir);
	snprintf(paused, sizeof paused, "%s/paused", sdir);
	if (access(paused, F_OK) == 0) {
		log_warn("sandbox.restore", "sandbox=%s unreadable record (%s) next to a paused snapshot: left in %s",
			 id, strerror(err), sdir);
		return;
	}
	log_warn("sandbox.lost", "sandbox=%s unreadable record (%s), no paused snapshot: removed", id, strerror(err));
	sandbox_run_dir(a, id, rdir, sizeof rdir);
	if (registry_remove_tree(sdir) < 0)
		log_warn("sandbox.restore", "sandbox=%s cannot remove %s: %s", id, sdir, strerror(errno));
	registry_remove_tree(rdir);
}

static void load_one(void *arg, const char *id)
{
	struct pending *p = arg;
	struct sandbox rec;
	if (registry_load(p->api->cfg.state_dir, id, &rec) < 0) {
		unreadable(p->api, id, errno);
		return;
	}
	struct sandbox_entry *e = calloc(1, sizeof *e);
	if (!e)
		abort();
	e->rec = rec;
	if (rec.state != SANDBOX_RUNNING) {
		keep(p->api, e);
		return;
	}
	e->next = p->list;
	p->list = e;
}

/* One round of checks: the live ones are kept, the rest stay pending. */
static void check_round(struct pending *p, int round)
{
	struct sandbox_entry **pp = &p->list;
	while (*pp) {
		struct sandbox_entry *e = *pp;
		if (vmm_alive(p->api, &e->rec)) {
			*pp = e->next;
			if (round > 1)
				log_info("sandbox.restore", "sandbox=%s its VMM answered at check %d of %d", e->rec.id,
					 round, RESTORE_CHECKS);
			keep(p->api, e);
		} else {
			pp = &e->next;
		}
	}
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void sandboxes_restore(struct api *a)
{
	struct pending p = {.api = a};
	int n = registry_scan(a->cfg.state_dir, load_one, &p);
	if (n < 0)
		log_error("sandbox.restore", "cannot read %s/sandboxes: %s", a->cfg.state_dir, strerror(errno));
	for (int round = 1; round <= RESTORE_CHECKS && p.list; round++) {
		if (round > 1)
			pause_ms(RESTORE_PAUSE_MS);
		check_round(&p, round);
	}
	while (p.list) {
		struct sandbox_entry *e = p.list;
		p.list = e->next;
		log_warn("sandbox.lost", "sandbox=%s its VMM (pid %d) is gone or did not answer %d checks: removed",
			 e->rec.id, (int)e->rec.vmm_pid, RESTORE_CHECKS);
		forget(a, &e->rec);
		sandbox_clear(&e->rec);
		free(e);
	}
}
