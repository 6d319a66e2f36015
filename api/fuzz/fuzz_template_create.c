/* fuzz_template_create.c - the template create checks (api/template_routes.c)
 * on any bytes, as a POST /templates JSON body and as the query string of
 * POST /templates/upload: an accepted document or a status with a reason,
 * never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../apicore.h"
#include "../template_jobs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	for (int upload = 0; upload <= 1; upload++) {
		char *text = malloc(size + 1); /* the query form wants a C string, as http.c gives it */
		if (!text)
			abort();
		memcpy(text, data, size);
		text[size] = '\0';
		err[0] = '\0';
		int status = template_create_check(text, size, upload, err, sizeof err);
		if (status != 0 && (status < 400 || status > 599 || !err[0]))
			abort(); /* every refusal is an HTTP error that says why */
		free(text);
	}
	return 0;
}
