/*
 * oci_http.c - GET over TCP or TLS for the registry client (oci_http.h).
 */
#include "oci_http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "oci.h"

#define DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"
#define MAX_HEAD   (64 * 1024)

struct conn {
	int fd;
	bool tls;
	bool timed_out;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt ca;
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
};

/* --- URLs ---------------------------------------------------------------- */

int oci_url_parse(const char *url, struct oci_url *u)
{
	memset(u, 0, sizeof *u);
	const char *p;
	if (strncasecmp(url, "https://", 8) == 0) {
		u->tls = true;
		p = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		p = url + 7;
	} else {
		return -1;
	}
	size_t hl = strcspn(p, "/?#");
	const char *host_end = p + hl;
	const char *port = NULL;
	const char *hs = p, *he = host_end;
	if (*p == '[') {
		const char *rb = memchr(p, ']', hl);
		if (!rb)
			return -1;
		hs = p + 1;
		he = rb;
		if (rb + 1 < host_end) {
			if (rb[1] != ':')
				return -1;
			port = rb + 2;
		}
	} else {
		const char *colon = memchr(p, ':', hl);
		if (colon) {
			he = colon;
			port = colon + 1;
		}
	}
	if (he == hs || (size_t)(he - hs) >= sizeof u->host || memchr(hs, '@', (size_t)(he - hs)))
		return -1;
	memcpy(u->host, hs, (size_t)(he - hs));
	u->port = u->tls ? 443 : 80;
	if (port) {
		int v = 0;
		if (port == host_end)
			return -1;
		for (const char *q = port; q < host_end; q++) {
			if (*q < '0' || *q > '9' || (v = v * 10 + (*q - '0')) > 65535)
				return -1;
		}
		if (!v)
			return -1;
		u->port = v;
	}
	const char *t = host_end;
	size_t tl = strcspn(t, "#");
	if (tl + 2 > sizeof u->target)
		return -1;
	if (*t != '/')
		u->target[0] = '/';
	memcpy(u->target + (*t != '/'), t, tl);
	for (char *c = u->target; *c; c++)
		if ((unsigned char)*c <= ' ')
			return -1; /* a request line cannot carry them */
	return 0;
}

int oci_url_resolve(const struct oci_url *base, const char *location, struct oci_url *out)
{
	if (strncasecmp(location, "http://", 7) == 0 || strncasecmp(location, "https://", 8) == 0)
		return oci_url_parse(location, out);
	if (location[0] != '/' || location[1] == '/' || strlen(location) + 1 > sizeof out->target)
		return -1;
	*out = *base;
	snprintf(out->target, sizeof out->target, "%s", location);
	for (char *c = out->target; *c; c++)
		if ((unsigned char)*c <= ' ')
			return -1;
	return 0;
}

/* --- transport ------------------------------------------------------------ */

static int bio_send(void *ctx, const unsigned char *p, size_t n)
{
	struct conn *c = ctx;
	ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
	if (w >= 0)
		return (int)w;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		c->timed_out = true;
	return errno == EINTR ? MBEDTLS_ERR_SSL_WANT_WRITE : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *p, size_t n)
{
	struct conn *c = ctx;
	ssize_t r = recv(c->fd, p, n, 0);
	if (r >= 0)
		return (int)r;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		c->timed_out = true;
	return errno == EINTR ? MBEDTLS_ERR_SSL_WANT_READ : MBEDTLS_ERR_NET_RECV_FAILED;
}

static int getrandom_source(void *data, unsigned char *out, size_t len, size_t *olen)
{
	ssize_t n = getrandom(out, len, 0);
	if (n < 0)
		return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
	*olen = (size_t)n;
	return 0;
}

static void tls_reason(char *err, size_t errsz, const char *what, const char *host, int rc)
{
	char reason[128];
	mbedtls_strerror(rc, reason, sizeof reason);
	snprintf(err, errsz, "%s %s: %s", what, host, reason);
}

