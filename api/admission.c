/* admission.c - whether the appliance takes one more sandbox.
 *
 * A sandbox's guest memory is only allocated as the guest touches it, so the
 * appliance overcommits on purpose: thousands of idle sandboxes fit where a
 * few hundred busy ones would not. Two guards keep a create from pushing the
 * machine into the kernel's OOM killer (which would pick a VMM, i.e. someone's
 * running sandbox): a ceiling on running sandboxes (cube-api --max-sandboxes)
 * and a floor of available memory (MemAvailable in /proc/meminfo). Either one
 * answers 429 with Retry-After, E2B's "try again later", and nothing is
 * created. Paused sandboxes hold no memory and do not count. */
#include <stdio.h>
#include <string.h>

#include "../lib/log.h"
#include "apicore.h"

/* MemAvailable in MiB, or -1 if the file cannot be read (then the memory
 * guard is off: better to admit than to refuse everything). */
static long long mem_available_mib(const char *meminfo)
{
	FILE *f = fopen(meminfo, "re");
	if (!f)
		return -1;
	char line[256];
	long long kib = -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "MemAvailable: %lld kB", &kib) == 1)
			break;
	fclose(f);
	return kib < 0 ? -1 : kib / 1024;
}

static int running_sandboxes(const struct api *a)
{
	int n = 0;
	for (const struct sandbox_entry *e = a->sandboxes; e; e = e->next)
		n += e->rec.state == SANDBOX_RUNNING || e->busy;
	return n;
}

int admission_check(struct api *a, char *why, size_t whysz, int *retry_s)
{
	int running = running_sandboxes(a);
	if (running >= a->cfg.max_sandboxes) {
		log_warn("sandbox.refused", "%d sandboxes running, the maximum: create refused (429)", running);
		*retry_s = 5;
		snprintf(why, whysz, "the appliance runs its maximum of %d sandboxes: kill one or retry later",
			 a->cfg.max_sandboxes);
		return 429;
	}
	long long avail = mem_available_mib(a->cfg.meminfo_path);
	if (avail >= 0 && avail < a->cfg.min_free_mib) {
		log_warn("sandbox.refused", "%lld MiB of memory available, %d kept free: create refused (429)", avail,
			 a->cfg.min_free_mib);
		*retry_s = 10;
		snprintf(why, whysz,
			 "the appliance is low on memory (%lld MiB available, %d MiB kept free): retry later", avail,
			 a->cfg.min_free_mib);
		return 429;
	}
	return 0;
}

bool admission_ok(struct api *a, struct http_conn *c)
{
	char why[256], retry[16];
	int retry_s = 0;
	if (admission_check(a, why, sizeof why, &retry_s) == 0)
		return true;
	snprintf(retry, sizeof retry, "%d", retry_s);
	http_add_header(c, "Retry-After", retry);
	http_respond_error(c, 429, "%s", why);
	return false;
}
