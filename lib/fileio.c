/*
 * fileio.c - reading and writing files whole (see fileio.h).
 */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

int write_full(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		/* One write never asks for more than 1 GiB: larger counts are
		 * implementation-defined. */
		ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* fsync the directory holding path, so that a rename into it is durable. */
static int fsync_dir_of(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (slash == path)
		snprintf(dir, sizeof dir, "/");
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

int file_replace(const char *path, const void *p, size_t n, mode_t mode, bool durable)
{
	char tmp[4096];
	const char *slash = strrchr(path, '/');
	int dir_len = slash ? (int)(slash - path + 1) : 0;
	if (snprintf(tmp, sizeof tmp, "%.*s.%s.tmp", dir_len, path, path + dir_len) >= (int)sizeof tmp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	/* fchmod: exact whatever the umask, and a stale temp file keeps no old mode. */
	int rc = fchmod(fd, mode) < 0 || write_full(fd, p, n) < 0 || (durable && fsync(fd) < 0) ? -1 : 0;
	int e = errno;
	if (close(fd) < 0 && rc == 0) {
		rc = -1;
		e = errno;
	}
	if (rc < 0 || rename(tmp, path) < 0) {
		if (rc == 0)
			e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	return durable ? fsync_dir_of(path) : 0;
}

char *file_read_all(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct buf b = BUF_INIT;
	for (;;) {
		ssize_t n = read(fd, buf_reserve(&b, 8192), 8192);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			break;
		if (n < 0 || b.len + (size_t)n > max) {
			int e = n < 0 ? errno : EFBIG;
			close(fd);
			buf_free(&b);
			errno = e;
			return NULL;
		}
		buf_commit(&b, (size_t)n);
	}
	close(fd);
	if (len)
		*len = b.len;
	/* The last read wrote nothing: terminate (an empty file reads as ""). */
	buf_commit(&b, 0);
	return buf_steal(&b);
}

int dir_make_all(const char *path, mode_t mode)
{
	char p[4096];
	if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return mkdir(p, mode) < 0 && errno != EEXIST ? -1 : 0;
}
