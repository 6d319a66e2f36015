/*
 * proxy_route.c - which sandbox and port a request is for; see proxy.h.
 *
 * Strict on purpose: the id ends up in a file path (the registry) and the
 * port in the CONNECT line to cube-vmm, so anything but digits and
 * [a-z0-9] is refused here rather than trusted further down. The one other
 * name is "api.<domain>", the appliance's API; a sandbox label always has
 * a "<port>-" in front, so no sandbox id can be taken for it. The answer of
 * the agent's port bridge comes from the guest and is classified here too.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"

/* "1".."65535" without sign, spaces or leading zeros. */
static bool parse_port(const char *s, size_t n, int *out)
{
	if (n == 0 || n > 5 || s[0] == '0')
		return false;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = v;
	return true;
}

/* Copies an id of [A-Za-z0-9]{1,PROXY_ID_MAX} lower-cased. */
static bool parse_id(const char *s, size_t n, char out[PROXY_ID_MAX + 1])
{
	if (n == 0 || n > PROXY_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]))
			return false;
		out[i] = (char)tolower((unsigned char)s[i]);
	}
	out[n] = '\0';
	return true;
}

/* Length of host without a ":port" suffix and a trailing dot. */
static size_t host_name_len(const char *host)
{
	size_t n = strlen(host);
	const char *colon = memrchr(host, ':', n);
	if (colon) {
		size_t digits = n - (size_t)(colon - host) - 1;
		for (size_t i = 1; i <= digits; i++)
			if (!isdigit((unsigned char)colon[i]))
				return 0; /* an IPv6 literal or garbage: never ours */
		n = (size_t)(colon - host);
	}
	if (n && host[n - 1] == '.')
		n--;
	return n;
}

bool proxy_route_host(const char *host, const char *domain, struct proxy_route *out)
{
	size_t n = host_name_len(host);
	size_t dl = strlen(domain);
	if (dl && domain[dl - 1] == '.')
		dl--;
	/* "<label>.<domain>": at least "1-a." before the domain */
	if (dl == 0 || n < dl + 4 || host[n - dl - 1] != '.' || strncasecmp(host + n - dl, domain, dl) != 0)
		return false;
	const char *label = host;
	size_t ll = n - dl - 1;
	if (ll == 3 && strncasecmp(label, "api", 3) == 0) {
		*out = (struct proxy_route){.api = true};
		return true;
	}
	const char *dash = memchr(label, '-', ll);
	if (!dash)
		return false;
	size_t pl = (size_t)(dash - label);
	struct proxy_route r = {0};
	if (!parse_port(label, pl, &r.port) || !parse_id(dash + 1, ll - pl - 1, r.id))
		return false;
	*out = r;
	return true;
}

enum proxy_route_result proxy_route_request(const struct http_head *h, const char *domain, struct proxy_route *out)
{
	const char *hid = http_header_get(h, "E2b-Sandbox-Id");
	const char *hport = http_header_get(h, "E2b-Sandbox-Port");
	if (hid || hport) {
		struct proxy_route r = {.by_header = true};
		if (!hid || !hport || !parse_id(hid, strlen(hid), r.id) || !parse_port(hport, strlen(hport), &r.port))
			return PROXY_ROUTE_BAD_HDR;
		*out = r;
		return PROXY_ROUTE_OK;
	}
	const char *host = http_header_get(h, "Host");
	if (host && proxy_route_host(host, domain, out))
		return PROXY_ROUTE_OK;
	return PROXY_ROUTE_NONE;
}

bool proxy_port_is_direct(int port)
{
	return port == PROXY_ENVD_PORT || port == PROXY_INTERP_PORT;
}

enum proxy_bridge_answer proxy_bridge_answer(const char *line, size_t len)
{
	static const struct {
		const char *line;
		enum proxy_bridge_answer answer;
	} known[] = {
	    {"OK", PROXY_BRIDGE_OK},
	    {"ERR refused", PROXY_BRIDGE_REFUSED},
	    {"ERR timeout", PROXY_BRIDGE_TIMEOUT},
	    {"ERR busy", PROXY_BRIDGE_BUSY},
	};
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (len == strlen(known[i].line) && memcmp(line, known[i].line, len) == 0)
			return known[i].answer;
	if (len > 4 && memcmp(line, "ERR ", 4) == 0) {
		for (size_t i = 4; i < len; i++)
			if (!islower((unsigned char)line[i]) && line[i] != '-')
				return PROXY_BRIDGE_MALFORMED;
		return PROXY_BRIDGE_ERROR;
	}
	return PROXY_BRIDGE_MALFORMED;
}
