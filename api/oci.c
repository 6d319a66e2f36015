/*
 * oci.c - oci_build_rootfs: image (registry or archive) -> staging tree ->
 * agent injected -> ext4 image, with progress (oci.h).
 *
 * Work directory: WORK/blobs (registry downloads, named by digest, kept
 * across a retry with keep_work), WORK/archive (an unpacked archive),
 * WORK/rootfs (the staging tree, always started empty).
 */
#include "oci_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/log.h"
#include "oci_tar.h"

#define DEFAULT_WRITABLE (512ull << 20)
#define DEFAULT_UNPACKED (32ull << 30)

struct build {
	const struct oci_build_opts *o;
	char work[4096];
	const char *phase;
	int last_pct;
	uint64_t done_bytes, total_bytes;
	struct oci_archive_image img; /* the layers, as fds, whatever the source */
};

static int berr(char *err, size_t errsz, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#include <stdarg.h>
static int berr(char *err, size_t errsz, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
	return status;
}

static void progress(struct build *b, const char *phase, int pct, const char *detail)
{
	if (pct > 100)
		pct = 100;
	if (b->phase == phase && pct == b->last_pct && !detail)
		return; /* a callback per percent, not per network read */
	b->phase = phase;
	b->last_pct = pct;
	if (b->o->progress)
		b->o->progress(b->o->progress_arg, phase, pct, detail ? detail : "");
}

static int check_cancel(struct build *b, char *err, size_t errsz)
{
	if (b->o->cancelled && b->o->cancelled(b->o->progress_arg))
		return berr(err, errsz, OCI_ECANCELED, "canceled");
	return OCI_OK;
}

static void on_bytes(void *arg, uint64_t n)
{
	struct build *b = arg;
	b->done_bytes += n;
	int pct = b->total_bytes ? (int)(b->done_bytes * 100 / b->total_bytes) : 0;
	progress(b, "pulling", pct, NULL);
}

static int rm_fn(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)(flag == FTW_DP ? rmdir(path) : unlink(path));
	return 0;
}

static void remove_all(const char *path)
{
	nftw(path, rm_fn, 64, FTW_DEPTH | FTW_PHYS);
}

static void human(uint64_t n, char *out, size_t outsz)
{
	if (n >= (1ull << 30))
		snprintf(out, outsz, "%.1f GiB", (double)n / (1ull << 30));
	else
		snprintf(out, outsz, "%.1f MiB", (double)n / (1 << 20));
}

/* --- from a registry ----------------------------------------------------- */

static int resolve_manifest(struct oci_registry *r, const struct oci_ref *ref, struct oci_manifest *m, char *err,
			    size_t errsz)
{
	struct buf body = BUF_INIT;
	char ctype[128], reference[OCI_DIGEST_LEN + 130];
	snprintf(reference, sizeof reference, "%s", oci_ref_reference(ref));
	int rc = OCI_OK;
	for (int depth = 0; rc == OCI_OK; depth++) {
		enum oci_doc_kind kind;
		struct oci_desc sel;
		rc = oci_registry_manifest(r, reference, &body, ctype, sizeof ctype, err, errsz);
		if (rc == OCI_OK)
			rc = oci_parse_manifest_body(body.data ? body.data : "", body.len, ctype, m, &sel, &kind, err,
						     errsz);
		if (rc != OCI_OK || kind == OCI_DOC_MANIFEST)
			break;
		if (depth >= 2) {
			rc = berr(err, errsz, OCI_EINVAL, "image indexes nested too deep");
			break;
		}
		snprintf(reference, sizeof reference, "%s", sel.digest);
	}
	buf_free(&body);
	return rc;
}

static int blob_file(struct build *b, const struct oci_desc *d, char *path, size_t pathsz)
{
	return (size_t)snprintf(path, pathsz, "%s/blobs/%s", b->work, d->digest + 7) < pathsz ? 0 : -1;
}

