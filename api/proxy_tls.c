/* proxy_tls.c - TLS sessions for cube-proxy's clients (mbedtls 2.28); see proxy_tls.h. */
#include "proxy_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "../lib/log.h"

/* The daemon links thirdparty's musl build, the tests Debian's
 * libmbedtls-dev: both must be the API this file is written against. */
#if MBEDTLS_VERSION_NUMBER < 0x021C0000 || MBEDTLS_VERSION_NUMBER >= 0x03000000
#error "api/proxy_tls.c needs mbedtls 2.28.x"
#endif

#define SESSION_CACHE_ENTRIES 1024
#define DROP_LOG_INTERVAL_S   60 /* "no certificate" is logged at most this often */

/* Forward secrecy and AEAD only. The ECDSA suites serve the appliance CA's
 * P-256 certificates; the RSA ones an operator's RSA certificate. */
static const int cipher_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

/* The relay speaks HTTP/1.1 only; a client offering h2 as well gets http/1.1. */
static const char *alpn_protocols[] = {"http/1.1", NULL};

/* One loaded certificate + key and the TLS configuration built on them.
 * Reference-counted: a reload must not pull them from under live sessions. */
struct creds {
	int refs;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt crt;
	mbedtls_pk_context key;
	mbedtls_ssl_cache_context cache;
	mbedtls_ssl_config conf;
};

/* What the files looked like when last tried; a replace (rename) changes the inode. */
struct file_sig {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct proxy_tls {
	char *cert_path, *key_path;
	struct creds *cur; /* NULL: none loaded yet */
	bool tried;
	struct file_sig cert_sig, key_sig;
	time_t last_drop_log;
};

struct tls_session {
	struct creds *creds;
	mbedtls_ssl_context ssl;
	int fd;
	char peer[64]; /* for the log: a reset socket can no longer tell */
	bool handshake_done;
	bool failed;
	/* After WANT_WRITE mbedtls holds a record of this many bytes of the
	 * caller's data; the retry must pass exactly that length again. */
	size_t write_pending;
};

/* --- credentials ------------------------------------------------------------------ */

/* The kernel's CSPRNG, named explicitly so seeding never depends on which
 * platform entropy sources the mbedtls build enabled. */
static int getrandom_source(void *data, unsigned char *out, size_t len, size_t *olen)
{
	(void)data;
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

static void creds_unref(struct creds *c)
{
	if (!c || --c->refs > 0)
		return;
	mbedtls_ssl_config_free(&c->conf);
	mbedtls_ssl_cache_free(&c->cache);
	mbedtls_pk_free(&c->key);
	mbedtls_x509_crt_free(&c->crt);
	mbedtls_ctr_drbg_free(&c->drbg);
	mbedtls_entropy_free(&c->entropy);
	free(c);
}

static void tls_reason(char *err, size_t errsz, const char *what, const char *path, int rc)
{
	char reason[128];
	mbedtls_strerror(rc, reason, sizeof reason);
	snprintf(err, errsz, "%s %s: %s (-0x%04x)", what, path, reason, (unsigned)-rc);
}

static int creds_configure(struct creds *c)
{
	mbedtls_ssl_config *conf = &c->conf;
	int rc = mbedtls_ssl_config_defaults(conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
					     MBEDTLS_SSL_PRESET_DEFAULT);
	if (rc)
		return rc;
	mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random, &c->drbg);
	mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3); /* TLS 1.2 */
	mbedtls_ssl_conf_ciphersuites(conf, cipher_suites);
	mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
	rc = mbedtls_ssl_conf_alpn_protocols(conf, alpn_protocols);
	if (rc)
		return rc;
	mbedtls_ssl_cache_set_max_entries(&c->cache, SESSION_CACHE_ENTRIES);
	mbedtls_ssl_conf_session_cache(conf, &c->cache, mbedtls_ssl_cache_get, mbedtls_ssl_cache_set);
	return mbedtls_ssl_conf_own_cert(conf, &c->crt, &c->key);
}

