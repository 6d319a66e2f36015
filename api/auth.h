/*
 * auth.h - API key checks against DIR/config/apikeys.json.
 *
 * The admin console (cubeos) writes that file; it holds only SHA-256 hashes
 * of the keys. The file is looked at (stat) on every check and re-read when
 * its identity, size or mtime changed, so a key made at the console works at
 * once and a revoked key stops working at once, without a restart.
 */
#ifndef CUBE_API_AUTH_H
#define CUBE_API_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth {
	char *path;
	/* what the cached hashes were read from */
	bool loaded;
	uint64_t dev, ino, size;
	int64_t mtime_ns;
	char (*hashes)[65];
	size_t nhashes;
};

void auth_init(struct auth *a, const char *apikeys_path);
void auth_free(struct auth *a);
/* True if key (the X-API-Key header value, may be NULL) is a current key.
 * On false, why says what to tell the client. */
bool auth_check(struct auth *a, const char *key, const char **why);

#endif
