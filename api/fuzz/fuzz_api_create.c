/* fuzz_api_create.c - the create-sandbox body parser (api/create_req.c) on
 * any bytes: it must answer 0 or -1 with a message, never crash or leak,
 * and what it accepts must satisfy the invariants the api relies on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../create_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct create_req r;
	char err[256];
	err[0] = '\0';
	int rc = create_req_parse((const char *)data, size, 86400, &r, err, sizeof err);
	if (rc == 0) {
		if (!template_id_valid(r.template_id) || r.timeout_s < 0 || r.timeout_s > 86400)
			abort();
		for (size_t i = 0; i < r.env_vars.n; i++)
			if (strchr(r.env_vars.v[i].key, '=') || !r.env_vars.v[i].key[0])
				abort();
	} else if (!err[0]) {
		abort(); /* every refusal says why */
	}
	create_req_free(&r);
	return 0;
}
