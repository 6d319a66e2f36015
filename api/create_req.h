/*
 * create_req.h - the body of POST /sandboxes and POST /v2/sandboxes.
 *
 * Pure parsing (no daemon state), so it can be fuzzed on its own. Unknown
 * members are ignored (newer SDKs send network, mcp, autoResume...); null
 * counts as absent; a wrong type is refused with a message naming the field.
 */
#ifndef CUBE_API_CREATE_REQ_H
#define CUBE_API_CREATE_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"

#define CREATE_DEFAULT_TIMEOUT_S 300
#define TEMPLATE_ID_MAX		 128

struct create_req {
	char template_id[TEMPLATE_ID_MAX + 1];
	int64_t timeout_s;
	struct kvs metadata, env_vars;
	bool secure, allow_internet_access, auto_pause;
};

/* ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$: template ids name directories. */
bool template_id_valid(const char *id);

/* Parses body[0..len). 0, or -1 with a client-facing message in err. On
 * either answer, free with create_req_free. */
int create_req_parse(const char *body, size_t len, int64_t max_timeout_s, struct create_req *r, char *err,
		     size_t errsz);
void create_req_free(struct create_req *r);

/* Reads an optional integer member in [min, max] ("timeout" of the timeout,
 * connect and create bodies). Returns 0 and leaves *out alone when absent. */
int json_member_range(const struct json *obj, const char *key, int64_t min, int64_t max, int64_t *out, char *err,
		      size_t errsz);

#endif
