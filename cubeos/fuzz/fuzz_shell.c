/*
 * fuzz_shell.c - arbitrary bytes as an admin console session.
 *
 * The first byte picks whether the session starts logged in (the password
 * typed first), so the fuzzer reaches the commands quickly; the rest is fed
 * in chunks whose sizes come from the input too. Commands run for real
 * against a scratch config directory (fsync off, PBKDF2 at 1 iteration).
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../config.h"
#include "../shell.h"

static struct cubeos os;
static struct config config;
static char config_dir[300];

static void discard(void *arg, const char *s, size_t n) {}

static void no_power(struct cubeos *c, enum power_action a) {}

static char state[64];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void remove_state(void)
{
	nftw(state, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	char tmpl[] = "/tmp/cubeos-fuzz-XXXXXX";
	char *dir = mkdtemp(tmpl);
	if (!dir)
		abort();
	snprintf(state, sizeof state, "%s", dir);
	atexit(remove_state);
	snprintf(config_dir, sizeof config_dir, "%s/config", state);
	struct first_boot fb;
	if (config_open(&config, config_dir, 1, &fb) < 0)
		abort();
	config.durable = false;
	config_set_password(&config, "pw");
	os.config = &config;
	os.state_dir = state;
	os.request_power = no_power;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!os.config)
		setup();
	if (size == 0)
		return 0;
	/* Keys made by earlier inputs would make every later one slower. */
	char path[400];
	snprintf(path, sizeof path, "%s/apikeys.json", config_dir);
	unlink(path);

	struct shell sh;
	shell_init(&sh, &os, discard, NULL, data[0] & 2);
	shell_start(&sh);
	if (data[0] & 1)
		shell_feed(&sh, "pw\n", 3);
	size_t chunk = (data[0] >> 2) + 1;
	for (size_t off = 1; off < size; off += chunk)
		shell_feed(&sh, (const char *)data + off, size - off < chunk ? size - off : chunk);
	shell_fini(&sh);
	return 0;
}
