/* cmd_apikey.c - apikey list, create and revoke. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "shell.h"

static struct config *need_config(struct shell *sh)
{
	if (!sh->os || !sh->os->config)
		shell_printf(sh, "error: the configuration is not available\r\n");
	return sh->os ? sh->os->config : NULL;
}

static void format_time(int64_t t, char *out, size_t outsz)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, outsz, "%Y-%m-%d %H:%M UTC", &tm);
}

void cmd_apikey_list(struct shell *sh, int argc, char **argv)
{
	struct config *c = need_config(sh);
	struct apikey *keys;
	if (!c)
		return;
	int n = apikey_list(c, &keys);
	if (n < 0) {
		shell_printf(sh, "error: cannot read the API keys: %s\r\n", strerror(errno));
		return;
	}
	if (n == 0)
		shell_printf(sh, "no API keys; make one with: apikey create NAME\r\n");
	else
		shell_printf(sh, "%-16s  %-20s  %s\r\n", "ID", "CREATED", "NAME");
	for (int i = 0; i < n; i++) {
		char when[40];
		format_time(keys[i].created, when, sizeof when);
		shell_printf(sh, "%-16s  %-20s  %s\r\n", keys[i].id, when, keys[i].name);
	}
	free(keys);
}

static bool valid_name(const char *name)
{
	if (!*name || strlen(name) >= APIKEY_NAME_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

void cmd_apikey_create(struct shell *sh, int argc, char **argv)
{
	struct config *c = need_config(sh);
	const char *name = argc > 0 ? argv[0] : "unnamed";
	if (!c)
		return;
	if (!valid_name(name)) {
		shell_printf(sh, "error: a key name has 1 to %d printable characters\r\n", APIKEY_NAME_MAX - 1);
		return;
	}
	char key[APIKEY_LEN + 1];
	struct apikey made;
	if (apikey_create(c, name, key, &made) < 0) {
		shell_printf(sh, "error: cannot save the API key: %s\r\n", strerror(errno));
		return;
	}
	shell_printf(sh, "id   %s\r\nname %s\r\nkey  %s\r\n", made.id, made.name, key);
	shell_printf(sh, "the key is shown only now: only its hash is stored\r\n");
	explicit_bzero(key, sizeof key);
}

void cmd_apikey_revoke(struct shell *sh, int argc, char **argv)
{
	struct config *c = need_config(sh);
	if (!c)
		return;
	if (apikey_revoke(c, argv[0]) == 0)
		shell_printf(sh, "revoked %s\r\n", argv[0]);
	else if (errno == ENOENT)
		shell_printf(sh, "error: no API key with id \"%.40s\" (see apikey list)\r\n", argv[0]);
	else
		shell_printf(sh, "error: cannot save the API keys: %s\r\n", strerror(errno));
}
