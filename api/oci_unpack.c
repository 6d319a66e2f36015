/*
 * oci_unpack.c - applies image layers to a staging directory (see
 * oci_tar.h for the rules it keeps).
 *
 * Every path is resolved with openat2(RESOLVE_IN_ROOT) relative to the
 * staging directory's fd, never by string concatenation with the host path,
 * so no name and no symlink in a layer can reach outside it. Directory modes
 * and mtimes are set when the layer ends (writing the entries inside a
 * directory would change its mtime, and a read-only mode would stop a
 * non-root extractor). Opaque directories are pruned when the layer ends,
 * against the set of paths this layer wrote, so the marker's place in the
 * tar does not matter.
 */
#include "oci_tar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/gunzip.h"

/* A set of the clean paths one layer wrote (open addressing, FNV-1a). */
struct pathset {
	char **slot;
	size_t cap, used;
};

struct dir_meta {
	char *path;
	uint32_t mode;
	int64_t mtime;
	uint32_t nsec;
};

struct oci_unpack {
	int rootfd;
	bool is_root; /* may chown and mknod */
	uint64_t max_bytes;
	struct oci_unpack_stats st;
	struct pathset written;
	char **opaque;
	size_t nopaque;
	struct dir_meta *dirs;
	size_t ndirs, capdirs;
	/* the regular file being written */
	int fd;
	char cur_path[OCI_TAR_MAX_PATH + 1];
	struct oci_tar_entry cur;
	struct oci_tar_xattr cur_xattrs[OCI_TAR_MAX_XATTRS];
	int errnum; /* errno of the first failure, for the caller */
};

/* --- path set ---------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static bool pathset_has(const struct pathset *ps, const char *s)
{
	if (!ps->cap)
		return false;
	for (size_t i = hash_str(s) & (ps->cap - 1);; i = (i + 1) & (ps->cap - 1)) {
		if (!ps->slot[i])
			return false;
		if (strcmp(ps->slot[i], s) == 0)
			return true;
	}
}

static void pathset_insert_owned(struct pathset *ps, char *s)
{
	for (size_t i = hash_str(s) & (ps->cap - 1);; i = (i + 1) & (ps->cap - 1)) {
		if (!ps->slot[i]) {
			ps->slot[i] = s;
			ps->used++;
			return;
		}
	}
}

static void pathset_add(struct pathset *ps, const char *s)
{
	if (pathset_has(ps, s))
		return;
	if ((ps->used + 1) * 2 > ps->cap) {
		struct pathset bigger = {calloc(ps->cap ? ps->cap * 2 : 256, sizeof(char *)),
					 ps->cap ? ps->cap * 2 : 256, 0};
		if (!bigger.slot)
			abort();
		for (size_t i = 0; i < ps->cap; i++)
			if (ps->slot[i])
				pathset_insert_owned(&bigger, ps->slot[i]);
		free(ps->slot);
		*ps = bigger;
	}
	char *copy = strdup(s);
	if (!copy)
		abort();
	pathset_insert_owned(ps, copy);
}

/* Adds rel and its ancestors: a layer that writes d/sub/f also keeps d/sub
 * when d is opaque, even if it has no entry of its own for d/sub. */
static void pathset_add_with_parents(struct pathset *ps, const char *rel)
{
	char tmp[OCI_TAR_MAX_PATH + 1];
	snprintf(tmp, sizeof tmp, "%s", rel);
	for (;;) {
		if (pathset_has(ps, tmp))
			return; /* its parents went in with it */
		pathset_add(ps, tmp);
		char *slash = strrchr(tmp, '/');
		if (!slash)
			return;
		*slash = '\0';
	}
}

static void pathset_clear(struct pathset *ps)
{
	for (size_t i = 0; i < ps->cap; i++)
		free(ps->slot[i]);
	free(ps->slot);
	memset(ps, 0, sizeof *ps);
}

/* --- resolving inside the root ----------------------------------------- */

static int openat2_in_root(int rootfd, const char *rel, int flags)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_CLOEXEC),
	    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	return (int)syscall(SYS_openat2, rootfd, rel[0] ? rel : ".", &how, sizeof how);
}

