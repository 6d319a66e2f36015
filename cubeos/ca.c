/* ca.c - the appliance CA and the proxy's server certificate; see ca.h. */
#include "ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/asn1.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "../lib/log.h"
#include "../lib/sha256.h"
#include "config.h"

/* The product links thirdparty's musl build and the unit tests Debian's
 * libmbedtls-dev: both must be the 2.28 API this file is written against. */
#if MBEDTLS_VERSION_NUMBER < 0x021C0000 || MBEDTLS_VERSION_NUMBER >= 0x03000000
#error "cubeos/ca.c needs mbedtls 2.28.x"
#endif

#define PEM_MAX	     4096
#define DAY_SECONDS  86400
#define SERIAL_BYTES 16 /* RFC 5280: positive, at most 20 octets; 16 random ones can not collide */

/* --- randomness -------------------------------------------------------------- */

struct rng {
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
};

/* The kernel's CSPRNG, named explicitly so the seed never depends on which
 * platform sources this mbedtls build enabled. getrandom() without flags
 * waits until the kernel pool is initialised, which matters at first boot. */
static int getrandom_source(void *data, unsigned char *out, size_t len, size_t *olen)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom(out + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
		got += (size_t)n;
	}
	*olen = got;
	return 0;
}

static int rng_init(struct rng *r)
{
	static const char personal[] = "cubeos appliance CA";
	mbedtls_entropy_init(&r->entropy);
	mbedtls_ctr_drbg_init(&r->drbg);
	int rc = mbedtls_entropy_add_source(&r->entropy, getrandom_source, NULL, 32, MBEDTLS_ENTROPY_SOURCE_STRONG);
	if (rc == 0)
		rc = mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy, (const unsigned char *)personal,
					   sizeof personal - 1);
	return rc;
}

static void rng_free(struct rng *r)
{
	mbedtls_ctr_drbg_free(&r->drbg);
	mbedtls_entropy_free(&r->entropy);
}

/* --- small helpers ------------------------------------------------------------ */

static void tls_error(char *err, size_t errsz, const char *what, int rc)
{
	char reason[128];
	mbedtls_strerror(rc, reason, sizeof reason);
	snprintf(err, errsz, "%s: %s (-0x%04x)", what, reason, (unsigned)-rc);
}

/* X.509 time as mbedtls_x509write_crt_set_validity wants it: YYYYMMDDhhmmss, UTC. */
static void x509_time(time_t t, char out[16])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

static int set_validity(mbedtls_x509write_cert *crt, int days)
{
	/* An hour back: a client whose clock is slightly behind still accepts a certificate made just now. */
	time_t now = time(NULL);
	char from[16], to[16];
	x509_time(now - 3600, from);
	x509_time(now + (time_t)days * DAY_SECONDS, to);
	return mbedtls_x509write_crt_set_validity(crt, from, to);
}

static int set_random_serial(mbedtls_x509write_cert *crt, struct rng *r)
{
	unsigned char b[SERIAL_BYTES];
	int rc = mbedtls_ctr_drbg_random(&r->drbg, b, sizeof b);
	if (rc)
		return rc;
	b[0] = (unsigned char)((b[0] & 0x7f) | 0x40); /* positive, and no leading zero octet */
	mbedtls_mpi serial;
	mbedtls_mpi_init(&serial);
	rc = mbedtls_mpi_read_binary(&serial, b, sizeof b);
	if (rc == 0)
		rc = mbedtls_x509write_crt_set_serial(crt, &serial);
	mbedtls_mpi_free(&serial);
	return rc;
}

static int make_ec_key(mbedtls_pk_context *key, struct rng *r)
{
	int rc = mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
	if (rc == 0)
		rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key), mbedtls_ctr_drbg_random,
					 &r->drbg);
	return rc;
}

/* Keeps only characters that need no escaping in an X.509 name string. */
static void name_safe(char *dst, size_t dstsz, const char *src)
{
	size_t k = 0;
	for (; *src && k + 1 < dstsz; src++)
		if ((*src >= 'a' && *src <= 'z') || (*src >= 'A' && *src <= 'Z') || (*src >= '0' && *src <= '9') ||
		    *src == '-' || *src == '.')
			dst[k++] = *src;
	dst[k] = '\0';
}

/* A DNS name we are willing to put in a certificate: LDH labels of 1..63
 * characters, 253 in all, no wildcard (the wildcard is added by us). */
