/* create_req.c - parsing the create-sandbox body (see create_req.h). */
#include "create_req.h"

#include <stdio.h>
#include <string.h>

#include "../lib/json.h"

bool template_id_valid(const char *id)
{
	size_t n = 0;
	if (!id || !id[0] || id[0] == '.' || id[0] == '-' || id[0] == '_')
		return false;
	for (; id[n]; n++) {
		char c = id[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
			  c == '_' || c == '-';
		if (!ok)
			return false;
	}
	return n <= TEMPLATE_ID_MAX;
}

static bool present(const struct json *j)
{
	return j && j->type != JSON_NULL;
}

int json_member_range(const struct json *obj, const char *key, int64_t min, int64_t max, int64_t *out, char *err,
		      size_t errsz)
{
	const struct json *j = json_get(obj, key);
	if (!present(j))
		return 0;
	if (j->type != JSON_NUMBER || !j->is_int) {
		snprintf(err, errsz, "%s must be an integer number of seconds", key);
		return -1;
	}
	if (j->i < min || j->i > max) {
		snprintf(err, errsz, "%s must be between %lld and %lld seconds", key, (long long)min, (long long)max);
		return -1;
	}
	*out = j->i;
	return 0;
}

static int get_bool(const struct json *obj, const char *key, bool def, bool *out, char *err, size_t errsz)
{
	const struct json *j = json_get(obj, key);
	*out = def;
	if (!present(j))
		return 0;
	if (j->type != JSON_BOOL) {
		snprintf(err, errsz, "%s must be a boolean", key);
		return -1;
	}
	*out = j->boolean;
	return 0;
}

static int get_template_id(const struct json *obj, struct create_req *r, char *err, size_t errsz)
{
	const struct json *j = json_get(obj, "templateID");
	if (!present(j)) {
		snprintf(err, errsz, "templateID is required");
		return -1;
	}
	if (j->type != JSON_STRING) {
		snprintf(err, errsz, "templateID must be a string");
		return -1;
	}
	if (strlen(j->str) != j->len || !template_id_valid(j->str)) {
		snprintf(err, errsz, "templateID must be 1-%d characters of A-Z a-z 0-9 . _ -", TEMPLATE_ID_MAX);
		return -1;
	}
	memcpy(r->template_id, j->str, j->len + 1);
	return 0;
}

static int parse_members(const struct json *obj, int64_t max_timeout_s, struct create_req *r, char *err, size_t errsz)
{
	if (get_template_id(obj, r, err, errsz) < 0 ||
	    json_member_range(obj, "timeout", 0, max_timeout_s, &r->timeout_s, err, errsz) < 0 ||
	    kvs_from_json(&r->metadata, json_get(obj, "metadata"), "metadata", err, errsz) < 0 ||
	    kvs_from_json(&r->env_vars, json_get(obj, "envVars"), "envVars", err, errsz) < 0 ||
	    /* Absent means secure: the current SDKs (Python 2.63, JS 2.51) no
	     * longer send the flag because E2B secures every sandbox, and an
	     * unsecured one is open to anyone who learns its id. */
	    get_bool(obj, "secure", true, &r->secure, err, errsz) < 0 ||
	    get_bool(obj, "allow_internet_access", true, &r->allow_internet_access, err, errsz) < 0 ||
	    get_bool(obj, "autoPause", false, &r->auto_pause, err, errsz) < 0)
		return -1;
	/* An environment variable name with '=' would split differently in the guest. */
	for (size_t i = 0; i < r->env_vars.n; i++) {
		if (strchr(r->env_vars.v[i].key, '=')) {
			snprintf(err, errsz, "envVars: the name \"%.64s\" contains '='", r->env_vars.v[i].key);
			return -1;
		}
	}
	return 0;
}

int create_req_parse(const char *body, size_t len, int64_t max_timeout_s, struct create_req *r, char *err, size_t errsz)
{
	memset(r, 0, sizeof *r);
	r->timeout_s = CREATE_DEFAULT_TIMEOUT_S;
	char perr[160];
	struct json *j = json_parse(body, len, perr, sizeof perr);
	if (!j) {
		snprintf(err, errsz, "malformed JSON body: %s", perr);
		return -1;
	}
	int rc = -1;
	if (j->type != JSON_OBJECT)
		snprintf(err, errsz, "the body must be a JSON object");
	else
		rc = parse_members(j, max_timeout_s, r, err, errsz);
	json_free(j);
	return rc;
}

void create_req_free(struct create_req *r)
{
	kvs_free(&r->metadata);
	kvs_free(&r->env_vars);
}
