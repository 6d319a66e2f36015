/* test_ca.c - the appliance CA and the proxy certificate: what mbedtls and
 * (where installed) openssl make of them, file modes, first boot, reopen. */
#include "../ca.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "../config.h"
#include "../shell.h"
#include "../../lib/sha256.h"
#include "../../lib/tests/test.h"
#include "tmpdir.h"

/* A config on a scratch directory, without config_open's other first-boot work. */
static struct config scratch_config(const char *what)
{
	struct config c = {.dir = tmpdir_make(what), .iterations = 1, .durable = false};
	snprintf(c.hostname, sizeof c.hostname, "cubeos-a1b2c3");
	return c;
}

static void scratch_free(struct config *c)
{
	tmpdir_remove(c->dir);
	free(c->dir);
}

static char *path_in(const struct config *c, const char *name)
{
	static char path[4][512];
	static int next;
	char *p = path[next++ % 4];
	snprintf(p, sizeof path[0], "%s/%s", c->dir, name);
	return p;
}

static unsigned file_mode(const struct config *c, const char *name)
{
	struct stat st;
	return stat(path_in(c, name), &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0;
}

static bool parse_cert(const struct config *c, const char *name, mbedtls_x509_crt *crt)
{
	mbedtls_x509_crt_init(crt);
	return mbedtls_x509_crt_parse_file(crt, path_in(c, name)) == 0;
}

/* Days between two mbedtls times (civil calendar, UTC). */
static long days_between(const mbedtls_x509_time *a, const mbedtls_x509_time *b)
{
	struct tm ta = {.tm_year = a->year - 1900, .tm_mon = a->mon - 1, .tm_mday = a->day};
	struct tm tb = {.tm_year = b->year - 1900, .tm_mon = b->mon - 1, .tm_mday = b->day};
	return (long)((timegm(&tb) - timegm(&ta)) / 86400);
}

/* RFC 5758: ecdsa-with-SHA256 has no parameters; strict verifiers refuse a NULL one. */
static bool has_no_ecdsa_null_param(const mbedtls_x509_crt *crt)
{
	static const unsigned char with_null[] = {0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48,
						  0xce, 0x3d, 0x04, 0x03, 0x02, 0x05, 0x00};
	static const unsigned char without[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
	return !memmem(crt->raw.p, crt->raw.len, with_null, sizeof with_null) &&
	       memmem(crt->raw.p, crt->raw.len, without, sizeof without);
}

static bool have_openssl(void)
{
	return system("openssl version >/dev/null 2>&1") == 0;
}

/* stdout+stderr of a shell command, and its exit status. */
static char *run(const char *cmd, int *status)
{
	char full[2048];
	snprintf(full, sizeof full, "%s 2>&1", cmd);
	FILE *f = popen(full, "r");
	if (!f)
		return strdup("");
	size_t cap = 1 << 16, len = 0;
	char *out = calloc(1, cap);
	size_t n;
	while ((n = fread(out + len, 1, cap - 1 - len, f)) > 0)
		len += n;
	int st = pclose(f);
	if (status)
		*status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return out;
}

TEST(test_and_product_link_the_same_mbedtls_release)
{
	/* ca.c refuses other API families at compile time; the library found at
	 * run time must match the headers it was compiled against. */
	CHECK_EQ_INT(mbedtls_version_get_number() >> 8, MBEDTLS_VERSION_NUMBER >> 8);
	CHECK_EQ_INT(MBEDTLS_VERSION_MAJOR, 2);
	CHECK_EQ_INT(MBEDTLS_VERSION_MINOR, 28);
}

TEST(first_ensure_makes_a_ten_year_p256_ca)
{
	struct config c = scratch_config("ca");
	bool made = false;
	char fp[CA_FINGERPRINT_LEN] = "";
	if (!CHECK_EQ_INT(ca_ensure(&c, &made, fp), 0))
		goto out;
	CHECK(made);
	CHECK_EQ_INT(strlen(fp), CA_FINGERPRINT_LEN - 1);
	CHECK(fp[2] == ':' && fp[CA_FINGERPRINT_LEN - 2] != ':');

	mbedtls_x509_crt crt;
	if (!CHECK(parse_cert(&c, CA_CERT_FILE, &crt)))
		goto out;
	CHECK_EQ_INT(crt.version, 3);
	CHECK(crt.ca_istrue);
	CHECK_EQ_INT(crt.max_pathlen, 1); /* mbedtls stores pathLenConstraint + 1 */
	CHECK(crt.ext_types & MBEDTLS_X509_EXT_KEY_USAGE);
	CHECK_EQ_INT(crt.key_usage, MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN);
	CHECK_EQ_INT(mbedtls_pk_get_type(&crt.pk), MBEDTLS_PK_ECKEY);
	CHECK_EQ_INT(mbedtls_pk_get_bitlen(&crt.pk), 256);
	CHECK_EQ_INT(crt.sig_md, MBEDTLS_MD_SHA256);
	CHECK_EQ_INT(crt.serial.len, 16);
	CHECK(has_no_ecdsa_null_param(&crt));
	char dn[256];
	mbedtls_x509_dn_gets(dn, sizeof dn, &crt.subject);
	CHECK_STREQ(dn, "CN=CubeOS appliance CA cubeos-a1b2c3, O=CubeOS");
	long days = days_between(&crt.valid_from, &crt.valid_to);
	CHECK(days >= 3649 && days <= 3651);
	CHECK(!mbedtls_x509_time_is_past(&crt.valid_to) && mbedtls_x509_time_is_past(&crt.valid_from));

	/* Self-signed: it verifies with itself as the only trust anchor. */
	uint32_t flags = 0;
	CHECK_EQ_INT(mbedtls_x509_crt_verify(&crt, &crt, NULL, NULL, &flags, NULL, NULL), 0);
	CHECK_EQ_INT(flags, 0);

	/* The fingerprint is the SHA-256 of the DER certificate. */
	uint8_t d[SHA256_DIGEST_LEN];
	sha256(crt.raw.p, crt.raw.len, d);
	char first[4];
	snprintf(first, sizeof first, "%02X:", d[0]);
	CHECK(strncmp(fp, first, 3) == 0);
	mbedtls_x509_crt_free(&crt);

	/* The key on disk is the certificate's key. */
	mbedtls_pk_context key;
	mbedtls_pk_init(&key);
	mbedtls_x509_crt again;
	if (CHECK(parse_cert(&c, CA_CERT_FILE, &again)) &&
	    CHECK_EQ_INT(mbedtls_pk_parse_keyfile(&key, path_in(&c, CA_KEY_FILE), NULL), 0))
		CHECK_EQ_INT(mbedtls_pk_check_pair(&again.pk, &key), 0);
	mbedtls_pk_free(&key);
	mbedtls_x509_crt_free(&again);

	CHECK_EQ_INT(file_mode(&c, CA_KEY_FILE), 0600);
	CHECK_EQ_INT(file_mode(&c, CA_CERT_FILE), 0644);
	CHECK(access(path_in(&c, ".ca.key.tmp"), F_OK) < 0);
out:
	scratch_free(&c);
}

TEST(second_ensure_keeps_the_ca)
{
	struct config c = scratch_config("ca");
	bool made = false;
	char fp1[CA_FINGERPRINT_LEN] = "", fp2[CA_FINGERPRINT_LEN] = "";
	CHECK_EQ_INT(ca_ensure(&c, &made, fp1), 0);
	char *pem1 = ca_cert_pem(&c);
	struct stat st1, st2;
	stat(path_in(&c, CA_KEY_FILE), &st1);
	CHECK_EQ_INT(ca_ensure(&c, &made, fp2), 0);
	CHECK(!made);
	CHECK_STREQ(fp1, fp2);
	char *pem2 = ca_cert_pem(&c);
	CHECK_STREQ(pem1, pem2);
	stat(path_in(&c, CA_KEY_FILE), &st2);
	CHECK_EQ_INT(st1.st_ino, st2.st_ino); /* not even rewritten */
	free(pem1);
	free(pem2);
	scratch_free(&c);
}

TEST(config_open_makes_the_ca_at_first_boot_only)
{
	char *dir = tmpdir_make("ca-boot");
	char sub[300];
	snprintf(sub, sizeof sub, "%s/config", dir);
	struct config c;
	struct first_boot fb;
	if (!CHECK_EQ_INT(config_open(&c, sub, 1, &fb), 0))
		goto out;
	CHECK(fb.any);
	CHECK_EQ_INT(strlen(fb.ca_fingerprint), CA_FINGERPRINT_LEN - 1);
	char *pem = ca_cert_pem(&c);
	char fp[CA_FINGERPRINT_LEN] = "";
	CHECK(pem && ca_fingerprint(pem, fp) == 0);
	CHECK_STREQ(fp, fb.ca_fingerprint);
	char cn[128];
	snprintf(cn, sizeof cn, "CubeOS appliance CA %s", c.hostname);
	mbedtls_x509_crt crt;
	if (CHECK(parse_cert(&c, CA_CERT_FILE, &crt))) {
		char dn[256];
		mbedtls_x509_dn_gets(dn, sizeof dn, &crt.subject);
		CHECK(strstr(dn, cn) != NULL);
	}
	mbedtls_x509_crt_free(&crt);
	config_close(&c);

	/* Reboot: the CA stays, and first boot reports nothing. */
	CHECK_EQ_INT(config_open(&c, sub, 1, &fb), 0);
	CHECK(!fb.any);
	CHECK_STREQ(fb.ca_fingerprint, "");
	char *pem2 = ca_cert_pem(&c);
	CHECK(pem && pem2 && strcmp(pem, pem2) == 0);
	free(pem);
	free(pem2);
	config_close(&c);
out:
	tmpdir_remove(dir);
	free(dir);
}

TEST(a_missing_half_makes_a_new_ca_but_damage_is_never_replaced)
{
	struct config c = scratch_config("ca");
	bool made;
	char fp1[CA_FINGERPRINT_LEN], fp2[CA_FINGERPRINT_LEN];
	CHECK_EQ_INT(ca_ensure(&c, &made, fp1), 0);
	unlink(path_in(&c, CA_CERT_FILE));
	CHECK_EQ_INT(ca_ensure(&c, &made, fp2), 0);
	CHECK(made);
	CHECK(strcmp(fp1, fp2) != 0);

	/* A key from another CA: refused, and both files are left alone. */
	struct config other = scratch_config("ca-other");
	CHECK_EQ_INT(ca_ensure(&other, &made, NULL), 0);
	size_t len;
	char *foreign = config_read(&other, CA_KEY_FILE, &len);
	config_write(&c, CA_KEY_FILE, foreign, len);
	CHECK_EQ_INT(ca_ensure(&c, &made, fp1), -1);
	CHECK(!made);
	char *still = config_read(&c, CA_KEY_FILE, NULL);
	CHECK(still && strcmp(still, foreign) == 0);
	free(still);
	free(foreign);

	/* A damaged certificate: refused. */
	config_write(&c, CA_CERT_FILE, "garbage\n", 8);
	CHECK_EQ_INT(ca_ensure(&c, &made, fp1), -1);
	char *crt = config_read(&c, CA_CERT_FILE, NULL);
	CHECK_STREQ(crt, "garbage\n");
	free(crt);
	scratch_free(&other);
	scratch_free(&c);
}

static bool verify_for(mbedtls_x509_crt *leaf, mbedtls_x509_crt *ca, const char *name, uint32_t *flags)
{
	*flags = 0;
	return mbedtls_x509_crt_verify(leaf, ca, NULL, name, flags, NULL, NULL) == 0;
}

TEST(server_cert_chains_to_the_ca_for_domain_and_wildcard)
{
	struct config c = scratch_config("ca-srv");
	bool made;
	char err[256] = "";
	const char *ips[] = {"192.168.1.10", "fd00::1"};
	CHECK_EQ_INT(ca_ensure(&c, &made, NULL), 0);
	if (!CHECK_EQ_INT(ca_issue_server_cert(&c, "cube.test", ips, 2, err, sizeof err), 0)) {
		fprintf(stderr, "  %s\n", err);
		goto out;
	}
	mbedtls_x509_crt ca, leaf;
	CHECK(parse_cert(&c, CA_CERT_FILE, &ca));
	CHECK(parse_cert(&c, CA_SERVER_CERT_FILE, &leaf));
	uint32_t flags;
	CHECK(verify_for(&leaf, &ca, "cube.test", &flags));
	CHECK(verify_for(&leaf, &ca, "49983-abc.cube.test", &flags));
	CHECK(verify_for(&leaf, &ca, "49983-ABC.Cube.Test", &flags)); /* DNS names are case-insensitive */
	CHECK(!verify_for(&leaf, &ca, "other.test", &flags));
	CHECK(flags & MBEDTLS_X509_BADCERT_CN_MISMATCH);
	CHECK(!verify_for(&leaf, &ca, "a.b.cube.test", &flags)); /* a wildcard covers one label */
	CHECK(!verify_for(&leaf, &leaf, "cube.test", &flags));	 /* not its own anchor */

	CHECK(!leaf.ca_istrue);
	CHECK(has_no_ecdsa_null_param(&leaf));
	CHECK_EQ_INT(mbedtls_x509_crt_check_key_usage(&leaf, MBEDTLS_X509_KU_DIGITAL_SIGNATURE), 0);
	CHECK_EQ_INT(mbedtls_x509_crt_check_key_usage(&leaf, MBEDTLS_X509_KU_KEY_CERT_SIGN) != 0, 1);
	CHECK_EQ_INT(mbedtls_x509_crt_check_extended_key_usage(&leaf, MBEDTLS_OID_SERVER_AUTH,
							       MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)),
		     0);
	CHECK(mbedtls_x509_crt_check_extended_key_usage(&leaf, MBEDTLS_OID_CLIENT_AUTH,
							MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)) != 0);
	CHECK_EQ_INT(mbedtls_pk_get_type(&leaf.pk), MBEDTLS_PK_ECKEY);
	long days = days_between(&leaf.valid_from, &leaf.valid_to);
	CHECK(days >= 364 && days <= 366);

	mbedtls_pk_context key;
	mbedtls_pk_init(&key);
	if (CHECK_EQ_INT(mbedtls_pk_parse_keyfile(&key, path_in(&c, CA_SERVER_KEY_FILE), NULL), 0))
		CHECK_EQ_INT(mbedtls_pk_check_pair(&leaf.pk, &key), 0);
	mbedtls_pk_free(&key);
	mbedtls_x509_crt_free(&leaf);
	mbedtls_x509_crt_free(&ca);
	CHECK_EQ_INT(file_mode(&c, CA_SERVER_KEY_FILE), 0600);
	CHECK_EQ_INT(file_mode(&c, CA_SERVER_CERT_FILE), 0644);
out:
	scratch_free(&c);
}

