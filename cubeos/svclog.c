/* svclog.c - service output into rotated JSON-lines files; see svclog.h. */
#include "svclog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/fileio.h"
#include "../lib/json.h"
#include "../lib/loop.h"

struct svclog_pipe {
	struct loop *loop;
	struct svclog *log;
	struct loop_io io;
	enum log_level level;
	char line[SVCLOG_LINE_MAX];
	size_t len;
	struct svclog_pipe *next;
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int open_file(struct svclog *lg)
{
	lg->fd = open(lg->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (lg->fd < 0)
		return -1;
	struct stat st;
	lg->size = fstat(lg->fd, &st) == 0 ? st.st_size : 0;
	return 0;
}

int svclog_open(struct svclog *lg, const char *dir, const char *name, off_t cap, int console_fd)
{
	memset(lg, 0, sizeof *lg);
	lg->name = strdup(name);
	lg->cap = cap;
	lg->console_fd = console_fd;
	struct buf p = BUF_INIT;
	buf_printf(&p, "%s/%s.log", dir, name);
	lg->path = buf_steal(&p);
	return open_file(lg);
}

void svclog_close(struct svclog *lg)
{
	while (lg->pipes) {
		struct svclog_pipe *p = lg->pipes;
		lg->pipes = p->next;
		loop_io_del(p->loop, &p->io);
		close(p->io.fd);
		free(p);
	}
	if (lg->fd >= 0)
		close(lg->fd);
	lg->fd = -1;
	free(lg->name);
	free(lg->path);
	lg->name = lg->path = NULL;
}

/* Keeps one previous file: <name>.log.1. */
static void rotate(struct svclog *lg)
{
	char old[4096];
	snprintf(old, sizeof old, "%s.1", lg->path);
	close(lg->fd);
	rename(lg->path, old);
	open_file(lg);
}

/* The level of a line that is already a lib/log JSON object, else -1. */
static int json_line_level(const char *line, size_t n)
{
	if (n == 0 || line[0] != '{')
		return -1;
	struct json *j = json_parse(line, n, NULL, 0);
	if (!j || j->type != JSON_OBJECT) {
		json_free(j);
		return -1;
	}
	const char *lvl = json_get_str(j, "level");
	int found = LOG_INFO;
	for (int i = 0; lvl && i <= LOG_ERROR; i++)
		if (strcmp(lvl, level_names[i]) == 0)
			found = i;
	json_free(j);
	return found;
}

static void wrap_line(struct buf *b, const char *name, enum log_level lvl, const char *line, size_t n)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	struct jw w;
	jw_init(&w, b);
	jw_obj(&w);
	char stamp[96];
	snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	jw_kstr(&w, "ts", stamp);
	jw_kstr(&w, "level", level_names[lvl]);
	jw_kstr(&w, "comp", name);
	jw_kstr(&w, "event", "output");
	jw_key(&w, "msg");
	jw_strn(&w, line, n);
	jw_end(&w);
}

void svclog_line(struct svclog *lg, enum log_level plain_level, const char *line, size_t n)
{
	struct buf b = BUF_INIT;
	int lvl = json_line_level(line, n);
	if (lvl >= 0) {
		buf_append(&b, line, n);
	} else {
		lvl = plain_level;
		wrap_line(&b, lg->name, plain_level, line, n);
	}
	buf_putc(&b, '\n');
	if (lg->fd >= 0 && lg->size + (off_t)b.len > lg->cap && lg->size > 0)
		rotate(lg);
	if (lg->fd >= 0) {
		(void)write_full(lg->fd, b.data, b.len);
		lg->size += (off_t)b.len;
	}
	if (lvl >= LOG_WARN && lg->console_fd >= 0)
		(void)write_full(lg->console_fd, b.data, b.len); /* a full console must not stall PID1: drop */
	buf_free(&b);
}

static void unlink_pipe(struct svclog_pipe *p)
{
	for (struct svclog_pipe **pp = &p->log->pipes; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	loop_io_del(p->loop, &p->io);
	close(p->io.fd);
	free(p);
}

static void flush_partial(struct svclog_pipe *p)
{
	if (p->len > 0)
		svclog_line(p->log, p->level, p->line, p->len);
	p->len = 0;
}

static void on_pipe(void *arg, uint32_t events)
{
	struct svclog_pipe *p = arg;
	char chunk[4096];
	ssize_t r = read(p->io.fd, chunk, sizeof chunk);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		flush_partial(p);
		unlink_pipe(p);
		return;
	}
	for (ssize_t i = 0; i < r; i++) {
		if (chunk[i] == '\n') {
			flush_partial(p);
			continue;
		}
		if (p->len == sizeof p->line)
			flush_partial(p);
		p->line[p->len++] = chunk[i];
	}
}

int svclog_watch(struct loop *l, struct svclog *lg, int fd, enum log_level plain_level)
{
	struct svclog_pipe *p = calloc(1, sizeof *p);
	p->loop = l;
	p->log = lg;
	p->level = plain_level;
	fd_nonblock(fd);
	if (loop_io_add(l, &p->io, fd, EPOLLIN, on_pipe, p) < 0) {
		close(fd);
		free(p);
		return -1;
	}
	p->next = lg->pipes;
	lg->pipes = p;
	return 0;
}
