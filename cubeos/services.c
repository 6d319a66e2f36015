/*
 * services.c - the appliance's service table, in one place, and the JSON
 * form of a table used by test mode (--services FILE).
 *
 * The control plane: api (the E2B REST API on :3000; it owns the templates,
 * the sandbox registry and the VMMs) and proxy (sandbox traffic on :80). The
 * DNS responder joins here when it exists.
 */
#include "service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/json.h"

/* A NULL-terminated heap copy of a string list. */
static char **strv_dup(const char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	char **out = calloc(n + 1, sizeof *out);
	for (size_t i = 0; i < n; i++)
		out[i] = strdup(v[i]);
	return out;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

void service_def_clear(struct service_def *d)
{
	free(d->name);
	strv_free(d->argv);
	strv_free(d->deps);
	strv_free(d->env);
	memset(d, 0, sizeof *d);
}

void service_defs_free(struct service_def *defs, size_t n)
{
	for (size_t i = 0; defs && i < n; i++)
		service_def_clear(&defs[i]);
	free(defs);
}

/* One table entry; argv and deps are NULL-terminated lists copied by the caller. */
static void set_def(struct service_def *d, const char *name, const char *const *argv, const char *const *deps)
{
	d->name = strdup(name);
	d->argv = strv_dup(argv);
	d->deps = strv_dup(deps);
	d->env = strv_dup(NULL);
}

size_t appliance_services(const char *state_dir, struct service_def **out)
{
	/* The proxy only reads the registry the api writes, so it could run
	 * alone; it depends on the api for the order: started after it (the
	 * api has restored or cleaned the registry by then) and stopped before
	 * it at shutdown, so client connections end before their sandboxes. */
	const char *const api_argv[] = {"/usr/bin/cube-api", "--state", state_dir, "--run", SERVICES_RUN_DIR, NULL};
	const char *const proxy_argv[] = {"/usr/bin/cube-proxy", "--state", state_dir, "--run", SERVICES_RUN_DIR, NULL};
	const char *const proxy_deps[] = {"api", NULL};
	/* dns answers <domain> and *.<domain> with the appliance's address; it
	 * reads only config/domain, so it depends on nothing. */
	const char *const dns_argv[] = {"/usr/bin/cube-dns", "--state", state_dir, NULL};
	struct service_def *defs = calloc(3, sizeof *defs);
	set_def(&defs[0], "api", api_argv, NULL);
	set_def(&defs[1], "proxy", proxy_argv, proxy_deps);
	set_def(&defs[2], "dns", dns_argv, NULL);
	*out = defs;
	return 3;
}

/* A JSON array of strings into a NULL-terminated list; absent gives an empty list. */
static int strv_from_json(const struct json *arr, const char *what, char ***out, char *err, size_t errsz)
{
	*out = calloc((arr ? arr->count : 0) + 1, sizeof **out);
	if (!arr)
		return 0;
	if (arr->type != JSON_ARRAY) {
		snprintf(err, errsz, "\"%s\" must be an array of strings", what);
		return -1;
	}
	size_t i = 0;
	for (const struct json *e = arr->child; e; e = e->next) {
		if (e->type != JSON_STRING || strlen(e->str) != e->len) {
			snprintf(err, errsz, "\"%s\" must be an array of strings", what);
			return -1;
		}
		(*out)[i++] = strdup(e->str);
	}
	return 0;
}

int service_defs_from_json(const char *text, size_t len, struct service_def **out, size_t *n, char *err, size_t errsz)
{
	char perr[160];
	struct json *root = json_parse(text, len, perr, sizeof perr);
	if (!root) {
		snprintf(err, errsz, "service table: %s", perr);
		return -1;
	}
	if (root->type != JSON_ARRAY) {
		snprintf(err, errsz, "service table: expected a JSON array of services");
		json_free(root);
		return -1;
	}
	struct service_def *defs = calloc(root->count + 1, sizeof *defs);
	size_t i = 0;
	int rc = 0;
	for (const struct json *e = root->child; e && rc == 0; e = e->next, i++) {
		const char *name = json_get_str(e, "name");
		defs[i].name = strdup(name ? name : "");
		rc = strv_from_json(json_get(e, "argv"), "argv", &defs[i].argv, err, errsz);
		if (rc == 0)
			rc = strv_from_json(json_get(e, "deps"), "deps", &defs[i].deps, err, errsz);
		if (rc == 0)
			rc = strv_from_json(json_get(e, "env"), "env", &defs[i].env, err, errsz);
	}
	json_free(root);
	if (rc < 0) {
		service_defs_free(defs, i);
		return -1;
	}
	*out = defs;
	*n = i;
	return 0;
}
