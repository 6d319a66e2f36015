/*
 * proxy.h - cube-proxy: E2B sandbox traffic from clients to guest ports.
 *
 * A client reaches port P of sandbox S either by Host name
 * "<P>-<S>.<domain>" or, in the SDK's header mode (E2B_SANDBOX_URL), with
 * the headers E2b-Sandbox-Id and E2b-Sandbox-Port. The proxy looks S up in
 * the registry, connects to the sandbox's vsock Unix socket, asks cube-vmm
 * for the guest port ("CONNECT P\n" -> "OK n\n") and relays bytes.
 *
 * The relay understands just enough HTTP/1.1 to be correct: it parses every
 * request head (to route it) and every response head (to know where the
 * response ends), streams bodies through in both directions at once with
 * backpressure and never buffers one whole, and after a 101 answer it turns
 * into a plain two-way byte pipe (WebSocket). So a client connection may
 * carry requests to different sandboxes one after another, and long
 * chunked Connect RPC streams flow as they are produced.
 *
 * The client side goes through struct proxy_transport, so TLS can wrap the
 * socket without the relay knowing; the sandbox side is always a plain Unix
 * socket.
 */
#ifndef CUBE_API_PROXY_H
#define CUBE_API_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/http.h"
#include "../lib/loop.h"

#define PROXY_ID_MAX 64

/* --- routing (pure functions; fuzzed) ------------------------------------ */
struct proxy_route {
	char id[PROXY_ID_MAX + 1]; /* lower-case [a-z0-9]+ */
	int port;		   /* 1..65535 */
	bool by_header;		   /* E2b-Sandbox-Id/-Port rather than Host */
};

enum proxy_route_result {
	PROXY_ROUTE_OK = 0,
	PROXY_ROUTE_NONE,    /* neither a sandbox host nor the headers */
	PROXY_ROUTE_BAD_HDR, /* E2b-Sandbox-* headers present but malformed */
};

/* "<port>-<id>.<domain>[:port]" (case-insensitive, trailing dot allowed). */
bool proxy_route_host(const char *host, const char *domain, struct proxy_route *out);
/* The headers take precedence: in header mode Host names the proxy itself. */
enum proxy_route_result proxy_route_request(const struct http_head *h, const char *domain, struct proxy_route *out);

/* --- transports ----------------------------------------------------------- *
 * read/write return bytes moved, 0 for read EOF, or -1 with errno (EAGAIN:
 * retry once *want, EPOLLIN or EPOLLOUT, is signalled on the fd; TLS may
 * need to write in order to read and vice versa). pending is what the
 * transport already holds decrypted and can read without the fd. shutdown
 * ends our direction (TLS close_notify, then SHUT_WR). */
struct proxy_transport_ops {
	ssize_t (*read)(void *ctx, int fd, void *p, size_t n, uint32_t *want);
	ssize_t (*write)(void *ctx, int fd, const void *p, size_t n, uint32_t *want);
	int (*shutdown)(void *ctx, int fd);
	size_t (*pending)(void *ctx);
	void (*free)(void *ctx);
};
extern const struct proxy_transport_ops proxy_plain_ops;

/* Called for each accepted client socket: sets the transport (e.g. a new
 * TLS session). Return -1 to drop the connection. */
typedef int (*proxy_wrap_fn)(void *arg, int fd, const struct proxy_transport_ops **ops, void **ctx);

/* --- the server -------------------------------------------------------------- */
struct proxy_config {
	const char *state_dir;	       /* registry: DIR/sandboxes/<id>/sandbox.json */
	const char *domain;	       /* "cubeos.local" */
	size_t max_head_bytes;	       /* request and response heads; default 64 KiB */
	unsigned head_timeout_ms;      /* a started request head must arrive in this; 30 s */
	unsigned keepalive_timeout_ms; /* idle client connection between requests; 120 s */
	unsigned connect_timeout_ms;   /* vsock connect + CONNECT/OK handshake; 10 s */
	unsigned relay_idle_ms;	       /* no byte either way during a request or tunnel; 1 h */
	unsigned upstream_idle_ms;     /* an idle kept upstream is closed after this; 15 s */
};

struct proxy;
struct proxy *proxy_new(struct loop *l, const struct proxy_config *cfg);
/* Listens on addr:port (IPv4/IPv6 literal; "" or NULL for any). wrap NULL:
 * plain HTTP. */
int proxy_listen_tcp(struct proxy *p, const char *addr, int port, proxy_wrap_fn wrap, void *wrap_arg);
/* Accepts from an already-listening socket. Takes ownership. */
int proxy_listen_fd(struct proxy *p, int fd, proxy_wrap_fn wrap, void *wrap_arg);
/* Serves one connected client socket (non-blocking). Takes ownership of fd
 * and ctx. */
void proxy_adopt(struct proxy *p, int fd, const char *peer, const struct proxy_transport_ops *ops, void *ctx);
/* Closes listeners and every connection. */
void proxy_free(struct proxy *p);
/* Client connections being served (tests, stats). */
size_t proxy_conn_count(const struct proxy *p);

#endif
