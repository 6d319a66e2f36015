/* kv.c - string pairs for metadata and envVars (see kv.h). */
#include "kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		abort(); /* like buf.c: no half-working recovery from OOM */
	return d;
}

void kvs_set(struct kvs *k, const char *key, const char *val)
{
	for (size_t i = 0; i < k->n; i++) {
		if (strcmp(k->v[i].key, key) == 0) {
			free(k->v[i].val);
			k->v[i].val = xstrdup(val);
			return;
		}
	}
	struct kv *nv = realloc(k->v, (k->n + 1) * sizeof *nv);
	if (!nv)
		abort();
	k->v = nv;
	k->v[k->n].key = xstrdup(key);
	k->v[k->n].val = xstrdup(val);
	k->n++;
}

const char *kvs_get(const struct kvs *k, const char *key)
{
	for (size_t i = 0; i < k->n; i++)
		if (strcmp(k->v[i].key, key) == 0)
			return k->v[i].val;
	return NULL;
}

void kvs_free(struct kvs *k)
{
	for (size_t i = 0; i < k->n; i++) {
		free(k->v[i].key);
		free(k->v[i].val);
	}
	free(k->v);
	k->v = NULL;
	k->n = 0;
}

void kvs_write(const struct kvs *k, struct jw *w)
{
	jw_obj(w);
	for (size_t i = 0; i < k->n; i++)
		jw_kstr(w, k->v[i].key, k->v[i].val);
	jw_end(w);
}

/* Strings with a NUL inside cannot be stored as C strings or put in an
 * environment, so they are refused instead of being cut short silently. */
static bool has_nul(const char *s, size_t len)
{
	return strlen(s) != len;
}

int kvs_from_json(struct kvs *k, const struct json *obj, const char *field, char *err, size_t errsz)
{
	if (!obj || obj->type == JSON_NULL)
		return 0;
	if (obj->type != JSON_OBJECT) {
		snprintf(err, errsz, "%s must be an object of strings", field);
		return -1;
	}
	for (const struct json *m = obj->child; m; m = m->next) {
		if (m->key_len == 0 || has_nul(m->key, m->key_len)) {
			snprintf(err, errsz, "%s has an empty key or a key with a NUL byte", field);
			return -1;
		}
		if (m->type != JSON_STRING || has_nul(m->str, m->len)) {
			snprintf(err, errsz, "%s.%.64s must be a string (without NUL bytes)", field, m->key);
			return -1;
		}
		kvs_set(k, m->key, m->str);
	}
	return 0;
}

bool kvs_contains(const struct kvs *have, const struct kvs *want)
{
	for (size_t i = 0; i < want->n; i++) {
		const char *v = kvs_get(have, want->v[i].key);
		if (!v || strcmp(v, want->v[i].val) != 0)
			return false;
	}
	return true;
}
