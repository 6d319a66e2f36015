/* registry.c - sandbox.json read/write (see registry.h). */
#include "registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/fileio.h"

#define SANDBOX_JSON_MAX (4 * 1024 * 1024)

/* --- ids, tokens, time ------------------------------------------------- */

bool sandbox_id_valid(const char *id)
{
	size_t n = 0;
	if (!id)
		return false;
	for (; id[n]; n++)
		if (!((id[n] >= 'a' && id[n] <= 'z') || (id[n] >= '0' && id[n] <= '9')))
			return false;
	return n >= 1 && n <= SANDBOX_ID_MAX;
}

static void random_fill(void *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom((char *)p + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			abort(); /* no entropy means no unguessable ids or tokens: refuse to go on */
		got += (size_t)r;
	}
}

void sandbox_new_id(char out[SANDBOX_ID_LEN + 1])
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char r[SANDBOX_ID_LEN];
	random_fill(r, sizeof r);
	/* 252 is the largest multiple of 36 below 256: rejecting above it keeps
	 * the letters uniform. */
	for (size_t i = 0; i < SANDBOX_ID_LEN; i++) {
		while (r[i] >= 252)
			random_fill(&r[i], 1);
		out[i] = alphabet[r[i] % 36];
	}
	out[SANDBOX_ID_LEN] = '\0';
}

void sandbox_new_token(char out[SANDBOX_TOKEN_LEN + 1])
{
	unsigned char r[SANDBOX_TOKEN_LEN / 2];
	random_fill(r, sizeof r);
	for (size_t i = 0; i < sizeof r; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
}

const char *sandbox_state_name(enum sandbox_state s)
{
	return s == SANDBOX_PAUSED ? "paused" : "running";
}

int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void time_format(int64_t ms, char out[32])
{
	if (ms < 0)
		ms = 0;
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ms % 1000));
}

int time_parse(const char *s, int64_t *ms)
{
	struct tm tm = {0};
	int n = 0;
	if (!s ||
	    sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
		   &tm.tm_sec, &n) != 6 ||
	    n != 19)
		return -1;
	const char *p = s + n;
	int frac_ms = 0, digits = 0;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				frac_ms = frac_ms * 10 + (*p - '0');
		if (digits == 0)
			return -1;
		for (int d = digits; d < 3; d++)
			frac_ms *= 10;
	}
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	*ms = (int64_t)t * 1000 + frac_ms;
	return 0;
}

/* --- the record -------------------------------------------------------- */

void sandbox_clear(struct sandbox *rec)
{
	free(rec->template_id);
	free(rec->client_id);
	free(rec->alias);
	free(rec->envd_access_token);
	free(rec->traffic_access_token);
	free(rec->vsock);
	free(rec->control);
	kvs_free(&rec->metadata);
	kvs_free(&rec->env_vars);
	memset(rec, 0, sizeof *rec);
}

static void write_time(struct jw *w, const char *key, int64_t ms)
{
	char t[32];
	time_format(ms, t);
	jw_kstr(w, key, t);
}

static void write_opt_str(struct jw *w, const char *key, const char *s)
{
	if (s)
		jw_kstr(w, key, s);
}

void sandbox_to_json(const struct sandbox *rec, struct buf *out)
{
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	jw_kstr(&w, "sandboxID", rec->id);
	jw_kstr(&w, "templateID", rec->template_id);
	jw_kstr(&w, "clientID", rec->client_id);
	write_opt_str(&w, "alias", rec->alias);
	write_time(&w, "startedAt", rec->started_ms);
	write_time(&w, "endAt", rec->end_ms);
	jw_kint(&w, "cpuCount", rec->cpu_count);
	jw_kint(&w, "memoryMB", rec->memory_mb);
	jw_kint(&w, "diskSizeMB", rec->disk_size_mb);
	jw_kstr(&w, "state", sandbox_state_name(rec->state));
	jw_kstr(&w, "envdVersion", ENVD_VERSION);
	jw_key(&w, "metadata");
	kvs_write(&rec->metadata, &w);
	jw_key(&w, "envVars");
	kvs_write(&rec->env_vars, &w);
	jw_kbool(&w, "secure", rec->secure);
	write_opt_str(&w, "envdAccessToken", rec->envd_access_token);
	write_opt_str(&w, "trafficAccessToken", rec->traffic_access_token);
	jw_kbool(&w, "allowInternetAccess", rec->allow_internet_access);
	jw_kbool(&w, "autoPause", rec->auto_pause);
	jw_kint(&w, "vmmPid", rec->vmm_pid);
	write_opt_str(&w, "vsock", rec->vsock);
	write_opt_str(&w, "control", rec->control);
	jw_end(&w);
	buf_putc(out, '\n');
}