/* Loads the pair and builds its configuration; NULL with the reason in err. */
static struct creds *creds_load(const char *cert_path, const char *key_path, char *err, size_t errsz)
{
	static const char personal[] = "cube-proxy tls";
	struct creds *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	c->refs = 1;
	mbedtls_entropy_init(&c->entropy);
	mbedtls_ctr_drbg_init(&c->drbg);
	mbedtls_x509_crt_init(&c->crt);
	mbedtls_pk_init(&c->key);
	mbedtls_ssl_cache_init(&c->cache);
	mbedtls_ssl_config_init(&c->conf);

	int rc = mbedtls_entropy_add_source(&c->entropy, getrandom_source, NULL, 32, MBEDTLS_ENTROPY_SOURCE_STRONG);
	if (!rc)
		rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, (const unsigned char *)personal,
					   sizeof personal - 1);
	if (rc)
		tls_reason(err, errsz, "seeding the random generator for", cert_path, rc);
	else if ((rc = mbedtls_x509_crt_parse_file(&c->crt, cert_path)) != 0)
		/* > 0: some certificates in the file did not parse */
		tls_reason(err, errsz, "reading", cert_path, rc < 0 ? rc : MBEDTLS_ERR_X509_INVALID_FORMAT);
	else if ((rc = mbedtls_pk_parse_keyfile(&c->key, key_path, NULL)) != 0)
		tls_reason(err, errsz, "reading", key_path, rc);
	else if ((rc = mbedtls_pk_check_pair(&c->crt.pk, &c->key)) != 0)
		/* Normal for a moment during a re-issue: the key is written first. */
		snprintf(err, errsz, "%s does not belong to %s", key_path, cert_path);
	else if ((rc = creds_configure(c)) != 0)
		tls_reason(err, errsz, "configuring TLS with", cert_path, rc);
	if (rc) {
		creds_unref(c);
		return NULL;
	}
	return c;
}

static void log_loaded(const struct proxy_tls *t)
{
	const mbedtls_x509_crt *crt = &t->cur->crt;
	char subject[256] = "?";
	mbedtls_x509_dn_gets(subject, sizeof subject, &crt->subject);
	const mbedtls_x509_time *to = &crt->valid_to;
	log_info("proxy.tls_cert", "loaded %s (%s), valid until %04d-%02d-%02d", t->cert_path, subject, to->year,
		 to->mon, to->day);
	if (mbedtls_x509_time_is_past(&crt->valid_to))
		log_warn("proxy.tls_cert", "%s has expired: clients will refuse it (re-issue it with `ca issue`)",
			 t->cert_path);
}

static void file_sig_of(const char *path, struct file_sig *s)
{
	struct stat st;
	*s = (struct file_sig){0};
	if (stat(path, &st) < 0)
		return;
	*s = (struct file_sig){true, st.st_dev, st.st_ino, st.st_size, st.st_mtim};
}