int oci_open_dir_in_root(int rootfd, const char *rel, bool create)
{
	int fd = openat2_in_root(rootfd, rel, O_PATH | O_DIRECTORY);
	if (fd >= 0 || errno != ENOENT || !create)
		return fd;
	/* Some component is missing (layers need not list every parent):
	 * walk down, creating what is not there. */
	char prefix[OCI_TAR_MAX_PATH + 1];
	size_t n = strlen(rel);
	if (n > OCI_TAR_MAX_PATH) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (size_t i = 0; i <= n; i++) {
		if (i < n && rel[i] != '/')
			continue;
		memcpy(prefix, rel, i);
		prefix[i] = '\0';
		fd = openat2_in_root(rootfd, prefix, O_PATH | O_DIRECTORY);
		if (fd >= 0) {
			if (i < n)
				close(fd);
			continue;
		}
		if (errno != ENOENT)
			return -1;
		/* The parent of prefix exists (made in an earlier round). */
		char *slash = strrchr(prefix, '/');
		const char *base = slash ? slash + 1 : prefix;
		if (slash)
			*slash = '\0';
		int pfd = openat2_in_root(rootfd, slash ? prefix : "", O_PATH | O_DIRECTORY);
		if (pfd < 0)
			return -1;
		int rc = mkdirat(pfd, base, 0755);
		close(pfd);
		if (rc < 0 && errno != EEXIST)
			return -1;
		if (slash)
			*slash = '/';
		fd = openat2_in_root(rootfd, prefix, O_PATH | O_DIRECTORY);
		if (fd < 0)
			return -1;
		if (i < n)
			close(fd);
	}
	return fd;
}

/* Removes name (a whole tree if it is a directory) below dirfd, following
 * no symlink. */
static int remove_tree(int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (remove_tree(fd, de->d_name) < 0)
			rc = -1;
	}
	closedir(d);
	if (rc == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = -1;
	return rc;
}

/* --- the extractor ----------------------------------------------------- */

struct oci_unpack *oci_unpack_new(int rootfd, uint64_t max_bytes)
{
	struct oci_unpack *u = calloc(1, sizeof *u);
	if (!u)
		return NULL;
	u->rootfd = rootfd;
	u->is_root = geteuid() == 0;
	u->max_bytes = max_bytes;
	u->fd = -1;
	return u;
}

static void layer_state_clear(struct oci_unpack *u)
{
	pathset_clear(&u->written);
	for (size_t i = 0; i < u->nopaque; i++)
		free(u->opaque[i]);
	free(u->opaque);
	u->opaque = NULL;
	u->nopaque = 0;
	for (size_t i = 0; i < u->ndirs; i++)
		free(u->dirs[i].path);
	free(u->dirs);
	u->dirs = NULL;
	u->ndirs = u->capdirs = 0;
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
	for (size_t i = 0; i < u->cur.nxattrs; i++) {
		free(u->cur_xattrs[i].name);
		free(u->cur_xattrs[i].value);
	}
	u->cur.nxattrs = 0;
}

void oci_unpack_free(struct oci_unpack *u)
{
	if (!u)
		return;
	layer_state_clear(u);
	free(u);
}

const struct oci_unpack_stats *oci_unpack_stats(const struct oci_unpack *u)
{
	return &u->st;
}

