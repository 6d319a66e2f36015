/* cmd_logs.c - logs SERVICE [LINES]: the tail of <state>/logs/SERVICE.log. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "service.h"
#include "shell.h"

#define LOGS_DEFAULT  20
#define LOGS_MAX      1000
#define LOGS_READ_MAX (256 * 1024) /* the tail we look at */

/* Reads at most the last max bytes of path. */
static char *read_tail(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	off_t from = fstat(fd, &st) == 0 && st.st_size > (off_t)max ? st.st_size - (off_t)max : 0;
	char *data = malloc(max + 1);
	ssize_t r = pread(fd, data, max, from);
	close(fd);
	*len = r > 0 ? (size_t)r : 0;
	data[*len] = '\0';
	return data;
}

static bool known_service(struct shell *sh, const char *name)
{
	if (sh->os && service_find(sh->os->services, name))
		return true;
	return strcmp(name, "cubeos") == 0;
}

void cmd_logs(struct shell *sh, int argc, char **argv)
{
	const char *name = argv[0];
	long lines = LOGS_DEFAULT;
	if (argc > 1) {
		char *end;
		lines = strtol(argv[1], &end, 10);
		if (*end || lines < 1 || lines > LOGS_MAX) {
			shell_printf(sh, "error: LINES is a number from 1 to %d\r\n", LOGS_MAX);
			return;
		}
	}
	if (!known_service(sh, name) || strchr(name, '/')) {
		shell_printf(sh, "error: no service \"%.40s\" (see status)\r\n", name);
		return;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/logs/%s.log", sh->os->state_dir, name);
	size_t len;
	char *data = read_tail(path, LOGS_READ_MAX, &len);
	if (!data) {
		shell_printf(sh, "%s: no log yet (%s)\r\n", name, strerror(errno));
		return;
	}
	/* Walk back over `lines` newlines (the last byte is the final one). */
	size_t start = len;
	long seen = 0;
	while (start > 0) {
		if (data[start - 1] == '\n' && start != len && ++seen == lines)
			break;
		start--;
	}
	for (char *p = data + start; *p;) {
		size_t n = strcspn(p, "\n");
		shell_write(sh, p, n);
		shell_printf(sh, "\r\n");
		p += n + (p[n] == '\n');
	}
	free(data);
}