static bool valid_domain(const char *d)
{
	size_t n = strlen(d), label = 0;
	if (n == 0 || n > 253 || d[0] == '.' || d[n - 1] == '.' || d[0] == '-')
		return false;
	for (const char *p = d; *p; p++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
		if (++label > 63 || (label == 1 && *p == '-'))
			return false;
	}
	return true;
}

/* Writes PEM text to the config directory with the given mode. */
static int write_pem(const struct config *c, const char *name, const unsigned char *pem, unsigned mode)
{
	return config_write_mode(c, name, (const char *)pem, strlen((const char *)pem), mode);
}

/* --- certificate extensions mbedtls 2.28 has no writer for ------------------- */

/* One GeneralName: [tag] IMPLICIT, primitive. Written backwards, as asn1write does. */
static int write_general_name(unsigned char **p, unsigned char *start, int tag, const void *data, size_t n)
{
	int ret;
	size_t len = 0;
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(p, start, data, n));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(p, start, len));
	MBEDTLS_ASN1_CHK_ADD(len,
			     mbedtls_asn1_write_tag(p, start, (unsigned char)(MBEDTLS_ASN1_CONTEXT_SPECIFIC | tag)));
	return (int)len;
}

struct ip_addr {
	unsigned char b[16];
	size_t len; /* 4 or 16 */
};

/* subjectAltName: dNSName domain, dNSName *.domain, then iPAddress for each IP. */
static int set_san(mbedtls_x509write_cert *crt, const char *domain, const struct ip_addr *ips, size_t nips)
{
	unsigned char buf[1024];
	unsigned char *p = buf + sizeof buf;
	char wildcard[260];
	snprintf(wildcard, sizeof wildcard, "*.%s", domain);
	int ret;
	size_t len = 0;
	for (size_t i = nips; i-- > 0;)
		MBEDTLS_ASN1_CHK_ADD(len, write_general_name(&p, buf, 7, ips[i].b, ips[i].len));
	MBEDTLS_ASN1_CHK_ADD(len, write_general_name(&p, buf, 2, wildcard, strlen(wildcard)));
	MBEDTLS_ASN1_CHK_ADD(len, write_general_name(&p, buf, 2, domain, strlen(domain)));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
	return mbedtls_x509write_crt_set_extension(crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
						   MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, p, len);
}

/* extendedKeyUsage: serverAuth only, so the key can not be used to sign anything else. */
static int set_eku_server_auth(mbedtls_x509write_cert *crt)
{
	unsigned char buf[32];
	unsigned char *p = buf + sizeof buf;
	int ret;
	size_t len = 0;
	MBEDTLS_ASN1_CHK_ADD(
	    len, mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
	return mbedtls_x509write_crt_set_extension(crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
						   MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0, p, len);
}

/* --- signing ------------------------------------------------------------------ */

/* mbedtls 2.28 writes the ecdsa-with-SHA256 AlgorithmIdentifier with a NULL
 * parameter. RFC 5758 says it MUST be absent, and strict verifiers (Chrome,
 * BoringSSL, webpki) refuse the certificate; OpenSSL tolerates it. So the
 * certificate is put together again from mbedtls's TBSCertificate with the
 * parameter removed, and signed again. */
static const unsigned char ecdsa_sha256_with_null[] = {0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48,
						       0xce, 0x3d, 0x04, 0x03, 0x02, 0x05, 0x00};
static const unsigned char ecdsa_sha256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

#define CERT_DER_MAX 2048

/* The TBSCertificate in der[0..n) with the signature AlgorithmIdentifier
 * rewritten, at *out (inside buf, written backwards). Its length, or < 0. */
static int tbs_without_null_param(unsigned char *der, size_t n, unsigned char *buf, size_t bufsz, unsigned char **out)
{
	unsigned char *p = der, *end = der + n, *q;
	size_t len, l;
	int ret = mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
	if (!ret)
		ret = mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
	if (ret)
		return ret;
	unsigned char *tbs_end = p + len;
	q = p;
	/* version [0], serialNumber, then the AlgorithmIdentifier */
	if (!(ret =
		  mbedtls_asn1_get_tag(&q, tbs_end, &l, MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0)))
		q += l;
	if (!ret && !(ret = mbedtls_asn1_get_tag(&q, tbs_end, &l, MBEDTLS_ASN1_INTEGER)))
		q += l;
	if (ret)
		return ret;
	if ((size_t)(tbs_end - q) < sizeof ecdsa_sha256_with_null ||
	    memcmp(q, ecdsa_sha256_with_null, sizeof ecdsa_sha256_with_null) != 0)
		return MBEDTLS_ERR_X509_INVALID_ALG;
	unsigned char *w = buf + bufsz;
	len = 0;
	unsigned char *after = q + sizeof ecdsa_sha256_with_null;
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&w, buf, after, (size_t)(tbs_end - after)));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&w, buf, ecdsa_sha256, sizeof ecdsa_sha256));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&w, buf, p, (size_t)(q - p)));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&w, buf, len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&w, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
	*out = w;
	return (int)len;
}