static int tls_start(struct conn *c, const struct oci_http *h, const char *host, char *err, size_t errsz)
{
	static const char personal[] = "cube-oci";
	const char *ca = h->ca_file ? h->ca_file : DEFAULT_CA;
	c->tls = true;
	mbedtls_entropy_init(&c->entropy);
	mbedtls_ctr_drbg_init(&c->drbg);
	mbedtls_x509_crt_init(&c->ca);
	mbedtls_ssl_config_init(&c->conf);
	mbedtls_ssl_init(&c->ssl);
	int rc = mbedtls_entropy_add_source(&c->entropy, getrandom_source, NULL, 32, MBEDTLS_ENTROPY_SOURCE_STRONG);
	if (!rc)
		rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, (const unsigned char *)personal,
					   sizeof personal - 1);
	if (rc) {
		tls_reason(err, errsz, "seeding the random generator for", host, rc);
		return -1;
	}
	/* > 0: some certificates of the bundle did not parse; the rest serve. */
	rc = mbedtls_x509_crt_parse_file(&c->ca, ca);
	if (rc < 0 || c->ca.version == 0) {
		snprintf(err, errsz, "cannot read the CA bundle %s", ca);
		return -1;
	}
	rc = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
					 MBEDTLS_SSL_PRESET_DEFAULT);
	if (rc) {
		tls_reason(err, errsz, "TLS configuration for", host, rc);
		return -1;
	}
	mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
	mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
	mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
	if ((rc = mbedtls_ssl_setup(&c->ssl, &c->conf)) != 0 || (rc = mbedtls_ssl_set_hostname(&c->ssl, host)) != 0) {
		tls_reason(err, errsz, "TLS setup for", host, rc);
		return -1;
	}
	mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
	while ((rc = mbedtls_ssl_handshake(&c->ssl)) != 0) {
		if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
		if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != (uint32_t)-1) {
			char why[256];
			mbedtls_x509_crt_verify_info(why, sizeof why, "", flags);
			why[strcspn(why, "\n")] = '\0';
			snprintf(err, errsz, "TLS: the certificate of %s is not trusted (%s; CA bundle %s)", host, why,
				 ca);
		} else if (c->timed_out) {
			snprintf(err, errsz, "TLS handshake with %s timed out", host);
		} else {
			tls_reason(err, errsz, "TLS handshake with", host, rc);
		}
		return -1;
	}
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->tls) {
		mbedtls_ssl_free(&c->ssl);
		mbedtls_ssl_config_free(&c->conf);
		mbedtls_x509_crt_free(&c->ca);
		mbedtls_ctr_drbg_free(&c->drbg);
		mbedtls_entropy_free(&c->entropy);
	}
	if (c->fd >= 0)
		close(c->fd);
}