static char *dup_opt(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int need_str(const struct json *j, const char *key, char **out, char *err, size_t errsz)
{
	const char *s = json_get_str(j, key);
	if (!s) {
		snprintf(err, errsz, "sandbox.json: \"%s\" missing or not a string", key);
		return -1;
	}
	*out = strdup(s);
	return 0;
}

static int need_time(const struct json *j, const char *key, int64_t *ms, char *err, size_t errsz)
{
	if (time_parse(json_get_str(j, key), ms) < 0) {
		snprintf(err, errsz, "sandbox.json: \"%s\" missing or not an RFC 3339 time", key);
		return -1;
	}
	return 0;
}

static int read_state(const struct json *j, enum sandbox_state *st, char *err, size_t errsz)
{
	const char *s = json_get_str(j, "state");
	if (s && strcmp(s, "running") == 0)
		*st = SANDBOX_RUNNING;
	else if (s && strcmp(s, "paused") == 0)
		*st = SANDBOX_PAUSED;
	else {
		snprintf(err, errsz, "sandbox.json: \"state\" must be \"running\" or \"paused\"");
		return -1;
	}
	return 0;
}

int sandbox_from_json(const struct json *j, struct sandbox *rec, char *err, size_t errsz)
{
	memset(rec, 0, sizeof *rec);
	const char *id = json_get_str(j, "sandboxID");
	if (!sandbox_id_valid(id)) {
		snprintf(err, errsz, "sandbox.json: \"sandboxID\" missing or invalid");
		return -1;
	}
	snprintf(rec->id, sizeof rec->id, "%s", id);
	if (need_str(j, "templateID", &rec->template_id, err, errsz) < 0 ||
	    need_time(j, "startedAt", &rec->started_ms, err, errsz) < 0 ||
	    need_time(j, "endAt", &rec->end_ms, err, errsz) < 0 || read_state(j, &rec->state, err, errsz) < 0 ||
	    kvs_from_json(&rec->metadata, json_get(j, "metadata"), "metadata", err, errsz) < 0 ||
	    kvs_from_json(&rec->env_vars, json_get(j, "envVars"), "envVars", err, errsz) < 0) {
		sandbox_clear(rec);
		return -1;
	}
	const char *client = json_get_str(j, "clientID");
	rec->client_id = strdup(client ? client : "cubeos");
	rec->alias = dup_opt(json_get_str(j, "alias"));
	rec->cpu_count = (int)json_get_int(j, "cpuCount", 0);
	rec->memory_mb = (int)json_get_int(j, "memoryMB", 0);
	rec->disk_size_mb = (int)json_get_int(j, "diskSizeMB", 0);
	rec->secure = json_get_bool(j, "secure", false);
	rec->envd_access_token = dup_opt(json_get_str(j, "envdAccessToken"));
	rec->traffic_access_token = dup_opt(json_get_str(j, "trafficAccessToken"));
	rec->allow_internet_access = json_get_bool(j, "allowInternetAccess", true);
	rec->auto_pause = json_get_bool(j, "autoPause", false);
	rec->vmm_pid = (pid_t)json_get_int(j, "vmmPid", 0);
	rec->vsock = dup_opt(json_get_str(j, "vsock"));
	rec->control = dup_opt(json_get_str(j, "control"));
	return 0;
}

/* Through the JSON form: one definition of what a record holds. */
void sandbox_copy(struct sandbox *dst, const struct sandbox *src)
{
	struct buf b = BUF_INIT;
	sandbox_to_json(src, &b);
	char err[160];
	struct json *j = json_parse(b.data, b.len, err, sizeof err);
	if (!j || sandbox_from_json(j, dst, err, sizeof err) < 0)
		abort(); /* our own output must read back */
	json_free(j);
	buf_free(&b);
}

/* --- files --------------------------------------------------------------- */

int registry_load(const char *state_dir, const char *id, struct sandbox *rec)
{
	memset(rec, 0, sizeof *rec);
	if (!sandbox_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/sandboxes/%s/sandbox.json", state_dir, id);
	size_t len;
	char *text = file_read_all(path, SANDBOX_JSON_MAX, &len);
	if (!text)
		return -1;
	char err[160];
	struct json *j = json_parse(text, len, err, sizeof err);
	free(text);
	int rc = j ? sandbox_from_json(j, rec, err, sizeof err) : -1;
	json_free(j);
	if (rc == 0 && strcmp(rec->id, id) != 0) {
		sandbox_clear(rec);
		rc = -1;
	}
	if (rc < 0)
		errno = EINVAL;
	return rc;
}

int registry_mkdir_p(const char *path)
{
	return dir_make_all(path, 0755);
}

int registry_save(const char *state_dir, const struct sandbox *rec)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/sandboxes/%s", state_dir, rec->id);
	if (registry_mkdir_p(path) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/sandboxes/%s/sandbox.json", state_dir, rec->id);
	struct buf b = BUF_INIT;
	sandbox_to_json(rec, &b);
	int rc = file_replace(path, b.data, b.len, 0600, rec->state == SANDBOX_PAUSED);
	buf_free(&b);
	return rc;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int rc = type == FTW_DP ? rmdir(path) : unlink(path);
	return rc < 0 && errno != ENOENT ? -1 : 0;
}

int registry_remove_tree(const char *path)
{
	int rc = nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	if (rc < 0 && errno == ENOENT)
		return 0;
	return rc == 0 ? 0 : -1;
}

int registry_remove(const char *state_dir, const char *id)
{
	if (!sandbox_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/sandboxes/%s", state_dir, id);
	return registry_remove_tree(path);
}

int registry_scan(const char *state_dir, void (*fn)(void *arg, const char *id), void *arg)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/sandboxes", state_dir);
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!sandbox_id_valid(e->d_name))
			continue;
		fn(arg, e->d_name);
		n++;
	}
	closedir(d);
	return n;
}