/* Certificate ::= SEQUENCE { tbs, signatureAlgorithm, signatureValue }, signed by issuer_key. */
static int resign(const unsigned char *tbs, size_t tbs_len, mbedtls_pk_context *issuer_key, struct rng *r,
		  unsigned char *buf, size_t bufsz, unsigned char **out)
{
	unsigned char hash[32], sig[MBEDTLS_ECDSA_MAX_LEN];
	size_t sig_len = 0, len = 0;
	int ret = mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), tbs, tbs_len, hash);
	if (!ret)
		ret = mbedtls_pk_sign(issuer_key, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, &sig_len,
				      mbedtls_ctr_drbg_random, &r->drbg);
	if (ret)
		return ret;
	unsigned char *w = buf + bufsz;
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_bitstring(&w, buf, sig, sig_len * 8));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&w, buf, ecdsa_sha256, sizeof ecdsa_sha256));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&w, buf, tbs, tbs_len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&w, buf, len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&w, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
	*out = w;
	return (int)len;
}

/* Signs crt with issuer_key (ECDSA P-256, SHA-256) and writes it as PEM. */
static int sign_cert_pem(mbedtls_x509write_cert *crt, mbedtls_pk_context *issuer_key, struct rng *r, unsigned char *pem,
			 size_t pemsz)
{
	unsigned char der[CERT_DER_MAX], tbs_buf[CERT_DER_MAX], cert_buf[CERT_DER_MAX], *tbs = NULL, *cert;
	int n = mbedtls_x509write_crt_der(crt, der, sizeof der, mbedtls_ctr_drbg_random, &r->drbg);
	if (n < 0)
		return n;
	/* mbedtls writes the DER at the end of the buffer. */
	unsigned char *start = der + sizeof der - n;
	int tbs_len = tbs_without_null_param(start, (size_t)n, tbs_buf, sizeof tbs_buf, &tbs);
	int cert_len = n;
	cert = start;
	if (tbs_len == MBEDTLS_ERR_X509_INVALID_ALG) {
		/* Already without the parameter: use mbedtls's own signature. */
	} else if (tbs_len < 0) {
		return tbs_len;
	} else if ((cert_len = resign(tbs, (size_t)tbs_len, issuer_key, r, cert_buf, sizeof cert_buf, &cert)) < 0) {
		return cert_len;
	}
	size_t olen;
	return mbedtls_pem_write_buffer("-----BEGIN CERTIFICATE-----\n", "-----END CERTIFICATE-----\n", cert,
					(size_t)cert_len, pem, pemsz, &olen);
}

/* --- the CA -------------------------------------------------------------------- */

/* The self-signed CA certificate for key, as PEM into pem. */
static int write_ca_cert(mbedtls_pk_context *key, const char *hostname, struct rng *r, unsigned char *pem, size_t pemsz)
{
	char host[64], subject[160];
	name_safe(host, sizeof host, hostname);
	snprintf(subject, sizeof subject, "CN=CubeOS appliance CA%s%s,O=CubeOS", host[0] ? " " : "", host);

	mbedtls_x509write_cert crt;
	mbedtls_x509write_crt_init(&crt);
	mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&crt, key);
	mbedtls_x509write_crt_set_issuer_key(&crt, key);
	int rc = mbedtls_x509write_crt_set_subject_name(&crt, subject);
	if (!rc)
		rc = mbedtls_x509write_crt_set_issuer_name(&crt, subject);
	if (!rc)
		rc = set_random_serial(&crt, r);
	if (!rc)
		rc = set_validity(&crt, CA_VALIDITY_DAYS);
	/* pathlen 0: the CA signs only leaf certificates, never another CA. */
	if (!rc)
		rc = mbedtls_x509write_crt_set_basic_constraints(&crt, 1, 0);
	if (!rc)
		rc =
		    mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN);
	if (!rc)
		rc = mbedtls_x509write_crt_set_subject_key_identifier(&crt);
	if (!rc)
		rc = mbedtls_x509write_crt_set_authority_key_identifier(&crt);
	if (!rc)
		rc = sign_cert_pem(&crt, key, r, pem, pemsz);
	mbedtls_x509write_crt_free(&crt);
	return rc;
}

