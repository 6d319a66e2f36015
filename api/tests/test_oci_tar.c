/* test_oci_tar.c - the tar parser and the layer extractor (api/oci_tar.h)
 * on tar streams built here: metadata, whiteouts, opaque directories, links,
 * long names, gzip, and every way a layer could try to write outside the
 * staging directory. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../../lib/tests/test.h"
#include "../oci_tar.h"
#include "oci_fixture.h"

struct staging {
	char *dir;
	int fd;
	struct oci_unpack *u;
	char err[512];
};

static void staging_open(struct staging *s)
{
	s->dir = tmpdir_new();
	s->fd = open(s->dir, O_RDONLY | O_DIRECTORY);
	s->u = oci_unpack_new(s->fd, 0);
	s->err[0] = '\0';
}

static void staging_close(struct staging *s)
{
	oci_unpack_free(s->u);
	close(s->fd);
	rm_rf(s->dir);
	free(s->dir);
}

static int apply(struct staging *s, struct buf *layer)
{
	return oci_unpack_layer_mem(s->u, layer->data, layer->len, s->err, sizeof s->err);
}

static bool exists(struct staging *s, const char *rel)
{
	struct stat st;
	return fstatat(s->fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static char *slurp(struct staging *s, const char *rel)
{
	static char content[4096];
	int fd = openat(s->fd, rel, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, content, sizeof content - 1);
	close(fd);
	content[n < 0 ? 0 : n] = '\0';
	return content;
}

TEST(clean_path)
{
	char out[OCI_TAR_MAX_PATH + 1];
	CHECK(oci_tar_clean_path("./a//b/", out) == 0 && strcmp(out, "a/b") == 0);
	CHECK(oci_tar_clean_path("./", out) == 0 && strcmp(out, "") == 0);
	CHECK(oci_tar_clean_path("a/./b", out) == 0 && strcmp(out, "a/b") == 0);
	CHECK(oci_tar_clean_path("..", out) < 0);
	CHECK(oci_tar_clean_path("a/../../b", out) < 0);
	CHECK(oci_tar_clean_path("/etc/passwd", out) < 0);
	CHECK(oci_tar_clean_path("", out) < 0);
	CHECK(oci_tar_clean_path("a/..b/c..", out) == 0 && strcmp(out, "a/..b/c..") == 0);
}

TEST(files_dirs_symlinks_keep_metadata)
{
	struct staging s;
	staging_open(&s);
	struct buf l = BUF_INIT;
	struct tw_meta dm = {0750, 12, 34, 1600000000, 0, 0};
	struct tw_meta fm = {04755, 1234, 5678, 1500000000, 0, 0};
	tw_dir(&l, "./usr/", &dm);
	tw_file(&l, "./usr/prog", "#!/bin/sh\necho hi\n", &fm);
	tw_symlink(&l, "./usr/link", "prog");
	tw_file(&l, "deep/no/parents/file", "x", NULL); /* parents not listed */
	tw_end(&l);
	if (!CHECK(apply(&s, &l) == 0))
		fprintf(stderr, "  err: %s\n", s.err);
	struct stat st;
	CHECK(fstatat(s.fd, "usr/prog", &st, 0) == 0);
	CHECK_EQ_INT(st.st_mode & 07777, 04755);
	CHECK_EQ_INT(st.st_size, 18);
	CHECK_EQ_INT(st.st_mtime, 1500000000);
	if (geteuid() == 0) {
		CHECK_EQ_INT(st.st_uid, 1234);
		CHECK_EQ_INT(st.st_gid, 5678);
	}
	CHECK(fstatat(s.fd, "usr", &st, 0) == 0);
	CHECK_EQ_INT(st.st_mode & 07777, 0750);
	CHECK_EQ_INT(st.st_mtime, 1600000000); /* set after its children were written */
	char target[64] = "";
	CHECK(readlinkat(s.fd, "usr/link", target, sizeof target) == 4 && memcmp(target, "prog", 4) == 0);
	CHECK_STREQ(slurp(&s, "deep/no/parents/file"), "x");
	const struct oci_unpack_stats *stt = oci_unpack_stats(s.u);
	CHECK_EQ_INT(stt->files, 2);
	CHECK_EQ_INT(stt->symlinks, 1);
	buf_free(&l);
	staging_close(&s);
}

