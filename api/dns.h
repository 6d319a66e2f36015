/*
 * dns.h - cube-dns: an authoritative-only DNS responder for the appliance's
 * domain, so LAN clients resolve the E2B SDK's default host names
 * (api.<domain>, <port>-<id>.<domain>) to the appliance.
 *
 * Answers, for the zone <domain>:
 *   <domain> and <label>.<domain>  A: the appliance's IPv4 address; ANY: the
 *                                  same A; AAAA and other types: NOERROR
 *                                  with no answer (the name exists)
 *   deeper names (a.b.<domain>)    NXDOMAIN (the certificate's *.<domain>
 *                                  covers one label only, like this zone)
 *   names outside the zone         REFUSED (no recursion, RA is never set)
 * Malformed queries get FORMERR (or nothing when even the header is short
 * or the message is itself a response), other opcodes NOTIMP, other classes
 * REFUSED. Answers carry AA and a short TTL, so a changed DHCP lease is
 * followed quickly.
 *
 * The appliance's address is --address when given; else the local address
 * the query came in on (IP_PKTINFO), which the client can reach by
 * definition; else (a query to loopback) the first non-loopback IPv4 of an
 * interface that is up (getifaddrs, looked up at most once a second). UDP
 * replies leave from the address the query was sent to.
 */
#ifndef CUBE_API_DNS_H
#define CUBE_API_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/loop.h"

#define DNS_UDP_MAX   512 /* no EDNS: every answer here is far smaller */
#define DNS_NAME_MAX  255 /* wire form, root label included */
#define DNS_TTL	      30
#define DNS_MAX_HOPS  16 /* compression pointers followed in one name */
#define DNS_TYPE_A    1
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_ANY  255
#define DNS_CLASS_IN  1

enum dns_rcode {
	DNS_NOERROR = 0,
	DNS_FORMERR = 1,
	DNS_SERVFAIL = 2,
	DNS_NXDOMAIN = 3,
	DNS_NOTIMP = 4,
	DNS_REFUSED = 5,
};

/* One question, as read from a message. */
struct dns_question {
	uint8_t wire[DNS_NAME_MAX]; /* uncompressed, the client's letter case kept */
	size_t wire_len;
	char name[DNS_NAME_MAX + 1]; /* lower-case, dotted, no trailing dot; "" for the root */
	bool odd;		     /* a label holds '.' or a byte outside 0x21..0x7e */
	uint16_t qtype, qclass;
};

/* Reads the question at *off (a name, possibly compressed, then type and
 * class) and moves *off past it. Compression pointers must point strictly
 * backwards, at or after the header, and at most DNS_MAX_HOPS are followed.
 * 0, or -1 for a malformed question. */
int dns_read_question(const uint8_t *msg, size_t len, size_t *off, struct dns_question *q);

/* The reply to one query message into out (outsz >= DNS_UDP_MAX), with
 * addr_be the appliance's IPv4 address in network order (0: not known, so
 * A queries get SERVFAIL). Returns its length, or 0 when nothing should be
 * sent. rcode (may be NULL) receives the answer's code for the log. */
size_t dns_answer(const uint8_t *q, size_t qlen, const char *domain, uint32_t addr_be, uint8_t *out, size_t outsz,
		  int *rcode);

/* The first IPv4 address of an interface that is up and not loopback, in
 * network order; 0 if there is none. */
uint32_t dns_first_ipv4(void);

/* --- the server ------------------------------------------------------------ */
struct dns_server_config {
	const char *domain;  /* "cubeos.local" */
	const char *address; /* fixed answer "A.B.C.D", or NULL (see above) */
};

struct dns_server;
/* NULL with errno (e.g. EINVAL for a bad address). */
struct dns_server *dns_server_new(struct loop *l, const struct dns_server_config *cfg);
/* UDP and TCP on addr:port ("" or NULL: any IPv4). 0 or -1 with errno. */
int dns_server_listen(struct dns_server *s, const char *addr, int port);
/* Serves an already bound UDP socket (tests). Takes ownership. */
int dns_server_listen_udp_fd(struct dns_server *s, int fd);
/* Serves an already listening TCP socket (tests). Takes ownership. */
int dns_server_listen_tcp_fd(struct dns_server *s, int fd);
void dns_server_free(struct dns_server *s);

#endif