TEST(openssl_accepts_the_ca_and_server_cert)
{
	if (!have_openssl()) {
		printf("test_ca: openssl not installed, openssl checks skipped\n");
		return;
	}
	struct config c = scratch_config("ca-ossl");
	bool made;
	char err[256], cmd[1024];
	const char *ips[] = {"192.168.1.10", "fd00::1"};
	CHECK_EQ_INT(ca_ensure(&c, &made, NULL), 0);
	CHECK_EQ_INT(ca_issue_server_cert(&c, "cube.test", ips, 2, err, sizeof err), 0);
	const char *ca = path_in(&c, CA_CERT_FILE), *srv = path_in(&c, CA_SERVER_CERT_FILE);
	int st;
	char *o;

	snprintf(cmd, sizeof cmd, "openssl verify -CAfile %s %s", ca, srv);
	o = run(cmd, &st);
	CHECK_EQ_INT(st, 0);
	CHECK(strstr(o, ": OK") != NULL);
	free(o);
	/* Strict RFC 5280 checks (Python 3.13 clients turn them on) and the names a client asks for. */
	const char *good[] = {"-verify_hostname cube.test", "-verify_hostname 49983-abc.cube.test",
			      "-verify_ip 192.168.1.10", "-verify_ip fd00::1"};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		snprintf(cmd, sizeof cmd, "openssl verify -x509_strict -purpose sslserver %s -CAfile %s %s", good[i],
			 ca, srv);
		o = run(cmd, &st);
		if (!CHECK_EQ_INT(st, 0))
			fprintf(stderr, "  %s\n  %s", cmd, o);
		free(o);
	}
	snprintf(cmd, sizeof cmd, "openssl verify -verify_hostname other.test -CAfile %s %s", ca, srv);
	o = run(cmd, &st);
	CHECK(st != 0);
	CHECK(strstr(o, "hostname mismatch") != NULL);
	free(o);

	snprintf(cmd, sizeof cmd, "openssl x509 -noout -text -in %s", ca);
	o = run(cmd, &st);
	CHECK(strstr(o, "Subject: CN = CubeOS appliance CA cubeos-a1b2c3, O = CubeOS") != NULL);
	CHECK(strstr(o, "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0") != NULL);
	CHECK(strstr(o, "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign") != NULL);
	CHECK(strstr(o, "X509v3 Subject Key Identifier") != NULL);
	CHECK(strstr(o, "ASN1 OID: prime256v1") != NULL);
	CHECK(strstr(o, "ecdsa-with-SHA256") != NULL);
	free(o);

	snprintf(cmd, sizeof cmd, "openssl x509 -noout -text -in %s", srv);
	o = run(cmd, &st);
	CHECK(strstr(o, "Subject: CN = cube.test") != NULL);
	CHECK(strstr(o, "DNS:cube.test, DNS:*.cube.test, IP Address:192.168.1.10, IP Address:FD00:0:0:0:0:0:0:1") !=
	      NULL);
	CHECK(strstr(o, "TLS Web Server Authentication") != NULL);
	CHECK(strstr(o, "X509v3 Authority Key Identifier") != NULL);
	CHECK(strstr(o, "CA:FALSE") != NULL);
	free(o);

	/* The fingerprint is the one openssl prints. */
	char *pem = ca_cert_pem(&c), fp[CA_FINGERPRINT_LEN] = "";
	CHECK(pem && ca_fingerprint(pem, fp) == 0);
	snprintf(cmd, sizeof cmd, "openssl x509 -noout -fingerprint -sha256 -in %s", ca);
	o = run(cmd, &st);
	CHECK(strstr(o, fp) != NULL);
	free(o);
	free(pem);
	scratch_free(&c);
}

