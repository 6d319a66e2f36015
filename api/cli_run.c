/* cli_run.c - `cube` talking to cube-api: the endpoint, the calls, and
 * each command's output (see cli.h). Blocking lib/http client. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/http.h"
#include "cli.h"
#include "create_req.h"
#include "registry.h"

#define CALL_TIMEOUT_MS	  120000 /* a kill waits for the VMM to stop */
#define UPLOAD_TIMEOUT_MS 600000 /* the api stores the whole tarball before it answers */
#define DEFAULT_API	  "http://127.0.0.1:3000"

static const char *const admin_sockets[] = {"/run/cubeos/run/api.sock", "/run/cubeos/api.sock"};

/* --- endpoint ------------------------------------------------------------------- */

int cli_endpoint_parse(const char *url, struct cli_endpoint *ep, char *err, size_t errsz)
{
	memset(ep, 0, sizeof *ep);
	const char *path = strncmp(url, "unix:", 5) == 0 ? url + 5 : url[0] == '/' ? url : NULL;
	if (path) {
		if (path[0] != '/' || strlen(path) >= sizeof ep->path) {
			snprintf(err, errsz, "--api %s: a unix socket needs an absolute path under %zu bytes", url,
				 sizeof ep->path);
			return -1;
		}
		ep->is_unix = true;
		snprintf(ep->path, sizeof ep->path, "%s", path);
		return 0;
	}
	if (strncmp(url, "https://", 8) == 0) {
		snprintf(err, errsz, "--api %s: the api speaks plain HTTP on port 3000 (use http://)", url);
		return -1;
	}
	const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
	size_t hostlen = strcspn(p, ":/");
	const char *rest = p + hostlen;
	if (p[0] == '[') { /* [v6]:port */
		const char *close = strchr(p, ']');
		hostlen = close ? (size_t)(close - p - 1) : 0;
		p++;
		rest = close ? close + 1 : p;
	}
	ep->port = 3000;
	if (hostlen == 0 || hostlen >= sizeof ep->host) {
		snprintf(err, errsz, "--api %s: expected http://HOST[:PORT] or unix:/PATH", url);
		return -1;
	}
	snprintf(ep->host, sizeof ep->host, "%.*s", (int)hostlen, p);
	if (*rest == ':') {
		char *end;
		long port = strtol(rest + 1, &end, 10);
		if (end == rest + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
			snprintf(err, errsz, "--api %s: bad port", url);
			return -1;
		}
		ep->port = (int)port;
		rest = end;
	}
	if (*rest == '/') {
		snprintf(ep->prefix, sizeof ep->prefix, "%s", rest);
		size_t n = strlen(ep->prefix);
		while (n && ep->prefix[n - 1] == '/')
			ep->prefix[--n] = '\0';
	}
	return 0;
}

int cli_endpoint_default(const char *api, struct cli_endpoint *ep, char *err, size_t errsz)
{
	if (api)
		return cli_endpoint_parse(api, ep, err, errsz);
	const char *env = getenv("CUBE_API_URL");
	if (env && *env)
		return cli_endpoint_parse(env, ep, err, errsz);
	for (size_t i = 0; i < sizeof admin_sockets / sizeof admin_sockets[0]; i++)
		if (access(admin_sockets[i], R_OK | W_OK) == 0)
			return cli_endpoint_parse(admin_sockets[i], ep, err, errsz);
	return cli_endpoint_parse(DEFAULT_API, ep, err, errsz);
}

/* --- calls --------------------------------------------------------------------------- */

struct cli_ctx {
	const struct cli_args *a;
	struct cli_endpoint ep;
	const char *key;
	FILE *out, *err;
};

static void describe_endpoint(const struct cli_endpoint *ep, char *out, size_t n)
{
	if (ep->is_unix)
		snprintf(out, n, "unix:%s", ep->path);
	else
		snprintf(out, n, "http://%s:%d%s", ep->host, ep->port, ep->prefix);
}

struct call_body {
	const void *data;
	size_t len;
	const char *ctype;
	int timeout_ms;
};

