/*
 * oci_archive.c - images from tarballs: an OCI image layout (index.json,
 * blobs/sha256/<hex>, what `skopeo copy oci-archive:` and newer `docker
 * save` write) or a docker-save archive (manifest.json naming the config
 * and the layer tars). The archive (plain or gzip) is unpacked with the
 * layer extractor, so its names cannot escape dir either, and every file it
 * names is opened with openat2(RESOLVE_IN_ROOT) below dir (docker save links
 * repeated layers with symlinks).
 */
#include "oci_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "oci_tar.h"

#define MAX_JSON (4u << 20)

static int aerr(char *err, size_t errsz, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#include <stdarg.h>
static int aerr(char *err, size_t errsz, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
	return status;
}

static int open_in(int dirfd, const char *rel)
{
	char clean[OCI_TAR_MAX_PATH + 1];
	if (oci_tar_clean_path(rel, clean) < 0 || !clean[0]) {
		errno = EINVAL;
		return -1;
	}
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	return (int)syscall(SYS_openat2, dirfd, clean, &how, sizeof how);
}

/* Reads a small file below dirfd into b. */
static int read_small(int dirfd, const char *rel, struct buf *b, char *err, size_t errsz)
{
	int fd = open_in(dirfd, rel);
	if (fd < 0)
		return aerr(err, errsz, OCI_ENOTFOUND, "archive: %s is missing", rel);
	buf_reset(b);
	for (;;) {
		char *p = buf_reserve(b, 65536);
		ssize_t n = read(fd, p, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		buf_commit(b, (size_t)n);
		if (b->len > MAX_JSON) {
			close(fd);
			return aerr(err, errsz, OCI_ETOOBIG, "archive: %s is larger than %u bytes", rel, MAX_JSON);
		}
	}
	close(fd);
	return OCI_OK;
}

static void blob_path(const char *digest, char *out, size_t outsz)
{
	snprintf(out, outsz, "blobs/sha256/%s", digest + 7);
}

/* Opens a blob named by digest and checks its content against it. */
static int open_blob(int dirfd, const char *digest, int *fdp, oci_bytes_fn fn, void *arg, char *err, size_t errsz)
{
	char rel[128], got[OCI_DIGEST_LEN + 1];
	blob_path(digest, rel, sizeof rel);
	int fd = open_in(dirfd, rel);
	if (fd < 0)
		return aerr(err, errsz, OCI_ENOTFOUND, "archive: blob %s is missing", digest);
	if (oci_file_digest(fd, got) < 0) {
		close(fd);
		return aerr(err, errsz, OCI_EIO, "archive: reading blob %s: %s", digest, strerror(errno));
	}
	if (strcmp(got, digest) != 0) {
		close(fd);
		return aerr(err, errsz, OCI_EDIGEST, "archive: blob digest mismatch: expected %s, got %s", digest, got);
	}
	if (fn) {
		struct stat st;
		if (fstat(fd, &st) == 0)
			fn(arg, (uint64_t)st.st_size);
	}
	*fdp = fd;
	return OCI_OK;
}

static int read_blob_json(int dirfd, const char *digest, struct buf *b, char *err, size_t errsz)
{
	int fd, rc = open_blob(dirfd, digest, &fd, NULL, NULL, err, errsz);
	if (rc != OCI_OK)
		return rc;
	close(fd);
	char rel[128];
	blob_path(digest, rel, sizeof rel);
	return read_small(dirfd, rel, b, err, errsz);
}

static int open_oci_layout(int dirfd, struct oci_archive_image *img, oci_bytes_fn fn, void *arg, char *err,
			   size_t errsz)
{
	struct buf doc = BUF_INIT;
	int rc = read_small(dirfd, "index.json", &doc, err, errsz);
	enum oci_doc_kind kind = OCI_DOC_INDEX;
	struct oci_desc sel;
	/* index.json -> (nested indexes) -> the manifest. */
	for (int depth = 0; rc == OCI_OK; depth++) {
		if (depth > 4) {
			rc = aerr(err, errsz, OCI_EINVAL, "archive: image indexes nested too deep");
			break;
		}
		rc = oci_parse_manifest_body(doc.data ? doc.data : "", doc.len, NULL, &img->m, &sel, &kind, err, errsz);
		if (rc != OCI_OK || kind == OCI_DOC_MANIFEST)
			break;
		rc = read_blob_json(dirfd, sel.digest, &doc, err, errsz);
	}
	if (rc == OCI_OK)
		rc = read_blob_json(dirfd, img->m.config.digest, &img->config, err, errsz);
	for (size_t i = 0; rc == OCI_OK && i < img->m.nlayers; i++) {
		rc = open_blob(dirfd, img->m.layers[i].digest, &img->layer_fd[i], fn, arg, err, errsz);
		if (rc == OCI_OK)
			img->nlayers++;
	}
	buf_free(&doc);
	return rc;
}

static int open_docker_save(int dirfd, struct oci_archive_image *img, oci_bytes_fn fn, void *arg, char *err,
			    size_t errsz)
{
	struct buf doc = BUF_INIT;
	int rc = read_small(dirfd, "manifest.json", &doc, err, errsz);
	if (rc != OCI_OK) {
		buf_free(&doc);
		return aerr(err, errsz, OCI_EINVAL,
			    "archive: neither index.json nor manifest.json (not an image archive)");
	}
	struct json *j = json_parse(doc.data ? doc.data : "", doc.len, NULL, 0);
	const struct json *first = j && j->type == JSON_ARRAY ? j->child : NULL;
	const char *config = json_get_str(first, "Config");
	const struct json *layers = json_get(first, "Layers");
	if (!config || !layers || layers->type != JSON_ARRAY)
		rc = aerr(err, errsz, OCI_EINVAL, "archive: manifest.json has no image (Config and Layers)");
	else if (layers->count > OCI_MAX_LAYERS)
		rc = aerr(err, errsz, OCI_ETOOBIG, "archive: %zu layers (at most %d)", layers->count, OCI_MAX_LAYERS);
	if (rc == OCI_OK)
		rc = read_small(dirfd, config, &img->config, err, errsz);
	for (const struct json *l = layers ? layers->child : NULL; rc == OCI_OK && l; l = l->next) {
		if (l->type != JSON_STRING) {
			rc = aerr(err, errsz, OCI_EINVAL, "archive: manifest.json names a layer that is not a string");
			break;
		}
		int fd = open_in(dirfd, l->str);
		if (fd < 0) {
			rc = aerr(err, errsz, OCI_ENOTFOUND, "archive: layer %.200s is missing", l->str);
			break;
		}
		struct stat st;
		fstat(fd, &st);
		struct oci_desc *d = &img->m.layers[img->nlayers];
		d->size = (uint64_t)st.st_size;
		/* Newer docker save names layers blobs/sha256/<hex>: check those. */
		if (strncmp(l->str, "blobs/sha256/", 13) == 0 && strlen(l->str) == 13 + 64) {
			char want[OCI_DIGEST_LEN + 1], got[OCI_DIGEST_LEN + 1];
			snprintf(want, sizeof want, "sha256:%s", l->str + 13);
			if (oci_file_digest(fd, got) == 0 && strcmp(want, got) != 0) {
				close(fd);
				rc = aerr(err, errsz, OCI_EDIGEST, "archive: blob digest mismatch: expected %s, got %s",
					  want, got);
				break;
			}
			snprintf(d->digest, sizeof d->digest, "%s", want);
		}
		if (fn)
			fn(arg, d->size);
		img->layer_fd[img->nlayers++] = fd;
		img->m.nlayers = img->nlayers;
	}
	json_free(j);
	buf_free(&doc);
	return rc;
}

int oci_archive_open(const char *archive, const char *dir, struct oci_archive_image *img, oci_bytes_fn fn, void *arg,
		     char *err, size_t errsz)
{
	memset(img, 0, sizeof *img);
	if (dir_make_all(dir, 0700) < 0)
		return aerr(err, errsz, errno == ENOSPC ? OCI_ENOSPC : OCI_EIO, "mkdir %s: %s", dir, strerror(errno));
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return aerr(err, errsz, OCI_EIO, "open %s: %s", dir, strerror(errno));
	struct oci_unpack *u = oci_unpack_new(dirfd, 0);
	int rc = OCI_OK;
	if (oci_unpack_layer_file(u, archive, err, errsz) < 0) {
		int en = oci_unpack_errno(u);
		char why[300];
		snprintf(why, sizeof why, "%s", err);
		rc = aerr(err, errsz,
			  en == ENOSPC	 ? OCI_ENOSPC
			  : en == ENOENT ? OCI_ENOTFOUND
					 : OCI_EINVAL,
			  "archive %s: %s", archive, why);
	}
	oci_unpack_free(u);
	if (rc == OCI_OK) {
		int probe = open_in(dirfd, "index.json");
		if (probe >= 0) {
			close(probe);
			rc = open_oci_layout(dirfd, img, fn, arg, err, errsz);
		} else {
			rc = open_docker_save(dirfd, img, fn, arg, err, errsz);
		}
	}
	close(dirfd);
	if (rc != OCI_OK)
		oci_archive_close(img);
	return rc;
}

void oci_archive_close(struct oci_archive_image *img)
{
	for (size_t i = 0; i < img->nlayers; i++)
		close(img->layer_fd[i]);
	img->nlayers = 0;
	buf_free(&img->config);
}