TEST(issue_refuses_bad_names_addresses_and_a_missing_ca)
{
	struct config c = scratch_config("ca-bad");
	char err[256] = "";
	const char *one[] = {"10.0.0.1"};
	CHECK_EQ_INT(ca_issue_server_cert(&c, "cube.test", NULL, 0, err, sizeof err), -1);
	CHECK(strstr(err, "ca.crt") != NULL);

	bool made;
	CHECK_EQ_INT(ca_ensure(&c, &made, NULL), 0);
	char longname[300];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	const char *bad[] = {"",      "bad domain", "*.cube.test", "-a.test", "a-.test",
			     ".test", "test.",	    "a..b",	   longname,  "a,O=x"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		err[0] = '\0';
		CHECK_EQ_INT(ca_issue_server_cert(&c, bad[i], one, 1, err, sizeof err), -1);
		CHECK(strstr(err, "not a valid domain name") != NULL);
	}
	const char *bad_ip[] = {"10.0.0"};
	CHECK_EQ_INT(ca_issue_server_cert(&c, "cube.test", bad_ip, 1, err, sizeof err), -1);
	CHECK(strstr(err, "not an IP address") != NULL);
	const char *many[CA_SERVER_IPS_MAX + 1];
	for (size_t i = 0; i < CA_SERVER_IPS_MAX + 1; i++)
		many[i] = "10.0.0.1";
	CHECK_EQ_INT(ca_issue_server_cert(&c, "cube.test", many, CA_SERVER_IPS_MAX + 1, err, sizeof err), -1);
	CHECK(access(path_in(&c, CA_SERVER_CERT_FILE), F_OK) < 0);
	CHECK(access(path_in(&c, CA_SERVER_KEY_FILE), F_OK) < 0);
	scratch_free(&c);
}