/* One request. The HTTP status, or -1 with the reason printed. */
static int call_with(struct cli_ctx *x, const char *method, const char *path, const struct call_body *cb,
		     struct http_response *r)
{
	char where[600];
	describe_endpoint(&x->ep, where, sizeof where);
	int fd = x->ep.is_unix ? http_connect_unix(x->ep.path) : http_connect_tcp(x->ep.host, x->ep.port, 5000);
	if (fd < 0) {
		fprintf(x->err, "%s: cannot reach the api at %s: %s\n", x->a->prog, where, strerror(errno));
		return -1;
	}
	char host[300], keyline[300], target[2048];
	snprintf(host, sizeof host, "Host: %s", x->ep.is_unix ? "cube-api" : x->ep.host);
	snprintf(keyline, sizeof keyline, "X-API-Key: %s", x->key ? x->key : "");
	snprintf(target, sizeof target, "%s%s", x->ep.prefix, path);
	const char *headers[5] = {host, "Connection: close"};
	int nh = 2;
	if (x->key && *x->key)
		headers[nh++] = keyline;
	char ctype[128];
	if (cb->data) {
		snprintf(ctype, sizeof ctype, "Content-Type: %s", cb->ctype);
		headers[nh++] = ctype;
	}
	memset(r, 0, sizeof *r);
	int rc = http_request(fd, method, target, headers, cb->data, cb->len, r, cb->timeout_ms, NULL, NULL);
	close(fd);
	if (rc < 0) {
		fprintf(x->err, "%s: no answer from the api at %s: %s\n", x->a->prog, where, strerror(errno));
		return -1;
	}
	return r->status;
}

static int call(struct cli_ctx *x, const char *method, const char *path, const char *body, struct http_response *r)
{
	struct call_body cb = {body, body ? strlen(body) : 0, "application/json", CALL_TIMEOUT_MS};
	return call_with(x, method, path, &cb, r);
}

/* POST /templates/upload with the archive as the body, mapped, not read. */
static int upload(struct cli_ctx *x, struct http_response *r)
{
	const char *file = x->a->create.archive;
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		fprintf(x->err, "%s: --archive %s: %s\n", x->a->prog, file,
			fd < 0 ? strerror(errno) : "not a non-empty regular file");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		fprintf(x->err, "%s: --archive %s: %s\n", x->a->prog, file, strerror(errno));
		return -1;
	}
	struct buf target = BUF_INIT;
	cli_upload_target(x->a, &target);
	buf_putc(&target, '\0');
	if (!x->a->json)
		fprintf(x->out, "uploading %s (%lld bytes)\n", file, (long long)st.st_size);
	struct call_body cb = {map, (size_t)st.st_size, "application/octet-stream", UPLOAD_TIMEOUT_MS};
	int status = call_with(x, "POST", target.data, &cb, r);
	buf_free(&target);
	munmap(map, (size_t)st.st_size);
	return status;
}

static struct json *body_json(const struct http_response *r)
{
	return json_parse(r->body.data ? r->body.data : "", r->body.len, NULL, 0);
}

/* The api's {"code","message"} error, printed; exit status 1. */
static int report_error(struct cli_ctx *x, const char *what, const struct http_response *r)
{
	struct json *j = body_json(r);
	const char *msg = j ? json_get_str(j, "message") : NULL;
	fprintf(x->err, "%s: %s: %s (HTTP %d)\n", x->a->prog, what, msg ? msg : "the api refused", r->status);
	if (r->status == 401 && !x->key && !x->ep.is_unix)
		fprintf(x->err, "%s: give an API key with --api-key or E2B_API_KEY\n", x->a->prog);
	json_free(j);
	return 1;
}

static void print_buf(struct cli_ctx *x, struct buf *b)
{
	if (b->len)
		fwrite(b->data, 1, b->len, x->out);
	fflush(x->out);
	buf_free(b);
}

static void print_raw(struct cli_ctx *x, const struct http_response *r)
{
	fwrite(r->body.data ? r->body.data : "", 1, r->body.len, x->out);
	if (!r->body.len || r->body.data[r->body.len - 1] != '\n')
		fputc('\n', x->out);
	fflush(x->out);
}

