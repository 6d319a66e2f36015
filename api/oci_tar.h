/*
 * oci_tar.h - a push parser for tar streams (container image layers and
 * image archives), and the layer extractor built on it.
 *
 * The parser takes bytes in any slicing (a gunzip sink, read(2) chunks, a
 * fuzzer's input) and reports each entry with its final name and metadata:
 * ustar (prefix + name), GNU long names and link names ('L', 'K'), pax
 * extended headers ('x': path, linkpath, size, uid, gid, mtime, and
 * SCHILY.xattr.* records), GNU base-256 numbers. Global pax headers ('g')
 * are read and ignored. Every header's checksum is checked; sizes of the
 * metadata records are bounded, so hostile input costs bounded memory.
 *
 * The extractor applies one layer after another to a staging directory the
 * way an overlay filesystem stacks them (OCI image spec, "layer changesets"):
 * `.wh.<name>` deletes <name> of the layers below, `.wh..wh..opq` makes its
 * directory opaque (everything the layers below had in it goes, what this
 * layer puts there stays, in whatever order the tar has them). Nothing is
 * ever written outside the staging directory: names with a `..` component
 * or a leading `/` are refused, and every parent directory is resolved with
 * openat2(RESOLVE_IN_ROOT), so a symlink an image ships (`lib -> /usr/lib`,
 * or a hostile `x -> ../../..`) is followed as if the staging directory were
 * `/`; the last component is never followed. Owners, modes (set-id bits
 * included), mtimes and xattrs are kept as far as the caller's privileges
 * allow; device nodes are created when allowed (root) and skipped otherwise.
 */
#ifndef CUBE_API_OCI_TAR_H
#define CUBE_API_OCI_TAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OCI_TAR_MAX_PATH   4096	      /* longer names are an error */
#define OCI_TAR_MAX_META   (1u << 20) /* a pax or GNU long-name record */
#define OCI_TAR_MAX_XATTRS 32

struct oci_tar_xattr {
	char *name;
	char *value;
	size_t len;
};

/* One entry as the archive describes it. Strings belong to the parser and
 * live until the entry's data is finished. */
struct oci_tar_entry {
	const char *path;     /* raw name (pax > GNU long name > ustar prefix/name) */
	const char *linkpath; /* symlink target or hard link source, "" if none */
	char type;	      /* '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo */
	uint64_t size;	      /* data bytes that follow (files only) */
	uint32_t mode;	      /* permission and set-id bits (07777) */
	uint32_t uid, gid;
	int64_t mtime;
	uint32_t mtime_nsec;
	uint32_t devmajor, devminor;
	struct oci_tar_xattr xattrs[OCI_TAR_MAX_XATTRS];
	size_t nxattrs;
};

/* Callbacks of the parser. Each returns 0, or -1 to stop (with a message
 * written to err of size errsz). entry: a new entry (its data follows through
 * data, then done). */
struct oci_tar_ops {
	int (*entry)(void *arg, const struct oci_tar_entry *e, char *err, size_t errsz);
	int (*data)(void *arg, const void *p, size_t n, char *err, size_t errsz);
	int (*done)(void *arg, char *err, size_t errsz);
};

struct oci_tar;

struct oci_tar *oci_tar_new(const struct oci_tar_ops *ops, void *arg);
void oci_tar_free(struct oci_tar *t);
/* Feeds the next n bytes. 0, or -1 with a reason in err (malformed header,
 * bad checksum, a callback's error). After an error the parser stays
 * failed. */
int oci_tar_feed(struct oci_tar *t, const void *p, size_t n, char *err, size_t errsz);
/* The input ended: 0 if it ended cleanly (end-of-archive blocks, or at least
 * between two entries: some writers omit the end blocks), -1 if inside an
 * entry or a header. */
int oci_tar_finish(struct oci_tar *t, char *err, size_t errsz);
/* Entries reported so far. */
uint64_t oci_tar_entries(const struct oci_tar *t);

/* Turns a tar name into a clean relative path: "./a//b/" -> "a/b", "." or
 * "./" -> "" (the root). Refuses (-1) a leading '/', a ".." component, an
 * empty name and over-long names. out has OCI_TAR_MAX_PATH bytes. */
int oci_tar_clean_path(const char *name, char *out);

/* --- the layer extractor ------------------------------------------------ */

struct oci_unpack_stats {
	uint64_t entries, files, dirs, symlinks, hardlinks, devices_skipped, whiteouts, opaques;
	uint64_t bytes; /* file data written */
};

struct oci_unpack;

/* rootfd: the staging directory (kept open by the caller). max_bytes bounds
 * the file data of all layers together (0: no bound). */
struct oci_unpack *oci_unpack_new(int rootfd, uint64_t max_bytes);
void oci_unpack_free(struct oci_unpack *u);
const struct oci_unpack_stats *oci_unpack_stats(const struct oci_unpack *u);

/* Applies one layer: a tar stream, gzip-compressed or not (told apart by its
 * first bytes), held in memory (an mmapped blob). 0, or -1 with a reason in
 * err; after a failure the staging directory holds part of the layer. */
int oci_unpack_layer_mem(struct oci_unpack *u, const void *p, size_t n, char *err, size_t errsz);
/* The same for a file (mmapped), by path or open fd (not closed). */
int oci_unpack_layer_file(struct oci_unpack *u, const char *path, char *err, size_t errsz);
int oci_unpack_layer_fd(struct oci_unpack *u, int fd, const char *name, char *err, size_t errsz);
/* errno-like cause of the last failure (ENOSPC, EFBIG, EINVAL, ...). */
int oci_unpack_errno(const struct oci_unpack *u);

/* Opens the directory at the clean relative path rel inside rootfd, resolving
 * symlinks as if rootfd were "/", creating missing directories (0755,
 * root-owned when allowed) if create. Returns an O_PATH|O_DIRECTORY fd, or -1
 * with errno set. Used by the extractor and the agent injection. */
int oci_open_dir_in_root(int rootfd, const char *rel, bool create);

#endif