/* --- the admin shell's ca commands ------------------------------------------ */

static char shell_out[16384];
static size_t shell_len;

static void capture(void *arg, const char *s, size_t n)
{
	if (shell_len + n < sizeof shell_out) {
		memcpy(shell_out + shell_len, s, n);
		shell_len += n;
		shell_out[shell_len] = '\0';
	}
}

static const char *console(struct shell *sh, const char *line)
{
	char buf[SHELL_LINE_MAX];
	snprintf(buf, sizeof buf, "%s", line);
	shell_len = 0;
	shell_out[0] = '\0';
	shell_run_line(sh, buf);
	return shell_out;
}

TEST(console_ca_prints_the_pem_and_fingerprint_and_issues)
{
	struct config c = scratch_config("ca-sh");
	struct cubeos os = {.config = &c};
	struct shell sh;
	shell_init(&sh, &os, capture, NULL, false);
	CHECK(strstr(console(&sh, "ca"), "no appliance CA") != NULL);

	bool made;
	char fp[CA_FINGERPRINT_LEN];
	CHECK_EQ_INT(ca_ensure(&c, &made, fp), 0);
	const char *o = console(&sh, "ca");
	CHECK(strncmp(o, "-----BEGIN CERTIFICATE-----\r\n", 29) == 0);
	CHECK(strstr(o, "-----END CERTIFICATE-----\r\nSHA-256 fingerprint: ") != NULL);
	CHECK(strstr(o, fp) != NULL);
	CHECK(strstr(o, "\n\n") == NULL && strstr(o, "\r\r") == NULL);
	CHECK(strstr(console(&sh, "ca extra"), "usage: ca") != NULL);

	CHECK(strstr(console(&sh, "ca issue cube.test 10.0.0.2"), "issued server.crt for cube.test and *.cube.test") !=
	      NULL);
	CHECK(access(path_in(&c, CA_SERVER_CERT_FILE), F_OK) == 0);
	CHECK(strstr(console(&sh, "ca issue 'bad name'"), "ca issue: not a valid domain name") != NULL);
	CHECK(strstr(console(&sh, "ca issue"), "usage: ca issue DOMAIN [IP...]") != NULL);
	CHECK(strstr(console(&sh, "help"), "ca issue DOMAIN [IP...]") != NULL);
	shell_fini(&sh);
	scratch_free(&c);
}
