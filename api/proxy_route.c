/*
 * proxy_route.c - which sandbox and port a request is for; see proxy.h.
 *
 * Strict on purpose: the id ends up in a file path (the registry) and the
 * port in the CONNECT line to cube-vmm, so anything but digits and
 * [a-z0-9] is refused here rather than trusted further down.
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
