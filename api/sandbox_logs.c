/* sandbox_logs.c - GET /sandboxes/{id}/logs: what the sandbox wrote on its
 * console.
 *
 * Each sandbox's VMM writes the guest's serial console to
 * RUN/sandboxes/<id>/console.log. The guest's agent is PID1 there and logs
 * structured lines (lib/log: {"ts","level","comp","event","msg",...}), so
 * those become E2B's `logEntries` {timestamp, level, message, fields}; every
 * line, structured or not (the guest kernel's), is also in the older `logs`
 * array {timestamp, line}. A line without a time of its own gets the time of
 * the last line that had one (the sandbox's start before any).
 *
 * Query (as E2B's API): `start` (ms since the epoch: entries at or after it)
 * and `limit` (1-1000, default 1000): the first `limit` entries from `start`.
 * CubeOS adds `source`: `console` (the default, as above) or `vmm`, the
 * sandbox's VMM log (RUN/sandboxes/<id>/vmm.log, lib/log lines: restores,
 * device events, guest crashes with their registers), for an operator who
 * asks why a sandbox stopped answering.
 * Only the last LOG_TAIL_BYTES of the file are read: a chatty sandbox does
 * not make the call expensive, and the file is on tmpfs. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/json.h"
#include "apicore.h"

#define LOG_TAIL_BYTES (1 << 20)
#define LOG_LIMIT_MAX  1000
#define LOG_LINE_MAX   8192 /* longer lines are cut: one log line, not a dump */

struct log_query {
	int64_t start_ms;
	int limit;
	const char *file; /* in the sandbox's run dir */
};

/* The last LOG_TAIL_BYTES of path, from the first full line on; NULL if the
 * file does not exist (a sandbox that never had a console). */
static char *read_tail(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	char *text = NULL;
	if (fstat(fd, &st) == 0) {
		off_t from = st.st_size > LOG_TAIL_BYTES ? st.st_size - LOG_TAIL_BYTES : 0;
		size_t want = (size_t)(st.st_size - from);
		text = malloc(want + 1);
		ssize_t n = text ? pread(fd, text, want, from) : -1;
		if (n < 0) {
			free(text);
			text = NULL;
		} else {
			text[n] = '\0';
			*len = (size_t)n;
			if (from > 0) { /* the first line is cut: drop it */
				char *nl = memchr(text, '\n', *len);
				size_t skip = nl ? (size_t)(nl - text) + 1 : *len;
				memmove(text, text + skip, *len - skip + 1);
				*len -= skip;
			}
		}
	}
	close(fd);
	return text;
}

static const char *e2b_level(const char *level)
{
	if (!level)
		return "info";
	if (!strcmp(level, "warn") || !strcmp(level, "warning"))
		return "warn";
	if (!strcmp(level, "error") || !strcmp(level, "fatal"))
		return "error";
	if (!strcmp(level, "debug"))
		return "debug";
	return "info";
}

/* Every member of a structured line but ts/level/msg, as strings. */
static void write_fields(struct jw *w, const struct json *j)
{
	jw_key(w, "fields");
	jw_obj(w);
	for (const struct json *m = j->child; m; m = m->next) {
		if (!strcmp(m->key, "ts") || !strcmp(m->key, "level") || !strcmp(m->key, "msg"))
			continue;
		char num[32];
		jw_key(w, m->key);
		if (m->type == JSON_STRING) {
			jw_strn(w, m->str, m->len);
		} else if (m->type == JSON_NUMBER && m->is_int) {
			snprintf(num, sizeof num, "%lld", (long long)m->i);
			jw_str(w, num);
		} else if (m->type == JSON_BOOL)
			jw_str(w, m->boolean ? "true" : "false");
		else
			jw_str(w, ""); /* nested values: not what the fields are for */
	}
	jw_end(w);
}

struct log_writer {
	struct jw logs, entries;
	struct buf logs_buf, entries_buf;
	int n;
};

