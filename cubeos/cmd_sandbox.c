/*
 * cmd_sandbox.c - sandbox list and template list: what the api keeps on the
 * state disk, read directly.
 *
 * The api (api/registry.c, api/templates.c) is the one writer of
 * <state>/sandboxes/<id>/sandbox.json and <state>/templates/<name>/template.json
 * and replaces them atomically, so reading them here always sees a whole
 * record, and the console still answers when the api is down. cubeos does not
 * link the api's code: the JSON is parsed with lib/json, leniently (a field
 * that is missing or of another type shows as "-"), and a record that cannot
 * be read is named, never fatal.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/fileio.h"
#include "../lib/json.h"
#include "shell.h"

/* Records are small; anything bigger is not one of the api's. */
#define RECORD_MAX (256 * 1024)
/* The console shows this many metadata bytes per sandbox. */
#define METADATA_SHOWN 40

/* The parsed record of one directory entry. */
struct record {
	char name[256]; /* the directory's name: sandbox id or template name */
	struct json *json;
};

static int by_name(const void *x, const void *y)
{
	return strcmp(((const struct record *)x)->name, ((const struct record *)y)->name);
}

/*
 * Every <state>/<kind>/<entry>/<file> parsed, sorted by entry name. Entries
 * whose file is missing (a sandbox still starting, a half-made template) are
 * skipped; unreadable or malformed ones are reported on the console. Returns
 * the count, or -1 when the kind directory itself cannot be read for another
 * reason than not existing (then nothing is allocated).
 */
static int load_records(struct shell *sh, const char *kind, const char *file, struct record **out)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/%s", sh->os && sh->os->state_dir ? sh->os->state_dir : ".", kind);
	*out = NULL;
	DIR *d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		shell_printf(sh, "error: cannot read %s: %s\r\n", dir, strerror(errno));
		return -1;
	}
	struct record *recs = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[4096 + 512];
		snprintf(path, sizeof path, "%s/%s/%s", dir, e->d_name, file);
		size_t len;
		char *text = file_read_all(path, RECORD_MAX, &len);
		if (!text) {
			if (errno != ENOENT && errno != ENOTDIR)
				shell_printf(sh, "warning: %s: %s\r\n", path, strerror(errno));
			continue;
		}
		char perr[160];
		struct json *j = json_parse(text, len, perr, sizeof perr);
		free(text);
		if (!j || j->type != JSON_OBJECT) {
			shell_printf(sh, "warning: %s: %s\r\n", path, j ? "not a JSON object" : perr);
			json_free(j);
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			recs = realloc(recs, cap * sizeof *recs);
			if (!recs)
				abort();
		}
		snprintf(recs[n].name, sizeof recs[n].name, "%s", e->d_name);
		recs[n++].json = j;
	}
	closedir(d);
	if (n)
		qsort(recs, n, sizeof *recs, by_name);
	*out = recs;
	return (int)n;
}

static void free_records(struct record *recs, int n)
{
	for (int i = 0; i < n; i++)
		json_free(recs[i].json);
	free(recs);
}

/* A string member for a table cell: "-" when absent, control bytes as '?'. */
static const char *cell(const struct json *obj, const char *key, char *out, size_t outsz)
{
	const char *s = json_get_str(obj, key);
	snprintf(out, outsz, "%s", s && *s ? s : "-");
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return out;
}

/* "2026-11-23T17:47:04.340Z" -> "2026-11-23 17:47:04" (UTC, as the api writes it). */
static const char *when(const struct json *obj, const char *key, char *out, size_t outsz)
{
	cell(obj, key, out, outsz);
	if (strlen(out) >= 19 && out[10] == 'T') {
		out[10] = ' ';
		out[19] = '\0';
	}
	return out;
}