static int pull_registry(struct build *b, char *err, size_t errsz)
{
	const struct oci_build_opts *o = b->o;
	struct oci_ref ref;
	int rc = oci_ref_parse(o->image, &ref, err, errsz);
	if (rc != OCI_OK)
		return rc;
	char dir[4200], path[4300];
	snprintf(dir, sizeof dir, "%s/blobs", b->work);
	if (dir_make_all(dir, 0700) < 0)
		return berr(err, errsz, errno == ENOSPC ? OCI_ENOSPC : OCI_EIO, "mkdir %s: %s", dir, strerror(errno));
	struct oci_registry *r = oci_registry_new(&ref, o);
	progress(b, "pulling", 0, o->image);
	struct oci_manifest *m = &b->img.m;
	rc = resolve_manifest(r, &ref, m, err, errsz);
	b->total_bytes = m->config.size;
	for (size_t i = 0; i < m->nlayers; i++)
		b->total_bytes += m->layers[i].size;
	if (rc == OCI_OK) {
		char total[32], detail[128];
		human(b->total_bytes, total, sizeof total);
		snprintf(detail, sizeof detail, "%zu layers, %s", m->nlayers, total);
		progress(b, "pulling", 0, detail);
	}
	if (rc == OCI_OK && blob_file(b, &m->config, path, sizeof path) == 0)
		rc = oci_registry_blob(r, &m->config, path, on_bytes, b, err, errsz);
	if (rc == OCI_OK) {
		size_t len;
		char *cfg = file_read_all(path, 4u << 20, &len);
		if (!cfg)
			rc = berr(err, errsz, OCI_EIO, "reading the image config: %s", strerror(errno));
		else
			buf_append(&b->img.config, cfg, len);
		free(cfg);
	}
	for (size_t i = 0; rc == OCI_OK && i < m->nlayers; i++) {
		blob_file(b, &m->layers[i], path, sizeof path);
		if ((rc = check_cancel(b, err, errsz)) != OCI_OK)
			break;
		rc = oci_registry_blob(r, &m->layers[i], path, on_bytes, b, err, errsz);
		if (rc != OCI_OK)
			break;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = berr(err, errsz, OCI_EIO, "open %s: %s", path, strerror(errno));
			break;
		}
		b->img.layer_fd[b->img.nlayers++] = fd;
	}
	oci_registry_free(r);
	return rc;
}

/* --- from an archive ----------------------------------------------------- */

static int pull_archive(struct build *b, char *err, size_t errsz)
{
	struct stat st;
	if (stat(b->o->archive, &st) < 0)
		return berr(err, errsz, OCI_ENOTFOUND, "archive %s: %s", b->o->archive, strerror(errno));
	/* Unpacking the archive is most of the work; the checks follow. */
	b->total_bytes = (uint64_t)st.st_size;
	progress(b, "pulling", 0, b->o->archive);
	char dir[4200];
	snprintf(dir, sizeof dir, "%s/archive", b->work);
	remove_all(dir);
	b->done_bytes = 0;
	int rc = oci_archive_open(b->o->archive, dir, &b->img, NULL, NULL, err, errsz);
	if (rc == OCI_OK)
		progress(b, "pulling", 100, NULL);
	return rc;
}

/* --- the image config for the build job ---------------------------------- */

static int write_config(struct build *b, char *err, size_t errsz)
{
	const struct oci_build_opts *o = b->o;
	char path[4200];
	if (o->config_out) {
		snprintf(path, sizeof path, "%s", o->config_out);
	} else {
		const char *slash = strrchr(o->out, '/');
		snprintf(path, sizeof path, "%.*simage.json", slash ? (int)(slash - o->out + 1) : 0, o->out);
	}
	struct buf out = BUF_INIT;
	struct jw w;
	jw_init(&w, &out);
	jw_obj(&w);
	jw_kstr(&w, "image", o->image ? o->image : o->archive);
	jw_kstr(&w, "source", o->image ? "registry" : "archive");
	int rc = oci_config_summary(b->img.config.data ? b->img.config.data : "", b->img.config.len, &w, err, errsz);
	jw_end(&w);
	buf_putc(&out, '\n');
	if (rc == OCI_OK && file_replace(path, out.data, out.len, 0644, true) < 0)
		rc = berr(err, errsz, errno == ENOSPC ? OCI_ENOSPC : OCI_EIO, "writing %s: %s", path, strerror(errno));
	buf_free(&out);
	return rc;
}

/* --- unpack, inject, mkfs ------------------------------------------------ */

