/*
 * kv.h - an ordered list of string pairs: a sandbox's metadata and envVars.
 *
 * Both are small (a handful of entries), so a flat array with linear lookup
 * is simpler than a map and keeps the order the client sent.
 */
#ifndef CUBE_API_KV_H
#define CUBE_API_KV_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/json.h"

struct kv {
	char *key;
	char *val;
};

struct kvs {
	struct kv *v;
	size_t n;
};

/* Adds (or replaces) key = val; both are copied. */
void kvs_set(struct kvs *k, const char *key, const char *val);
const char *kvs_get(const struct kvs *k, const char *key);
void kvs_free(struct kvs *k);
/* Writes {"key":"val",...} as the next value of w. */
void kvs_write(const struct kvs *k, struct jw *w);
/* Fills k from a JSON object whose members are all strings. null is taken as
 * an empty object. On a wrong shape returns -1 with a message naming field
 * (e.g. "metadata.owner must be a string") in err. */
int kvs_from_json(struct kvs *k, const struct json *obj, const char *field, char *err, size_t errsz);
/* True if every pair of want is present in have with the same value. */
bool kvs_contains(const struct kvs *have, const struct kvs *want);

#endif
