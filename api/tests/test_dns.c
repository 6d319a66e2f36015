/*
 * test_dns.c - cube-dns: the answer builder on hand-built messages, then the
 * real server on 127.0.0.1 (ephemeral ports, UDP and TCP) with its loop in a
 * thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/tests/test.h"
#include "../dns.h"

#define DOMAIN "cubeos.test"
#define ADDR   "10.1.2.3"

/* --- building queries ---------------------------------------------------------- */

struct msg {
	uint8_t b[1024];
	size_t n;
};

static void put(struct msg *m, const void *p, size_t n)
{
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void put16m(struct msg *m, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	put(m, b, 2);
}

static void header(struct msg *m, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar)
{
	m->n = 0;
	put16m(m, id);
	put16m(m, flags);
	put16m(m, qd);
	put16m(m, an);
	put16m(m, ns);
	put16m(m, ar);
}

/* "a.b.c" as labels, with the root label. */
static void name(struct msg *m, const char *dotted)
{
	while (*dotted) {
		size_t l = strcspn(dotted, ".");
		uint8_t len = (uint8_t)l;
		put(m, &len, 1);
		put(m, dotted, l);
		dotted += l + (dotted[l] == '.');
	}
	put(m, "", 1);
}

static void query(struct msg *m, uint16_t id, const char *qname, uint16_t qtype)
{
	header(m, id, 0x0100, 1, 0, 0, 0);
	name(m, qname);
	put16m(m, qtype);
	put16m(m, DNS_CLASS_IN);
}

static uint16_t g16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

struct reply {
	uint8_t b[DNS_UDP_MAX];
	size_t n;
	int rcode;
};

static void ask(const struct msg *m, uint32_t addr_be, struct reply *r)
{
	r->n = dns_answer(m->b, m->n, DOMAIN, addr_be, r->b, sizeof r->b, &r->rcode);
}

static uint32_t addr_of(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a.s_addr;
}

static int rcode_of(const struct reply *r)
{
	return r->n >= 12 ? g16(r->b + 2) & 0xf : -1;
}

static int answers_of(const struct reply *r)
{
	return r->n >= 12 ? g16(r->b + 6) : -1;
}

/* The A answer's address as text, "" if none. */
static const char *a_of(const struct reply *r, char *buf)
{
	buf[0] = '\0';
	if (answers_of(r) == 1 && r->n >= 16 && g16(r->b + r->n - 6) == 4)
		inet_ntop(AF_INET, r->b + r->n - 4, buf, INET_ADDRSTRLEN);
	return buf;
}

/* --- the answer builder ----------------------------------------------------------- */

TEST(a_for_the_apex_and_one_label_below)
{
	struct msg m;
	struct reply r;
	char ip[INET_ADDRSTRLEN];
	query(&m, 0xbeef, DOMAIN, DNS_TYPE_A);
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_NOERROR);
	CHECK_EQ_INT(g16(r.b), 0xbeef);
	uint16_t flags = g16(r.b + 2);
	CHECK(flags & 0x8000);	       /* QR */
	CHECK(flags & 0x0400);	       /* AA */
	CHECK(flags & 0x0100);	       /* RD copied */
	CHECK(!(flags & 0x0080));      /* no recursion available */
	CHECK_EQ_INT(g16(r.b + 4), 1); /* the question is echoed */
	CHECK_STREQ(a_of(&r, ip), ADDR);

	query(&m, 7, "49983-SbxAbc." DOMAIN, DNS_TYPE_A);
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_NOERROR);
	CHECK_STREQ(a_of(&r, ip), ADDR);
	/* the question keeps the client's letter case (0x20 randomisation) */
	CHECK(r.n > 12 + 13 && memcmp(r.b + 13, "49983-SbxAbc", 12) == 0);
	/* TTL */
	CHECK_EQ_INT(g16(r.b + r.n - 8), DNS_TTL);

	query(&m, 8, "API.CUBEOS.TEST.", DNS_TYPE_ANY);
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_NOERROR);
	CHECK_STREQ(a_of(&r, ip), ADDR);
}

TEST(aaaa_and_other_types_are_empty_noerror)
{
	struct msg m;
	struct reply r;
	query(&m, 1, "api." DOMAIN, DNS_TYPE_AAAA);
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_NOERROR);
	CHECK_EQ_INT(answers_of(&r), 0);
	CHECK(g16(r.b + 2) & 0x0400);
	query(&m, 1, DOMAIN, 16 /* TXT */);
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_NOERROR);
	CHECK_EQ_INT(answers_of(&r), 0);
}

