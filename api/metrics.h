/*
 * metrics.h - GET /sandboxes/{id}/metrics: one sample of a running sandbox,
 * taken from outside the guest.
 *
 * The figures come from the sandbox's VMM: its control socket's `stats`
 * (guest RAM size and how much of it the host holds: RSS, PSS, private),
 * the VMM process's CPU time in /proc/<pid>/stat, and the allocated size of
 * the sandbox's writable disk layer. Asking the control socket blocks, so
 * the sample is taken on the api's worker pool; the loop never waits.
 *
 * The answer is the E2B shape, an array with one element:
 *   [{"timestamp","timestampUnix","cpuCount","cpuUsedPct","memUsed",
 *     "memTotal","memCache","diskUsed","diskTotal","memPss","memPrivate"}]
 *   memTotal   guest RAM (bytes)
 *   memUsed    guest RAM the host holds for this VM (RSS of its RAM mapping)
 *   memPss     its proportional share: pages shared with the other clones of
 *              the template snapshot count split among them (CubeOS extension)
 *   memPrivate pages only this sandbox holds (CubeOS extension)
 *   memCache   0 (the guest's page cache is not visible from the host)
 *   cpuUsedPct the VMM's CPU time over all of cpuCount, since the previous
 *              sample of this sandbox (the first one: since the VMM started)
 *   diskUsed   bytes the sandbox wrote above its template (its disk layer)
 *   diskTotal  the template's disk size
 * A paused sandbox has no VMM: [] (as E2B answers for one without samples).
 */
#ifndef CUBE_API_METRICS_H
#define CUBE_API_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/buf.h"
#include "../lib/http.h"

struct metrics_sample {
	int64_t ts_ms; /* wall clock */
	int cpu_count;
	double cpu_used_pct;
	uint64_t mem_used, mem_total, mem_cache, mem_pss, mem_private;
	uint64_t disk_used, disk_total;
};

/* Fills the memory figures (and cpu_count when the VMM lists its vCPUs)
 * from one `stats` reply line of the VMM's control socket. 0, or -1 with
 * err for a reply that is malformed or says ok:false. */
int metrics_parse_stats(const char *line, size_t len, struct metrics_sample *s, char *err, size_t errsz);

/* The E2B answer for one sample: a JSON array with one object. */
void metrics_write(const struct metrics_sample *s, struct buf *out);

/* Blocking: sends {"op":"stats"} to the control socket at path and reads
 * the reply line into reply (NUL-terminated). 0, or -1 with err. */
int metrics_query_vmm(const char *path, int timeout_ms, struct buf *reply, char *err, size_t errsz);

/* CPU time (user + system) of a process in clock ticks; -1 if unknown. */
int64_t metrics_process_ticks(pid_t pid);

/* cpuUsedPct from two CPU-time readings (ticks) taken ms apart, over cpus
 * vCPUs; 0..100. */
double metrics_cpu_pct(int64_t ticks_before, int64_t ticks_now, int64_t ms, int cpus);

struct api;
struct sandbox_entry;
/* Answers GET /sandboxes/{id}/metrics for e (a visible sandbox). */
void sandbox_metrics(struct api *a, struct http_conn *c, const struct sandbox_entry *e);

#endif
