/* pool_admin.c - PUT /admin/pool: sets the warm pool's sizes from outside.
 *
 * The body is what DIR/config/pool.json holds, {"<template>": N, ..., "*": N}
 * (N 0..POOL_MAX_PER_TEMPLATE; "*" for the templates it does not name). It
 * is checked whole, then written atomically over pool.json; the pool's next
 * scan (every pool_interval_ms) reads it, as it would an edit by hand. So a
 * benchmark can measure creates with and without a pool in one run, and an
 * operator can size pools without a shell. 200 with the new configuration;
 * 400 naming the first bad entry, and pool.json untouched. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../lib/fileio.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "apicore.h"
#include "create_req.h"
#include "pool.h"

/* NULL if the document is a valid pool configuration, else what is wrong. */
static const char *check_config(const struct json *doc, char *why, size_t n)
{
	if (!doc || doc->type != JSON_OBJECT)
		return "the body must be a JSON object {\"<template>\": size, \"*\": size}";
	for (const struct json *m = doc->child; m; m = m->next) {
		int64_t size;
		if (strcmp(m->key, "*") != 0 && (!template_id_valid(m->key) || strlen(m->key) >= POOL_TEMPLATE_MAX)) {
			snprintf(why, n, "\"%.64s\" is not a template name (or \"*\")", m->key);
			return why;
		}
		if (!json_as_int(m, &size) || size < 0 || size > POOL_MAX_PER_TEMPLATE) {
			snprintf(why, n, "\"%s\": the size must be a number from 0 to %d", m->key,
				 POOL_MAX_PER_TEMPLATE);
			return why;
		}
	}
	return NULL;
}

static void put_pool(struct api *a, struct http_conn *c, struct http_req *req)
{
	char perr[160], why[256], path[4200];
	struct json *doc = json_parse(req->body, req->body_len, perr, sizeof perr);
	const char *bad = doc ? check_config(doc, why, sizeof why) : perr;
	if (bad) {
		http_respond_error(c, 400, "%s", bad);
		json_free(doc);
		return;
	}
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	for (const struct json *m = doc->child; m; m = m->next) {
		jw_key(&w, m->key);
		jw_int(&w, m->i);
	}
	jw_end(&w);
	json_free(doc);
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/config", a->cfg.state_dir);
	snprintf(path, sizeof path, "%s/pool.json", dir);
	if (dir_make_all(dir, 0755) < 0 || file_replace(path, b.data, b.len, 0644, true) < 0) {
		http_respond_error(c, 500, "cannot write %s: %s", path, strerror(errno));
		buf_free(&b);
		return;
	}
	log_info("pool.config", "pool.json replaced through the API: %.*s", (int)b.len, b.data);
	respond_json(c, 200, &b);
}

bool pool_admin_route(struct api *a, struct http_conn *c, struct http_req *req)
{
	if (strcmp(req->path, "/admin/pool") != 0 || strcmp(req->method, "PUT") != 0)
		return false;
	put_pool(a, c, req);
	return true;
}