int ca_generate(const struct config *c)
{
	struct rng r;
	mbedtls_pk_context key;
	mbedtls_pk_init(&key);
	unsigned char key_pem[PEM_MAX] = "", crt_pem[PEM_MAX] = "";
	char err[200] = "";
	int rc = rng_init(&r);
	if (rc)
		tls_error(err, sizeof err, "seeding the random generator", rc);
	if (!rc && (rc = make_ec_key(&key, &r)))
		tls_error(err, sizeof err, "making the CA key", rc);
	if (!rc && (rc = mbedtls_pk_write_key_pem(&key, key_pem, sizeof key_pem)))
		tls_error(err, sizeof err, "encoding the CA key", rc);
	if (!rc && (rc = write_ca_cert(&key, c->hostname, &r, crt_pem, sizeof crt_pem)))
		tls_error(err, sizeof err, "signing the CA certificate", rc);
	/* Key first: a certificate on disk always has its key. */
	if (!rc && (write_pem(c, CA_KEY_FILE, key_pem, 0600) < 0 || write_pem(c, CA_CERT_FILE, crt_pem, 0644) < 0)) {
		snprintf(err, sizeof err, "writing %s and %s in %s: %s", CA_KEY_FILE, CA_CERT_FILE, c->dir,
			 strerror(errno));
		rc = -1;
	}
	mbedtls_platform_zeroize(key_pem, sizeof key_pem);
	mbedtls_pk_free(&key);
	rng_free(&r);
	if (rc) {
		log_error("ca.generate", "cannot make the appliance CA: %s", err);
		errno = EIO;
		return -1;
	}
	return 0;
}

char *ca_cert_pem(const struct config *c)
{
	return config_read(c, CA_CERT_FILE, NULL);
}

int ca_fingerprint(const char *pem, char out[CA_FINGERPRINT_LEN])
{
	mbedtls_x509_crt crt;
	mbedtls_x509_crt_init(&crt);
	int rc = mbedtls_x509_crt_parse(&crt, (const unsigned char *)pem, strlen(pem) + 1);
	if (rc == 0) {
		uint8_t d[SHA256_DIGEST_LEN];
		sha256(crt.raw.p, crt.raw.len, d);
		for (size_t i = 0; i < sizeof d; i++)
			snprintf(out + 3 * i, 4, "%02X%s", d[i], i + 1 < sizeof d ? ":" : "");
	}
	mbedtls_x509_crt_free(&crt);
	return rc ? -1 : 0;
}

/* Reads and parses ca.crt and ca.key, and checks that they are a CA and its key. */
static int load_ca(const struct config *c, mbedtls_x509_crt *crt, mbedtls_pk_context *key, char *err, size_t errsz)
{
	size_t clen = 0, klen = 0;
	char *cpem = config_read(c, CA_CERT_FILE, &clen);
	char *kpem = cpem ? config_read(c, CA_KEY_FILE, &klen) : NULL;
	int rc = -1;
	if (!cpem || !kpem)
		snprintf(err, errsz, "reading %s/%s: %s", c->dir, cpem ? CA_KEY_FILE : CA_CERT_FILE, strerror(errno));
	else if ((rc = mbedtls_x509_crt_parse(crt, (const unsigned char *)cpem, clen + 1)))
		tls_error(err, errsz, "parsing " CA_CERT_FILE, rc);
	else if ((rc = mbedtls_pk_parse_key(key, (const unsigned char *)kpem, klen + 1, NULL, 0)))
		tls_error(err, errsz, "parsing " CA_KEY_FILE, rc);
	else if ((rc = mbedtls_pk_check_pair(&crt->pk, key)))
		tls_error(err, errsz, CA_KEY_FILE " does not belong to " CA_CERT_FILE, rc);
	else if (!crt->ca_istrue) {
		snprintf(err, errsz, "%s is not a CA certificate", CA_CERT_FILE);
		rc = -1;
	}
	if (kpem)
		mbedtls_platform_zeroize(kpem, klen);
	free(kpem);
	free(cpem);
	return rc ? -1 : 0;
}

