/* test_fileio.c - lib/fileio.c: whole-file replacement and full writes. */
#include "../fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static char dir[] = "/tmp/test_fileio.XXXXXX";

/* Every test works in one temporary directory, made on first use. */
static char *in_dir(const char *name)
{
	static char path[256];
	static bool made;
	if (!made)
		made = mkdtemp(dir) != NULL;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return path;
}

static bool file_is(const char *path, const char *want)
{
	char got[256] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, got, sizeof got - 1);
	if (fd >= 0)
		close(fd);
	return CHECK(n == (ssize_t)strlen(want)) && CHECK_STREQ(got, want);
}

TEST(replace_writes_whole_file_with_exact_mode)
{
	umask(077);
	CHECK_EQ_INT(file_replace(in_dir("a"), "first", 5, 0644, true), 0);
	CHECK(file_is(in_dir("a"), "first"));
	CHECK_EQ_INT(file_replace(in_dir("a"), "second!", 7, 0600, false), 0);
	CHECK(file_is(in_dir("a"), "second!"));
	struct stat st;
	CHECK(stat(in_dir("a"), &st) == 0 && (st.st_mode & 07777) == 0600);
	CHECK(access(in_dir(".a.tmp"), F_OK) < 0); /* no temporary file left */
	umask(022);
	unlink(in_dir("a"));
}

TEST(failure_leaves_no_trace)
{
	CHECK_EQ_INT(file_replace(in_dir("missing-dir/b"), "x", 1, 0644, true), -1);
	CHECK_EQ_INT(errno, ENOENT);
	/* A directory in the way: the rename fails, the temp file goes. */
	CHECK(mkdir(in_dir("d"), 0755) == 0);
	CHECK_EQ_INT(file_replace(in_dir("d"), "x", 1, 0644, false), -1);
	CHECK(access(in_dir(".d.tmp"), F_OK) < 0);
	rmdir(in_dir("d"));
	rmdir(dir);
}

TEST(write_full_reports_a_closed_pipe)
{
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK_EQ_INT(write_full(p[1], "abc", 3), 0);
	char got[4] = "";
	CHECK(read(p[0], got, 3) == 3 && CHECK_STREQ(got, "abc"));
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	CHECK_EQ_INT(write_full(p[1], "abc", 3), -1);
	CHECK_EQ_INT(errno, EPIPE);
	close(p[1]);
}

/* Works in a directory of its own: another test removes the shared one. */
TEST(dir_make_all_makes_every_missing_level)
{
	char d[] = "/tmp/test_fileio_dirs.XXXXXX";
	CHECK(mkdtemp(d) != NULL);
	char path[128];
	snprintf(path, sizeof path, "%s/a/b/c/", d);
	mode_t old = umask(022);
	CHECK_EQ_INT(dir_make_all(path, 0700), 0);
	CHECK_EQ_INT(dir_make_all(path, 0700), 0); /* existing: fine */
	umask(old);
	struct stat st;
	snprintf(path, sizeof path, "%s/a/b/c", d);
	CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	snprintf(path, sizeof path, "%s/a", d);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
	/* A file in the way is an error, not silently accepted. */
	snprintf(path, sizeof path, "%s/f", d);
	CHECK_EQ_INT(file_replace(path, "x", 1, 0644, false), 0);
	snprintf(path, sizeof path, "%s/f/g", d);
	errno = 0;
	CHECK_EQ_INT(dir_make_all(path, 0700), -1);
	CHECK_EQ_INT(errno, ENOTDIR);
	char longp[5000];
	memset(longp, 'x', sizeof longp - 1);
	longp[sizeof longp - 1] = '\0';
	CHECK_EQ_INT(dir_make_all(longp, 0700), -1);
	CHECK_EQ_INT(errno, ENAMETOOLONG);
	char cmd[160];
	snprintf(cmd, sizeof cmd, "rm -rf %s", d);
	CHECK_EQ_INT(system(cmd), 0);
}

TEST(read_all_reads_whole_file_up_to_max)
{
	char d[] = "/tmp/test_fileio_read.XXXXXX";
	CHECK(mkdtemp(d) != NULL);
	char path[64];
	snprintf(path, sizeof path, "%s/f", d);

	/* Bigger than one read chunk, with a NUL inside: len counts it all. */
	size_t big = 20000;
	char *want = malloc(big);
	for (size_t i = 0; i < big; i++)
		want[i] = (char)(i % 251);
	CHECK_EQ_INT(file_replace(path, want, big, 0644, false), 0);
	size_t len = 0;
	char *got = file_read_all(path, big, &len);
	CHECK(got != NULL && CHECK_MEMEQ(got, len, want, big) && got[len] == '\0');
	free(got);

	errno = 0;
	CHECK(file_read_all(path, big - 1, &len) == NULL);
	CHECK_EQ_INT(errno, EFBIG);
	free(want);

	/* An empty file is "", not NULL; len may be left out. */
	CHECK_EQ_INT(file_replace(path, "", 0, 0644, false), 0);
	got = file_read_all(path, 0, NULL);
	CHECK(got != NULL && CHECK_STREQ(got, ""));
	free(got);
	unlink(path);

	CHECK(file_read_all(path, 10, &len) == NULL);
	CHECK_EQ_INT(errno, ENOENT);
	rmdir(d);
}