static int conn_send(struct conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w;
		if (c->tls) {
			int r = mbedtls_ssl_write(&c->ssl, (const unsigned char *)p, n);
			if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
				continue;
			w = r < 0 ? -1 : r;
		} else {
			w = send(c->fd, p, n, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				c->timed_out = true;
		}
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Bytes read, 0 at the end of the stream, -1 on error. */
static ssize_t conn_recv(struct conn *c, char *p, size_t n)
{
	for (;;) {
		if (c->tls) {
			int r = mbedtls_ssl_read(&c->ssl, (unsigned char *)p, n);
			if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
				continue;
			if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
				return 0;
			return r < 0 ? -1 : r;
		}
		ssize_t r = recv(c->fd, p, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			c->timed_out = true;
		return r;
	}
}

static int conn_open(struct conn *c, const struct oci_http *h, const struct oci_url *u, char *err, size_t errsz)
{
	int timeout = h->timeout_ms > 0 ? h->timeout_ms : 30000;
	memset(c, 0, sizeof *c);
	c->fd = http_connect_tcp(u->host, u->port, timeout);
	if (c->fd < 0) {
		snprintf(err, errsz, "cannot connect to %s:%d: %s", u->host, u->port, strerror(errno));
		return -1;
	}
	/* Blocking from here on, each read and write bounded by the timeout. */
	int fl = fcntl(c->fd, F_GETFL);
	fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
	struct timeval tv = {.tv_sec = timeout / 1000, .tv_usec = (timeout % 1000) * 1000};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (u->tls && tls_start(c, h, u->host, err, errsz) < 0)
		return -1;
	return 0;
}

/* --- request and response ----------------------------------------------- */

static int net_error(struct conn *c, const struct oci_url *u, const char *what, char *err, size_t errsz)
{
	if (c->timed_out)
		snprintf(err, errsz, "%s %s:%d: timed out", what, u->host, u->port);
	else
		snprintf(err, errsz, "%s %s:%d: %s", what, u->host, u->port,
			 errno ? strerror(errno) : "connection closed early");
	return OCI_ENET;
}

/* The response is read by lib's http_read_response, over this connection
 * (TLS or not), with the caller's body function. */
struct response_io {
	struct conn *c;
	oci_body_fn fn;
	void *arg;
	int body_rc; /* the body function's error (OCI_E*, negative) */
};

static ssize_t io_read(void *ctx, char *p, size_t n)
{
	errno = 0;
	return conn_recv(((struct response_io *)ctx)->c, p, n);
}

/* A body function's error stops the read: 1, its code kept aside (the
 * reader's own errors are -1). */
static int io_body(void *arg, const char *p, size_t n)
{
	struct response_io *io = arg;
	io->body_rc = io->fn(io->arg, p, n);
	return io->body_rc != OCI_OK;
}

static int read_response(struct conn *c, const struct oci_url *u, struct http_head *head, oci_body_fn fn, void *arg,
			 char *err, size_t errsz)
{
	struct response_io io = {c, fn, arg, OCI_OK};
	struct http_reader r = {.read = io_read, .ctx = &io, .on_body = io_body, .arg = &io};
	int rc = http_read_response(&r, false, MAX_HEAD, head);
	if (rc >= 0)
		return rc ? io.body_rc : OCI_OK;
	if (errno == ENODATA)
		errno = 0; /* net_error: "connection closed early" */
	if (errno == EPROTO)
		snprintf(err, errsz, "malformed HTTP response from %s:%d", u->host, u->port);
	else if (errno == EMSGSIZE)
		snprintf(err, errsz, "HTTP response head from %s:%d is too large", u->host, u->port);
	else
		return net_error(c, u, "reading the response of", err, errsz);
	return OCI_ENET;
}

static void host_header(struct buf *b, const struct oci_url *u)
{
	bool v6 = strchr(u->host, ':') != NULL;
	bool default_port = u->port == (u->tls ? 443 : 80);
	buf_printf(b, "Host: %s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "");
	if (!default_port)
		buf_printf(b, ":%d", u->port);
	buf_puts(b, "\r\n");
}

int oci_http_get(const struct oci_http *h, const struct oci_url *u, const char *const *headers, struct http_head *head,
		 oci_body_fn fn, void *arg, char *err, size_t errsz)
{
	struct conn c;
	memset(head, 0, sizeof *head);
	if (conn_open(&c, h, u, err, errsz) < 0) {
		conn_close(&c);
		return OCI_ENET;
	}
	struct buf req = BUF_INIT;
	buf_printf(&req, "GET %s HTTP/1.1\r\n", u->target);
	host_header(&req, u);
	buf_puts(&req, "User-Agent: cube-oci/1\r\nConnection: close\r\n");
	for (const char *const *x = headers; x && *x; x++)
		buf_printf(&req, "%s\r\n", *x);
	buf_puts(&req, "\r\n");
	int rc = conn_send(&c, req.data, req.len) < 0 ? net_error(&c, u, "sending a request to", err, errsz) : OCI_OK;
	if (rc == OCI_OK)
		rc = read_response(&c, u, head, fn, arg, err, errsz);
	buf_free(&req);
	conn_close(&c);
	return rc;
}
