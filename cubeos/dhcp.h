/*
 * dhcp.h - a DHCPv4 client (RFC 2131/2132): the wire format and the state
 * machine, with no sockets and no clock of its own.
 *
 * The state machine is driven from outside: dhcp_client_input() with each
 * DHCP message that arrived, dhcp_client_timeout() when the time returned by
 * dhcp_client_next() has come, both with the current monotonic time in ms.
 * It answers through struct dhcp_ops: send a message (how to send depends on
 * the state: broadcast on the raw link before there is an address, unicast to
 * the server when renewing, broadcast over UDP when rebinding), a lease is
 * bound (install it), a lease is lost (remove it). net.c puts it on sockets
 * and the event loop; the tests drive it with a fake clock and fake server.
 *
 *   INIT -> SELECTING (DISCOVER, retried 4 s doubling to 64 s)
 *        -> REQUESTING (REQUEST for the first OFFER; 4 tries, then INIT)
 *        -> BOUND (ACK; NAK -> INIT)
 *        -> RENEWING at T1 (REQUEST unicast to the server)
 *        -> REBINDING at T2 (REQUEST broadcast)
 *        -> lease expiry: the address is dropped, back to INIT.
 */
#ifndef CUBEOS_DHCP_H
#define CUBEOS_DHCP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DHCP_CLIENT_PORT 68
#define DHCP_SERVER_PORT 67
#define DHCP_MAX_DNS	 3
#define DHCP_FIXED_LEN	 240 /* BOOTP header + magic cookie */
#define DHCP_MSG_MAX	 1500
#define DHCP_INFINITE	 0xffffffffu

enum dhcp_type {
	DHCPDISCOVER = 1,
	DHCPOFFER = 2,
	DHCPREQUEST = 3,
	DHCPDECLINE = 4,
	DHCPACK = 5,
	DHCPNAK = 6,
	DHCPRELEASE = 7,
};

/* --- wire format --------------------------------------------------------- */

/* A message from a server, as far as a client cares. */
struct dhcp_msg {
	uint8_t op;
	uint32_t xid;
	struct in_addr yiaddr;
	uint8_t chaddr[6];
	uint8_t type; /* option 53 */
	bool has_server_id, has_mask, has_router, has_lease, has_t1, has_t2;
	struct in_addr server_id, mask, router; /* router: the first one listed */
	struct in_addr dns[DHCP_MAX_DNS];
	unsigned n_dns;
	uint32_t lease_s, t1_s, t2_s;
};

/* Parses a BOOTP/DHCP message (the UDP payload). Strict: any option whose
 * length is wrong for its kind, a missing end option or magic cookie, an
 * option running past its area, a repeated single-valued option or a
 * non-contiguous netmask rejects the whole message. 0, or -1. */
int dhcp_parse(const uint8_t *p, size_t n, struct dhcp_msg *m);

struct dhcp_request {
	uint8_t type; /* DHCPDISCOVER, DHCPREQUEST, DHCPRELEASE */
	uint32_t xid;
	uint16_t secs;
	bool broadcast;		  /* ask the server to broadcast its answer (we have no address yet) */
	struct in_addr ciaddr;	  /* our address while renewing/rebinding, else 0 */
	struct in_addr requested; /* option 50, if not 0 */
	struct in_addr server_id; /* option 54, if not 0 */
	uint8_t mac[6];
	const char *hostname; /* option 12, if not NULL or empty */
};

/* Writes the message to out; returns its length, or 0 if cap is too small. */
size_t dhcp_build(uint8_t *out, size_t cap, const struct dhcp_request *r);

/* IPv4 + UDP around a client message, for the packet socket (68 -> 67). */
size_t dhcp_frame_build(uint8_t *out, size_t cap, struct in_addr src, struct in_addr dst, const uint8_t *msg,
			size_t len);
/* Finds the DHCP payload of an IPv4 packet from a server (UDP 67 -> 68):
 * checks the IP header and its checksum, refuses fragments. 0, or -1. */
int dhcp_frame_parse(const uint8_t *pkt, size_t n, const uint8_t **msg, size_t *len);

/* --- the client ------------------------------------------------------------ */

enum dhcp_state { DHCP_INIT, DHCP_SELECTING, DHCP_REQUESTING, DHCP_BOUND, DHCP_RENEWING, DHCP_REBINDING };

enum dhcp_send_how {
	DHCP_SEND_RAW_BROADCAST, /* no address yet: the packet socket, to 255.255.255.255 */
	DHCP_SEND_UDP_UNICAST,	 /* renewing: UDP from our address to the server */
	DHCP_SEND_UDP_BROADCAST, /* rebinding: UDP from our address to 255.255.255.255 */
};

struct dhcp_lease {
	struct in_addr addr, router, server;
	unsigned prefix;
	struct in_addr dns[DHCP_MAX_DNS];
	unsigned n_dns;
	uint32_t lease_s, t1_s, t2_s; /* with the RFC defaults filled in */
	uint64_t start_ms;	      /* when the REQUEST that got it was sent */
};

struct dhcp_ops {
	/* 0, or -1 (the retry timer tries again later). */
	int (*send)(void *arg, enum dhcp_send_how how, struct in_addr to, const uint8_t *msg, size_t len);
	/* Install the lease; renewal = same address as before, only timers moved. */
	void (*bound)(void *arg, const struct dhcp_lease *lease, bool renewal);
	/* The lease ended (expired, NAK, or a new address): remove it. */
	void (*lost)(void *arg, const struct dhcp_lease *lease);
};

struct dhcp_client {
	enum dhcp_state state;
	uint8_t mac[6];
	char hostname[64];
	const struct dhcp_ops *ops;
	void *arg;
	uint32_t rng;
	uint32_t xid;
	unsigned tries;
	uint64_t next_ms;     /* when dhcp_client_timeout is due; UINT64_MAX = never */
	uint64_t started_ms;  /* first DISCOVER of this attempt (the secs field) */
	uint64_t sent_ms;     /* last REQUEST: the lease counts from here */
	struct in_addr offer; /* REQUESTING: the address and server chosen */
	struct in_addr offer_server;
	bool have_lease;
	struct dhcp_lease lease;
	uint64_t t1_ms, t2_ms, expire_ms;
};

void dhcp_client_init(struct dhcp_client *c, const uint8_t mac[6], const char *hostname, const struct dhcp_ops *ops,
		      void *arg, uint32_t seed);
/* Starts from INIT (sends the first DISCOVER now). */
void dhcp_client_start(struct dhcp_client *c, uint64_t now);
void dhcp_client_timeout(struct dhcp_client *c, uint64_t now);
void dhcp_client_input(struct dhcp_client *c, const uint8_t *msg, size_t len, uint64_t now);
/* Stops; a held lease is reported lost. */
void dhcp_client_stop(struct dhcp_client *c);
uint64_t dhcp_client_next(const struct dhcp_client *c);
/* True while the client has no address and talks over the packet socket. */
bool dhcp_client_needs_raw(const struct dhcp_client *c);
const char *dhcp_state_name(enum dhcp_state s);

#endif
