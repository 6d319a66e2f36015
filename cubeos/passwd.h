/*
 * passwd.h - the admin password hash: PBKDF2-HMAC-SHA256 (RFC 8018) over
 * lib/sha256, stored as one line
 *
 *   pbkdf2-sha256$<iterations>$<salt hex>$<derived key hex>
 *
 * so the iteration count can be raised later without breaking old hashes.
 */
#ifndef CUBEOS_PASSWD_H
#define CUBEOS_PASSWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/sha256.h"

#define PASSWD_ITERATIONS 200000 /* well under a second per login, slow for guessing */
#define PASSWD_SALT_LEN	  16
#define PASSWD_HASH_MAX	  160

void hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[SHA256_DIGEST_LEN]);
void pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt, size_t saltlen, unsigned iterations, uint8_t *out,
		   size_t outlen);

/* Hashes pw with a fresh random salt into out (PASSWD_HASH_MAX). Returns 0 or -1. */
int passwd_hash(const char *pw, unsigned iterations, char *out, size_t outsz);
/* True if pw matches the stored line (compared in constant time). */
bool passwd_verify(const char *pw, const char *stored);

void hex_encode(const uint8_t *p, size_t n, char *out); /* out: 2n+1 */
int random_bytes(void *p, size_t n);			/* getrandom; 0 or -1 */

#endif