static bool config_file_exists(const struct config *c, const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", c->dir, name);
	return access(path, F_OK) == 0;
}

int ca_ensure(const struct config *c, bool *made, char fingerprint[CA_FINGERPRINT_LEN])
{
	*made = false;
	bool have_crt = config_file_exists(c, CA_CERT_FILE), have_key = config_file_exists(c, CA_KEY_FILE);
	if (!have_crt || !have_key) {
		if (have_crt || have_key)
			log_warn("ca.partial", "%s/%s is missing: making a new appliance CA", c->dir,
				 have_crt ? CA_KEY_FILE : CA_CERT_FILE);
		if (ca_generate(c) < 0)
			return -1;
		*made = true;
	}
	/* Load what is on disk, new or old, so a damaged pair is reported now
	 * rather than when the proxy first needs it. A damaged CA is never
	 * replaced silently: clients may trust it. */
	mbedtls_x509_crt crt;
	mbedtls_pk_context key;
	mbedtls_x509_crt_init(&crt);
	mbedtls_pk_init(&key);
	char err[256];
	int rc = load_ca(c, &crt, &key, err, sizeof err);
	mbedtls_pk_free(&key);
	mbedtls_x509_crt_free(&crt);
	if (rc < 0) {
		log_error("ca.load", "the appliance CA in %s is unusable: %s (remove %s and %s to make a new one)",
			  c->dir, err, CA_CERT_FILE, CA_KEY_FILE);
		errno = EINVAL;
		return -1;
	}
	char fp[CA_FINGERPRINT_LEN];
	char *pem = ca_cert_pem(c);
	rc = pem ? ca_fingerprint(pem, fp) : -1;
	free(pem);
	if (rc < 0)
		return -1;
	if (fingerprint)
		memcpy(fingerprint, fp, sizeof fp);
	if (*made)
		log_info("ca.created", "appliance CA made, SHA-256 fingerprint %s", fp);
	return 0;
}

/* --- the server certificate ------------------------------------------------------- */

static int parse_ips(const char *const *ips, size_t nips, struct ip_addr *out, char *err, size_t errsz)
{
	if (nips > CA_SERVER_IPS_MAX) {
		snprintf(err, errsz, "at most %d IP addresses", CA_SERVER_IPS_MAX);
		return -1;
	}
	for (size_t i = 0; i < nips; i++) {
		if (inet_pton(AF_INET, ips[i], out[i].b) == 1)
			out[i].len = 4;
		else if (inet_pton(AF_INET6, ips[i], out[i].b) == 1)
			out[i].len = 16;
		else {
			snprintf(err, errsz, "not an IP address: \"%.60s\"", ips[i]);
			return -1;
		}
	}
	return 0;
}

/* The leaf certificate for domain, signed by ca_key, as PEM into pem. */
static int write_server_cert(mbedtls_pk_context *key, mbedtls_x509_crt *ca, mbedtls_pk_context *ca_key,
			     const char *domain, const struct ip_addr *ips, size_t nips, struct rng *r,
			     unsigned char *pem, size_t pemsz)
{
	char subject[300], issuer[512];
	snprintf(subject, sizeof subject, "CN=%s", domain);
	/* The issuer name string comes back out of the CA certificate; the
	 * caller checks that it re-encodes to exactly the CA's subject. */
	int rc = mbedtls_x509_dn_gets(issuer, sizeof issuer, &ca->subject);
	if (rc < 0)
		return rc;
	for (char *s; (s = strstr(issuer, ", "));)
		memmove(s + 1, s + 2, strlen(s + 2) + 1);

	mbedtls_x509write_cert crt;
	mbedtls_x509write_crt_init(&crt);
	mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&crt, key);
	mbedtls_x509write_crt_set_issuer_key(&crt, ca_key);
	rc = mbedtls_x509write_crt_set_subject_name(&crt, subject);
	if (!rc)
		rc = mbedtls_x509write_crt_set_issuer_name(&crt, issuer);
	if (!rc)
		rc = set_random_serial(&crt, r);
	if (!rc)
		rc = set_validity(&crt, CA_SERVER_VALIDITY_DAYS);
	if (!rc)
		rc = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1);
	/* ECDHE-ECDSA handshakes need only digitalSignature. */
	if (!rc)
		rc = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
	if (!rc)
		rc = set_eku_server_auth(&crt);
	if (!rc)
		rc = set_san(&crt, domain, ips, nips);
	if (!rc)
		rc = mbedtls_x509write_crt_set_subject_key_identifier(&crt);
	/* OpenSSL's strict mode (Python 3.13's default) requires it. */
	if (!rc)
		rc = mbedtls_x509write_crt_set_authority_key_identifier(&crt);
	if (!rc)
		rc = sign_cert_pem(&crt, ca_key, r, pem, pemsz);
	mbedtls_x509write_crt_free(&crt);
	return rc;
}

