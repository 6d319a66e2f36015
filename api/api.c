/* api.c - the cube-api daemon object, auth and routing (see api.h). */
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/log.h"
#include "apicore.h"
#include "registry.h"
#include "template_jobs.h"

#define API_MAX_BODY (1024 * 1024) /* create bodies are a few KiB; envVars may be larger */

static const char *or_default(const char *s, const char *def)
{
	return s && *s ? s : def;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void copy_config(struct api_config *dst, const struct api_config *src)
{
	*dst = *src;
	dst->state_dir = strdup(or_default(src->state_dir, "/var/lib/cubeos"));
	dst->run_dir = strdup(or_default(src->run_dir, "/run/cubeos"));
	dst->domain = strdup(or_default(src->domain, "cubeos.local"));
	dst->vmm_path = dup_or_null(src->vmm_path);
	dst->base_kernel = strdup(or_default(src->base_kernel, "/usr/lib/cubeos/vmlinux"));
	dst->base_rootfs = strdup(or_default(src->base_rootfs, "/usr/lib/cubeos/rootfs.ext4"));
	dst->templates_dir = strdup(or_default(src->templates_dir, "/usr/lib/cubeos/templates"));
	if (dst->base_cpus <= 0)
		dst->base_cpus = 2;
	if (dst->base_mem_mib <= 0)
		dst->base_mem_mib = 512;
	if (dst->workers <= 0)
		dst->workers = 4;
	if (!dst->ttl_interval_ms)
		dst->ttl_interval_ms = 1000;
	if (dst->max_timeout_s <= 0)
		dst->max_timeout_s = 86400;
	if (dst->stop_timeout_ms <= 0)
		dst->stop_timeout_ms = 5000;
	if (dst->max_sandboxes <= 0)
		dst->max_sandboxes = 2000;
	if (dst->min_free_mib <= 0)
		dst->min_free_mib = 256;
	dst->meminfo_path = strdup(or_default(src->meminfo_path, "/proc/meminfo"));
	if (dst->pool_size < 0)
		dst->pool_size = 0;
	if (!dst->pool_interval_ms)
		dst->pool_interval_ms = 2000;
}

static void free_config(struct api_config *c)
{
	free((char *)c->state_dir);
	free((char *)c->run_dir);
	free((char *)c->domain);
	free((char *)c->vmm_path);
	free((char *)c->base_kernel);
	free((char *)c->base_rootfs);
	free((char *)c->templates_dir);
	free((char *)c->meminfo_path);
}

/* --- shared helpers ---------------------------------------------------------- */

void respond_json(struct http_conn *c, int status, struct buf *body)
{
	http_respond(c, status, "application/json", body->data ? body->data : "", body->len);
	buf_free(body);
}

struct sandbox_entry *sandbox_find(struct api *a, const char *id)
{
	for (struct sandbox_entry *e = a->sandboxes; e; e = e->next)
		if (strcmp(e->rec.id, id) == 0)
			return e;
	return NULL;
}

void sandbox_unlink(struct api *a, struct sandbox_entry *e)
{
	for (struct sandbox_entry **pp = &a->sandboxes; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	sandbox_clear(&e->rec);
	free(e);
}

void sandbox_dir(const struct api *a, const char *id, char *out, size_t n)
{
	snprintf(out, n, "%s/sandboxes/%s", a->cfg.state_dir, id);
}

void sandbox_run_dir(const struct api *a, const char *id, char *out, size_t n)
{
	snprintf(out, n, "%s/sandboxes/%s", a->cfg.run_dir, id);
}

void template_dir(const struct api *a, const char *template_id, char *out, size_t n)
{
	snprintf(out, n, "%s/templates/%s", a->cfg.state_dir, template_id);
}

/* --- routing ----------------------------------------------------------------- */

static bool authorized(struct api *a, struct http_conn *c, struct http_req *req)
{
	/* The admin socket (see listen_admin_socket): only root can open it. */
	if (req->peer && strcmp(req->peer, "unix") == 0)
		return true;
	const char *why = NULL;
	if (auth_check(&a->auth, http_req_header(req, "X-API-Key"), &why))
		return true;
	log_info("api.auth", "401 %s %s from %s: %s", req->method, req->path, req->peer, why);
	http_respond_error(c, 401, "%s", why);
	return false;
}

static void handle(struct http_conn *c, struct http_req *req, void *arg)
{
	struct api *a = arg;
	if (strcmp(req->path, "/health") == 0) {
		http_respond(c, 200, "application/json", "{\"status\":\"ok\"}", 15);
		return;
	}
	if (!authorized(a, c, req))
		return;
	if (sandbox_route(a, c, req) || template_jobs_route(a, c, req) || template_route(a, c, req) ||
	    snapshot_route(a, c, req) || pool_admin_route(a, c, req) || pool_route(a, c, req))
		return;
	http_respond_error(c, 404, "no such API call: %s %s", req->method, req->path);
}

/*
 * The console's door: RUN/api.sock, a Unix socket only root can open (0600,
 * in a root-only run dir). Requests on it need no API key: whoever can open it
 * is root on the appliance already. The admin console's `sandbox kill` uses
 * it, so the console needs no key of its own. Failing to make it is logged;
 * the API on TCP works without it.
 */
static void listen_admin_socket(struct api *a)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/" API_ADMIN_SOCKET, a->cfg.run_dir);
	if (n < 0 || (size_t)n >= sizeof sa.sun_path) {
		log_warn("api.admin", "run dir path too long for the admin socket");
		return;
	}
	if (registry_mkdir_p(a->cfg.run_dir) < 0) {
		log_warn("api.admin", "cannot make %s: %s", a->cfg.run_dir, strerror(errno));
		return;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	unlink(sa.sun_path);
	mode_t old = umask(0177); /* the socket is born 0600: no window with looser rights */
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (rc < 0 || listen(fd, 16) < 0 || http_server_listen_fd(a->srv, fd) < 0) {
		log_warn("api.admin", "cannot listen on %s: %s", sa.sun_path, strerror(errno));
		close(fd);
		return;
	}
	log_info("api.admin", "admin socket %s (root only, no API key)", sa.sun_path);
}

/* POST /templates/upload takes a tarball; everything else stays small. */
static uint64_t body_limit(const struct http_head *h, void *arg)
{
	(void)arg;
	return template_body_limit(h, API_MAX_BODY);
}

struct api *api_new(struct loop *l, const struct api_config *cfg, const struct vm_ops *ops)
{
	struct api *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	a->loop = l;
	copy_config(&a->cfg, cfg);
	a->ops = *ops;
	char path[4096];
	snprintf(path, sizeof path, "%s/config/apikeys.json", a->cfg.state_dir);
	auth_init(&a->auth, path);
	/* Template uploads may be GiBs: they are spooled to the data disk, not
	 * to /tmp (RAM on the appliance). */
	struct http_server_config hc = {.max_body_bytes = API_MAX_BODY,
					.body_limit = body_limit,
					.spool_dir = a->cfg.state_dir,
					.server_name = "cube-api"};
	a->srv = http_server_new(l, &hc, handle, a);
	a->pool = worker_pool_new(l, a->cfg.workers);
	if (!a->srv || !a->pool) {
		log_error("api.init", "cannot create the HTTP server or the worker pool");
		api_free(a);
		return NULL;
	}
	listen_admin_socket(a);
	sandboxes_restore(a);
	ttl_start(a);
	template_jobs_start(a); /* builds cut short by a restart become errors */
	snapshot_start(a);	/* forks' snapshots whose sandboxes are all gone */
	templates_ensure_defaults(a);
	a->warm = pool_new(a);
	return a;
}

struct http_server *api_server(struct api *a)
{
	return a->srv;
}

void api_free(struct api *a)
{
	if (!a)
		return;
	ttl_stop(a);
	pool_close(a->warm); /* queues the stops of the pool's VMMs */
	/* Jobs in flight may still answer their connections: the server goes last. */
	worker_pool_free(a->pool);
	pool_free(a->warm);
	if (a->srv)
		http_server_free(a->srv);
	while (a->sandboxes)
		sandbox_unlink(a, a->sandboxes);
	auth_free(&a->auth);
	free_config(&a->cfg);
	free(a);
}
