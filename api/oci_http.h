/*
 * oci_http.h - the registry client's HTTP: one GET per connection, over
 * plain TCP or TLS (mbedtls, TLS 1.2+, the server certificate verified
 * against a CA bundle and the host name), the body streamed to a callback
 * that can stop it. Timeouts are per read/write (idle), not per request, so
 * a multi-GiB blob on a slow link is fine while a stalled one is not.
 */
#ifndef CUBE_API_OCI_HTTP_H
#define CUBE_API_OCI_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/http.h"

struct oci_url {
	bool tls;
	char host[256]; /* without brackets for IPv6 */
	int port;
	char target[4096]; /* path and query, starting with '/' */
};

/* http[s]://host[:port][/path[?query]]: 0, or -1 if malformed. */
int oci_url_parse(const char *url, struct oci_url *u);
/* A Location header against the URL it answered: absolute URL, or an
 * absolute path on the same origin. */
int oci_url_resolve(const struct oci_url *base, const char *location, struct oci_url *out);

struct oci_http {
	const char *ca_file; /* NULL: /etc/ssl/certs/ca-certificates.crt */
	int timeout_ms;	     /* connect and idle; <= 0: 30 s */
};

/* Receives body bytes; returns 0, or an oci_status (< 0) to stop. */
typedef int (*oci_body_fn)(void *arg, const void *p, size_t n);

/* GET u with the extra headers (NULL-terminated "Name: value" lines).
 * head gets the response head (release with http_head_free). Returns
 * OCI_OK (any HTTP status), the callback's status, or OCI_ENET with a
 * message in err. */
int oci_http_get(const struct oci_http *c, const struct oci_url *u, const char *const *headers, struct http_head *head,
		 oci_body_fn fn, void *arg, char *err, size_t errsz);

#endif
