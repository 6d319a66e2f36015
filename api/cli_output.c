/* cli_output.c - what `cube` prints: tables and watch lines (see cli.h).
 * Pure formatting: JSON in, text out, no I/O, so the tests pin the shapes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define TABLE_COLS_MAX 8

struct table {
	int ncols;
	const char *head[TABLE_COLS_MAX];
	char **cells; /* rows * ncols, heap strings */
	size_t rows, cap;
};

static void table_add_row(struct table *t, char *const *row)
{
	if (t->rows == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 16;
		t->cells = realloc(t->cells, t->cap * (size_t)t->ncols * sizeof *t->cells);
		if (!t->cells)
			abort();
	}
	for (int c = 0; c < t->ncols; c++)
		t->cells[t->rows * (size_t)t->ncols + (size_t)c] = strdup(row[c] ? row[c] : "");
	t->rows++;
}

/* Left-aligned columns two spaces apart; the last column is not padded. */
static void table_print(struct table *t, struct buf *out)
{
	size_t width[TABLE_COLS_MAX];
	for (int c = 0; c < t->ncols; c++) {
		width[c] = strlen(t->head[c]);
		for (size_t r = 0; r < t->rows; r++) {
			size_t n = strlen(t->cells[r * (size_t)t->ncols + (size_t)c]);
			width[c] = n > width[c] ? n : width[c];
		}
	}
	for (size_t r = 0; r <= t->rows; r++) {
		for (int c = 0; c < t->ncols; c++) {
			const char *s = r == 0 ? t->head[c] : t->cells[(r - 1) * (size_t)t->ncols + (size_t)c];
			if (c == t->ncols - 1)
				buf_printf(out, "%s\n", s);
			else
				buf_printf(out, "%-*s  ", (int)width[c], s);
		}
	}
	for (size_t i = 0; i < t->rows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
}

static const char *str_or(const struct json *j, const char *key, const char *def)
{
	const char *s = json_get_str(j, key);
	return s ? s : def;
}

static void int_cell(char *out, size_t n, const struct json *j, const char *key, const char *unit)
{
	const struct json *v = json_get(j, key);
	if (v && v->type == JSON_NUMBER && v->is_int)
		snprintf(out, n, "%lld%s", (long long)v->i, unit);
	else
		snprintf(out, n, "-");
}

/* "2026-11-23T11:00:00.123Z" -> "2026-11-23 11:00:00" */
static void time_cell(char *out, size_t n, const char *rfc3339)
{
	if (!rfc3339 || strlen(rfc3339) < 19) {
		snprintf(out, n, "-");
		return;
	}
	snprintf(out, n, "%.10s %.8s", rfc3339, rfc3339 + 11);
}

void cli_format_templates(const struct json *arr, struct buf *out)
{
	if (!arr || arr->type != JSON_ARRAY || arr->count == 0) {
		buf_puts(out, "no templates\n");
		return;
	}
	bool errors = false;
	for (const struct json *t = arr->child; t; t = t->next)
		errors |= json_get_str(t, "error") != NULL;
	struct table tab = {.ncols = errors ? 8 : 7,
			    .head = {"TEMPLATE", "STATUS", "VCPU", "MEMORY", "DISK", "CREATED", "BUILD", "ERROR"}};
	for (const struct json *t = arr->child; t; t = t->next) {
		char status[64], cpu[32], mem[32], disk[32], created[32];
		const char *st = str_or(t, "buildStatus", "?");
		if (strcmp(st, "building") == 0 && json_get(t, "progress"))
			snprintf(status, sizeof status, "building %lld%%", (long long)json_get_int(t, "progress", 0));
		else
			snprintf(status, sizeof status, "%s", st);
		int_cell(cpu, sizeof cpu, t, "cpuCount", "");
		int_cell(mem, sizeof mem, t, "memoryMB", " MiB");
		int_cell(disk, sizeof disk, t, "diskSizeMB", " MiB");
		time_cell(created, sizeof created, json_get_str(t, "createdAt"));
		char *row[] = {(char *)str_or(t, "templateID", "?"),
			       status,
			       cpu,
			       mem,
			       disk,
			       created,
			       (char *)str_or(t, "buildID", "-"),
			       (char *)str_or(t, "error", "")};
		table_add_row(&tab, row);
	}
	table_print(&tab, out);
}

void cli_format_sandboxes(const struct json *arr, struct buf *out)
{
	if (!arr || arr->type != JSON_ARRAY || arr->count == 0) {
		buf_puts(out, "no sandboxes\n");
		return;
	}
	struct table tab = {.ncols = 7, .head = {"SANDBOX", "TEMPLATE", "STATE", "VCPU", "MEMORY", "STARTED", "ENDS"}};
	for (const struct json *s = arr->child; s; s = s->next) {
		char cpu[32], mem[32], started[32], ends[32];
		int_cell(cpu, sizeof cpu, s, "cpuCount", "");
		int_cell(mem, sizeof mem, s, "memoryMB", " MiB");
		time_cell(started, sizeof started, json_get_str(s, "startedAt"));
		time_cell(ends, sizeof ends, json_get_str(s, "endAt"));
		char *row[] = {(char *)str_or(s, "sandboxID", "?"),
			       (char *)str_or(s, "templateID", "?"),
			       (char *)str_or(s, "state", "?"),
			       cpu,
			       mem,
			       started,
			       ends};
		table_add_row(&tab, row);
	}
	table_print(&tab, out);
}

void cli_format_progress(const char *phase, int64_t pct, struct buf *out)
{
	buf_printf(out, "[%3lld%%] %s\n", (long long)(pct < 0 ? 0 : pct > 100 ? 100 : pct), phase ? phase : "?");
}

void cli_format_log_entry(const struct json *entry, struct buf *out)
{
	char when[32];
	time_cell(when, sizeof when, json_get_str(entry, "timestamp"));
	const char *level = str_or(entry, "level", "info");
	bool plain = strcmp(level, "info") == 0 || strcmp(level, "debug") == 0;
	buf_printf(out, "       %s %s%s%s\n", when, plain ? "" : level, plain ? "" : ": ",
		   str_or(entry, "message", ""));
}

/* --- the create body ------------------------------------------------------------------ */

void cli_create_name(const struct cli_create *c, char *out, size_t n)
{
	if (c->name) {
		snprintf(out, n, "%s", c->name);
	} else if (c->archive) {
		const char *base = strrchr(c->archive, '/') ? strrchr(c->archive, '/') + 1 : c->archive;
		char stem[256];
		snprintf(stem, sizeof stem, "%s", base);
		static const char *const exts[] = {".tar.gz", ".tgz", ".tar"};
		for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
			size_t sl = strlen(stem), el = strlen(exts[i]);
			if (sl > el && strcmp(stem + sl - el, exts[i]) == 0) {
				stem[sl - el] = '\0';
				break;
			}
		}
		cli_name_from_image(stem, out, n);
	} else {
		cli_name_from_image(c->image ? c->image : "", out, n);
	}
}