static int unpack_fail(struct oci_unpack *u, char *err, size_t errsz, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int unpack_fail(struct oci_unpack *u, char *err, size_t errsz, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (errsz)
		vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
	if (!u->errnum)
		u->errnum = errnum ? errnum : EIO;
	return -1;
}

/* Splits a clean path into its parent (in parent) and last component. */
static const char *split_path(const char *rel, char *parent)
{
	const char *slash = strrchr(rel, '/');
	if (!slash) {
		parent[0] = '\0';
		return rel;
	}
	memcpy(parent, rel, (size_t)(slash - rel));
	parent[slash - rel] = '\0';
	return slash + 1;
}

static void set_owner(struct oci_unpack *u, int dirfd, const char *name, const struct oci_tar_entry *e)
{
	/* Without privileges the files simply belong to the extractor. */
	if (u->is_root)
		(void)fchownat(dirfd, name, e->uid, e->gid, AT_SYMLINK_NOFOLLOW);
}

static void set_times(int dirfd, const char *name, int64_t sec, uint32_t nsec)
{
	struct timespec ts[2] = {{.tv_sec = sec, .tv_nsec = nsec}, {.tv_sec = sec, .tv_nsec = nsec}};
	(void)utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

static void remember_dir(struct oci_unpack *u, const char *rel, const struct oci_tar_entry *e)
{
	if (u->ndirs == u->capdirs) {
		u->capdirs = u->capdirs ? u->capdirs * 2 : 64;
		u->dirs = realloc(u->dirs, u->capdirs * sizeof *u->dirs);
		if (!u->dirs)
			abort();
	}
	struct dir_meta *d = &u->dirs[u->ndirs++];
	d->path = strdup(rel);
	if (!d->path)
		abort();
	d->mode = e->mode;
	d->mtime = e->mtime;
	d->nsec = e->mtime_nsec;
}

static bool is_whiteout_name(const char *base)
{
	return strncmp(base, ".wh.", 4) == 0;
}

static int apply_whiteout(struct oci_unpack *u, const char *parent, const char *base, char *err, size_t errsz)
{
	if (strcmp(base, ".wh..wh..opq") == 0) {
		u->opaque = realloc(u->opaque, (u->nopaque + 1) * sizeof *u->opaque);
		if (!u->opaque || !(u->opaque[u->nopaque] = strdup(parent)))
			abort();
		u->nopaque++;
		u->st.opaques++;
		return 0;
	}
	if (strncmp(base, ".wh..wh.", 8) == 0)
		return 0; /* aufs bookkeeping (.wh..wh.plnk ...), nothing to apply */
	const char *victim = base + 4;
	if (!victim[0] || strcmp(victim, ".") == 0 || strcmp(victim, "..") == 0)
		return unpack_fail(u, err, errsz, EINVAL, "malformed whiteout %s/%s", parent, base);
	u->st.whiteouts++;
	int pfd = oci_open_dir_in_root(u->rootfd, parent, false);
	if (pfd < 0)
		return 0; /* the parent is not there: nothing to delete */
	int rc = remove_tree(pfd, victim);
	int e = errno;
	close(pfd);
	if (rc < 0)
		return unpack_fail(u, err, errsz, e, "whiteout of %s/%s: %s", parent, victim, strerror(e));
	return 0;
}

/* Makes room for the new entry: whatever is there goes, unless both are
 * directories (then the new entry only updates the metadata). */
static int clear_target(int pfd, const char *base, char type, bool *is_dir)
{
	struct stat st;
	*is_dir = false;
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (type == '5' && S_ISDIR(st.st_mode)) {
		*is_dir = true;
		return 0;
	}
	return remove_tree(pfd, base);
}

static int make_hardlink(struct oci_unpack *u, int pfd, const char *rel, const char *base,
			 const struct oci_tar_entry *e, char *err, size_t errsz)
{
	char target[OCI_TAR_MAX_PATH + 1], tparent[OCI_TAR_MAX_PATH + 1];
	if (oci_tar_clean_path(e->linkpath, target) < 0 || !target[0])
		return unpack_fail(u, err, errsz, EINVAL, "refusing hard link %s: target %.200s leaves the image", rel,
				   e->linkpath);
	const char *tbase = split_path(target, tparent);
	int tfd = oci_open_dir_in_root(u->rootfd, tparent, false);
	if (tfd < 0)
		return unpack_fail(u, err, errsz, EINVAL, "hard link %s: target %s is missing", rel, target);
	int rc = linkat(tfd, tbase, pfd, base, 0);
	int en = errno;
	close(tfd);
	if (rc < 0)
		return unpack_fail(u, err, errsz, en == ENOENT ? EINVAL : en, "hard link %s -> %s: %s", rel, target,
				   en == ENOENT ? "target is missing" : strerror(en));
	u->st.hardlinks++;
	return 0;
}

static int make_device(struct oci_unpack *u, int pfd, const char *base, const struct oci_tar_entry *e)
{
	mode_t kind = e->type == '3' ? S_IFCHR : e->type == '4' ? S_IFBLK : S_IFIFO;
	if (mknodat(pfd, base, kind | (e->mode & 0777), makedev(e->devmajor, e->devminor)) < 0) {
		if (errno == EPERM || errno == EACCES) {
			u->st.devices_skipped++; /* unprivileged: /dev is a devtmpfs in the guest anyway */
			return 0;
		}
		return -1;
	}
	set_owner(u, pfd, base, e);
	(void)fchmodat(pfd, base, e->mode & 07777, 0);
	set_times(pfd, base, e->mtime, e->mtime_nsec);
	return 0;
}

static int start_file(struct oci_unpack *u, int pfd, const char *rel, const char *base, const struct oci_tar_entry *e,
		      char *err, size_t errsz)
{
	u->fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (u->fd < 0)
		return unpack_fail(u, err, errsz, errno, "create %s: %s", rel, strerror(errno));
	snprintf(u->cur_path, sizeof u->cur_path, "%s", rel);
	u->cur = *e;
	/* The entry's xattrs belong to the parser; keep copies until done. */
	for (size_t i = 0; i < e->nxattrs; i++) {
		u->cur_xattrs[i].name = strdup(e->xattrs[i].name);
		u->cur_xattrs[i].value = malloc(e->xattrs[i].len + 1);
		if (!u->cur_xattrs[i].name || !u->cur_xattrs[i].value)
			abort();
		memcpy(u->cur_xattrs[i].value, e->xattrs[i].value, e->xattrs[i].len);
		u->cur_xattrs[i].len = e->xattrs[i].len;
	}
	u->st.files++;
	return 0;
}

static int on_entry(void *arg, const struct oci_tar_entry *e, char *err, size_t errsz)
{
	struct oci_unpack *u = arg;
	char rel[OCI_TAR_MAX_PATH + 1], parent[OCI_TAR_MAX_PATH + 1];
	u->st.entries++;
	if (oci_tar_clean_path(e->path, rel) < 0)
		return unpack_fail(u, err, errsz, EINVAL, "refusing entry %.200s: its path leaves the image", e->path);
	if (!rel[0])
		return 0; /* the root itself: the staging directory keeps its own metadata */
	const char *base = split_path(rel, parent);
	if (is_whiteout_name(base))
		return apply_whiteout(u, parent, base, err, errsz);
	if (e->type < '0' || e->type > '6')
		return 0; /* volume labels, vendor extensions: nothing to create */
	pathset_add_with_parents(&u->written, rel);
	int pfd = oci_open_dir_in_root(u->rootfd, parent, true);
	if (pfd < 0)
		return unpack_fail(u, err, errsz, errno, "%s: parent directory: %s", rel, strerror(errno));
	int rc = 0;
	bool was_dir;
	if (e->type == '1') {
		char target[OCI_TAR_MAX_PATH + 1];
		if (oci_tar_clean_path(e->linkpath, target) == 0 && strcmp(target, rel) == 0)
			goto out; /* a link to itself: already there */
	}
	if (clear_target(pfd, base, e->type, &was_dir) < 0) {
		rc = unpack_fail(u, err, errsz, errno, "replace %s: %s", rel, strerror(errno));
		goto out;
	}
	switch (e->type) {
	case '0': rc = start_file(u, pfd, rel, base, e, err, errsz); break;
	case '1': rc = make_hardlink(u, pfd, rel, base, e, err, errsz); break;
	case '2':
		if (symlinkat(e->linkpath, pfd, base) < 0) {
			rc = unpack_fail(u, err, errsz, errno, "symlink %s: %s", rel, strerror(errno));
			break;
		}
		set_owner(u, pfd, base, e);
		set_times(pfd, base, e->mtime, e->mtime_nsec);
		u->st.symlinks++;
		break;
	case '5':
		if (!was_dir && mkdirat(pfd, base, 0700) < 0) {
			rc = unpack_fail(u, err, errsz, errno, "mkdir %s: %s", rel, strerror(errno));
			break;
		}
		set_owner(u, pfd, base, e);
		remember_dir(u, rel, e);
		u->st.dirs++;
		break;
	default:
		if (make_device(u, pfd, base, e) < 0)
			rc = unpack_fail(u, err, errsz, errno, "mknod %s: %s", rel, strerror(errno));
		break;
	}
out:
	close(pfd);
	return rc;
}

static int on_data(void *arg, const void *p, size_t n, char *err, size_t errsz)
{
	struct oci_unpack *u = arg;
	if (u->fd < 0)
		return 0;
	if (u->max_bytes && u->st.bytes + n > u->max_bytes)
		return unpack_fail(u, err, errsz, EFBIG, "the image unpacks to more than %llu bytes",
				   (unsigned long long)u->max_bytes);
	if (write_full(u->fd, p, n) < 0)
		return unpack_fail(u, err, errsz, errno, "%s %s: %s",
				   errno == ENOSPC ? "disk full while writing" : "write", u->cur_path, strerror(errno));
	u->st.bytes += n;
	return 0;
}

static int on_done(void *arg, char *err, size_t errsz)
{
	struct oci_unpack *u = arg;
	if (u->fd < 0)
		return 0;
	const struct oci_tar_entry *e = &u->cur;
	if (u->is_root)
		(void)fchown(u->fd, e->uid, e->gid);
	for (size_t i = 0; i < e->nxattrs; i++) {
		/* Best effort: file capabilities (ping) matter, a foreign
		 * namespace the filesystem refuses does not stop the build. */
		(void)fsetxattr(u->fd, u->cur_xattrs[i].name, u->cur_xattrs[i].value, u->cur_xattrs[i].len, 0);
		free(u->cur_xattrs[i].name);
		free(u->cur_xattrs[i].value);
	}
	u->cur.nxattrs = 0;
	/* After chown, which clears set-id bits. */
	int rc = fchmod(u->fd, e->mode & 07777);
	struct timespec ts[2] = {{.tv_sec = e->mtime, .tv_nsec = e->mtime_nsec},
				 {.tv_sec = e->mtime, .tv_nsec = e->mtime_nsec}};
	(void)futimens(u->fd, ts);
	if (close(u->fd) < 0 && rc == 0)
		rc = -1;
	u->fd = -1;
	if (rc < 0)
		return unpack_fail(u, err, errsz, errno, "finish %s: %s", u->cur_path, strerror(errno));
	return 0;
}

/* Removes from the directory at rel (fd dfd) everything this layer did not
 * write; recurses into the directories it did write. */
static int prune_opaque(struct oci_unpack *u, int dfd, const char *rel)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	char child[OCI_TAR_MAX_PATH + 1];
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(child, sizeof child, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >= sizeof child)
			continue;
		if (!pathset_has(&u->written, child)) {
			if (remove_tree(fd, de->d_name) < 0)
				rc = -1;
			continue;
		}
		struct stat st;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
			int cfd = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd >= 0) {
				if (prune_opaque(u, cfd, child) < 0)
					rc = -1;
				close(cfd);
			}
		}
	}
	closedir(d);
	return rc;
}

