/* auth.c - API keys (see auth.h). */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../lib/fileio.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/sha256.h"

#define APIKEYS_MAX_BYTES (1024 * 1024)

void auth_init(struct auth *a, const char *apikeys_path)
{
	memset(a, 0, sizeof *a);
	a->path = strdup(apikeys_path);
}

static void drop_hashes(struct auth *a)
{
	free(a->hashes);
	a->hashes = NULL;
	a->nhashes = 0;
}

void auth_free(struct auth *a)
{
	drop_hashes(a);
	free(a->path);
	memset(a, 0, sizeof *a);
}

static bool is_hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* Replaces the cached hashes with the file's. A damaged file leaves no key
 * valid: failing closed is the only safe reading of a file we cannot parse. */
static void reload(struct auth *a)
{
	drop_hashes(a);
	size_t len = 0;
	char *text = file_read_all(a->path, APIKEYS_MAX_BYTES, &len);
	if (!text) {
		if (errno != ENOENT)
			log_error("auth.load", "cannot read %s: %s", a->path, strerror(errno));
		return;
	}
	char err[160];
	struct json *root = json_parse(text, len, err, sizeof err);
	free(text);
	const struct json *keys = json_get(root, "keys");
	if (!keys || keys->type != JSON_ARRAY) {
		log_error("auth.load", "%s is damaged (%s): no API key is accepted", a->path,
			  root ? "no \"keys\" array" : err);
		json_free(root);
		return;
	}
	a->hashes = calloc(keys->count + 1, sizeof *a->hashes);
	for (const struct json *k = keys->child; k; k = k->next) {
		const char *h = json_get_str(k, "sha256");
		if (is_hex64(h))
			memcpy(a->hashes[a->nhashes++], h, 65);
	}
	json_free(root);
	log_info("auth.load", "%zu API key(s) from %s", a->nhashes, a->path);
}

/* Re-reads the file when it is not the one we read last. */
static void refresh(struct auth *a)
{
	struct stat st;
	if (stat(a->path, &st) < 0) {
		if (a->loaded && a->nhashes)
			log_warn("auth.load", "%s is gone: no API key is accepted", a->path);
		drop_hashes(a);
		a->loaded = true;
		a->dev = a->ino = a->size = 0;
		a->mtime_ns = 0;
		return;
	}
	int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (a->loaded && a->dev == (uint64_t)st.st_dev && a->ino == (uint64_t)st.st_ino &&
	    a->size == (uint64_t)st.st_size && a->mtime_ns == mtime_ns)
		return;
	reload(a);
	a->loaded = true;
	a->dev = st.st_dev;
	a->ino = st.st_ino;
	a->size = st.st_size;
	a->mtime_ns = mtime_ns;
}

/* Compares without an early exit, so response times say nothing about how
 * much of a hash matched. */
static bool same_hash(const char *a, const char *b)
{
	unsigned char d = 0;
	for (int i = 0; i < 64; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

bool auth_check(struct auth *a, const char *key, const char **why)
{
	refresh(a);
	if (!key || !*key) {
		*why = "missing X-API-Key header";
		return false;
	}
	uint8_t d[SHA256_DIGEST_LEN];
	sha256(key, strlen(key), d);
	char hex[65];
	for (int i = 0; i < SHA256_DIGEST_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	bool ok = false;
	for (size_t i = 0; i < a->nhashes; i++)
		ok |= same_hash(hex, a->hashes[i]);
	if (!ok)
		*why = a->nhashes ? "invalid API key" : "invalid API key (no API keys are configured)";
	return ok;
}