TEST(deeper_names_nxdomain_outside_refused)
{
	struct msg m;
	struct reply r;
	query(&m, 1, "a.b." DOMAIN, DNS_TYPE_A);
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_NXDOMAIN);
	CHECK(g16(r.b + 2) & 0x0400);
	const char *outside[] = {"example.com", "xcubeos.test", "test", "", "cubeos.test.evil"};
	for (size_t i = 0; i < sizeof outside / sizeof *outside; i++) {
		query(&m, 1, outside[i], DNS_TYPE_A);
		ask(&m, addr_of(ADDR), &r);
		if (!CHECK_EQ_INT(rcode_of(&r), DNS_REFUSED))
			fprintf(stderr, "    name \"%s\"\n", outside[i]);
		CHECK(!(g16(r.b + 2) & 0x0400));
		CHECK_EQ_INT(answers_of(&r), 0);
	}
	/* a label holding a dot is not the zone's name */
	header(&m, 1, 0x0100, 1, 0, 0, 0);
	put(&m,
	    "\x03"
	    "a.b"
	    "\x06"
	    "cubeos"
	    "\x04"
	    "test"
	    "\0",
	    17);
	put16m(&m, DNS_TYPE_A);
	put16m(&m, DNS_CLASS_IN);
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_REFUSED);
	/* class CHAOS */
	header(&m, 1, 0x0100, 1, 0, 0, 0);
	name(&m, DOMAIN);
	put16m(&m, DNS_TYPE_A);
	put16m(&m, 3);
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_REFUSED);
}

TEST(no_address_known_is_servfail)
{
	struct msg m;
	struct reply r;
	query(&m, 1, DOMAIN, DNS_TYPE_A);
	ask(&m, 0, &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_SERVFAIL);
	query(&m, 1, DOMAIN, DNS_TYPE_AAAA);
	ask(&m, 0, &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_NOERROR);
}

TEST(malformed_messages)
{
	struct msg m;
	struct reply r;
	/* too short for a header, and responses: no reply at all */
	header(&m, 1, 0x0100, 1, 0, 0, 0);
	m.n = 11;
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(r.n, 0);
	query(&m, 1, DOMAIN, DNS_TYPE_A);
	m.b[2] |= 0x80;
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(r.n, 0);
	/* another opcode (NOTIFY) */
	query(&m, 1, DOMAIN, DNS_TYPE_A);
	m.b[2] = 4 << 3;
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_NOTIMP);
	CHECK_EQ_INT(g16(r.b + 4), 0);

	struct {
		const char *what;
		const char *bytes;
		size_t n;
	} bad[] = {
	    {"label past the end",
	     "\x09"
	     "cubeos",
	     7},
	    {"no root label",
	     "\x06"
	     "cubeos"
	     "\x04"
	     "test",
	     12},
	    {"no type and class",
	     "\x06"
	     "cubeos"
	     "\x04"
	     "test"
	     "\0",
	     13},
	    {"label type 0x40",
	     "\x41"
	     "x"
	     "\0"
	     "\0\1\0\1",
	     7},
	    {"pointer to itself",
	     "\xc0\x0c"
	     "\0\1\0\1",
	     6},
	    {"pointer forwards",
	     "\xc0\x20"
	     "\0\1\0\1",
	     6},
	    {"pointer into the header",
	     "\xc0\x02"
	     "\0\1\0\1",
	     6},
	    {"half a pointer", "\xc0", 1},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		header(&m, 1, 0x0100, 1, 0, 0, 0);
		put(&m, bad[i].bytes, bad[i].n);
		ask(&m, addr_of(ADDR), &r);
		if (!CHECK_EQ_INT(rcode_of(&r), DNS_FORMERR))
			fprintf(stderr, "    case: %s\n", bad[i].what);
		CHECK_EQ_INT(r.n, 12);
	}
	/* a name longer than 255 bytes */
	header(&m, 1, 0x0100, 1, 0, 0, 0);
	for (int i = 0; i < 5; i++)
		put(&m,
		    "\x3f"
		    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		    64);
	put(&m, "\0\0\1\0\1", 5);
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_FORMERR);
	/* two questions; an answer section in a query */
	query(&m, 1, DOMAIN, DNS_TYPE_A);
	m.b[5] = 2;
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_FORMERR);
	query(&m, 1, DOMAIN, DNS_TYPE_A);
	m.b[7] = 1;
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_FORMERR);
}

TEST(edns_additional_section_is_ignored)
{
	struct msg m;
	struct reply r;
	char ip[INET_ADDRSTRLEN];
	header(&m, 9, 0x0120, 1, 0, 0, 1);
	name(&m, "x." DOMAIN);
	put16m(&m, DNS_TYPE_A);
	put16m(&m, DNS_CLASS_IN);
	put(&m, "\0\0\x29\x10\0\0\0\0\0\0\0", 11); /* OPT, 4096 bytes, no options */
	ask(&m, addr_of(ADDR), &r);
	CHECK_EQ_INT(rcode_of(&r), DNS_NOERROR);
	CHECK_STREQ(a_of(&r, ip), ADDR);
	CHECK_EQ_INT(g16(r.b + 10), 0);
}

