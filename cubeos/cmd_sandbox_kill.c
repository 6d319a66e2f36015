/*
 * cmd_sandbox_kill.c - `sandbox kill ID` on the admin console.
 *
 * Killing belongs to the api (it owns the VMMs and the registry), so the
 * console asks it: DELETE /sandboxes/ID on the api's admin socket, which is
 * root-only and needs no API key. The request can take seconds (the VMM is
 * stopped cleanly), so it runs in a child (`cubeos --sandbox-kill ID`, through
 * shell_run) and never holds up PID1's loop.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/http.h"
#include "../lib/json.h"
#include "service.h"
#include "shell.h"

#define KILL_TIMEOUT_MS 60000

/* Sandbox ids are [a-z0-9]+: anything else cannot name one, and must not
 * reach a URL path. */
static bool sandbox_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9')))
			return false;
	return true;
}

int sandbox_kill_main(const char *socket_path, const char *id)
{
	if (!sandbox_id_valid(id)) {
		fprintf(stderr, "sandbox kill: \"%.64s\" is not a sandbox id (lowercase letters and digits)\n", id);
		return 1;
	}
	int fd = http_connect_unix(socket_path);
	if (fd < 0) {
		fprintf(stderr, "sandbox kill: the api is not answering on %s: %s\n", socket_path, strerror(errno));
		return 1;
	}
	char target[96];
	snprintf(target, sizeof target, "/sandboxes/%s", id);
	const char *const headers[] = {"Host: cube-api", "Connection: close", NULL};
	struct http_response r;
	int rc = http_request(fd, "DELETE", target, headers, NULL, 0, &r, KILL_TIMEOUT_MS, NULL, NULL);
	close(fd);
	if (rc < 0) {
		fprintf(stderr, "sandbox kill: no answer from the api: %s\n", strerror(errno));
		return 1;
	}
	int status = r.status;
	if (status == 204) {
		printf("sandbox %s stopped\n", id);
	} else {
		/* The api's errors are {"code":N,"message":"..."}. */
		struct json *j = json_parse(r.body.data ? r.body.data : "", r.body.len, NULL, 0);
		const char *msg = j ? json_get_str(j, "message") : NULL;
		fprintf(stderr, "sandbox kill: %s (HTTP %d)\n", msg ? msg : "the api refused", status);
		json_free(j);
	}
	http_response_free(&r);
	return status == 204 ? 0 : 1;
}

void cmd_sandbox_kill(struct shell *sh, int argc, char **argv)
{
	char *const child[] = {"/proc/self/exe", "--sandbox-kill", argv[0], NULL};
	shell_run(sh, child);
}