/* GET path, printed as a table (or raw with --json). */
static int list(struct cli_ctx *x, const char *path, const char *what,
		void (*format)(const struct json *, struct buf *))
{
	struct http_response r;
	int status = call(x, "GET", path, NULL, &r);
	if (status < 0)
		return 1;
	int rc = 0;
	if (status != 200) {
		rc = report_error(x, what, &r);
	} else if (x->a->json) {
		print_raw(x, &r);
	} else {
		struct json *j = body_json(&r);
		struct buf b = BUF_INIT;
		format(j, &b);
		print_buf(x, &b);
		json_free(j);
	}
	http_response_free(&r);
	return rc;
}

/* Every page of GET /v2/sandboxes (100 at most each, X-Next-Token). */
static int list_sandboxes(struct cli_ctx *x)
{
	struct buf all = BUF_INIT;
	struct jw w;
	jw_init(&w, &all);
	jw_arr(&w);
	char token[256] = "";
	int rc = 0;
	for (int page = 0; page < 1000 && rc == 0; page++) {
		char path[512];
		snprintf(path, sizeof path, "/v2/sandboxes?state=running,paused&limit=100%s%s",
			 token[0] ? "&nextToken=" : "", token);
		struct http_response r;
		int status = call(x, "GET", path, NULL, &r);
		if (status < 0)
			rc = 1;
		else if (status != 200)
			rc = report_error(x, "list", &r);
		struct json *j = rc ? NULL : body_json(&r);
		for (const struct json *s = j && j->type == JSON_ARRAY ? j->child : NULL; s; s = s->next)
			jw_value(&w, s);
		json_free(j);
		const char *next = rc ? NULL : http_header_get(&r.head, "X-Next-Token");
		bool more = next && *next && strspn(next, "abcdefghijklmnopqrstuvwxyz0123456789-_") == strlen(next) &&
			    strlen(next) < sizeof token;
		if (more)
			snprintf(token, sizeof token, "%s", next);
		if (status >= 0)
			http_response_free(&r);
		if (!more)
			break;
	}
	jw_end(&w);
	if (rc == 0) {
		if (x->a->json) {
			buf_putc(&all, '\n');
			print_buf(x, &all);
			return 0;
		}
		struct json *j = json_parse(all.data, all.len, NULL, 0);
		struct buf b = BUF_INIT;
		cli_format_sandboxes(j, &b);
		print_buf(x, &b);
		json_free(j);
	}
	buf_free(&all);
	return rc;
}

/* DELETE path; 204 prints done_fmt with id. */
static int delete (struct cli_ctx *x, const char *path, const char *id, const char *what, const char *done)
{
	struct http_response r;
	int status = call(x, "DELETE", path, NULL, &r);
	if (status < 0)
		return 1;
	int rc = 0;
	if (status == 204 || status == 200)
		fprintf(x->out, "%s %s %s\n", what, id, done);
	else
		rc = report_error(x, what, &r);
	http_response_free(&r);
	return rc;
}

/* --- watch ------------------------------------------------------------------------------ */

static bool looks_like_build_id(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	}
	return true;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

struct watch_state {
	char phase[32];
	int64_t pct;
	int64_t offset; /* log entries printed */
};

/* Prints what is new in one status answer; 1 while the build goes on, 0
 * ready, -1 failed. */
static int show_status(struct cli_ctx *x, const struct json *j, struct watch_state *w)
{
	const char *status = json_get_str(j, "status");
	const char *phase = json_get_str(j, "phase");
	int64_t pct = json_get_int(j, "progress", 0);
	struct buf b = BUF_INIT;
	const struct json *entries = json_get(j, "logEntries");
	for (const struct json *e = entries ? entries->child : NULL; e; e = e->next, w->offset++)
		cli_format_log_entry(e, &b);
	if (phase && (strcmp(phase, w->phase) != 0 || pct != w->pct)) {
		cli_format_progress(phase, pct, &b);
		snprintf(w->phase, sizeof w->phase, "%s", phase);
		w->pct = pct;
	}
	print_buf(x, &b);
	if (status && strcmp(status, "ready") == 0) {
		fprintf(x->out, "template %s ready (build %s)\n", json_get_str(j, "templateID"),
			json_get_str(j, "buildID"));
		return 0;
	}
	if (!status || strcmp(status, "error") == 0) {
		const struct json *reason = json_get(j, "reason");
		const char *msg = reason ? json_get_str(reason, "message") : NULL;
		fprintf(x->err, "%s: build %s of template %s failed: %s\n", x->a->prog, json_get_str(j, "buildID"),
			json_get_str(j, "templateID"), msg ? msg : "no reason given");
		return -1;
	}
	return 1;
}

