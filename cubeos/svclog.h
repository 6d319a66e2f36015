/*
 * svclog.h - the log file of one service.
 *
 * A service's stdout and stderr arrive through pipes. Each line becomes one
 * JSON object in <dir>/<name>.log: lines that already are lib/log JSON (our
 * own daemons) are kept as they are, anything else is wrapped as
 * {"ts","level","comp":<name>,"event":"output","msg":<line>} with level info
 * for stdout and warn for stderr. Lines at warn or above are echoed to the
 * console. The file is rotated to <name>.log.1 when it reaches the size cap.
 */
#ifndef CUBEOS_SVCLOG_H
#define CUBEOS_SVCLOG_H

#include <stddef.h>
#include <sys/types.h>

#include "../lib/log.h"

#define SVCLOG_CAP_DEFAULT (1 << 20)
#define SVCLOG_LINE_MAX	   4096 /* longer lines are split */

struct loop;
struct svclog_pipe;

struct svclog {
	char *name;
	char *path;
	int fd;
	off_t size;
	off_t cap;
	int console_fd;
	struct svclog_pipe *pipes; /* open pipes feeding this log */
};

int svclog_open(struct svclog *lg, const char *dir, const char *name, off_t cap, int console_fd);
/* Closes the file and every pipe still feeding it. */
void svclog_close(struct svclog *lg);
/* Writes one line (without its newline). */
void svclog_line(struct svclog *lg, enum log_level plain_level, const char *line, size_t n);
/* Reads fd until EOF, line by line, into lg; closes fd at EOF. */
int svclog_watch(struct loop *l, struct svclog *lg, int fd, enum log_level plain_level);

#endif
