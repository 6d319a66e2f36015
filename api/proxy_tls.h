/*
 * proxy_tls.h - TLS for cube-proxy's client side (mbedtls 2.28).
 *
 * A struct proxy_tls holds the server certificate and key (the files the
 * appliance CA issues: <state>/config/server.crt and server.key) and makes
 * one TLS session per accepted socket through proxy_tls_wrap, a
 * proxy_wrap_fn. The session is a struct proxy_transport_ops: a
 * non-blocking handshake done inside the first read or write, then records
 * in and out; WANT_READ/WANT_WRITE become EAGAIN plus the epoll event the
 * relay must wait for; shutdown sends close_notify.
 *
 * TLS 1.2 only (mbedtls 2.28 has no usable TLS 1.3), ECDHE with AEAD
 * ciphers, ALPN "http/1.1", a session cache for resumption.
 *
 * The files are checked (stat) at every accept and reloaded when they
 * changed, and proxy_tls_reload forces a reload (SIGHUP). A pair that fails
 * to load (missing, damaged, key not matching the certificate) keeps the
 * previous one in use; with none loaded yet, connections are dropped at
 * accept. Sessions keep the credentials they started with until they end.
 */
#ifndef CUBE_API_PROXY_TLS_H
#define CUBE_API_PROXY_TLS_H

#include <stdbool.h>

#include "proxy.h"

struct proxy_tls;

/* Tries to load the pair now; a missing or bad pair is logged, not fatal
 * (proxy_tls_ready tells). NULL only when out of memory. */
struct proxy_tls *proxy_tls_new(const char *cert_path, const char *key_path);
/* Sessions still open keep their credentials alive. */
void proxy_tls_free(struct proxy_tls *t);

/* Reloads if the files changed (force: even if they look the same).
 * 0 when a pair is in use afterwards, -1 when none is. */
int proxy_tls_reload(struct proxy_tls *t, bool force);
bool proxy_tls_ready(const struct proxy_tls *t);

/* proxy_wrap_fn: arg is the struct proxy_tls. */
int proxy_tls_wrap(void *arg, int fd, const struct proxy_transport_ops **ops, void **ctx);

extern const struct proxy_transport_ops proxy_tls_ops;

#endif