TEST(whiteout_deletes_lower_entry)
{
	struct staging s;
	staging_open(&s);
	struct buf l1 = BUF_INIT, l2 = BUF_INIT;
	tw_file(&l1, "a/b", "lower", NULL);
	tw_file(&l1, "a/c", "keep", NULL);
	tw_dir(&l1, "a/tree", NULL);
	tw_file(&l1, "a/tree/x", "x", NULL);
	tw_end(&l1);
	tw_file(&l2, "a/.wh.b", "", NULL);
	tw_file(&l2, "a/.wh.tree", "", NULL);
	tw_file(&l2, "a/.wh.never-existed", "", NULL);
	tw_end(&l2);
	CHECK(apply(&s, &l1) == 0);
	CHECK(apply(&s, &l2) == 0);
	CHECK(!exists(&s, "a/b"));
	CHECK(!exists(&s, "a/tree"));
	CHECK(!exists(&s, "a/.wh.b"));
	CHECK_STREQ(slurp(&s, "a/c"), "keep");
	CHECK_EQ_INT(oci_unpack_stats(s.u)->whiteouts, 3);
	buf_free(&l1);
	buf_free(&l2);
	staging_close(&s);
}

TEST(opaque_dir_hides_lower_content_in_any_order)
{
	struct staging s;
	staging_open(&s);
	struct buf l1 = BUF_INIT, l2 = BUF_INIT;
	tw_file(&l1, "d/old", "old", NULL);
	tw_file(&l1, "d/sub/lower", "lower", NULL);
	tw_file(&l1, "other/stays", "yes", NULL);
	tw_end(&l1);
	tw_dir(&l2, "d/", NULL);
	tw_file(&l2, "d/new-before-marker", "1", NULL);
	tw_file(&l2, "d/.wh..wh..opq", "", NULL);
	tw_file(&l2, "d/sub/upper", "2", NULL);
	tw_end(&l2);
	CHECK(apply(&s, &l1) == 0);
	if (!CHECK(apply(&s, &l2) == 0))
		fprintf(stderr, "  err: %s\n", s.err);
	CHECK(!exists(&s, "d/old"));
	CHECK(!exists(&s, "d/sub/lower"));
	CHECK(!exists(&s, "d/.wh..wh..opq"));
	CHECK_STREQ(slurp(&s, "d/new-before-marker"), "1");
	CHECK_STREQ(slurp(&s, "d/sub/upper"), "2");
	CHECK_STREQ(slurp(&s, "other/stays"), "yes");
	buf_free(&l1);
	buf_free(&l2);
	staging_close(&s);
}

TEST(replacing_types_across_layers)
{
	struct staging s;
	staging_open(&s);
	struct buf l1 = BUF_INIT, l2 = BUF_INIT;
	tw_file(&l1, "x", "file", NULL);
	tw_file(&l1, "y/inside", "dir", NULL);
	tw_symlink(&l1, "z", "/nowhere");
	tw_end(&l1);
	tw_dir(&l2, "x", NULL);
	tw_file(&l2, "y", "now a file", NULL);
	tw_file(&l2, "z", "no longer a link", NULL);
	tw_end(&l2);
	CHECK(apply(&s, &l1) == 0);
	CHECK(apply(&s, &l2) == 0);
	struct stat st;
	CHECK(fstatat(s.fd, "x", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode));
	CHECK_STREQ(slurp(&s, "y"), "now a file");
	CHECK_STREQ(slurp(&s, "z"), "no longer a link");
	buf_free(&l1);
	buf_free(&l2);
	staging_close(&s);
}

TEST(hard_links)
{
	struct staging s;
	staging_open(&s);
	struct buf l1 = BUF_INIT, l2 = BUF_INIT, bad = BUF_INIT;
	tw_file(&l1, "bin/tool", "payload", NULL);
	tw_hardlink(&l1, "bin/alias", "bin/tool");
	tw_hardlink(&l1, "bin/tool", "./bin/tool"); /* to itself: nothing to do */
	tw_end(&l1);
	tw_hardlink(&l2, "usr/other", "bin/tool"); /* to a lower layer's file */
	tw_end(&l2);
	tw_hardlink(&bad, "missing-link", "no/such/file");
	tw_end(&bad);
	CHECK(apply(&s, &l1) == 0);
	CHECK(apply(&s, &l2) == 0);
	struct stat a, b, c;
	CHECK(fstatat(s.fd, "bin/tool", &a, 0) == 0 && fstatat(s.fd, "bin/alias", &b, 0) == 0 &&
	      fstatat(s.fd, "usr/other", &c, 0) == 0);
	CHECK(a.st_ino == b.st_ino && a.st_ino == c.st_ino);
	CHECK_EQ_INT(a.st_nlink, 3);
	CHECK(apply(&s, &bad) < 0);
	CHECK(strstr(s.err, "missing") != NULL);
	buf_free(&l1);
	buf_free(&l2);
	buf_free(&bad);
	staging_close(&s);
}

