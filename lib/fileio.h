/*
 * fileio.h - reading and writing files whole.
 *
 * Every daemon writes state that must never be seen half-written (config,
 * snapshot state, resolv.conf): it goes to a temporary file next to the
 * target and is renamed over it, so a reader or a crash sees either the old
 * file or the new one.
 */
#ifndef CUBE_FILEIO_H
#define CUBE_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Writes all n bytes to fd, going on after short writes and EINTR. 0, or -1
 * with errno set (EIO if the kernel accepted nothing). */
int write_full(int fd, const void *p, size_t n);

/* Replaces path with the n bytes at p: they are written to "<dir>/.<name>.tmp"
 * with exactly mode (whatever the umask), which is then renamed over path.
 * With durable, the data and the rename (the directory) are fsync'd first.
 * On failure path is untouched and no temporary file is left. 0, or -1 with
 * errno set. */
int file_replace(const char *path, const void *p, size_t n, mode_t mode, bool durable);

/* Reads the whole file at path into a new NUL-terminated heap block (the
 * caller frees it); *len (if len is not NULL) gets its length without the
 * NUL. Meant for small files (records, config): one over max bytes is refused
 * with EFBIG rather than read, so a damaged or hostile file cannot make the
 * reader allocate without bound. NULL with errno set on failure. */
char *file_read_all(const char *path, size_t max, size_t *len);

/* mkdir -p: makes path and every missing directory above it, each with mode
 * (less the umask); directories that exist are left as they are. 0, or -1
 * with errno set (ENAMETOOLONG beyond 4095 bytes). */
int dir_make_all(const char *path, mode_t mode);

#endif
