/*
 * pool.h - the warm pool: per template, N VMMs restored from the template's
 * snapshot and left paused (vm_prestart), so a create only has to resume
 * one and hand it its identity (vm_claim) instead of restoring from scratch.
 *
 * A pool VMM is not a sandbox: it is in no registry, no list, no TTL. It is
 * made with the id the sandbox will have (its sockets and the VMM's --id
 * cannot change later), so its files are
 *
 *   RUN/sandboxes/<id>/    sockets and logs, as for any sandbox
 *   DIR/pool/<id>/disk.layer   its (still empty) disk layer; a claim moves
 *                          it into DIR/sandboxes/<id>/, so the registry
 *                          never sees a directory without a record
 *   RUN/pool/<id>.json     {"template","pid"}: how a restarted api finds
 *                          and stops the VMMs its predecessor left
 *
 * Sizes: DIR/config/pool.json {"<template>": N, ..., "*": N} (read at
 * start and whenever it changes), else api_config.pool_size; 0 means cold
 * starts only. Everything that blocks (restores, liveness pings, stops,
 * reading the templates) runs on the worker pool; the loop only keeps the
 * books. Log events: pool.fill, pool.take, pool.discard (template=,
 * sandbox=).
 */
#ifndef CUBE_API_POOL_H
#define CUBE_API_POOL_H

#include <stdbool.h>
#include <sys/types.h>

#include "../lib/http.h"
#include "registry.h"
#include "vm.h"

#define POOL_MAX_PER_TEMPLATE 64  /* a typo in pool.json must not eat the machine */
#define POOL_TEMPLATE_MAX     160 /* a template name in pool.json, with its NUL */

struct api;
struct warm_pool;

/* Creates the pool and starts it: first the leftovers of an earlier api
 * are stopped and removed, then the pools fill. */
struct warm_pool *pool_new(struct api *a);
/* Stops refilling and queues a stop for every waiting VMM; the caller then
 * drains the worker pool (api_free), which runs them. */
void pool_close(struct warm_pool *p);
/* Frees the books, after the worker pool has been drained. */
void pool_free(struct warm_pool *p);

/* Create: takes a waiting VMM of rec->template_id if there is one. Then
 * rec->id, rec->vsock and rec->control become the VMM's (the record's own
 * id was never shown to anyone) and rec->vmm_pid is the VMM, which the
 * start job claims; else rec is untouched and vmm_pid stays 0 (cold path).
 * A refill is queued either way. */
void pool_take(struct warm_pool *p, struct sandbox *rec);

/* Stops the waiting VMMs of a template now (a delete or a rebuild of it;
 * the periodic scan would notice too, a little later). A fill in flight
 * is discarded when it ends. Loop thread. */
void pool_drop_template(struct warm_pool *p, const char *template_id);

/* Worker thread, for the start job: moves the pool VMM's layer into
 * spec->sandbox_dir and claims it (ops.claim). 0, or -1 with err set; the VMM is
 * gone then and the caller starts the sandbox cold. */
int pool_claim(struct api *a, pid_t pid, const struct vm_spec *spec, char *err, size_t errsz);
/* Worker thread: the VMM is a sandbox now (its record is written), or is
 * gone: its marker goes. */
void pool_forget(struct api *a, const char *id);

/* GET /admin/pool: sizes, counts and members per template. */
bool pool_route(struct api *a, struct http_conn *c, struct http_req *req);
/* PUT /admin/pool (pool_admin.c): replaces pool.json; the next scan applies it. */
bool pool_admin_route(struct api *a, struct http_conn *c, struct http_req *req);

#endif
