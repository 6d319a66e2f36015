/*
 * fuzz_portbridge.c - libFuzzer target for the port bridge's preamble parser
 * (agent/portbridge.c), the bytes the host sends first on every bridged
 * connection.
 *
 * Checks, against a straightforward reference reading of the grammar
 * "PORT" SP 1*5DIGIT LF (no leading zero, 1..65535):
 *  - the answer (length, port) equals the reference's;
 *  - an accepted preamble is at most PORTBRIDGE_PREAMBLE_MAX bytes, ends in
 *    LF, and its port is in 1..65535; the port is untouched otherwise;
 *  - every prefix of an accepted preamble needs more (0), and the answer for
 *    any input does not change when bytes are appended after the newline;
 *  - the parser reads nothing past the input (ASan, the input is copied to
 *    an exact-size heap block).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../portbridge.h"

static void die(const char *what)
{
	fprintf(stderr, "fuzz_portbridge: %s\n", what);
	abort();
}

/* The grammar read the slow way: -1, 0 or the length, as the parser. */
static ssize_t reference(const unsigned char *p, size_t n, int *port)
{
	static const char word[] = "PORT ";
	size_t i = 0;
	for (; i < 5; i++) {
		if (i == n)
			return 0;
		if (p[i] != (unsigned char)word[i])
			return -1;
	}
	size_t digits = 0;
	long v = 0;
	while (i < n && p[i] >= '0' && p[i] <= '9') {
		if (digits == 0 && p[i] == '0')
			return -1;
		if (++digits > 5)
			return -1;
		v = v * 10 + (p[i] - '0');
		i++;
	}
	if (v > 65535)
		return -1;
	if (i == n)
		return 0;
	if (p[i] != '\n' || digits == 0)
		return -1;
	*port = (int)v;
	return (ssize_t)(i + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	int port = -7, want_port = -7;
	ssize_t got = portbridge_parse_preamble(p, size, &port);
	ssize_t want = reference(data, size, &want_port);
	if (got != want || port != want_port)
		die("parser and reference disagree");
	if (got < -1 || got > PORTBRIDGE_PREAMBLE_MAX)
		die("length out of range");
	if (got <= 0 && port != -7)
		die("port set without a preamble");
	if (got > 0) {
		if (port < 1 || port > 65535 || p[got - 1] != '\n')
			die("accepted a bad preamble");
		for (ssize_t k = 0; k < got; k++) {
			int q = -7;
			if (portbridge_parse_preamble(p, (size_t)k, &q) != 0 || q != -7)
				die("a prefix of a preamble is not 'need more'");
		}
		int q = -7;
		if (portbridge_parse_preamble(p, (size_t)got, &q) != got || q != port)
			die("the preamble alone parses differently");
	}
	free(p);
	return 0;
}
