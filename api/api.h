/*
 * api.h - the E2B control plane (cube-api): REST on :3000 for sandboxes and
 * templates, API-key auth, the sandbox registry in memory and on disk, the
 * TTL reaper.
 *
 * The core never calls cube-vmm itself: every backend call goes through a
 * struct vm_ops, which main_api.c fills with api/vm.c and the unit tests
 * fill with fakes that need no KVM. Backend calls block, so they run on a
 * worker pool (api/worker.h); the event loop never waits for them.
 */
#ifndef CUBE_API_API_H
#define CUBE_API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/http.h"
#include "../lib/loop.h"
#include "vm.h"

struct vm_ops {
	pid_t (*start)(const struct vm_spec *spec, char *err, size_t errsz);
	int (*stop)(pid_t pid, const struct vm_spec *spec, int timeout_ms);
	int (*pause)(pid_t pid, const struct vm_spec *spec, char *err, size_t errsz);
	pid_t (*resume)(const struct vm_spec *spec, char *err, size_t errsz);
	bool (*alive)(pid_t pid, const struct vm_spec *spec);
	/* The warm pool (api/pool.h); both NULL: no pool, cold starts only. */
	pid_t (*prestart)(const struct vm_spec *spec, char *err, size_t errsz);
	int (*claim)(pid_t pid, const struct vm_spec *spec, char *err, size_t errsz);
	/* Snapshots (api/snapshots.c); NULL: not offered. */
	int (*checkpoint)(pid_t pid, const struct vm_spec *spec, const char *snap_dir, char *err, size_t errsz);
	int (*template_build)(const char *template_dir, const char *kernel, const char *rootfs, int cpus, int mem_mib,
			      struct template_start *start, void (*progress)(void *arg, int pct, const char *phase),
			      void *arg, char *err, size_t errsz);
};

/* The admin socket in the run dir: HTTP without API keys, for root only. */
#define API_ADMIN_SOCKET "api.sock"

struct api_config {
	const char *state_dir; /* default /var/lib/cubeos */
	const char *run_dir;   /* default /run/cubeos; holds API_ADMIN_SOCKET */
	const char *domain;    /* default cubeos.local */
	const char *vmm_path;  /* NULL: the backend's default */
	/* The default templates are built at start (template_defaults.c): the
	 * guest kernel with every <templates_dir>/<name>/rootfs.ext4, and `base`
	 * from base_rootfs when templates_dir has none. */
	const char *base_kernel;   /* default /usr/lib/cubeos/vmlinux */
	const char *base_rootfs;   /* default /usr/lib/cubeos/rootfs.ext4 */
	const char *templates_dir; /* default /usr/lib/cubeos/templates */
	int base_cpus, base_mem_mib;
	int workers;		  /* backend threads, default 4 */
	unsigned ttl_interval_ms; /* how often expiry is checked, default 1000 */
	int64_t max_timeout_s;	  /* default 86400 */
	int stop_timeout_ms;	  /* grace for a VMM to shut down, default 5000 */
	/* Admission (admission.c): a create is 429 when this many sandboxes run
	 * (default 2000) or when MemAvailable in meminfo_path (/proc/meminfo)
	 * is below min_free_mib (default 256). */
	int max_sandboxes;
	int min_free_mib;
	const char *meminfo_path;
	/* Warm VMMs per template unless DIR/config/pool.json says otherwise;
	 * 0: none, every create starts cold (cube-api's --pool-size: 2). */
	int pool_size;
	unsigned pool_interval_ms; /* pool.json, template and liveness checks, default 2000 */
};

struct api;

/* Loads the registry (keeping sandboxes whose VMM still runs), starts the
 * TTL timer, and starts building the base template if it is missing. The
 * caller then listens with http_server_listen_* on api_server(). */
struct api *api_new(struct loop *l, const struct api_config *cfg, const struct vm_ops *ops);
struct http_server *api_server(struct api *a);
/* Finishes backend jobs in flight, then frees everything. Sandbox VMMs
 * keep running: a restarted api finds them again. The warm pool's VMMs are
 * stopped. */
void api_free(struct api *a);

#endif
