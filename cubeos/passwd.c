/* passwd.c - PBKDF2-HMAC-SHA256 password hashes; see passwd.h. */
#include "passwd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

void hex_encode(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hex_decode(const char *s, size_t n, uint8_t *out, size_t outsz)
{
	if (n % 2 || n / 2 > outsz)
		return -1;
	for (size_t i = 0; i < n; i += 2) {
		unsigned v;
		if (sscanf(s + i, "%2x", &v) != 1 || !strchr("0123456789abcdef", s[i]) ||
		    !strchr("0123456789abcdef", s[i + 1]))
			return -1;
		out[i / 2] = (uint8_t)v;
	}
	return (int)(n / 2);
}

int random_bytes(void *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom((char *)p + got, n - got, 0);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* HMAC (RFC 2104): keys longer than a block are hashed first. */
struct hmac {
	struct sha256_ctx inner, outer;
};

static void hmac_init(struct hmac *h, const void *key, size_t keylen)
{
	uint8_t k[SHA256_BLOCK_LEN] = {0}, pad[SHA256_BLOCK_LEN];
	if (keylen > SHA256_BLOCK_LEN)
		sha256(key, keylen, k);
	else
		memcpy(k, key, keylen);
	for (int i = 0; i < SHA256_BLOCK_LEN; i++)
		pad[i] = k[i] ^ 0x36;
	sha256_init(&h->inner);
	sha256_update(&h->inner, pad, sizeof pad);
	for (int i = 0; i < SHA256_BLOCK_LEN; i++)
		pad[i] = k[i] ^ 0x5c;
	sha256_init(&h->outer);
	sha256_update(&h->outer, pad, sizeof pad);
}

/* Finishes a copy of the keyed state, so one init serves every iteration. */
static void hmac_run(const struct hmac *keyed, const void *msg, size_t n, uint8_t out[SHA256_DIGEST_LEN])
{
	struct hmac h = *keyed;
	uint8_t ih[SHA256_DIGEST_LEN];
	sha256_update(&h.inner, msg, n);
	sha256_final(&h.inner, ih);
	sha256_update(&h.outer, ih, sizeof ih);
	sha256_final(&h.outer, out);
}

void hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[SHA256_DIGEST_LEN])
{
	struct hmac h;
	hmac_init(&h, key, keylen);
	hmac_run(&h, msg, msglen, out);
}

void pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt, size_t saltlen, unsigned iterations, uint8_t *out,
		   size_t outlen)
{
	struct hmac keyed;
	hmac_init(&keyed, pw, pwlen);
	uint8_t *msg = malloc(saltlen + 4);
	memcpy(msg, salt, saltlen);
	for (uint32_t block = 1; outlen > 0; block++) {
		uint8_t u[SHA256_DIGEST_LEN], t[SHA256_DIGEST_LEN];
		msg[saltlen] = (uint8_t)(block >> 24);
		msg[saltlen + 1] = (uint8_t)(block >> 16);
		msg[saltlen + 2] = (uint8_t)(block >> 8);
		msg[saltlen + 3] = (uint8_t)block;
		hmac_run(&keyed, msg, saltlen + 4, u);
		memcpy(t, u, sizeof t);
		for (unsigned i = 1; i < iterations; i++) {
			hmac_run(&keyed, u, sizeof u, u);
			for (int k = 0; k < SHA256_DIGEST_LEN; k++)
				t[k] ^= u[k];
		}
		size_t take = outlen < sizeof t ? outlen : sizeof t;
		memcpy(out, t, take);
		out += take;
		outlen -= take;
	}
	free(msg);
}

int passwd_hash(const char *pw, unsigned iterations, char *out, size_t outsz)
{
	uint8_t salt[PASSWD_SALT_LEN], dk[SHA256_DIGEST_LEN];
	char salt_hex[2 * sizeof salt + 1], dk_hex[2 * sizeof dk + 1];
	if (iterations == 0 || random_bytes(salt, sizeof salt) < 0)
		return -1;
	pbkdf2_sha256(pw, strlen(pw), salt, sizeof salt, iterations, dk, sizeof dk);
	hex_encode(salt, sizeof salt, salt_hex);
	hex_encode(dk, sizeof dk, dk_hex);
	int n = snprintf(out, outsz, "pbkdf2-sha256$%u$%s$%s", iterations, salt_hex, dk_hex);
	return n > 0 && (size_t)n < outsz ? 0 : -1;
}

bool passwd_verify(const char *pw, const char *stored)
{
	unsigned iterations;
	char salt_hex[129], dk_hex[65];
	uint8_t salt[64], want[SHA256_DIGEST_LEN], got[SHA256_DIGEST_LEN];
	if (sscanf(stored, "pbkdf2-sha256$%u$%128[0-9a-f]$%64[0-9a-f]", &iterations, salt_hex, dk_hex) != 3)
		return false;
	int saltlen = hex_decode(salt_hex, strlen(salt_hex), salt, sizeof salt);
	if (iterations == 0 || iterations > 10000000 || saltlen < 0 ||
	    hex_decode(dk_hex, strlen(dk_hex), want, sizeof want) != (int)sizeof want)
		return false;
	pbkdf2_sha256(pw, strlen(pw), salt, (size_t)saltlen, iterations, got, sizeof got);
	uint8_t diff = 0;
	for (size_t i = 0; i < sizeof got; i++)
		diff |= got[i] ^ want[i];
	return diff == 0;
}