/* "k=v,k2=v2", cut to METADATA_SHOWN bytes with "..." when longer. */
static void metadata_text(const struct json *md, char *out, size_t outsz)
{
	struct buf b = BUF_INIT;
	for (const struct json *m = md && md->type == JSON_OBJECT ? md->child : NULL; m; m = m->next) {
		if (b.len)
			buf_putc(&b, ',');
		buf_puts(&b, m->key ? m->key : "");
		buf_putc(&b, '=');
		buf_puts(&b, m->type == JSON_STRING ? m->str : "?");
	}
	if (!b.len)
		buf_puts(&b, "-");
	buf_putc(&b, '\0');
	for (char *p = b.data; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (strlen(b.data) > METADATA_SHOWN)
		snprintf(out, outsz, "%.*s...", METADATA_SHOWN - 3, b.data);
	else
		snprintf(out, outsz, "%s", b.data);
	buf_free(&b);
}

void cmd_sandbox_list(struct shell *sh, int argc, char **argv)
{
	struct record *recs;
	int n = load_records(sh, "sandboxes", "sandbox.json", &recs);
	if (n < 0)
		return;
	if (n == 0)
		shell_printf(sh, "no sandboxes\r\n");
	else
		shell_printf(sh, "%-20s  %-16s  %-8s  %-19s  %-19s  %s\r\n", "ID", "TEMPLATE", "STATE", "STARTED (UTC)",
			     "ENDS (UTC)", "METADATA");
	for (int i = 0; i < n; i++) {
		const struct json *j = recs[i].json;
		char tpl[64], state[16], started[64], ends[64], md[METADATA_SHOWN + 8];
		metadata_text(json_get(j, "metadata"), md, sizeof md);
		shell_printf(sh, "%-20s  %-16s  %-8s  %-19s  %-19s  %s\r\n", recs[i].name,
			     cell(j, "templateID", tpl, sizeof tpl), cell(j, "state", state, sizeof state),
			     when(j, "startedAt", started, sizeof started), when(j, "endAt", ends, sizeof ends), md);
	}
	free_records(recs, n);
}

void cmd_template_list(struct shell *sh, int argc, char **argv)
{
	struct record *recs;
	int n = load_records(sh, "templates", "template.json", &recs);
	if (n < 0)
		return;
	if (n == 0)
		shell_printf(sh, "no templates (the api builds base at its first start)\r\n");
	else
		shell_printf(sh, "%-16s  %-14s  %4s  %8s  %8s  %s\r\n", "NAME", "STATE", "CPUS", "MEMORY", "DISK",
			     "UPDATED (UTC)");
	for (int i = 0; i < n; i++) {
		const struct json *j = recs[i].json;
		char state[32], updated[64], err[160];
		cell(j, "state", state, sizeof state);
		if (strcmp(state, "building") == 0 && json_get(j, "progress"))
			snprintf(state, sizeof state, "building %d%%", (int)json_get_int(j, "progress", 0));
		if (!json_get(j, "updatedAt"))
			when(j, "createdAt", updated, sizeof updated);
		else
			when(j, "updatedAt", updated, sizeof updated);
		shell_printf(sh, "%-16s  %-14s  %4d  %4d MiB  %4d MiB  %s\r\n", recs[i].name, state,
			     (int)json_get_int(j, "cpuCount", 0), (int)json_get_int(j, "memoryMB", 0),
			     (int)json_get_int(j, "diskSizeMB", 0), updated);
		if (json_get_str(j, "error"))
			shell_printf(sh, "  error: %s\r\n", cell(j, "error", err, sizeof err));
	}
	free_records(recs, n);
}

/* Counts records whose "state" member equals each of states[] (NULL-terminated). */
static void count_states(struct shell *sh, const char *kind, const char *file, const char *const *states, int *counts)
{
	struct record *recs;
	int n = load_records(sh, kind, file, &recs);
	for (int i = 0; i < n; i++) {
		const char *st = json_get_str(recs[i].json, "state");
		for (int k = 0; states[k]; k++)
			if (st && strcmp(st, states[k]) == 0)
				counts[k]++;
	}
	if (n > 0)
		free_records(recs, n);
}

void status_sandboxes_templates(struct shell *sh)
{
	static const char *const sandbox_states[] = {"running", "paused", NULL};
	static const char *const template_states[] = {"ready", "building", "error", NULL};
	int sb[2] = {0, 0}, tp[3] = {0, 0, 0};
	count_states(sh, "sandboxes", "sandbox.json", sandbox_states, sb);
	count_states(sh, "templates", "template.json", template_states, tp);
	shell_printf(sh, "sandboxes  %d running, %d paused\r\n", sb[0], sb[1]);
	shell_printf(sh, "templates  %d ready, %d building, %d failed\r\n", tp[0], tp[1], tp[2]);
}
