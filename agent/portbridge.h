/*
 * portbridge.h - the agent's port bridge: any guest TCP port, reached from
 * the host over one vsock port.
 *
 * The host (cube-proxy, through cube-vmm's vsock socket) connects to vsock
 * port PORTBRIDGE_VSOCK_PORT and names the guest port in a one-line
 * preamble; the bridge connects to that port on the guest's loopback
 * (127.0.0.1, then ::1), answers, and from then on splices bytes both ways:
 *
 *   host -> guest   "PORT <n>\n"        n: 1..65535, decimal, no leading zero
 *   guest -> host   "OK\n"              then the stream is the guest port
 *                   "ERR <reason>\n"    then the bridge closes; reason is one of
 *                       bad-preamble    not the grammar above (or EOF before it)
 *                       refused         nothing listens on that port
 *                       timeout         the guest port did not accept in time
 *                       unreachable     any other connect error
 *                       busy            too many bridged connections
 *
 * The preamble is guest-untrusted input only in the sense that it crosses a
 * trust boundary; it is parsed strictly and bounded (PORTBRIDGE_PREAMBLE_MAX)
 * so nothing the host sends can make the bridge buffer more or connect
 * anywhere but loopback.
 *
 * Standalone on purpose (lib/ only, no agent state), so the unit tests and
 * the fuzzer drive it without the rest of the agent.
 */
#ifndef CUBE_AGENT_PORTBRIDGE_H
#define CUBE_AGENT_PORTBRIDGE_H

#include <stddef.h>
#include <sys/types.h>

#include "../lib/loop.h"

#define PORTBRIDGE_VSOCK_PORT	49982
#define PORTBRIDGE_PREAMBLE_MAX 11 /* "PORT 65535\n" */

/* Parses the preamble at the start of p[0..n). Returns its length (the
 * newline included) and sets *port, 0 when p is a valid beginning that needs
 * more bytes, -1 when it can never become valid. Never reads past p[n-1]
 * nor past PORTBRIDGE_PREAMBLE_MAX bytes. */
ssize_t portbridge_parse_preamble(const char *p, size_t n, int *port);

struct portbridge_config {
	unsigned preamble_timeout_ms; /* the preamble must arrive in this; default 10 s */
	unsigned connect_timeout_ms;  /* loopback connect; default 5 s (below the proxy's 10 s) */
	size_t max_conns;	      /* more are answered "ERR busy"; default 1024 */
	size_t buf_size;	      /* per direction and connection; default 64 KiB */
};

struct portbridge;
struct portbridge *portbridge_new(struct loop *l, const struct portbridge_config *cfg);
/* Accepts bridge connections from a listening socket (vsock in a guest, any
 * stream socket in tests). Takes ownership of fd. Returns 0 or -1. */
int portbridge_listen_fd(struct portbridge *pb, int fd);
/* Connections being served (tests, stats). */
size_t portbridge_conn_count(const struct portbridge *pb);
/* Closes the listeners and every connection. */
void portbridge_free(struct portbridge *pb);

#endif
