/*
 * oci_internal.h - what the parts of the image import share (oci.c drives
 * them): the registry client, the archive reader, the rootfs steps.
 */
#ifndef CUBE_API_OCI_INTERNAL_H
#define CUBE_API_OCI_INTERNAL_H

#include "oci.h"
#include "oci_http.h"

/* Called with the bytes of a blob received since the last call. */
typedef void (*oci_bytes_fn)(void *arg, uint64_t n);

/* --- registry (oci_registry.c) ------------------------------------------ */
struct oci_registry;
struct oci_registry *oci_registry_new(const struct oci_ref *ref, const struct oci_build_opts *o);
void oci_registry_free(struct oci_registry *r);
/* GET /v2/<name>/manifests/<reference> (at most 4 MiB). Checks the body
 * against reference when it is a digest. */
int oci_registry_manifest(struct oci_registry *r, const char *reference, struct buf *body, char *ctype, size_t ctsz,
			  char *err, size_t errsz);
/* GET /v2/<name>/blobs/<digest> into path (via path.part), verifying size
 * and sha256 as it streams. A file already at path is trusted (it was
 * verified when written). */
int oci_registry_blob(struct oci_registry *r, const struct oci_desc *d, const char *path, oci_bytes_fn fn, void *arg,
		      char *err, size_t errsz);

/* --- archives (oci_archive.c) --------------------------------------------- */
struct oci_archive_image {
	struct oci_manifest m; /* layers' digests empty for legacy docker-save layers */
	struct buf config;
	int layer_fd[OCI_MAX_LAYERS];
	size_t nlayers;
};
/* Unpacks archive into dir and finds its image (OCI layout index.json, or
 * docker-save manifest.json). Digests named by the archive are verified. */
int oci_archive_open(const char *archive, const char *dir, struct oci_archive_image *img, oci_bytes_fn fn, void *arg,
		     char *err, size_t errsz);
void oci_archive_close(struct oci_archive_image *img);

/* --- rootfs (oci_rootfs.c) ----------------------------------------------- */
/* The agent and what a sandbox needs, into the staging tree at rootfd. */
int oci_rootfs_inject(int rootfd, const char *agent, char *err, size_t errsz);
/* mke2fs -d staging into out (replaced atomically); size = content + writable. */
int oci_rootfs_mkfs(const char *staging, const char *out, uint64_t writable, const char *mke2fs, char *err,
		    size_t errsz);

/* Hex sha256 of an open file (from offset 0) as "sha256:<hex>". */
int oci_file_digest(int fd, char out[OCI_DIGEST_LEN + 1]);

#endif