TEST(compression_pointers_backwards_are_followed)
{
	/* a name at 12, then at its end a second name ending in a pointer to it */
	struct msg m;
	header(&m, 1, 0, 1, 0, 0, 0);
	name(&m, DOMAIN);
	size_t second = m.n;
	put(&m,
	    "\x09"
	    "49983-abc"
	    "\xc0\x0c",
	    12);
	put16m(&m, DNS_TYPE_A);
	put16m(&m, DNS_CLASS_IN);
	struct dns_question q;
	size_t off = second;
	CHECK_EQ_INT(dns_read_question(m.b, m.n, &off, &q), 0);
	CHECK_STREQ(q.name, "49983-abc." DOMAIN);
	CHECK_EQ_INT(off, m.n);
	CHECK_EQ_INT(q.wire_len, 10 + strlen(DOMAIN) + 2);
	/* two pointers bouncing between each other never loop */
	header(&m, 1, 0, 1, 0, 0, 0);
	put(&m,
	    "\x01"
	    "a"
	    "\xc0\x10"
	    "\x01"
	    "b"
	    "\xc0\x0c",
	    8);
	off = 16;
	CHECK_EQ_INT(dns_read_question(m.b, m.n, &off, &q), -1);
}

TEST(first_ipv4_is_not_loopback)
{
	uint32_t a = dns_first_ipv4();
	CHECK(a == 0 || (ntohl(a) >> 24) != 127);
}

/* --- the server over real sockets --------------------------------------------------- */

static struct loop *srv_loop;
static atomic_bool srv_stop;
static int udp_port, tcp_port, udp_port_auto;
static struct dns_server *srv_fixed, *srv_found;
static pthread_t srv_tid;

static void check_stop(void *arg)
{
	struct loop_timer *t = arg;
	if (srv_stop)
		loop_stop(srv_loop);
	else
		loop_timer_arm(srv_loop, t, 20, check_stop, t);
}

static void *srv_thread(void *arg)
{
	static struct loop_timer t;
	loop_timer_arm(arg, &t, 20, check_stop, &t);
	loop_run(arg);
	return NULL;
}

static int bound(int type, int *port)
{
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || (type == SOCK_STREAM && listen(fd, 16) < 0) ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0)
		abort();
	*port = ntohs(a.sin_port);
	return fd;
}

