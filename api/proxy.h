/*
 * proxy.h - cube-proxy: E2B sandbox traffic from clients to guest ports.
 *
 * A client reaches port P of sandbox S either by Host name
 * "<P>-<S>.<domain>" or, in the SDK's header mode (E2B_SANDBOX_URL), with
 * the headers E2b-Sandbox-Id and E2b-Sandbox-Port. The proxy looks S up in
 * the registry, connects to the sandbox's vsock Unix socket, asks cube-vmm
 * for the guest port ("CONNECT P\n" -> "OK n\n"; for P other than the
 * agent's own ports, through the agent's port bridge, below) and relays
 * bytes.
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
 *
 * Host "api.<domain>" is the appliance's own API: the SDKs' default
 * https://api.<domain>. Those requests go, relayed the same way, over TCP
 * to cube-api's HTTP listener (proxy_config.api_addr/api_port), with
 * X-Forwarded-For and X-Forwarded-Proto set by the proxy (whatever the
 * client sent under those names is dropped) and every other header, the
 * X-API-Key too, passed on untouched: cube-api checks the key itself.
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
	bool api;		   /* Host api.<domain>: cube-api, not a sandbox (id "", port 0) */
};

enum proxy_route_result {
	PROXY_ROUTE_OK = 0,
	PROXY_ROUTE_NONE,    /* neither a sandbox host nor the headers */
	PROXY_ROUTE_BAD_HDR, /* E2b-Sandbox-* headers present but malformed */
};

/* "<port>-<id>.<domain>[:port]", or "api.<domain>[:port]" (out->api)
 * (case-insensitive, trailing dot allowed). A sandbox label always has a
 * dash, so the two never overlap. */
bool proxy_route_host(const char *host, const char *domain, struct proxy_route *out);
/* The headers take precedence: in header mode Host names the proxy itself
 * (even when that name is api.<domain>). */
enum proxy_route_result proxy_route_request(const struct http_head *h, const char *domain, struct proxy_route *out);

/* --- the agent's port bridge -------------------------------------------------- *
 * The agent listens on vsock for its own two ports only. Every other guest
 * port is reached through its port bridge (agent/portbridge.h): "CONNECT
 * PROXY_BRIDGE_PORT\n" to cube-vmm, then "PORT <p>\n" to the agent, which
 * connects to 127.0.0.1:<p> (or [::1]:<p>) in the guest and answers "OK\n"
 * or "ERR <reason>\n". These numbers are the agent's; keep them in step. */
#define PROXY_ENVD_PORT	  49983
#define PROXY_INTERP_PORT 49999
#define PROXY_BRIDGE_PORT 49982

/* True for the ports the agent serves on vsock itself. */
bool proxy_port_is_direct(int port);

enum proxy_bridge_answer {
	PROXY_BRIDGE_OK,	/* "OK" */
	PROXY_BRIDGE_REFUSED,	/* "ERR refused": nothing listens on the port */
	PROXY_BRIDGE_TIMEOUT,	/* "ERR timeout": the port did not accept in time */
	PROXY_BRIDGE_BUSY,	/* "ERR busy": the bridge is at its connection limit */
	PROXY_BRIDGE_ERROR,	/* any other "ERR <word>" */
	PROXY_BRIDGE_MALFORMED, /* anything else */
};
/* Classifies the bridge's answer line, without its "\n". */
enum proxy_bridge_answer proxy_bridge_answer(const char *line, size_t len);

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
	const char *scheme; /* X-Forwarded-Proto towards cube-api; NULL: "http" */
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
	const char *api_addr;	       /* cube-api for Host api.<domain>: IPv4/IPv6 literal; 127.0.0.1 */
	int api_port;		       /* 3000 */
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