static bool file_sig_eq(const struct file_sig *a, const struct file_sig *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

int proxy_tls_reload(struct proxy_tls *t, bool force)
{
	struct file_sig cs, ks;
	file_sig_of(t->cert_path, &cs);
	file_sig_of(t->key_path, &ks);
	if (!force && t->tried && file_sig_eq(&cs, &t->cert_sig) && file_sig_eq(&ks, &t->key_sig))
		return t->cur ? 0 : -1;
	t->tried = true;
	t->cert_sig = cs;
	t->key_sig = ks;
	char err[512];
	struct creds *c = NULL;
	if (!cs.exists || !ks.exists)
		snprintf(err, sizeof err, "%s is missing", cs.exists ? t->key_path : t->cert_path);
	else
		c = creds_load(t->cert_path, t->key_path, err, sizeof err);
	if (!c) {
		log_warn("proxy.tls_cert", "%s: %s", err,
			 t->cur ? "keeping the certificate in use" : "TLS connections are refused until it is there");
		return t->cur ? 0 : -1;
	}
	creds_unref(t->cur);
	t->cur = c;
	log_loaded(t);
	return 0;
}

bool proxy_tls_ready(const struct proxy_tls *t)
{
	return t->cur != NULL;
}

struct proxy_tls *proxy_tls_new(const char *cert_path, const char *key_path)
{
	struct proxy_tls *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->cert_path = strdup(cert_path);
	t->key_path = strdup(key_path);
	if (!t->cert_path || !t->key_path) {
		proxy_tls_free(t);
		return NULL;
	}
	proxy_tls_reload(t, true);
	return t;
}

void proxy_tls_free(struct proxy_tls *t)
{
	if (!t)
		return;
	creds_unref(t->cur);
	free(t->cert_path);
	free(t->key_path);
	free(t);
}

/* --- the socket under a session --------------------------------------------------- */

static int bio_send(void *ctx, const unsigned char *p, size_t n)
{
	const struct tls_session *s = ctx;
	for (;;) {
		ssize_t k = send(s->fd, p, n, MSG_NOSIGNAL);
		if (k >= 0)
			return (int)k;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return MBEDTLS_ERR_SSL_WANT_WRITE;
		return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_SEND_FAILED;
	}
}

static int bio_recv(void *ctx, unsigned char *p, size_t n)
{
	const struct tls_session *s = ctx;
	for (;;) {
		ssize_t k = read(s->fd, p, n);
		if (k >= 0)
			return (int)k; /* 0: EOF, which mbedtls reports as CONN_EOF */
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return MBEDTLS_ERR_SSL_WANT_READ;
		return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
	}
}

/* --- the transport ------------------------------------------------------------------ */

static void peer_of(int fd, char *out, size_t n)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		ss.ss_family = AF_UNSPEC;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		port = ntohs(a->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		port = ntohs(a->sin6_port);
	}
	snprintf(out, n, "%s:%d", ip, port);
}

/* WANT_* become EAGAIN and the event to wait for; anything else ends the
 * session (the relay sees EOF or a failed write and closes). */
static ssize_t session_error(struct tls_session *s, int rc, uint32_t *want, const char *during)
{
	if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
		*want = rc == MBEDTLS_ERR_SSL_WANT_READ ? EPOLLIN : EPOLLOUT;
		errno = EAGAIN;
		return -1;
	}
	if (!s->failed) {
		s->failed = true;
		char reason[128];
		mbedtls_strerror(rc, reason, sizeof reason);
		/* A client that does not trust the appliance CA ends the handshake
		 * with an alert: worth a line, it is the usual setup mistake. A
		 * bare close or reset (port probes) is not. */
		bool quiet = rc == MBEDTLS_ERR_SSL_CONN_EOF || rc == MBEDTLS_ERR_NET_CONN_RESET;
		log_emit(quiet ? LOG_DEBUG : LOG_INFO, "proxy.tls_error", "peer %s: %s %s (-0x%04x)", s->peer, during,
			 reason, (unsigned)-rc);
	}
	errno = rc == MBEDTLS_ERR_NET_CONN_RESET ? ECONNRESET : EPROTO;
	return -1;
}

/* 0 once the handshake is done, else -1 with errno (EAGAIN + *want). */
static int step_handshake(struct tls_session *s, uint32_t *want)
{
	if (s->handshake_done)
		return 0;
	if (s->failed) {
		errno = EPROTO;
		return -1;
	}
	int rc = mbedtls_ssl_handshake(&s->ssl);
	if (rc == 0) {
		s->handshake_done = true;
		return 0;
	}
	return (int)session_error(s, rc, want, "handshake:");
}

