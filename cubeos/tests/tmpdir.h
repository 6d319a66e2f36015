/* tmpdir.h - scratch directories for the cubeos tests, removed afterwards. */
#ifndef CUBEOS_TEST_TMPDIR_H
#define CUBEOS_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline int tmpdir_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static inline void tmpdir_remove(const char *dir)
{
	nftw(dir, tmpdir_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh /tmp/cubeos-<what>-XXXXXX (caller frees the string). */
static inline char *tmpdir_make(const char *what)
{
	char tmpl[128];
	snprintf(tmpl, sizeof tmpl, "/tmp/cubeos-%s-XXXXXX", what);
	char *dir = mkdtemp(tmpl);
	return dir ? strdup(dir) : NULL;
}

#endif