static void setup(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	log_set_level(getenv("DNS_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
	srv_loop = loop_new();
	/* one server with a fixed answer (UDP + TCP), one finding the address */
	struct dns_server_config fixed = {.domain = DOMAIN ".", .address = ADDR};
	struct dns_server_config found = {.domain = DOMAIN};
	srv_fixed = dns_server_new(srv_loop, &fixed);
	srv_found = dns_server_new(srv_loop, &found);
	if (!srv_fixed || !srv_found || dns_server_listen_udp_fd(srv_fixed, bound(SOCK_DGRAM, &udp_port)) < 0 ||
	    dns_server_listen_tcp_fd(srv_fixed, bound(SOCK_STREAM, &tcp_port)) < 0 ||
	    dns_server_listen_udp_fd(srv_found, bound(SOCK_DGRAM, &udp_port_auto)) < 0)
		abort();
	pthread_create(&srv_tid, NULL, srv_thread, srv_loop);
}

/* One datagram to the server on *port (known once set up); the reply, from where. */
static bool udp_ask(const int *port, const struct msg *m, struct reply *r, struct sockaddr_in *from)
{
	setup();
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = {
	    .sin_family = AF_INET, .sin_port = htons((uint16_t)*port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	sendto(fd, m->b, m->n, 0, (struct sockaddr *)&to, sizeof to);
	struct pollfd p = {fd, POLLIN, 0};
	bool got = false;
	if (poll(&p, 1, 1000) == 1) {
		socklen_t fl = sizeof *from;
		ssize_t n = recvfrom(fd, r->b, sizeof r->b, 0, (struct sockaddr *)from, &fl);
		r->n = n > 0 ? (size_t)n : 0;
		got = n > 0;
	}
	close(fd);
	return got;
}

TEST(udp_answers_with_the_fixed_address)
{
	struct msg m;
	struct reply r;
	struct sockaddr_in from;
	char ip[INET_ADDRSTRLEN];
	query(&m, 0x4242, "49983-abc123." DOMAIN, DNS_TYPE_A);
	if (!CHECK(udp_ask(&udp_port, &m, &r, &from)))
		return;
	CHECK_EQ_INT(g16(r.b), 0x4242);
	CHECK_EQ_INT(rcode_of(&r), DNS_NOERROR);
	CHECK_STREQ(a_of(&r, ip), ADDR);
	CHECK_EQ_INT(ntohl(from.sin_addr.s_addr), INADDR_LOOPBACK);
	CHECK_EQ_INT(ntohs(from.sin_port), udp_port);
	query(&m, 2, "example.org", DNS_TYPE_A);
	CHECK(udp_ask(&udp_port, &m, &r, &from) && rcode_of(&r) == DNS_REFUSED);
	query(&m, 3, "a.b." DOMAIN, DNS_TYPE_A);
	CHECK(udp_ask(&udp_port, &m, &r, &from) && rcode_of(&r) == DNS_NXDOMAIN);
	query(&m, 4, DOMAIN, DNS_TYPE_AAAA);
	CHECK(udp_ask(&udp_port, &m, &r, &from) && rcode_of(&r) == DNS_NOERROR && answers_of(&r) == 0);
}

TEST(udp_garbage_gets_no_answer_and_harms_nothing)
{
	struct msg m;
	struct reply r;
	struct sockaddr_in from;
	m.n = 5;
	memcpy(m.b, "hello", 5);
	CHECK(!udp_ask(&udp_port, &m, &r, &from));
	m.n = 0;
	CHECK(!udp_ask(&udp_port, &m, &r, &from));
	query(&m, 5, DOMAIN, DNS_TYPE_A);
	CHECK(udp_ask(&udp_port, &m, &r, &from) && rcode_of(&r) == DNS_NOERROR);
}

TEST(udp_on_loopback_answers_the_first_interface_address)
{
	struct msg m;
	struct reply r;
	struct sockaddr_in from;
	query(&m, 6, "api." DOMAIN, DNS_TYPE_A);
	if (!CHECK(udp_ask(&udp_port_auto, &m, &r, &from)))
		return;
	uint32_t want = dns_first_ipv4();
	if (!want) {
		CHECK_EQ_INT(rcode_of(&r), DNS_SERVFAIL);
		return;
	}
	char ip[INET_ADDRSTRLEN], wip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &want, wip, sizeof wip);
	CHECK_STREQ(a_of(&r, ip), wip);
}

static bool recv_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t k = recv(fd, b, n, 0);
		if (k <= 0)
			return false;
		b += k;
		n -= (size_t)k;
	}
	return true;
}

TEST(tcp_answers_length_prefixed_queries)
{
	setup();
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = {
	    .sin_family = AF_INET, .sin_port = htons((uint16_t)tcp_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (!CHECK(connect(fd, (struct sockaddr *)&to, sizeof to) == 0))
		return;
	/* two queries in one write, the second split from its length */
	struct msg a, b;
	query(&a, 11, "x." DOMAIN, DNS_TYPE_A);
	query(&b, 12, "y.z." DOMAIN, DNS_TYPE_A);
	uint8_t out[1024];
	size_t n = 0;
	out[n++] = (uint8_t)(a.n >> 8);
	out[n++] = (uint8_t)a.n;
	memcpy(out + n, a.b, a.n);
	n += a.n;
	out[n++] = (uint8_t)(b.n >> 8);
	out[n++] = (uint8_t)b.n;
	send(fd, out, n, 0);
	usleep(50000);
	send(fd, b.b, b.n, 0);
	char ip[INET_ADDRSTRLEN];
	for (int i = 0; i < 2; i++) {
		uint8_t len[2];
		struct reply r = {0};
		if (!CHECK(recv_all(fd, len, 2)))
			break;
		r.n = g16(len);
		if (!CHECK(r.n <= sizeof r.b && recv_all(fd, r.b, r.n)))
			break;
		CHECK_EQ_INT(g16(r.b), 11 + i);
		if (i == 0)
			CHECK_STREQ(a_of(&r, ip), ADDR);
		else
			CHECK_EQ_INT(rcode_of(&r), DNS_NXDOMAIN);
	}
	/* a length no query of ours has: the connection is closed */
	send(fd, "\xff\xff", 2, 0);
	uint8_t x;
	CHECK_EQ_INT(recv(fd, &x, 1, 0), 0);
	close(fd);
}

TEST(teardown)
{
	if (!srv_loop)
		return;
	srv_stop = true;
	CHECK_EQ_INT(pthread_join(srv_tid, NULL), 0);
	dns_server_free(srv_fixed);
	dns_server_free(srv_found);
	loop_free(srv_loop);
}
