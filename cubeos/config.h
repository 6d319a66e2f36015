/*
 * config.h - the appliance's persistent configuration: a directory on the
 * data disk (any directory in test mode) holding small files, each replaced
 * atomically (temp file, fsync, rename, fsync of the directory) so a power
 * cut leaves either the old or the new version:
 *
 *   hostname        "cubeos-" + 6 hex digits, generated at first boot
 *   admin-password  PBKDF2 hash of the console password (passwd.h)
 *   apikeys.json    {"keys":[{"id","name","created","sha256"}]}: only hashes
 *   network.json    {"mode":"dhcp"} or {"mode":"static","iface",...}
 *   ca.key, ca.crt  the appliance CA, generated at first boot (ca.h)
 */
#ifndef CUBEOS_CONFIG_H
#define CUBEOS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define APIKEY_PREFIX	"e2b_"
#define APIKEY_HEX_LEN	40 /* E2B SDKs check for e2b_ + 40 hex digits */
#define APIKEY_LEN	(sizeof APIKEY_PREFIX - 1 + APIKEY_HEX_LEN)
#define APIKEY_NAME_MAX 64

struct config {
	char *dir;
	unsigned iterations; /* PBKDF2 iterations for a new password */
	bool durable;	     /* fsync files and directory (off only for fuzzing) */
	char hostname[64];
};

/* What config_open generated; the secrets are shown once and never stored. */
struct first_boot {
	bool any;
	char password[32]; /* "" unless generated now */
	char api_key[APIKEY_LEN + 1];
	char ca_fingerprint[96]; /* SHA-256 of a CA made now (ca.h), else "" */
};

/* Creates dir if needed and generates what is missing. 0, or -1 with errno. */
int config_open(struct config *c, const char *dir, unsigned iterations, struct first_boot *fb);
void config_close(struct config *c);

/* Atomic replace of dir/name, mode 0600 (config_write_mode: any mode). */
int config_write(const struct config *c, const char *name, const char *data, size_t len);
int config_write_mode(const struct config *c, const char *name, const char *data, size_t len, unsigned mode);
/* The whole file, NUL-terminated (caller frees), or NULL with errno. */
char *config_read(const struct config *c, const char *name, size_t *len);

bool config_check_password(const struct config *c, const char *pw);
int config_set_password(const struct config *c, const char *pw);

struct apikey {
	char id[17];
	char name[APIKEY_NAME_MAX];
	int64_t created; /* unix seconds */
	char sha256[65]; /* hex digest of the whole key */
};

/* Returns the number of keys (array in *out, caller frees) or -1. */
int apikey_list(const struct config *c, struct apikey **out);
/* Makes a key, stores its hash, and writes the key itself to key_out. */
int apikey_create(const struct config *c, const char *name, char key_out[APIKEY_LEN + 1], struct apikey *made);
/* 0, or -1 with errno ENOENT (no such id) or an I/O error. */
int apikey_revoke(const struct config *c, const char *id);
/* True if key (the full secret) matches a stored hash. */
bool apikey_check(const struct config *c, const char *key);

#endif
