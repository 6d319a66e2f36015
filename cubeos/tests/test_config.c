/* test_config.c - PBKDF2 vectors, password hashes, first boot, persistence, API keys. */
#include "../config.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../passwd.h"
#include "../../lib/tests/test.h"
#include "tmpdir.h"

static void hex(const uint8_t *p, size_t n, char *out)
{
	hex_encode(p, n, out);
}

/* RFC 7914 section 11 and the widely published PBKDF2-HMAC-SHA256 vectors. */
TEST(pbkdf2_matches_known_vectors)
{
	uint8_t dk[64];
	char h[129];
	pbkdf2_sha256("password", 8, "salt", 4, 1, dk, 32);
	hex(dk, 32, h);
	CHECK_STREQ(h, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b");
	pbkdf2_sha256("password", 8, "salt", 4, 2, dk, 32);
	hex(dk, 32, h);
	CHECK_STREQ(h, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43");
	pbkdf2_sha256("password", 8, "salt", 4, 4096, dk, 32);
	hex(dk, 32, h);
	CHECK_STREQ(h, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a");
	pbkdf2_sha256("passwd", 6, "salt", 4, 1, dk, 64); /* two blocks */
	hex(dk, 64, h);
	CHECK_STREQ(h, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
		       "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783");
}

TEST(hmac_matches_rfc4231_case_2)
{
	uint8_t mac[32];
	char h[65];
	hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
	hex(mac, 32, h);
	CHECK_STREQ(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(password_hash_verifies_and_rejects)
{
	char stored[PASSWD_HASH_MAX];
	if (!CHECK_EQ_INT(passwd_hash("s3cret", 1000, stored, sizeof stored), 0))
		return;
	CHECK(strncmp(stored, "pbkdf2-sha256$1000$", 19) == 0);
	CHECK(passwd_verify("s3cret", stored));
	CHECK(!passwd_verify("s3cret ", stored));
	CHECK(!passwd_verify("", stored));
	char other[PASSWD_HASH_MAX];
	passwd_hash("s3cret", 1000, other, sizeof other);
	CHECK(strcmp(stored, other) != 0); /* fresh salt each time */
	CHECK(!passwd_verify("x", "garbage"));
	CHECK(!passwd_verify("x", "pbkdf2-sha256$0$00$00"));
	CHECK(!passwd_verify("x", "pbkdf2-sha256$1$zz$00"));
}

static char *make_dir(void)
{
	return tmpdir_make("cfg");
}

TEST(first_boot_generates_then_persists)
{
	char *dir = make_dir();
	char sub[300];
	snprintf(sub, sizeof sub, "%s/a/config", dir);
	struct config c;
	struct first_boot fb;
	if (!CHECK_EQ_INT(config_open(&c, sub, 1000, &fb), 0))
		return;
	CHECK(fb.any);
	CHECK(strncmp(c.hostname, "cubeos-", 7) == 0 && strlen(c.hostname) == 13);
	CHECK_EQ_INT(strlen(fb.password), 23);
	CHECK(strncmp(fb.api_key, "e2b_", 4) == 0 && strlen(fb.api_key) == 44);
	CHECK_EQ_INT(strspn(fb.api_key + 4, "0123456789abcdef"), 40);
	CHECK(config_check_password(&c, fb.password));
	CHECK(!config_check_password(&c, "wrong"));
	CHECK(apikey_check(&c, fb.api_key));
	char host[64], pw[32], key[64];
	snprintf(host, sizeof host, "%s", c.hostname);
	snprintf(pw, sizeof pw, "%s", fb.password);
	snprintf(key, sizeof key, "%s", fb.api_key);
	config_close(&c);

	/* A restart: nothing new, everything still valid. */
	if (!CHECK_EQ_INT(config_open(&c, sub, 1000, &fb), 0))
		return;
	CHECK(!fb.any);
	CHECK_STREQ(fb.password, "");
	CHECK_STREQ(c.hostname, host);
	CHECK(config_check_password(&c, pw));
	CHECK(apikey_check(&c, key));
	/* The key itself is never on disk. */
	char *keys = config_read(&c, "apikeys.json", NULL);
	CHECK(keys && !strstr(keys, key + 4));
	free(keys);
	struct stat st;
	char path[400];
	snprintf(path, sizeof path, "%s/.apikeys.json.tmp", sub);
	CHECK(stat(path, &st) < 0); /* no temp file left behind */
	config_close(&c);
	tmpdir_remove(dir);
	free(dir);
}

TEST(apikeys_create_list_revoke)
{
	char *dir = make_dir();
	struct config c;
	struct first_boot fb;
	if (!CHECK_EQ_INT(config_open(&c, dir, 1000, &fb), 0))
		return;
	char key[APIKEY_LEN + 1];
	struct apikey made;
	CHECK_EQ_INT(apikey_create(&c, "ci \"quoted\" name", key, &made), 0);
	struct apikey *v;
	int n = apikey_list(&c, &v);
	if (!CHECK_EQ_INT(n, 2))
		return;
	CHECK_STREQ(v[0].name, "admin");
	CHECK_STREQ(v[1].name, "ci \"quoted\" name");
	CHECK_STREQ(v[1].id, made.id);
	CHECK(v[1].created > 1600000000);
	free(v);
	CHECK(apikey_check(&c, key));
	CHECK_EQ_INT(apikey_revoke(&c, made.id), 0);
	CHECK(!apikey_check(&c, key));
	CHECK(apikey_check(&c, fb.api_key));
	errno = 0;
	CHECK_EQ_INT(apikey_revoke(&c, made.id), -1);
	CHECK_EQ_INT(errno, ENOENT);
	CHECK_EQ_INT(apikey_list(&c, &v), 1);
	free(v);

	/* A damaged file is reported, not silently replaced. */
	config_write(&c, "apikeys.json", "{nope", 5);
	CHECK_EQ_INT(apikey_list(&c, &v), -1);
	CHECK_EQ_INT(apikey_create(&c, "x", key, &made), -1);
	config_close(&c);
	tmpdir_remove(dir);
	free(dir);
}