TEST(traversal_attempts_stay_inside)
{
	struct staging s;
	staging_open(&s);
	char *outside = tmpdir_new(); /* a host directory a layer must not reach */
	struct buf up = BUF_INIT, abs = BUF_INIT, hl = BUF_INIT, via = BUF_INIT, deep = BUF_INIT;
	tw_file(&up, "a/../../escape", "x", NULL);
	tw_end(&up);
	tw_file(&abs, "/etc/cube-oci-test", "x", NULL);
	tw_end(&abs);
	tw_hardlink(&hl, "stolen", "../../../../etc/passwd");
	tw_end(&hl);
	/* Symlinks that point out, absolute and relative, then writes through them. */
	tw_dir(&via, outside + 1, NULL); /* the link's target, inside the image */
	tw_symlink(&via, "abs", outside);
	tw_symlink(&via, "rel", "../../../../../../..");
	tw_file(&via, "abs/pwned", "no", NULL);
	tw_file(&via, "rel/tmp/pwned2", "no", NULL);
	tw_end(&via);
	/* A symlink as the last component is replaced, never written through. */
	char target[300];
	snprintf(target, sizeof target, "%s/pwned3", outside);
	tw_symlink(&deep, "last", target);
	tw_file(&deep, "last", "replaced", NULL);
	tw_end(&deep);

	CHECK(apply(&s, &up) < 0 && strstr(s.err, "leaves the image"));
	CHECK(apply(&s, &abs) < 0 && strstr(s.err, "leaves the image"));
	CHECK(apply(&s, &hl) < 0 && strstr(s.err, "leaves the image"));
	CHECK(apply(&s, &via) == 0);
	CHECK(apply(&s, &deep) == 0);
	char p[400];
	snprintf(p, sizeof p, "%s/pwned", outside);
	CHECK(access(p, F_OK) < 0);
	snprintf(p, sizeof p, "%s/pwned3", outside);
	CHECK(access(p, F_OK) < 0);
	CHECK(access("/tmp/pwned2", F_OK) < 0);
	/* They landed inside, as if the staging directory were "/". */
	snprintf(p, sizeof p, "%s/pwned", outside + 1);
	CHECK_STREQ(slurp(&s, p), "no");
	CHECK_STREQ(slurp(&s, "tmp/pwned2"), "no");
	CHECK_STREQ(slurp(&s, "last"), "replaced");
	buf_free(&up);
	buf_free(&abs);
	buf_free(&hl);
	buf_free(&via);
	buf_free(&deep);
	rm_rf(outside);
	free(outside);
	staging_close(&s);
}

static void long_name(char *out, size_t len, char c)
{
	size_t i = 0;
	while (i < len) {
		out[i++] = c;
		if (i % 50 == 0 && i < len)
			out[i++] = '/';
	}
	out[len] = '\0';
}

TEST(pax_and_gnu_long_names)
{
	struct staging s;
	staging_open(&s);
	char p300[400], p150[200], link[400];
	long_name(p300, 300, 'p');
	long_name(p150, 150, 'g');
	long_name(link, 280, 'k');
	struct buf l = BUF_INIT;
	tw_pax(&l, "path", p300);
	tw_file(&l, "short-name-ignored", "pax", NULL);
	tw_gnu_long(&l, 'L', p150);
	tw_file(&l, "cut", "gnu", NULL);
	tw_pax(&l, "linkpath", link);
	tw_symlink(&l, "longlink", "cut");
	tw_gnu_long(&l, 'K', p150);
	tw_hardlink(&l, "hard", "cut");
	tw_pax(&l, "mtime", "1234567890.5");
	tw_file(&l, "timed", "t", NULL);
	tw_pax(&l, "uid", "3000000");
	tw_file(&l, "bigid", "u", NULL);
	tw_raw(&l, "././@PaxHeader", 'g', &tw_default, NULL, "20 comment=ignored\n", 19);
	tw_file(&l, "after-global", "g", NULL);
	tw_end(&l);
	if (!CHECK(apply(&s, &l) == 0))
		fprintf(stderr, "  err: %s\n", s.err);
	CHECK_STREQ(slurp(&s, p300), "pax");
	CHECK(!exists(&s, "short-name-ignored"));
	CHECK_STREQ(slurp(&s, p150), "gnu");
	char got[400] = "";
	CHECK(readlinkat(s.fd, "longlink", got, sizeof got) == 280 && memcmp(got, link, 280) == 0);
	struct stat a, b;
	CHECK(fstatat(s.fd, "hard", &a, 0) == 0 && fstatat(s.fd, p150, &b, 0) == 0 && a.st_ino == b.st_ino);
	CHECK(fstatat(s.fd, "timed", &a, 0) == 0);
	CHECK_EQ_INT(a.st_mtime, 1234567890);
	CHECK_EQ_INT(a.st_mtim.tv_nsec, 500000000);
	if (geteuid() == 0 && CHECK(fstatat(s.fd, "bigid", &a, 0) == 0))
		CHECK_EQ_INT(a.st_uid, 3000000);
	CHECK_STREQ(slurp(&s, "after-global"), "g");
	buf_free(&l);
	staging_close(&s);
}