/* Polls the build's status until it ends. */
static int watch_build(struct cli_ctx *x, const char *template_id, const char *build_id)
{
	struct watch_state w = {.pct = -1};
	time_t start = time(NULL);
	for (;;) {
		char path[512];
		if (template_id)
			snprintf(path, sizeof path, "/templates/%s/builds/%s/status?logsOffset=%lld", template_id,
				 build_id, (long long)w.offset);
		else
			snprintf(path, sizeof path, "/templates/builds/%s?logsOffset=%lld", build_id,
				 (long long)w.offset);
		struct http_response r;
		int status = call(x, "GET", path, NULL, &r);
		if (status < 0)
			return 1;
		if (status != 200) {
			int rc = report_error(x, "watch", &r);
			http_response_free(&r);
			return rc;
		}
		struct json *j = body_json(&r);
		if (x->a->json)
			print_raw(x, &r);
		int more = j ? (x->a->json ? 1 : show_status(x, j, &w)) : -1;
		if (x->a->json && j) {
			const char *st = json_get_str(j, "status");
			more = st && strcmp(st, "ready") == 0 ? 0 : st && strcmp(st, "error") == 0 ? -1 : 1;
			const struct json *e = json_get(j, "logEntries");
			w.offset += e ? (int64_t)e->count : 0;
		}
		json_free(j);
		http_response_free(&r);
		if (more <= 0)
			return more == 0 ? 0 : 1;
		if (x->a->timeout_s && time(NULL) - start >= x->a->timeout_s) {
			fprintf(x->err, "%s: watch: still building after %d s\n", x->a->prog, x->a->timeout_s);
			return 1;
		}
		sleep_ms(x->a->interval_ms);
	}
}

/* BUILD (a UUID) or TEMPLATE (its last build). */
static int watch(struct cli_ctx *x, const char *target)
{
	if (looks_like_build_id(target))
		return watch_build(x, NULL, target);
	if (!template_id_valid(target)) {
		fprintf(x->err, "%s: watch: \"%s\" is neither a build id nor a template name\n", x->a->prog, target);
		return 2;
	}
	char path[256];
	snprintf(path, sizeof path, "/templates/%s", target);
	struct http_response r;
	int status = call(x, "GET", path, NULL, &r);
	if (status < 0)
		return 1;
	if (status != 200) {
		int rc = report_error(x, "watch", &r);
		http_response_free(&r);
		return rc;
	}
	struct json *j = body_json(&r);
	char tid[160] = "", bid[160] = "";
	snprintf(tid, sizeof tid, "%s", j && json_get_str(j, "templateID") ? json_get_str(j, "templateID") : target);
	snprintf(bid, sizeof bid, "%s", j && json_get_str(j, "buildID") ? json_get_str(j, "buildID") : tid);
	json_free(j);
	http_response_free(&r);
	return watch_build(x, tid, bid);
}

/* --- create -------------------------------------------------------------------------------- */

#define REGISTRY_FILE_MAX (256 * 1024)

/* The private registry's password and CA, read into c (the caller frees
 * them). 0, or -1 after saying why. */
static int read_registry_access(struct cli_ctx *x, struct cli_create *c, char **password, char **ca)
{
	*password = *ca = NULL;
	if (c->registry_user) {
		const char *env = getenv("CUBE_REGISTRY_PASSWORD");
		if (c->registry_password_file)
			*password = file_read_all(c->registry_password_file, REGISTRY_FILE_MAX, NULL);
		else if (env)
			*password = strdup(env);
		if (!*password) {
			fprintf(x->err, "%s: --registry-user %s: %s\n", x->a->prog, c->registry_user,
				c->registry_password_file ? strerror(errno)
							  : "no password: give --registry-password-file or set "
							    "CUBE_REGISTRY_PASSWORD");
			return -1;
		}
		(*password)[strcspn(*password, "\r\n")] = '\0';
		c->registry_password = *password;
	}
	if (c->registry_ca_file) {
		*ca = file_read_all(c->registry_ca_file, REGISTRY_FILE_MAX, NULL);
		if (!*ca) {
			fprintf(x->err, "%s: --registry-ca %s: %s\n", x->a->prog, c->registry_ca_file, strerror(errno));
			return -1;
		}
		c->registry_ca_pem = *ca;
	}
	return 0;
}

