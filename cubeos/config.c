/* config.c - persistent config, first-boot secrets and API keys; see config.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/fileio.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "ca.h"
#include "passwd.h"

int config_write(const struct config *c, const char *name, const char *data, size_t len)
{
	return config_write_mode(c, name, data, len, 0600);
}

int config_write_mode(const struct config *c, const char *name, const char *data, size_t len, unsigned mode)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", c->dir, name);
	return file_replace(path, data, len, (mode_t)mode, c->durable);
}

char *config_read(const struct config *c, const char *name, size_t *len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", c->dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct buf b = BUF_INIT;
	for (;;) {
		char *p = buf_reserve(&b, 4096);
		ssize_t r = read(fd, p, 4096);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		buf_commit(&b, (size_t)r);
	}
	close(fd);
	if (len)
		*len = b.len;
	buf_putc(&b, '\0'); /* an empty file still gives "" */
	b.len--;
	return buf_steal(&b);
}

/* --- first boot ----------------------------------------------------------- */

static int load_or_make_hostname(struct config *c, struct first_boot *fb)
{
	char *h = config_read(c, "hostname", NULL);
	if (h) {
		h[strcspn(h, "\r\n")] = '\0';
		snprintf(c->hostname, sizeof c->hostname, "%s", h);
		free(h);
		if (c->hostname[0])
			return 0;
	}
	uint8_t r[3];
	char hex[7], line[80];
	if (random_bytes(r, sizeof r) < 0)
		return -1;
	hex_encode(r, sizeof r, hex);
	snprintf(c->hostname, sizeof c->hostname, "cubeos-%s", hex);
	int n = snprintf(line, sizeof line, "%s\n", c->hostname);
	fb->any = true;
	log_info("config.hostname", "first boot: hostname %s", c->hostname);
	return config_write(c, "hostname", line, (size_t)n);
}

/* 20 characters from an alphabet without look-alikes (no 0/O, 1/l/I), in
 * groups of 5: about 100 bits, and easy to type from a serial console. */
static int make_password(char *out, size_t outsz)
{
	static const char alphabet[] = "abcdefghijkmnpqrstuvwxyz23456789"; /* 32 symbols */
	uint8_t r[20];
	if (outsz < 24 || random_bytes(r, sizeof r) < 0)
		return -1;
	size_t k = 0;
	for (size_t i = 0; i < sizeof r; i++) {
		if (i && i % 5 == 0)
			out[k++] = '-';
		out[k++] = alphabet[r[i] & 31];
	}
	out[k] = '\0';
	return 0;
}

int config_set_password(const struct config *c, const char *pw)
{
	char hash[PASSWD_HASH_MAX + 2];
	if (passwd_hash(pw, c->iterations, hash, sizeof hash - 1) < 0)
		return -1;
	strcat(hash, "\n");
	return config_write(c, "admin-password", hash, strlen(hash));
}

bool config_check_password(const struct config *c, const char *pw)
{
	char *stored = config_read(c, "admin-password", NULL);
	bool ok = stored && passwd_verify(pw, stored);
	free(stored);
	return ok;
}

static int make_password_if_missing(struct config *c, struct first_boot *fb)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/admin-password", c->dir);
	if (access(path, F_OK) == 0)
		return 0;
	if (make_password(fb->password, sizeof fb->password) < 0 || config_set_password(c, fb->password) < 0)
		return -1;
	fb->any = true;
	return 0;
}

static int make_admin_key_if_missing(struct config *c, struct first_boot *fb)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/apikeys.json", c->dir);
	if (access(path, F_OK) == 0)
		return 0;
	struct apikey k;
	if (apikey_create(c, "admin", fb->api_key, &k) < 0)
		return -1;
	fb->any = true;
	return 0;
}

/* Not fatal: without a CA only TLS is missing, while the console and the
 * API keys still work (ca_ensure has logged why). */
static void make_ca_if_missing(struct config *c, struct first_boot *fb)
{
	_Static_assert(sizeof fb->ca_fingerprint == CA_FINGERPRINT_LEN, "first_boot.ca_fingerprint");
	bool made = false;
	if (ca_ensure(c, &made, fb->ca_fingerprint) < 0 || !made)
		fb->ca_fingerprint[0] = '\0';
	fb->any |= made;
}

/* The proxy's TLS certificate for the domain (the "domain" file, else
 * cubeos.local), issued when it is missing or the CA was just made (an old
 * one would not verify against it). No IP addresses: the network is not up
 * yet, and clients use host names; `ca issue DOMAIN IP...` adds them. Not
 * fatal: the proxy serves plain HTTP and drops TLS until a pair exists. */
static void make_server_cert_if_missing(struct config *c, bool ca_made)
{
	char crt[4096], key[4096];
	snprintf(crt, sizeof crt, "%s/%s", c->dir, CA_SERVER_CERT_FILE);
	snprintf(key, sizeof key, "%s/%s", c->dir, CA_SERVER_KEY_FILE);
	if (!ca_made && access(crt, F_OK) == 0 && access(key, F_OK) == 0)
		return;
	char *domain = config_read(c, "domain", NULL);
	if (domain)
		domain[strcspn(domain, " \t\r\n")] = '\0';
	const char *d = domain && domain[0] ? domain : "cubeos.local";
	char err[256];
	if (ca_issue_server_cert(c, d, NULL, 0, err, sizeof err) < 0)
		log_error("ca.server_cert", "cannot issue the proxy's certificate for %s: %s", d, err);
	free(domain);
}

