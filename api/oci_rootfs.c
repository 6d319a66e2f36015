/*
 * oci_rootfs.c - turns an unpacked image into a template root filesystem:
 * the agent as /sbin/init (agent/README.md: it is PID1 of every sandbox and
 * mounts /proc, /sys, /dev, /run and /tmp itself, so only the mount points
 * are needed), the users the E2B SDKs expect, then the ext4 image.
 *
 * All writes go through fds resolved inside the staging root
 * (oci_open_dir_in_root), like the layers, since the tree is the image's.
 */
#include "oci_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "oci_tar.h"

#define AGENT_PATH "/usr/bin/cube-agent"
#define USER_UID   1000

static int rerr(char *err, size_t errsz, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#include <stdarg.h>
static int rerr(char *err, size_t errsz, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
	return status;
}

static int io_status(int en)
{
	return en == ENOSPC || en == EDQUOT ? OCI_ENOSPC : OCI_EIO;
}

/* Writes n bytes as dirfd/name (via a temporary + rename), owned by root. */
static int write_file_at(int dirfd, const char *name, const void *p, size_t n, mode_t mode)
{
	char tmp[300];
	snprintf(tmp, sizeof tmp, ".%s.cube-tmp", name);
	unlinkat(dirfd, tmp, 0);
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (write_full(fd, p, n) < 0 || (geteuid() == 0 && fchown(fd, 0, 0) < 0) || fchmod(fd, mode) < 0) {
		int en = errno;
		close(fd);
		unlinkat(dirfd, tmp, 0);
		errno = en;
		return -1;
	}
	if (close(fd) < 0 || renameat(dirfd, tmp, dirfd, name) < 0) {
		int en = errno;
		unlinkat(dirfd, tmp, 0);
		errno = en;
		return -1;
	}
	return 0;
}

static int copy_agent(int rootfd, const char *agent, char *err, size_t errsz)
{
	int src = open(agent, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return rerr(err, errsz, OCI_EINVAL, "agent %s: %s", agent, strerror(errno));
	struct buf b = BUF_INIT;
	for (;;) {
		char *p = buf_reserve(&b, 1 << 20);
		ssize_t n = read(src, p, 1 << 20);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int en = errno;
			close(src);
			buf_free(&b);
			return rerr(err, errsz, OCI_EIO, "reading agent %s: %s", agent, strerror(en));
		}
		if (n == 0)
			break;
		buf_commit(&b, (size_t)n);
	}
	close(src);
	int dfd = oci_open_dir_in_root(rootfd, "usr/bin", true);
	int rc = OCI_OK;
	if (dfd < 0)
		rc = rerr(err, errsz, io_status(errno), "rootfs: /usr/bin: %s", strerror(errno));
	else if (write_file_at(dfd, "cube-agent", b.data, b.len, 0755) < 0)
		rc = rerr(err, errsz, io_status(errno), "rootfs: writing %s: %s", AGENT_PATH, strerror(errno));
	if (dfd >= 0)
		close(dfd);
	buf_free(&b);
	return rc;
}

/* /sbin/init -> the agent; an image's own init is kept as /sbin/init.image. */
static int link_init(int rootfd, char *err, size_t errsz)
{
	int sfd = oci_open_dir_in_root(rootfd, "sbin", true);
	if (sfd < 0)
		return rerr(err, errsz, io_status(errno), "rootfs: /sbin: %s", strerror(errno));
	char target[256];
	ssize_t tl = readlinkat(sfd, "init", target, sizeof target - 1);
	struct stat st;
	if (tl >= 0) {
		target[tl] = '\0';
		if (strcmp(target, AGENT_PATH) != 0)
			renameat(sfd, "init", sfd, "init.image");
		else
			unlinkat(sfd, "init", 0);
	} else if (fstatat(sfd, "init", &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISDIR(st.st_mode) || renameat(sfd, "init", sfd, "init.image") < 0) {
			close(sfd);
			return rerr(err, errsz, OCI_EIO, "rootfs: cannot move the image's /sbin/init aside");
		}
	}
	int rc = symlinkat(AGENT_PATH, sfd, "init");
	int en = errno;
	if (rc == 0 && geteuid() == 0)
		(void)fchownat(sfd, "init", 0, 0, AT_SYMLINK_NOFOLLOW);
	close(sfd);
	if (rc < 0)
		return rerr(err, errsz, io_status(en), "rootfs: /sbin/init: %s", strerror(en));
	return OCI_OK;
}

/* Reads dirfd/name (not following a symlink) into b; a missing file is empty. */
static void read_etc(int dirfd, const char *name, struct buf *b)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	buf_reset(b);
	if (fd < 0)
		return;
	for (;;) {
		char *p = buf_reserve(b, 65536);
		ssize_t n = read(fd, p, 65536);
		if (n <= 0)
			break;
		buf_commit(b, (size_t)n);
		if (b->len > (4u << 20))
			break;
	}
	close(fd);
}

