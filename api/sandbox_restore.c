/* sandbox_restore.c - at start, the registry on disk becomes the registry in
 * memory. VMMs run in their own session, so they outlive an api restart:
 * running records whose VMM is alive are kept, the others are cleaned up.
 * Paused records are kept (their snapshot is on the data disk). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "apicore.h"

static bool vmm_alive(struct api *a, const struct sandbox *rec)
{
	char sdir[4096], rdir[4096], tdir[4096];
	sandbox_dir(a, rec->id, sdir, sizeof sdir);
	sandbox_run_dir(a, rec->id, rdir, sizeof rdir);
	template_dir(a, rec->template_id, tdir, sizeof tdir);
	struct vm_spec spec = {.id = rec->id,
			       .template_dir = tdir,
			       .sandbox_dir = sdir,
			       .run_dir = rdir,
			       .init_json = NULL,
			       .vmm_path = a->cfg.vmm_path};
	return rec->vmm_pid > 0 && a->ops.alive(rec->vmm_pid, &spec);
}

static void forget(struct api *a, const char *id)
{
	char rdir[4096];
	sandbox_run_dir(a, id, rdir, sizeof rdir);
	if (registry_remove(a->cfg.state_dir, id) < 0)
		log_warn("sandbox.restore", "sandbox=%s cannot remove its directory: %s", id, strerror(errno));
	registry_remove_tree(rdir);
}

static void restore_one(void *arg, const char *id)
{
	struct api *a = arg;
	struct sandbox rec;
	if (registry_load(a->cfg.state_dir, id, &rec) < 0) {
		/* Left in place: a record we cannot read may still be worth a look. */
		log_warn("sandbox.restore", "sandbox=%s unreadable record, ignored: %s", id, strerror(errno));
		return;
	}
	if (rec.state == SANDBOX_RUNNING && !vmm_alive(a, &rec)) {
		log_warn("sandbox.lost", "sandbox=%s its VMM (pid %d) is gone: removed", id, (int)rec.vmm_pid);
		sandbox_clear(&rec);
		forget(a, id);
		return;
	}
	struct sandbox_entry *e = calloc(1, sizeof *e);
	if (!e)
		abort();
	e->rec = rec;
	e->next = a->sandboxes;
	a->sandboxes = e;
	log_info("sandbox.restore", "sandbox=%s %s, pid %d", id, sandbox_state_name(rec.state), (int)rec.vmm_pid);
}

void sandboxes_restore(struct api *a)
{
	int n = registry_scan(a->cfg.state_dir, restore_one, a);
	if (n < 0)
		log_error("sandbox.restore", "cannot read %s/sandboxes: %s", a->cfg.state_dir, strerror(errno));
}