int config_open(struct config *c, const char *dir, unsigned iterations, struct first_boot *fb)
{
	memset(fb, 0, sizeof *fb);
	memset(c, 0, sizeof *c);
	c->dir = strdup(dir);
	c->iterations = iterations ? iterations : PASSWD_ITERATIONS;
	c->durable = true;
	if (dir_make_all(dir, 0700) < 0)
		return -1;
	if (load_or_make_hostname(c, fb) < 0 || make_password_if_missing(c, fb) < 0 ||
	    make_admin_key_if_missing(c, fb) < 0)
		return -1;
	make_ca_if_missing(c, fb);
	make_server_cert_if_missing(c, fb->ca_fingerprint[0] != '\0');
	return 0;
}

void config_close(struct config *c)
{
	free(c->dir);
	c->dir = NULL;
}

/* --- API keys ------------------------------------------------------------- */

static void copy_field(char *dst, size_t dstsz, const char *src)
{
	snprintf(dst, dstsz, "%s", src ? src : "");
}

int apikey_list(const struct config *c, struct apikey **out)
{
	*out = NULL;
	size_t len;
	char *text = config_read(c, "apikeys.json", &len);
	if (!text)
		return errno == ENOENT ? 0 : -1;
	char err[160];
	struct json *root = json_parse(text, len, err, sizeof err);
	free(text);
	const struct json *keys = json_get(root, "keys");
	if (!keys || keys->type != JSON_ARRAY) {
		log_error("config.apikeys", "%s/apikeys.json is damaged: %s", c->dir, root ? "no \"keys\" array" : err);
		json_free(root);
		errno = EINVAL;
		return -1;
	}
	struct apikey *v = calloc(keys->count + 1, sizeof *v);
	int n = 0;
	for (const struct json *k = keys->child; k; k = k->next, n++) {
		copy_field(v[n].id, sizeof v[n].id, json_get_str(k, "id"));
		copy_field(v[n].name, sizeof v[n].name, json_get_str(k, "name"));
		copy_field(v[n].sha256, sizeof v[n].sha256, json_get_str(k, "sha256"));
		v[n].created = json_get_int(k, "created", 0);
	}
	json_free(root);
	*out = v;
	return n;
}

static int save_keys(const struct config *c, const struct apikey *v, int n)
{
	struct buf b = BUF_INIT;
	struct jw w;
	jw_init(&w, &b);
	jw_obj(&w);
	jw_key(&w, "keys");
	jw_arr(&w);
	for (int i = 0; i < n; i++) {
		jw_obj(&w);
		jw_kstr(&w, "id", v[i].id);
		jw_kstr(&w, "name", v[i].name);
		jw_kint(&w, "created", v[i].created);
		jw_kstr(&w, "sha256", v[i].sha256);
		jw_end(&w);
	}
	jw_end(&w);
	jw_end(&w);
	buf_putc(&b, '\n');
	int rc = config_write(c, "apikeys.json", b.data, b.len);
	buf_free(&b);
	return rc;
}

static void key_digest_hex(const char *key, char out[65])
{
	uint8_t d[SHA256_DIGEST_LEN];
	sha256(key, strlen(key), d);
	hex_encode(d, sizeof d, out);
}

int apikey_create(const struct config *c, const char *name, char key_out[APIKEY_LEN + 1], struct apikey *made)
{
	struct apikey *v;
	int n = apikey_list(c, &v);
	if (n < 0)
		return -1;
	uint8_t secret[APIKEY_HEX_LEN / 2], id[8];
	if (random_bytes(secret, sizeof secret) < 0 || random_bytes(id, sizeof id) < 0) {
		free(v);
		return -1;
	}
	memcpy(key_out, APIKEY_PREFIX, sizeof APIKEY_PREFIX - 1);
	hex_encode(secret, sizeof secret, key_out + sizeof APIKEY_PREFIX - 1);

	struct apikey *grown = realloc(v, (size_t)(n + 1) * sizeof *v);
	if (!grown) {
		free(v);
		return -1;
	}
	v = grown;
	memset(&v[n], 0, sizeof v[n]);
	hex_encode(id, sizeof id, v[n].id);
	copy_field(v[n].name, sizeof v[n].name, name);
	v[n].created = (int64_t)time(NULL);
	key_digest_hex(key_out, v[n].sha256);
	int rc = save_keys(c, v, n + 1);
	if (rc == 0 && made)
		*made = v[n];
	free(v);
	return rc;
}

int apikey_revoke(const struct config *c, const char *id)
{
	struct apikey *v;
	int n = apikey_list(c, &v);
	if (n < 0)
		return -1;
	int k = 0;
	for (int i = 0; i < n; i++)
		if (strcmp(v[i].id, id) != 0)
			v[k++] = v[i];
	int rc = k == n ? (errno = ENOENT, -1) : save_keys(c, v, k);
	free(v);
	return rc;
}

bool apikey_check(const struct config *c, const char *key)
{
	struct apikey *v;
	int n = apikey_list(c, &v);
	char want[65];
	key_digest_hex(key, want);
	bool found = false;
	for (int i = 0; i < n; i++)
		found |= strcmp(v[i].sha256, want) == 0;
	free(v);
	return found;
}