/* Query parameters: everything but unreserved characters percent-encoded. */
static void put_param(struct buf *out, char *sep, const char *key, const char *val)
{
	buf_printf(out, "%c%s=", *sep, key);
	*sep = '&';
	for (const unsigned char *p = (const unsigned char *)val; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p))
			buf_putc(out, (char)*p);
		else
			buf_printf(out, "%%%02X", *p);
	}
}

static void put_int_param(struct buf *out, char *sep, const char *key, int64_t v)
{
	char s[32];
	snprintf(s, sizeof s, "%lld", (long long)v);
	put_param(out, sep, key, s);
}

void cli_upload_target(const struct cli_args *a, struct buf *out)
{
	const struct cli_create *c = &a->create;
	char name[160];
	cli_create_name(c, name, sizeof name);
	char sep = '?';
	buf_printf(out, "/templates/upload");
	put_param(out, &sep, "name", name);
	if (c->cpus)
		put_int_param(out, &sep, "cpuCount", c->cpus);
	if (c->mem_mib)
		put_int_param(out, &sep, "memoryMB", c->mem_mib);
	if (c->layer_mib)
		put_int_param(out, &sep, "writableLayerSizeMB", c->layer_mib);
	if (c->probe)
		put_int_param(out, &sep, "probePort", c->probe);
	if (c->start_cmd)
		put_param(out, &sep, "startCmd", c->start_cmd);
	if (c->nports) {
		char ports[CLI_PORTS_MAX * 6 + 1] = "";
		for (int i = 0; i < c->nports; i++)
			snprintf(ports + strlen(ports), sizeof ports - strlen(ports), "%s%d", i ? "," : "",
				 c->ports[i]);
		put_param(out, &sep, "exposePorts", ports);
	}
	for (int i = 0; i < c->nenv; i++)
		put_param(out, &sep, "env", c->env[i]);
}

void cli_create_body(const struct cli_args *a, struct buf *out)
{
	const struct cli_create *c = &a->create;
	char name[160];
	cli_create_name(c, name, sizeof name);
	struct jw w;
	jw_init(&w, out);
	jw_obj(&w);
	jw_kstr(&w, "name", name);
	if (c->image)
		jw_kstr(&w, "fromImage", c->image);
	if (c->rootfs)
		jw_kstr(&w, "fromRootfs", c->rootfs);
	if (c->cpus)
		jw_kint(&w, "cpuCount", c->cpus);
	if (c->mem_mib)
		jw_kint(&w, "memoryMB", c->mem_mib);
	if (c->layer_mib)
		jw_kint(&w, "writableLayerSizeMB", c->layer_mib);
	if (c->nports) {
		jw_key(&w, "exposePorts");
		jw_arr(&w);
		for (int i = 0; i < c->nports; i++)
			jw_int(&w, c->ports[i]);
		jw_end(&w);
	}
	if (c->probe)
		jw_kint(&w, "probePort", c->probe);
	if (c->start_cmd)
		jw_kstr(&w, "startCmd", c->start_cmd);
	if (c->registry_user) {
		jw_key(&w, "fromImageRegistry");
		jw_obj(&w);
		jw_kstr(&w, "type", "registry");
		jw_kstr(&w, "username", c->registry_user);
		jw_kstr(&w, "password", c->registry_password ? c->registry_password : "");
		jw_end(&w);
	}
	if (c->registry_ca_pem)
		jw_kstr(&w, "registryCA", c->registry_ca_pem);
	if (c->nenv) {
		jw_key(&w, "envVars");
		jw_obj(&w);
		for (int i = 0; i < c->nenv; i++) {
			const char *eq = strchr(c->env[i], '=');
			char key[256];
			snprintf(key, sizeof key, "%.*s", (int)(eq - c->env[i]), c->env[i]);
			jw_kstr(&w, key, eq + 1);
		}
		jw_end(&w);
	}
	if (c->insecure)
		jw_kbool(&w, "insecureRegistry", true);
	jw_end(&w);
}