static ssize_t tls_read(void *ctx, int fd, void *p, size_t n, uint32_t *want)
{
	(void)fd;
	struct tls_session *s = ctx;
	if (step_handshake(s, want) < 0)
		return -1;
	if (s->failed) {
		errno = EPROTO;
		return -1;
	}
	int rc = mbedtls_ssl_read(&s->ssl, p, n < INT_MAX ? n : INT_MAX);
	if (rc > 0)
		return rc;
	/* A close without close_notify is an EOF too: HTTP framing says
	 * whether anything was cut short. */
	if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == MBEDTLS_ERR_SSL_CONN_EOF)
		return 0;
	return session_error(s, rc, want, "read:");
}

static ssize_t tls_write(void *ctx, int fd, const void *p, size_t n, uint32_t *want)
{
	(void)fd;
	struct tls_session *s = ctx;
	if (step_handshake(s, want) < 0)
		return -1;
	if (s->failed) {
		errno = EPIPE;
		return -1;
	}
	size_t len = s->write_pending ? s->write_pending : n;
	int rc = mbedtls_ssl_write(&s->ssl, p, len < INT_MAX ? len : INT_MAX);
	if (rc >= 0) {
		s->write_pending = 0;
		return rc;
	}
	if (rc == MBEDTLS_ERR_SSL_WANT_WRITE && !s->write_pending) {
		int max = mbedtls_ssl_get_max_out_record_payload(&s->ssl);
		s->write_pending = max > 0 && (size_t)max < len ? (size_t)max : len;
	}
	if (session_error(s, rc, want, "write:") < 0 && errno != EAGAIN)
		errno = EPIPE;
	return -1;
}

/* close_notify, then the TCP half-close. If the alert cannot go out at once
 * (a full socket) the socket is left as it is: a half-close under a queued
 * alert would cut it, and the connection is closed soon anyway. */
static int tls_shutdown(void *ctx, int fd)
{
	struct tls_session *s = ctx;
	if (s->handshake_done && !s->failed) {
		int rc = mbedtls_ssl_close_notify(&s->ssl);
		if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
			errno = EAGAIN;
			return -1;
		}
	}
	return shutdown(fd, SHUT_WR);
}

static size_t tls_pending(void *ctx)
{
	struct tls_session *s = ctx;
	return mbedtls_ssl_get_bytes_avail(&s->ssl) + (mbedtls_ssl_check_pending(&s->ssl) ? 1 : 0);
}

static void tls_free(void *ctx)
{
	struct tls_session *s = ctx;
	if (!s)
		return;
	mbedtls_ssl_free(&s->ssl);
	creds_unref(s->creds);
	free(s);
}

const struct proxy_transport_ops proxy_tls_ops = {
    .read = tls_read,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .pending = tls_pending,
    .free = tls_free,
    .scheme = "https",
};

int proxy_tls_wrap(void *arg, int fd, const struct proxy_transport_ops **ops, void **ctx)
{
	struct proxy_tls *t = arg;
	proxy_tls_reload(t, false);
	if (!t->cur) {
		time_t now = time(NULL);
		if (now - t->last_drop_log >= DROP_LOG_INTERVAL_S) {
			t->last_drop_log = now;
			log_warn("proxy.tls_refused", "no usable server certificate (%s): TLS connection dropped",
				 t->cert_path);
		}
		return -1;
	}
	struct tls_session *s = calloc(1, sizeof *s);
	if (!s)
		return -1;
	s->fd = fd;
	peer_of(fd, s->peer, sizeof s->peer);
	mbedtls_ssl_init(&s->ssl);
	int rc = mbedtls_ssl_setup(&s->ssl, &t->cur->conf);
	if (rc) {
		char reason[128];
		mbedtls_strerror(rc, reason, sizeof reason);
		log_warn("proxy.tls_error", "cannot start a TLS session: %s", reason);
		mbedtls_ssl_free(&s->ssl);
		free(s);
		return -1;
	}
	s->creds = t->cur;
	t->cur->refs++;
	mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
	*ops = &proxy_tls_ops;
	*ctx = s;
	return 0;
}