/* The new certificate must verify against the CA for its own domain before it
 * replaces anything on disk. */
static int check_issued(const unsigned char *pem, mbedtls_x509_crt *ca, const char *domain, char *err, size_t errsz)
{
	mbedtls_x509_crt leaf;
	mbedtls_x509_crt_init(&leaf);
	uint32_t flags = 0;
	int rc = mbedtls_x509_crt_parse(&leaf, pem, strlen((const char *)pem) + 1);
	if (rc)
		tls_error(err, errsz, "parsing the new certificate", rc);
	else if (leaf.issuer_raw.len != ca->subject_raw.len ||
		 memcmp(leaf.issuer_raw.p, ca->subject_raw.p, leaf.issuer_raw.len) != 0) {
		snprintf(err, errsz, "the new certificate's issuer does not match the CA's subject");
		rc = -1;
	} else if ((rc = mbedtls_x509_crt_verify(&leaf, ca, NULL, domain, &flags, NULL, NULL)))
		snprintf(err, errsz, "the new certificate does not verify (flags 0x%x)", flags);
	mbedtls_x509_crt_free(&leaf);
	return rc ? -1 : 0;
}

int ca_issue_server_cert(const struct config *c, const char *domain, const char *const *ips, size_t nips, char *err,
			 size_t errsz)
{
	struct ip_addr addrs[CA_SERVER_IPS_MAX];
	if (!valid_domain(domain)) {
		snprintf(err, errsz, "not a valid domain name: \"%.60s\"", domain);
		return -1;
	}
	if (parse_ips(ips, nips, addrs, err, errsz) < 0)
		return -1;

	struct rng r;
	mbedtls_x509_crt ca;
	mbedtls_pk_context ca_key, key;
	mbedtls_x509_crt_init(&ca);
	mbedtls_pk_init(&ca_key);
	mbedtls_pk_init(&key);
	unsigned char key_pem[PEM_MAX] = "", crt_pem[PEM_MAX] = "";
	int rc = rng_init(&r);
	if (rc)
		tls_error(err, errsz, "seeding the random generator", rc);
	if (!rc)
		rc = load_ca(c, &ca, &ca_key, err, errsz);
	if (!rc && (rc = make_ec_key(&key, &r)))
		tls_error(err, errsz, "making the server key", rc);
	if (!rc && (rc = mbedtls_pk_write_key_pem(&key, key_pem, sizeof key_pem)))
		tls_error(err, errsz, "encoding the server key", rc);
	if (!rc && (rc = write_server_cert(&key, &ca, &ca_key, domain, addrs, nips, &r, crt_pem, sizeof crt_pem)))
		tls_error(err, errsz, "signing the server certificate", rc);
	if (!rc)
		rc = check_issued(crt_pem, &ca, domain, err, errsz);
	if (!rc && (write_pem(c, CA_SERVER_KEY_FILE, key_pem, 0600) < 0 ||
		    write_pem(c, CA_SERVER_CERT_FILE, crt_pem, 0644) < 0)) {
		snprintf(err, errsz, "writing %s and %s in %s: %s", CA_SERVER_KEY_FILE, CA_SERVER_CERT_FILE, c->dir,
			 strerror(errno));
		rc = -1;
	}
	mbedtls_platform_zeroize(key_pem, sizeof key_pem);
	mbedtls_pk_free(&key);
	mbedtls_pk_free(&ca_key);
	mbedtls_x509_crt_free(&ca);
	rng_free(&r);
	if (rc)
		return -1;
	log_info("ca.server_cert", "issued %s for %s and *.%s (%zu IP addresses), valid %d days", CA_SERVER_CERT_FILE,
		 domain, domain, nips, CA_SERVER_VALIDITY_DAYS);
	return 0;
}
