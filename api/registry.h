/*
 * registry.h - the sandbox records on disk, DIR/sandboxes/<id>/sandbox.json.
 *
 * This file is the one reader and writer of sandbox.json. The api keeps the
 * records in memory and writes one back (atomically, lib/fileio
 * file_replace) on every change; the proxy only reads them with
 * registry_load. The JSON shape is the one in the control-plane contract.
 */
#ifndef CUBE_API_REGISTRY_H
#define CUBE_API_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/buf.h"
#include "../lib/json.h"
#include "kv.h"

#define SANDBOX_ID_LEN	  20 /* ids we make; ids we accept may be up to SANDBOX_ID_MAX */
#define SANDBOX_ID_MAX	  64
#define SANDBOX_TOKEN_LEN 64 /* 32 random bytes, hex */
#define ENVD_VERSION	  "0.6.13"

enum sandbox_state { SANDBOX_RUNNING, SANDBOX_PAUSED };

struct sandbox {
	char id[SANDBOX_ID_MAX + 1];
	char *template_id;
	char *client_id;
	char *alias;		    /* NULL if none */
	int64_t started_ms, end_ms; /* wall clock, ms since the epoch */
	int cpu_count, memory_mb, disk_size_mb;
	enum sandbox_state state;
	struct kvs metadata, env_vars;
	bool secure;
	char *envd_access_token;    /* NULL unless secure */
	char *traffic_access_token; /* NULL if none */
	bool allow_internet_access, auto_pause;
	pid_t vmm_pid; /* 0 when paused */
	char *vsock, *control;
};

/* ^[a-z0-9]{1,64}$: the proxy splits host names on '-', and ids become
 * directory names, so nothing else may pass. */
bool sandbox_id_valid(const char *id);
/* SANDBOX_ID_LEN chars of [a-z0-9] from getrandom. */
void sandbox_new_id(char out[SANDBOX_ID_LEN + 1]);
/* SANDBOX_TOKEN_LEN hex digits from getrandom. */
void sandbox_new_token(char out[SANDBOX_TOKEN_LEN + 1]);
const char *sandbox_state_name(enum sandbox_state s);

/* Frees the members (not rec itself) and zeroes it. */
void sandbox_clear(struct sandbox *rec);

/* A deep copy (dst is overwritten). */
void sandbox_copy(struct sandbox *dst, const struct sandbox *src);

/* The sandbox.json document. */
void sandbox_to_json(const struct sandbox *rec, struct buf *out);
/* Fills rec (zeroed first) from a parsed sandbox.json. -1 with err set if a
 * required field is missing or has the wrong type. */
int sandbox_from_json(const struct json *j, struct sandbox *rec, char *err, size_t errsz);

/* Reads DIR/sandboxes/<id>/sandbox.json. 0, or -1 with errno: EINVAL for a
 * malformed id or file, ENOENT if there is no such sandbox. */
int registry_load(const char *state_dir, const char *id, struct sandbox *rec);
/* Writes the record (creating its directory). Paused records are fsync'd:
 * they must survive a reboot, running ones cannot anyway. */
int registry_save(const char *state_dir, const struct sandbox *rec);
/* Removes DIR/sandboxes/<id> with everything in it. 0 if it is gone. */
int registry_remove(const char *state_dir, const char *id);
/* Calls fn for every DIR/sandboxes/<id> whose name is a valid id. Returns
 * the number of ids seen, or -1 if the directory cannot be read (a missing
 * directory is 0). */
int registry_scan(const char *state_dir, void (*fn)(void *arg, const char *id), void *arg);

/* Removes a directory tree (no symlinks followed). 0 if it is gone. */
int registry_remove_tree(const char *path);
/* mkdir -p with mode 0755. */
int registry_mkdir_p(const char *path);

/* --- wall-clock time as E2B writes it ---------------------------------- */
int64_t wall_ms(void);
/* "2026-11-23T11:00:00.123Z" */
void time_format(int64_t ms, char out[32]);
/* Accepts RFC 3339 UTC with optional fraction ("Z" or "+00:00"). */
int time_parse(const char *s, int64_t *ms);

#endif
