/* fuzz_dns.c - the DNS answer builder (api/dns.c) on any bytes: it must
 * never crash, read or write out of bounds, or loop on compression
 * pointers, and every reply must keep the invariants a client relies on:
 * the query's id, QR set, at most one question and one answer, and an A
 * answer only for a name in the zone. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../dns.h"

#define DOMAIN "cubeos.local"

static uint16_t g16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void check_reply(const uint8_t *q, size_t qlen, const uint8_t *r, size_t n, int rcode)
{
	if (n == 0)
		return;
	if (n < 12 || n > DNS_UDP_MAX || qlen < 12 || memcmp(r, q, 2) != 0 || !(r[2] & 0x80) || (r[3] & 0xf) != rcode)
		abort();
	uint16_t qd = g16(r + 4), an = g16(r + 6);
	if (qd > 1 || an > (qd ? 1 : 0) || g16(r + 8) || g16(r + 10))
		abort();
	if (an && rcode != DNS_NOERROR)
		abort();
	if (qd) {
		/* the echoed question parses back, and an answered name is in the zone */
		struct dns_question qq;
		size_t off = 12;
		if (dns_read_question(r, n, &off, &qq) < 0)
			abort();
		size_t nl = strlen(qq.name), dl = strlen(DOMAIN);
		bool in_zone =
		    nl >= dl && strcmp(qq.name + nl - dl, DOMAIN) == 0 && (nl == dl || qq.name[nl - dl - 1] == '.');
		if (an && !in_zone)
			abort();
		if (off + (an ? 16 : 0) != n)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[DNS_UDP_MAX];
	int rcode;
	size_t n = dns_answer(data, size, DOMAIN, 0x0100000a, out, sizeof out, &rcode);
	check_reply(data, size, out, n, rcode);
	/* the parser alone, from every offset a name could start at */
	for (size_t off0 = 12; off0 < size && off0 < 64; off0++) {
		struct dns_question q;
		size_t off = off0;
		if (dns_read_question(data, size, &off, &q) == 0 &&
		    (off > size || q.wire_len > DNS_NAME_MAX || strlen(q.name) > DNS_NAME_MAX))
			abort();
	}
	return 0;
}