TEST(gzip_layers_and_any_slicing)
{
	struct staging s;
	staging_open(&s);
	struct buf l = BUF_INIT, gz = BUF_INIT;
	char big[70000];
	for (size_t i = 0; i < sizeof big - 1; i++)
		big[i] = (char)('a' + i % 26);
	big[sizeof big - 1] = '\0';
	tw_file(&l, "big", big, NULL);
	tw_file(&l, "small", "s", NULL);
	tw_end(&l);
	gzip_buf(&l, &gz);
	CHECK(gz.len > 2 && (unsigned char)gz.data[0] == 0x1f);
	if (!CHECK(oci_unpack_layer_mem(s.u, gz.data, gz.len, s.err, sizeof s.err) == 0))
		fprintf(stderr, "  err: %s\n", s.err);
	struct stat st;
	CHECK(fstatat(s.fd, "big", &st, 0) == 0 && st.st_size == (off_t)sizeof big - 1);
	/* The parser gives the same entries fed one byte at a time. */
	struct oci_tar_ops none = {0};
	struct oci_tar *t = oci_tar_new(&none, NULL);
	char err[256];
	bool ok = true;
	for (size_t i = 0; i < l.len && ok; i++)
		ok = oci_tar_feed(t, l.data + i, 1, err, sizeof err) == 0;
	CHECK(ok && oci_tar_finish(t, err, sizeof err) == 0);
	CHECK_EQ_INT(oci_tar_entries(t), 2);
	oci_tar_free(t);
	buf_free(&l);
	buf_free(&gz);
	staging_close(&s);
}

TEST(malformed_layers_fail_cleanly)
{
	struct staging s;
	staging_open(&s);
	struct buf l = BUF_INIT;
	tw_file(&l, "f", "data", NULL);
	tw_end(&l);
	l.data[148] ^= 1; /* checksum */
	CHECK(apply(&s, &l) < 0 && strstr(s.err, "checksum"));
	l.data[148] ^= 1;
	size_t full = l.len;
	l.len = 512 + 2; /* header and part of the data */
	CHECK(apply(&s, &l) < 0 && strstr(s.err, "truncated"));
	l.len = full;
	static const unsigned char zstd[] = {0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0};
	CHECK(oci_unpack_layer_mem(s.u, zstd, sizeof zstd, s.err, sizeof s.err) < 0 && strstr(s.err, "zstd"));
	static const unsigned char badgz[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3};
	CHECK(oci_unpack_layer_mem(s.u, badgz, sizeof badgz, s.err, sizeof s.err) < 0);
	struct buf pax = BUF_INIT;
	tw_raw(&pax, "x", 'x', &tw_default, NULL, "99 path=x\n", 10);
	tw_file(&pax, "y", "", NULL);
	tw_end(&pax);
	CHECK(apply(&s, &pax) < 0 && strstr(s.err, "pax"));
	buf_free(&l);
	buf_free(&pax);
	staging_close(&s);
}

TEST(size_limit)
{
	struct staging s;
	staging_open(&s);
	oci_unpack_free(s.u);
	s.u = oci_unpack_new(s.fd, 10);
	struct buf l = BUF_INIT;
	tw_file(&l, "f", "more than ten bytes", NULL);
	tw_end(&l);
	CHECK(apply(&s, &l) < 0 && oci_unpack_errno(s.u) == EFBIG);
	buf_free(&l);
	staging_close(&s);
}

TEST(devices_and_fifos)
{
	struct staging s;
	staging_open(&s);
	struct buf l = BUF_INIT;
	struct tw_meta null = {0666, 0, 0, 1700000000, 1, 3};
	tw_raw(&l, "dev/null", '3', &null, NULL, NULL, 0);
	tw_raw(&l, "run/fifo", '6', &tw_default, NULL, NULL, 0);
	tw_end(&l);
	CHECK(apply(&s, &l) == 0);
	struct stat st;
	if (oci_unpack_stats(s.u)->devices_skipped == 0 && CHECK(fstatat(s.fd, "dev/null", &st, 0) == 0)) {
		CHECK(S_ISCHR(st.st_mode));
		CHECK(major(st.st_rdev) == 1 && minor(st.st_rdev) == 3);
	}
	CHECK(fstatat(s.fd, "run/fifo", &st, 0) == 0 && S_ISFIFO(st.st_mode));
	buf_free(&l);
	staging_close(&s);
}