static bool has_entry(const struct buf *b, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = b->data; p && *p;) {
		if (strncmp(p, name, nl) == 0 && p[nl] == ':')
			return true;
		const char *e = strchr(p, '\n');
		p = e ? e + 1 : NULL;
	}
	return false;
}

static void ensure_line(struct buf *b, const char *name, const char *line, bool *changed)
{
	if (has_entry(b, name))
		return;
	if (b->len && b->data[b->len - 1] != '\n')
		buf_putc(b, '\n');
	buf_printf(b, "%s\n", line);
	*changed = true;
}

static bool exists_in_root(int rootfd, const char *rel)
{
	struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	int fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static int ensure_users(int rootfd, char *err, size_t errsz)
{
	int efd = oci_open_dir_in_root(rootfd, "etc", true);
	if (efd < 0)
		return rerr(err, errsz, io_status(errno), "rootfs: /etc: %s", strerror(errno));
	const char *shell = exists_in_root(rootfd, "bin/bash") ? "/bin/bash" : "/bin/sh";
	char root_line[128], user_line[128];
	snprintf(root_line, sizeof root_line, "root:x:0:0:root:/root:%s", shell);
	snprintf(user_line, sizeof user_line, "user:x:%d:%d:user:/home/user:%s", USER_UID, USER_UID, shell);
	struct buf b = BUF_INIT;
	int rc = OCI_OK;
	bool changed = false;
	read_etc(efd, "passwd", &b);
	ensure_line(&b, "root", root_line, &changed);
	ensure_line(&b, "user", user_line, &changed);
	if (changed && write_file_at(efd, "passwd", b.data, b.len, 0644) < 0)
		rc = rerr(err, errsz, io_status(errno), "rootfs: /etc/passwd: %s", strerror(errno));
	changed = false;
	read_etc(efd, "group", &b);
	ensure_line(&b, "root", "root:x:0:", &changed);
	ensure_line(&b, "user", "user:x:1000:", &changed);
	if (rc == OCI_OK && changed && write_file_at(efd, "group", b.data, b.len, 0644) < 0)
		rc = rerr(err, errsz, io_status(errno), "rootfs: /etc/group: %s", strerror(errno));
	buf_free(&b);
	close(efd);
	return rc;
}

/* A directory (made if missing) with the given mode; owner set only when made. */
static int ensure_dir(int rootfd, const char *parent, const char *name, mode_t mode, uid_t uid, bool force_mode)
{
	int pfd = oci_open_dir_in_root(rootfd, parent, true);
	if (pfd < 0)
		return -1;
	bool made = mkdirat(pfd, name, mode) == 0;
	int en = errno;
	if (!made && en != EEXIST) {
		close(pfd);
		errno = en;
		return -1;
	}
	if (made && geteuid() == 0)
		(void)fchownat(pfd, name, uid, uid, AT_SYMLINK_NOFOLLOW);
	if (made || force_mode) {
		/* Through a resolved fd: the name may be a symlink (tmp -> var/tmp). */
		char rel[300];
		snprintf(rel, sizeof rel, "%s%s%s", parent, parent[0] ? "/" : "", name);
		struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
				       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
		int dfd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
		if (dfd >= 0) {
			(void)fchmod(dfd, mode);
			close(dfd);
		}
	}
	close(pfd);
	return 0;
}

int oci_rootfs_inject(int rootfd, const char *agent, char *err, size_t errsz)
{
	int rc = copy_agent(rootfd, agent, err, errsz);
	if (rc == OCI_OK)
		rc = link_init(rootfd, err, errsz);
	if (rc == OCI_OK)
		rc = ensure_users(rootfd, err, errsz);
	static const struct {
		const char *parent, *name;
		mode_t mode;
		uid_t uid;
		bool force;
	} dirs[] = {
	    {"", "proc", 0555, 0, false}, {"", "sys", 0555, 0, false},
	    {"", "dev", 0755, 0, false},  {"", "run", 0755, 0, false},
	    {"", "tmp", 01777, 0, true},  {"", "root", 0700, 0, false},
	    {"", "home", 0755, 0, false}, {"home", "user", 0755, USER_UID, false},
	};
	for (size_t i = 0; rc == OCI_OK && i < sizeof dirs / sizeof dirs[0]; i++)
		if (ensure_dir(rootfd, dirs[i].parent, dirs[i].name, dirs[i].mode, dirs[i].uid, dirs[i].force) < 0)
			rc = rerr(err, errsz, io_status(errno), "rootfs: /%s%s%s: %s", dirs[i].parent,
				  dirs[i].parent[0] ? "/" : "", dirs[i].name, strerror(errno));
	return rc;
}

/* --- the ext4 image ------------------------------------------------------ */

static uint64_t g_content, g_inodes;

static int count_fn(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	g_inodes++;
	/* Data rounded up to 4 KiB blocks, plus room for extents and xattrs. */
	g_content += ((uint64_t)st->st_size + 4095) / 4096 * 4096 + 256;
	return 0;
}

static const char *find_mke2fs(const char *given)
{
	if (given)
		return given;
	/* The appliance's own static build first, then a distribution's. */
	static const char *const candidates[] = {"/usr/lib/cubeos/mke2fs", "/usr/sbin/mke2fs", "/sbin/mke2fs"};
	for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
		if (access(candidates[i], X_OK) == 0)
			return candidates[i];
	return candidates[0];
}

/* The tool runs as a grandchild: a daemon's event loop (lib/loop) reaps
 * every child of the process on SIGCHLD, so the tool's exit status could be
 * lost to it. The middle child waits for the tool and passes the status up
 * a pipe; whoever reaps the middle child does not matter. */
static void run_middle(char *const argv[], int out_fd, int status_fd)
{
	pid_t pid = fork();
	int status = 127 << 8;
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(out_fd, 1);
		dup2(out_fd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (write(status_fd, &status, sizeof status) != (ssize_t)sizeof status)
		_exit(1);
	_exit(0);
}

/* Runs argv, collecting the last bytes of its output for the error. */
static int run_tool(char *const argv[], char *out, size_t outsz)
{
	int pfd[2], sfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(sfd, O_CLOEXEC) < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		close(sfd[0]);
		close(sfd[1]);
		return -1;
	}
	if (pid == 0)
		run_middle(argv, pfd[1], sfd[1]);
	close(pfd[1]);
	close(sfd[1]);
	size_t used = 0;
	char chunk[4096];
	for (;;) {
		ssize_t n = read(pfd[0], chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (used + 1 >= outsz) { /* keep the tail: the error comes last */
				memmove(out, out + outsz / 2, used - outsz / 2);
				used -= outsz / 2;
			}
			out[used++] = chunk[i];
		}
	}
	out[used] = '\0';
	close(pfd[0]);
	int status = 0;
	ssize_t got;
	while ((got = read(sfd[0], &status, sizeof status)) < 0 && errno == EINTR)
		;
	close(sfd[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		; /* ECHILD: the event loop reaped it */
	if (got != (ssize_t)sizeof status)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int oci_rootfs_mkfs(const char *staging, const char *out, uint64_t writable, const char *mke2fs, char *err,
		    size_t errsz)
{
	/* nftw passes no context: the totals are globals, so one walk at a time. */
	static pthread_mutex_t walk_lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&walk_lock);
	g_content = g_inodes = 0;
	int walked = nftw(staging, count_fn, 64, FTW_PHYS);
	int walk_errno = errno;
	uint64_t content = g_content, count = g_inodes;
	pthread_mutex_unlock(&walk_lock);
	if (walked < 0)
		return rerr(err, errsz, OCI_EIO, "measuring %s: %s", staging, strerror(walk_errno));
	/* ext4's own metadata (inode tables, bitmaps, journal) on top. */
	uint64_t inodes = count + count / 4 + writable / 16384 + 4096;
	uint64_t bytes = content + content / 10 + inodes * 256 + (64ull << 20) + writable;
	uint64_t kib = (bytes + (1 << 20) - 1) / (1 << 20) * 1024;
	char tmp[4200], size_arg[32], inode_arg[32];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", out) >= sizeof tmp)
		return rerr(err, errsz, OCI_EINVAL, "output path too long");
	snprintf(size_arg, sizeof size_arg, "%lluk", (unsigned long long)kib);
	snprintf(inode_arg, sizeof inode_arg, "%llu", (unsigned long long)inodes);
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return rerr(err, errsz, io_status(errno), "create %s: %s", tmp, strerror(errno));
	close(fd);
	const char *tool = find_mke2fs(mke2fs);
	char *const argv[] = {(char *)tool, "-q", "-F",		 "-t", "ext4",		 "-b", "4096",		"-N",
			      inode_arg,    "-L", "cube-rootfs", "-E", "root_owner=0:0", "-d", (char *)staging, tmp,
			      size_arg,	    NULL};
	char output[1024];
	int rc = run_tool(argv, output, sizeof output);
	if (rc != 0) {
		unlink(tmp);
		output[strcspn(output, "\0")] = '\0';
		for (char *c = output; *c; c++)
			if (*c == '\n')
				*c = ' ';
		if (strstr(output, "No space left") || strstr(output, "Could not allocate block"))
			return rerr(err, errsz, OCI_ENOSPC, "%s: disk full: %.300s", tool, output);
		return rerr(err, errsz, OCI_EIO, "%s failed (%s %d): %.400s", tool, rc < 0 ? "error" : "exit", rc,
			    output);
	}
	if (rename(tmp, out) < 0) {
		int en = errno;
		unlink(tmp);
		return rerr(err, errsz, io_status(en), "rename %s: %s", out, strerror(en));
	}
	return OCI_OK;
}