static int unpack_layers(struct build *b, int rootfd, char *err, size_t errsz)
{
	uint64_t limit = b->o->max_unpacked_bytes ? b->o->max_unpacked_bytes : DEFAULT_UNPACKED;
	struct oci_unpack *u = oci_unpack_new(rootfd, limit);
	int rc = OCI_OK;
	/* The percentage follows the (compressed) bytes of the layers done: one
	 * big layer among small ones should not count as one step of N. */
	uint64_t total = 0, done = 0;
	for (size_t i = 0; i < b->img.nlayers; i++) {
		struct stat st;
		total += fstat(b->img.layer_fd[i], &st) == 0 ? (uint64_t)st.st_size : 0;
	}
	for (size_t i = 0; i < b->img.nlayers; i++) {
		char detail[128], why[400];
		struct stat st;
		snprintf(detail, sizeof detail, "layer %zu/%zu %s", i + 1, b->img.nlayers,
			 b->img.m.layers[i].digest[0] ? b->img.m.layers[i].digest : "");
		progress(b, "unpacking", total ? (int)(done * 100 / total) : 0, detail);
		if ((rc = check_cancel(b, err, errsz)) != OCI_OK)
			break;
		done += fstat(b->img.layer_fd[i], &st) == 0 ? (uint64_t)st.st_size : 0;
		if (oci_unpack_layer_fd(u, b->img.layer_fd[i], detail, why, sizeof why) < 0) {
			int en = oci_unpack_errno(u);
			rc = berr(err, errsz,
				  en == ENOSPC || en == EDQUOT ? OCI_ENOSPC
				  : en == EFBIG		       ? OCI_ETOOBIG
				  : en == ENOTSUP	       ? OCI_EUNSUPPORTED
				  : en == EINVAL	       ? OCI_EINVAL
							       : OCI_EIO,
				  "layer %zu/%zu: %s", i + 1, b->img.nlayers, why);
			break;
		}
	}
	if (rc == OCI_OK) {
		const struct oci_unpack_stats *s = oci_unpack_stats(u);
		char detail[200], size[32];
		human(s->bytes, size, sizeof size);
		snprintf(detail, sizeof detail, "%llu entries, %s of files, %llu whiteouts, %llu devices skipped",
			 (unsigned long long)s->entries, size, (unsigned long long)s->whiteouts,
			 (unsigned long long)s->devices_skipped);
		progress(b, "unpacking", 100, detail);
	}
	oci_unpack_free(u);
	return rc;
}

static int make_rootfs(struct build *b, char *err, size_t errsz)
{
	char staging[4200];
	snprintf(staging, sizeof staging, "%s/rootfs", b->work);
	remove_all(staging);
	if (mkdir(staging, 0755) < 0)
		return berr(err, errsz, errno == ENOSPC ? OCI_ENOSPC : OCI_EIO, "mkdir %s: %s", staging,
			    strerror(errno));
	int rootfd = open(staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return berr(err, errsz, OCI_EIO, "open %s: %s", staging, strerror(errno));
	int rc = unpack_layers(b, rootfd, err, errsz);
	if (rc == OCI_OK) {
		progress(b, "rootfs", 0, "injecting the agent");
		rc = oci_rootfs_inject(rootfd, b->o->agent, err, errsz);
	}
	close(rootfd);
	if (rc == OCI_OK)
		rc = check_cancel(b, err, errsz);
	if (rc == OCI_OK) {
		progress(b, "rootfs", 20, "mke2fs");
		rc = oci_rootfs_mkfs(staging, b->o->out, b->o->writable_bytes ? b->o->writable_bytes : DEFAULT_WRITABLE,
				     b->o->mke2fs, err, errsz);
	}
	if (rc == OCI_OK) {
		struct stat st;
		char detail[64], size[32];
		human(stat(b->o->out, &st) == 0 ? (uint64_t)st.st_size : 0, size, sizeof size);
		snprintf(detail, sizeof detail, "%s", size);
		progress(b, "rootfs", 100, detail);
	}
	return rc;
}

int oci_build_rootfs(const struct oci_build_opts *o, char *err, size_t errsz)
{
	if (!o->out || !o->agent || (!o->image == !o->archive))
		return berr(err, errsz, OCI_EINVAL, "need an output path, the agent, and an image or an archive (one)");
	if (access(o->agent, R_OK) < 0)
		return berr(err, errsz, OCI_EINVAL, "agent %s: %s", o->agent, strerror(errno));
	struct build b = {.o = o, .last_pct = -1};
	if ((size_t)snprintf(b.work, sizeof b.work, "%s%s", o->work_dir ? o->work_dir : o->out,
			     o->work_dir ? "" : ".work") >= sizeof b.work)
		return berr(err, errsz, OCI_EINVAL, "path too long");
	if (dir_make_all(b.work, 0700) < 0)
		return berr(err, errsz, errno == ENOSPC ? OCI_ENOSPC : OCI_EIO, "mkdir %s: %s", b.work,
			    strerror(errno));
	int rc = o->image ? pull_registry(&b, err, errsz) : pull_archive(&b, err, errsz);
	if (rc == OCI_OK)
		rc = write_config(&b, err, errsz);
	if (rc == OCI_OK)
		rc = make_rootfs(&b, err, errsz);
	oci_archive_close(&b.img);
	if (!o->keep_work)
		remove_all(b.work);
	if (rc != OCI_OK)
		log_warn("oci.build", "image=%s status=%s: %s", o->image ? o->image : o->archive, oci_status_name(rc),
			 err);
	return rc;
}