static int finish_layer(struct oci_unpack *u, char *err, size_t errsz)
{
	for (size_t i = 0; i < u->nopaque; i++) {
		int dfd = openat2_in_root(u->rootfd, u->opaque[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		if (dfd < 0)
			continue;
		int rc = prune_opaque(u, dfd, u->opaque[i]);
		int en = errno;
		close(dfd);
		if (rc < 0)
			return unpack_fail(u, err, errsz, en, "opaque directory %s: %s", u->opaque[i], strerror(en));
	}
	/* Deepest first, so a parent's mtime is set after its children's. */
	for (size_t i = u->ndirs; i-- > 0;) {
		int dfd = openat2_in_root(u->rootfd, u->dirs[i].path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		if (dfd < 0)
			continue; /* whited out or replaced later in the layer */
		(void)fchmod(dfd, u->dirs[i].mode & 07777);
		struct timespec ts[2] = {{.tv_sec = u->dirs[i].mtime, .tv_nsec = u->dirs[i].nsec},
					 {.tv_sec = u->dirs[i].mtime, .tv_nsec = u->dirs[i].nsec}};
		(void)futimens(dfd, ts);
		close(dfd);
	}
	return 0;
}

static const struct oci_tar_ops unpack_ops = {on_entry, on_data, on_done};

struct gz_feed {
	struct oci_tar *t;
	char *err;
	size_t errsz;
};

static int feed_sink(void *ctx, const void *p, size_t n)
{
	struct gz_feed *g = ctx;
	if (oci_tar_feed(g->t, p, n, g->err, g->errsz) < 0) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* gunzip fills its tables on first use, unlocked; image builds run on the
 * api's worker threads, so the first use happens once, here. */
static int discard_sink(void *ctx, const void *p, size_t n)
{
	return 0;
}

static void gunzip_warm_up(void)
{
	/* gzip -n of an empty input */
	static const unsigned char empty[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	char err[64];
	(void)gunzip(empty, sizeof empty, discard_sink, NULL, 1, NULL, err, sizeof err);
}

int oci_unpack_layer_mem(struct oci_unpack *u, const void *p, size_t n, char *err, size_t errsz)
{
	static pthread_once_t gunzip_once = PTHREAD_ONCE_INIT;
	pthread_once(&gunzip_once, gunzip_warm_up);
	const unsigned char *b = p;
	u->errnum = 0;
	if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
		errno = ENOTSUP;
		snprintf(err, errsz, "zstd-compressed layers are not supported (only gzip and plain tar)");
		return -1;
	}
	struct oci_tar *t = oci_tar_new(&unpack_ops, u);
	if (!t)
		abort();
	int rc;
	if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
		struct gz_feed g = {t, err, errsz};
		uint64_t limit = u->max_bytes ? u->max_bytes + (u->max_bytes >> 2) + (64u << 20) : UINT64_MAX;
		char gzerr[160];
		rc = gunzip(p, n, feed_sink, &g, limit, NULL, gzerr, sizeof gzerr);
		if (rc == GUNZIP_ESINK)
			rc = -1; /* the tar side wrote err */
		else if (rc != GUNZIP_OK) {
			snprintf(err, errsz, "layer: %s", gzerr);
			u->errnum = rc == GUNZIP_ETOOBIG ? EFBIG : EINVAL;
			rc = -1;
		}
	} else {
		rc = oci_tar_feed(t, p, n, err, errsz);
	}
	if (rc == 0)
		rc = oci_tar_finish(t, err, errsz);
	oci_tar_free(t);
	if (rc == 0)
		rc = finish_layer(u, err, errsz);
	if (rc < 0 && !u->errnum)
		u->errnum = EINVAL;
	int en = u->errnum;
	layer_state_clear(u);
	errno = en;
	return rc;
}

int oci_unpack_errno(const struct oci_unpack *u)
{
	return u->errnum;
}

int oci_unpack_layer_fd(struct oci_unpack *u, int fd, const char *name, char *err, size_t errsz)
{
	struct stat st;
	u->errnum = EINVAL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errsz, "%s: not a regular file", name);
		errno = EINVAL;
		return -1;
	}
	if (st.st_size == 0) {
		snprintf(err, errsz, "%s: empty layer", name);
		errno = EINVAL;
		return -1;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		int en = errno;
		snprintf(err, errsz, "mmap %s: %s", name, strerror(en));
		u->errnum = en;
		errno = en;
		return -1;
	}
	madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
	int rc = oci_unpack_layer_mem(u, p, (size_t)st.st_size, err, errsz);
	int en = errno;
	munmap(p, (size_t)st.st_size);
	errno = en;
	return rc;
}

int oci_unpack_layer_file(struct oci_unpack *u, const char *path, char *err, size_t errsz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int en = errno;
		snprintf(err, errsz, "open %s: %s", path, strerror(en));
		u->errnum = en;
		errno = en;
		return -1;
	}
	int rc = oci_unpack_layer_fd(u, fd, path, err, errsz);
	int en = errno;
	close(fd);
	errno = en;
	return rc;
}