static void free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

static int create(struct cli_ctx *x)
{
	struct cli_args a = *x->a;
	char *password, *ca;
	int bad = read_registry_access(x, &a.create, &password, &ca);
	struct buf body = BUF_INIT;
	if (!bad)
		cli_create_body(&a, &body);
	free_secret(password);
	free(ca);
	if (bad)
		return 1;
	buf_putc(&body, '\0');
	struct http_response r;
	int status = x->a->create.archive ? upload(x, &r) : call(x, "POST", "/templates", body.data, &r);
	explicit_bzero(body.data, body.len);
	buf_free(&body);
	if (status < 0)
		return 1;
	if (status != 202 && status != 201) {
		int rc = report_error(x, "create", &r);
		http_response_free(&r);
		return rc;
	}
	struct json *j = body_json(&r);
	char tid[160], bid[160];
	snprintf(tid, sizeof tid, "%s", j && json_get_str(j, "templateID") ? json_get_str(j, "templateID") : "?");
	snprintf(bid, sizeof bid, "%s", j && json_get_str(j, "buildID") ? json_get_str(j, "buildID") : "?");
	json_free(j);
	if (x->a->json)
		print_raw(x, &r);
	else
		fprintf(x->out, "template %s: build %s queued\n", tid, bid);
	http_response_free(&r);
	if (x->a->create.wait)
		return watch_build(x, tid, bid);
	if (!x->a->json)
		fprintf(x->out, "follow it with: %s tpl watch %s\n", x->a->prog, bid);
	return 0;
}

/* --- main ---------------------------------------------------------------------------------- */

static int run(struct cli_ctx *x)
{
	const struct cli_args *a = x->a;
	char path[256];
	switch (a->cmd) {
	case CLI_TPL_LIST: return list(x, "/templates", "list", cli_format_templates);
	case CLI_SANDBOX_LIST: return list_sandboxes(x);
	case CLI_TPL_DELETE:
		if (!template_id_valid(a->target)) {
			fprintf(x->err, "%s: delete: \"%s\" is not a template name\n", a->prog, a->target);
			return 2;
		}
		snprintf(path, sizeof path, "/templates/%s", a->target);
		return delete (x, path, a->target, "template", "deleted");
	case CLI_SANDBOX_KILL:
		if (!sandbox_id_valid(a->target)) {
			fprintf(x->err, "%s: kill: \"%s\" is not a sandbox id (lowercase letters and digits)\n",
				a->prog, a->target);
			return 2;
		}
		snprintf(path, sizeof path, "/sandboxes/%s", a->target);
		return delete (x, path, a->target, "sandbox", "killed");
	case CLI_TPL_WATCH: return watch(x, a->target);
	case CLI_TPL_CREATE_IMAGE:
	case CLI_TPL_CREATE_ROOTFS: return create(x);
	case CLI_HELP: break;
	}
	return 2;
}

int cli_main(int argc, char **argv, FILE *out, FILE *errf)
{
	struct cli_args a;
	char err[512];
	if (cli_parse(argc, argv, &a, err, sizeof err) < 0) {
		fprintf(errf, "%s: %s\n", a.prog, err);
		return 2;
	}
	if (a.cmd == CLI_HELP) {
		struct buf b = BUF_INIT;
		cli_usage(a.prog, a.help_topic, &b);
		fwrite(b.data, 1, b.len, out);
		buf_free(&b);
		return 0;
	}
	struct cli_ctx x = {.a = &a, .out = out, .err = errf};
	x.key = a.api_key ? a.api_key : getenv("E2B_API_KEY");
	if (cli_endpoint_default(a.api, &x.ep, err, sizeof err) < 0) {
		fprintf(errf, "%s: %s\n", a.prog, err);
		return 2;
	}
	return run(&x);
}
