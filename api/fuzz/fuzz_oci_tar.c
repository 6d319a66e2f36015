/* fuzz_oci_tar.c - the tar parser and the layer extractor (api/oci_tar.h)
 * on any bytes, plain or as gzip: no crash, no out-of-bounds access, and no
 * file ever appears outside the staging directory (a sentinel directory
 * beside it, which the image's "..", absolute names and symlinks would
 * reach first, must stay empty). The input is fed in two slices to exercise
 * the push parser's resumption. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../oci_tar.h"

static char base[] = "/tmp/fuzz-oci-XXXXXX";
static char staging[64], sentinel[64];
static int rootfd = -1;

static int rm_fn(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	if (f->level > 0)
		(void)(flag == FTW_DP ? rmdir(path) : unlink(path));
	return 0;
}

static int rm_all_fn(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)(flag == FTW_DP ? rmdir(path) : unlink(path));
	return 0;
}

static void cleanup(void)
{
	nftw(base, rm_all_fn, 32, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	if (rootfd >= 0)
		return;
	atexit(cleanup);
	if (!mkdtemp(base))
		abort();
	snprintf(staging, sizeof staging, "%s/root", base);
	snprintf(sentinel, sizeof sentinel, "%s/outside", base);
	if (mkdir(staging, 0755) < 0 || mkdir(sentinel, 0755) < 0)
		abort();
	rootfd = open(staging, O_RDONLY | O_DIRECTORY);
	if (rootfd < 0)
		abort();
}

static bool dir_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return false;
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n == 0;
}

static int count_entry(void *arg, const struct oci_tar_entry *e, char *err, size_t errsz)
{
	if (strlen(e->path) > OCI_TAR_MAX_PATH || strlen(e->linkpath) > OCI_TAR_MAX_PATH || e->mode > 07777)
		abort();
	char clean[OCI_TAR_MAX_PATH + 1];
	if (oci_tar_clean_path(e->path, clean) == 0) {
		/* A clean path never climbs and never starts at "/". */
		if (clean[0] == '/' || strstr(clean, "//"))
			abort();
		for (const char *p = clean; *p;) {
			size_t l = strcspn(p, "/");
			if ((l == 2 && p[0] == '.' && p[1] == '.') || (l == 1 && p[0] == '.'))
				abort();
			p += l + (p[l] == '/');
		}
	}
	++*(int *)arg;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	/* The parser alone, in two slices. */
	static const struct oci_tar_ops ops = {count_entry, NULL, NULL};
	int entries = 0;
	char err[256];
	struct oci_tar *t = oci_tar_new(&ops, &entries);
	size_t cut = size ? data[0] % (size + 1) : 0;
	if (oci_tar_feed(t, data, cut, err, sizeof err) == 0 &&
	    oci_tar_feed(t, data + cut, size - cut, err, sizeof err) == 0)
		(void)oci_tar_finish(t, err, sizeof err);
	oci_tar_free(t);

	/* The extractor, twice (a second layer over the first). */
	struct oci_unpack *u = oci_unpack_new(rootfd, 1 << 20);
	(void)oci_unpack_layer_mem(u, data, size, err, sizeof err);
	(void)oci_unpack_layer_mem(u, data, size, err, sizeof err);
	oci_unpack_free(u);
	if (!dir_empty(sentinel))
		abort();
	nftw(staging, rm_fn, 32, FTW_DEPTH | FTW_PHYS);
	return 0;
}