static void add_line(struct log_writer *lw, int64_t ms, const char *line, size_t n, const struct json *structured)
{
	char ts[32];
	time_format(ms, ts);
	jw_obj(&lw->logs);
	jw_kstr(&lw->logs, "timestamp", ts);
	jw_key(&lw->logs, "line");
	jw_strn(&lw->logs, line, n);
	jw_end(&lw->logs);
	jw_obj(&lw->entries);
	jw_kstr(&lw->entries, "timestamp", ts);
	if (structured) {
		const char *msg = json_get_str(structured, "msg");
		jw_kstr(&lw->entries, "level", e2b_level(json_get_str(structured, "level")));
		jw_kstr(&lw->entries, "message", msg ? msg : json_get_str(structured, "event"));
		write_fields(&lw->entries, structured);
	} else {
		jw_kstr(&lw->entries, "level", "info");
		jw_key(&lw->entries, "message");
		jw_strn(&lw->entries, line, n);
		jw_key(&lw->entries, "fields");
		jw_obj(&lw->entries);
		jw_kstr(&lw->entries, "source", "console");
		jw_end(&lw->entries);
	}
	jw_end(&lw->entries);
	lw->n++;
}

/* Walks the console text line by line, writing those the query selects. */
static void collect(struct log_writer *lw, char *text, size_t len, int64_t started_ms, const struct log_query *q)
{
	int64_t last_ms = started_ms;
	char *p = text, *end = text + len;
	while (p < end && lw->n < q->limit) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *next = nl ? nl + 1 : end;
		while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' '))
			n--;
		if (n > LOG_LINE_MAX)
			n = LOG_LINE_MAX;
		struct json *j = n > 0 && p[0] == '{' ? json_parse(p, n, NULL, 0) : NULL;
		if (j && j->type != JSON_OBJECT) {
			json_free(j);
			j = NULL;
		}
		int64_t ms;
		if (j && json_get_str(j, "ts") && time_parse(json_get_str(j, "ts"), &ms) == 0)
			last_ms = ms;
		if (n > 0 && last_ms >= q->start_ms)
			add_line(lw, last_ms, p, n, j);
		json_free(j);
		p = next;
	}
}

static bool parse_query(struct http_conn *c, const char *query, struct log_query *q)
{
	q->start_ms = 0;
	q->limit = LOG_LIMIT_MAX;
	q->file = "console.log";
	char *start = http_query_get(query, "start"), *limit = http_query_get(query, "limit"), *endp;
	char *source = http_query_get(query, "source");
	bool ok = true;
	if (source && *source && strcmp(source, "console") != 0) {
		if (!strcmp(source, "vmm")) {
			q->file = "vmm.log";
		} else {
			http_respond_error(c, 400, "source: want console or vmm, got '%s'", source);
			ok = false;
		}
	}
	free(source);
	if (ok && start && *start) {
		long long v = strtoll(start, &endp, 10);
		if (*endp || v < 0) {
			http_respond_error(c, 400, "start: want milliseconds since the epoch, got '%s'", start);
			ok = false;
		}
		q->start_ms = v;
	}
	if (ok && limit && *limit) {
		long v = strtol(limit, &endp, 10);
		if (*endp || v < 0 || v > LOG_LIMIT_MAX) {
			http_respond_error(c, 400, "limit: want 0 to %d, got '%s'", LOG_LIMIT_MAX, limit);
			ok = false;
		}
		q->limit = (int)v;
	}
	free(start);
	free(limit);
	return ok;
}

void sandbox_logs(struct api *a, struct http_conn *c, const struct http_req *req, const struct sandbox_entry *e)
{
	struct log_query q;
	if (!parse_query(c, req->query, &q))
		return;
	char path[4200];
	sandbox_run_dir(a, e->rec.id, path, sizeof path);
	strncat(path, "/", sizeof path - strlen(path) - 1);
	strncat(path, q.file, sizeof path - strlen(path) - 1);
	size_t len = 0;
	char *text = read_tail(path, &len);
	struct log_writer lw = {.logs_buf = BUF_INIT, .entries_buf = BUF_INIT};
	jw_init(&lw.logs, &lw.logs_buf);
	jw_init(&lw.entries, &lw.entries_buf);
	jw_arr(&lw.logs);
	jw_arr(&lw.entries);
	if (text)
		collect(&lw, text, len, e->rec.started_ms, &q);
	jw_end(&lw.logs);
	jw_end(&lw.entries);
	free(text);
	struct buf b = BUF_INIT;
	buf_puts(&b, "{\"logs\":");
	buf_append(&b, lw.logs_buf.data, lw.logs_buf.len);
	buf_puts(&b, ",\"logEntries\":");
	buf_append(&b, lw.entries_buf.data, lw.entries_buf.len);
	buf_puts(&b, "}");
	buf_free(&lw.logs_buf);
	buf_free(&lw.entries_buf);
	respond_json(c, 200, &b);
}
