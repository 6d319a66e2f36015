/* fuzz_oci_auth.c - WWW-Authenticate challenges and the URLs a registry
 * hands back (token realms, redirect Locations), on any bytes: no crash,
 * every field NUL-terminated inside its buffer, a Bearer challenge always
 * with a realm, and no URL that would put a space or control byte on a
 * request line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../oci.h"
#include "../oci_http.h"

static void check_url(const struct oci_url *u)
{
	if (u->port < 1 || u->port > 65535 || !u->host[0] || u->target[0] != '/')
		abort();
	for (const char *c = u->target; *c; c++)
		if ((unsigned char)*c <= ' ')
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct oci_challenge c;
	if (oci_challenge_parse(s, &c) == 0) {
		if (c.bearer == c.basic || (c.bearer && !c.realm[0]))
			abort();
		if (strlen(c.realm) >= sizeof c.realm || strlen(c.service) >= sizeof c.service ||
		    strlen(c.scope) >= sizeof c.scope)
			abort();
	}
	struct oci_url u, v;
	if (oci_url_parse(s, &u) == 0)
		check_url(&u);
	struct oci_url base;
	if (oci_url_parse("https://registry.example:5000/v2/", &base) != 0)
		abort();
	if (oci_url_resolve(&base, s, &v) == 0)
		check_url(&v);
	free(s);
	return 0;
}
