/*
 * datadisk.c - find, check or format, mount and release the data partition.
 *
 * The rule that shapes this file: never destroy data. A partition is only
 * formatted when it carries the GPT name cubeos-data, nothing else uses it,
 * and its first MiB and last 512 KiB are all zeros (what sgdisk, `install` and a
 * fresh disk leave). Anything else that is not ext2/3/4 is refused by name
 * and the appliance runs with its state in RAM, saying why.
 */
#include "datadisk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/log.h"
#include "../lib/loop.h"
#include "service.h"

#define PROBE_BYTES (1u << 20) /* the start: every filesystem cubeos knows has its magic in here */
/* The end: md 0.90/1.0 superblocks and ZFS's last two labels (512 KiB).
 * `install` zeroes the disk's last MiB, which holds all of the partition's
 * last 512 KiB (only the backup GPT, 16.5 KiB, lies between their ends). */
#define TAIL_BYTES   (512u << 10)
#define POLL_MS	     100
#define UMOUNT_TRIES 30 /* x 100 ms: killed processes may still be exiting */

static struct datadisk current;

void datadisk_env_default(struct datadisk_env *env)
{
	*env = (struct datadisk_env){
	    .sysfs = "/sys",
	    .dev = "/dev",
	    .proc = "/proc",
	    .mke2fs = "/usr/lib/cubeos/mke2fs",
	    .e2fsck = "/usr/lib/cubeos/e2fsck",
	    .mount_point = DATADISK_MOUNT_POINT,
	    .ram_dir = DATADISK_RAM_DIR,
	    .partname = DATADISK_PARTNAME,
	    .wait_ms = 5000,
	};
}

const struct datadisk *datadisk_current(void)
{
	return &current;
}

/* --- small file helpers ----------------------------------------------------- */

/* Copies a string, cut to fit (device and mount point names are short). */
static void copy_str(char *dst, size_t dstsz, const char *src)
{
	size_t n = strnlen(src, dstsz - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Reads a small text file (sysfs, procfs) into buf; -1 if unreadable. */
static ssize_t read_text(const char *path, char *buf, size_t bufsz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = 0;
	ssize_t r;
	while (n + 1 < bufsz && (r = read(fd, buf + n, bufsz - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	buf[n] = '\0';
	return (ssize_t)n;
}

/* The value of KEY= in a uevent file's text, copied into out ("" if absent). */
static void uevent_value(const char *text, const char *key, char *out, size_t outsz)
{
	size_t klen = strlen(key);
	out[0] = '\0';
	for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, key, klen) != 0 || line[klen] != '=')
			continue;
		const char *v = line + klen + 1;
		size_t len = strcspn(v, "\n");
		if (len >= outsz)
			len = outsz - 1;
		memcpy(out, v, len);
		out[len] = '\0';
		return;
	}
}

/* --- finding the partition ------------------------------------------------- */

/* Fills *p from <sysfs>/class/block/<entry> if that device is a partition
 * named partname. */
static bool part_matches(const char *sysfs, const char *entry, const char *partname, struct datadisk_part *p)
{
	char path[512], text[4096], v[128];
	snprintf(path, sizeof path, "%s/class/block/%s/uevent", sysfs, entry);
	if (read_text(path, text, sizeof text) < 0)
		return false;
	uevent_value(text, "PARTNAME", v, sizeof v);
	if (strcmp(v, partname) != 0)
		return false;
	memset(p, 0, sizeof *p);
	uevent_value(text, "DEVNAME", p->name, sizeof p->name);
	if (!p->name[0] || strchr(p->name, '/') || p->name[0] == '.')
		copy_str(p->name, sizeof p->name, entry);
	uevent_value(text, "MAJOR", v, sizeof v);
	p->major = (unsigned)strtoul(v, NULL, 10);
	uevent_value(text, "MINOR", v, sizeof v);
	p->minor = (unsigned)strtoul(v, NULL, 10);
	snprintf(path, sizeof path, "%s/class/block/%s/size", sysfs, entry);
	if (read_text(path, text, sizeof text) > 0)
		p->bytes = strtoull(text, NULL, 10) * 512; /* sysfs counts 512-byte sectors */
	return true;
}

/* One pass over sysfs: the number of partitions named partname (the first
 * one in *out, all of them listed in names). */
static int scan_once(const char *sysfs, const char *partname, struct datadisk_part *out, char *names, size_t namesz)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/class/block", sysfs);
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int found = 0;
	names[0] = '\0';
	struct dirent *e;
	while ((e = readdir(d))) {
		struct datadisk_part p;
		if (e->d_name[0] == '.' || !part_matches(sysfs, e->d_name, partname, &p))
			continue;
		if (found++ == 0)
			*out = p;
		size_t used = strlen(names);
		snprintf(names + used, namesz - used, "%s%s", used ? ", " : "", p.name);
	}
	closedir(d);
	return found;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int datadisk_find(const char *sysfs, const char *partname, unsigned wait_ms, struct datadisk_part *out, char *err,
		  size_t errsz)
{
	uint64_t deadline = mono_ms() + wait_ms;
	char names[512];
	for (;;) {
		int n = scan_once(sysfs, partname, out, names, sizeof names);
		if (n == 1)
			return 1;
		if (n > 1) {
			snprintf(err, errsz, "%d partitions are named %s (%s): not guessing which one holds the data",
				 n, partname, names);
			return -1;
		}
		if (mono_ms() >= deadline)
			return 0;
		sleep_ms(POLL_MS);
	}
}

/* --- what is on it --------------------------------------------------------- */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool has_at(const uint8_t *buf, size_t len, size_t off, const void *magic, size_t mlen)
{
	return off + mlen <= len && memcmp(buf + off, magic, mlen) == 0;
}

#define EXT_SB		       1024
#define EXT_MAGIC	       0xEF53
#define EXT_COMPAT_HAS_JOURNAL 0x4
#define EXT_INCOMPAT_EXT4_ONLY (0x40 | 0x80 | 0x200) /* extents, 64bit, flex_bg */

/* ext2/3/4: the superblock's magic, and a sane block size beside it so that a
 * stray 0xEF53 in other data is not taken for a filesystem. */
static bool probe_ext(const uint8_t *b, size_t len, char *what, size_t whatsz)
{
	if (len < EXT_SB + 1024 || le16(b + EXT_SB + 56) != EXT_MAGIC || le32(b + EXT_SB + 24) > 6)
		return false;
	uint32_t compat = le32(b + EXT_SB + 92), incompat = le32(b + EXT_SB + 96);
	const char *kind = incompat & EXT_INCOMPAT_EXT4_ONLY ? "ext4"
			   : compat & EXT_COMPAT_HAS_JOURNAL ? "ext3"
							     : "ext2";
	char label[17] = {0};
	memcpy(label, b + EXT_SB + 120, 16);
	snprintf(what, whatsz, "%s, label \"%s\"", kind, label);
	return true;
}

/* Other filesystems and containers that must never be formatted over. */
static const char *probe_foreign(const uint8_t *b, size_t len)
{
	if (has_at(b, len, 0, "XFSB", 4))
		return "XFS";
	if (has_at(b, len, 0x10040, "_BHRfS_M", 8))
		return "btrfs";
	if (has_at(b, len, 0, "LUKS\xba\xbe", 6) || has_at(b, len, 0, "SKUL\xba\xbe", 6))
		return "LUKS (encrypted volume)";
	static const size_t pages[] = {4096, 8192, 16384, 65536};
	for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++)
		if (has_at(b, len, pages[i] - 10, "SWAPSPACE2", 10) || has_at(b, len, pages[i] - 10, "SWAP-SPACE", 10))
			return "swap";
	for (size_t sector = 0; sector < 4; sector++)
		if (has_at(b, len, sector * 512, "LABELONE", 8))
			return "LVM physical volume";
	if (len >= 4100 && (le32(b) == 0xa92b4efc || le32(b + 4096) == 0xa92b4efc))
		return "Linux RAID (md) member";
	if (len >= 1028 && le32(b + 1024) == 0xF2F52010)
		return "F2FS";
	if (has_at(b, len, 0, "hsqs", 4))
		return "squashfs";
	if (has_at(b, len, 0x8001, "CD001", 5))
		return "ISO 9660";
	if (has_at(b, len, 3, "NTFS    ", 8))
		return "NTFS";
	if (has_at(b, len, 3, "EXFAT   ", 8))
		return "exFAT";
	if (has_at(b, len, 54, "FAT1", 4) || has_at(b, len, 82, "FAT32", 5))
		return "FAT (vfat)";
	if (len >= 512 && b[510] == 0x55 && b[511] == 0xAA)
		return "a boot sector or partition table";
	return NULL;
}

/* Offset of the first non-zero byte, or -1 if all zeros. */
static ssize_t first_nonzero(const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (b[i])
			return (ssize_t)i;
	return -1;
}

static ssize_t pread_full(int fd, uint8_t *b, size_t len, off_t off)
{
	size_t n = 0;
	while (n < len) {
		ssize_t r = pread(fd, b + n, len - n, off + (off_t)n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	return (ssize_t)n;
}

enum datadisk_content datadisk_probe_fd(int fd, char *what, size_t whatsz)
{
	uint8_t *b = malloc(PROBE_BYTES);
	enum datadisk_content c = DATADISK_UNREADABLE;
	off_t size = lseek(fd, 0, SEEK_END);
	ssize_t len = b ? pread_full(fd, b, PROBE_BYTES, 0) : -1;
	const char *foreign;
	ssize_t nz;
	if (len < 0 || size < 0) {
		snprintf(what, whatsz, "cannot read: %s", strerror(errno));
	} else if (probe_ext(b, (size_t)len, what, whatsz)) {
		c = DATADISK_EXT;
	} else if ((foreign = probe_foreign(b, (size_t)len))) {
		snprintf(what, whatsz, "%s", foreign);
		c = DATADISK_FOREIGN;
	} else if ((nz = first_nonzero(b, (size_t)len)) >= 0) {
		snprintf(what, whatsz, "unknown data at offset %zd", nz);
		c = DATADISK_UNKNOWN;
	} else {
		/* Some formats (md 0.90/1.0, ZFS's last labels) sit at the end. */
		off_t tail = size > (off_t)TAIL_BYTES ? size - (off_t)TAIL_BYTES : 0;
		ssize_t tlen = tail > 0 ? pread_full(fd, b, TAIL_BYTES, tail) : 0;
		if (tlen < 0) {
			snprintf(what, whatsz, "cannot read the end: %s", strerror(errno));
		} else if ((nz = first_nonzero(b, (size_t)tlen)) >= 0) {
			snprintf(what, whatsz, "unknown data at offset %lld", (long long)(tail + nz));
			c = DATADISK_UNKNOWN;
		} else {
			snprintf(what, whatsz, "blank");
			c = DATADISK_BLANK;
		}
	}
	free(b);
	return c;
}

enum datadisk_content datadisk_probe_path(const char *path, char *what, size_t whatsz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(what, whatsz, "cannot open %s: %s", path, strerror(errno));
		return DATADISK_UNREADABLE;
	}
	enum datadisk_content c = datadisk_probe_fd(fd, what, whatsz);
	close(fd);
	return c;
}

/* --- is it ours to touch --------------------------------------------------- */

bool datadisk_cmdline_live(const char *cmdline)
{
	static const char word[] = "cubeos.live";
	const size_t wlen = sizeof word - 1;
	for (const char *p = cmdline; p && *p;) {
		p += strspn(p, " \t\n");
		size_t len = strcspn(p, " \t\n");
		if (len == wlen && strncmp(p, word, wlen) == 0)
			return true;
		if (len > wlen && strncmp(p, word, wlen) == 0 && p[wlen] == '=')
			return !(len == wlen + 2 && p[wlen + 1] == '0');
		p += len;
	}
	return false;
}

/* A device mapper or md device built on top of it shows in holders/. */
static bool held_by(const char *sysfs, const char *name, char *who, size_t whosz)
{
	char path[512];
	snprintf(path, sizeof path, "%s/class/block/%s/holders", sysfs, name);
	DIR *d = opendir(path);
	if (!d)
		return false;
	struct dirent *e;
	bool held = false;
	while (!held && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(who, whosz, "%s", e->d_name);
			held = true;
		}
	closedir(d);
	return held;
}

/* mountinfo's third field is the mounted device's major:minor. */
static bool mounted_at(const char *proc, unsigned major, unsigned minor, char *where, size_t wheresz)
{
	char path[512], line[4096], dev[32], mp[1024];
	snprintf(path, sizeof path, "%s/self/mountinfo", proc);
	snprintf(dev, sizeof dev, "%u:%u", major, minor);
	FILE *f = fopen(path, "re");
	bool found = false;
	while (f && !found && fgets(line, sizeof line, f)) {
		char majmin[32];
		if (sscanf(line, "%*s %*s %31s %*s %1023s", majmin, mp) == 2 && strcmp(majmin, dev) == 0) {
			copy_str(where, wheresz, mp);
			found = true;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static bool active_swap(const char *proc, const char *devpath)
{
	char path[512], line[1024], name[512];
	snprintf(path, sizeof path, "%s/swaps", proc);
	FILE *f = fopen(path, "re");
	bool found = false;
	while (f && !found && fgets(line, sizeof line, f))
		found = sscanf(line, "%511s", name) == 1 && strcmp(name, devpath) == 0;
	if (f)
		fclose(f);
	return found;
}

bool datadisk_in_use(const struct datadisk_env *env, const struct datadisk_part *p, char *why, size_t whysz)
{
	char what[256], devpath[256];
	snprintf(devpath, sizeof devpath, "%s/%s", env->dev, p->name);
	if (held_by(env->sysfs, p->name, what, sizeof what)) {
		snprintf(why, whysz, "held by %s", what);
		return true;
	}
	if (mounted_at(env->proc, p->major, p->minor, what, sizeof what)) {
		snprintf(why, whysz, "already mounted on %s", what);
		return true;
	}
	if (active_swap(env->proc, devpath)) {
		snprintf(why, whysz, "in use as swap");
		return true;
	}
	return false;
}

/* --- running mke2fs and e2fsck --------------------------------------------- */

/* Keeps the tail of the output: the end of a tool's output says what failed. */
static void keep_tail(char *out, size_t outsz, size_t *used, const char *chunk, size_t n)
{
	if (outsz < 2)
		return;
	size_t cap = outsz - 1;
	if (n >= cap) {
		memcpy(out, chunk + n - cap, cap);
		*used = cap;
	} else {
		if (*used + n > cap) {
			size_t drop = *used + n - cap;
			memmove(out, out + drop, *used - drop);
			*used -= drop;
		}
		memcpy(out + *used, chunk, n);
		*used += n;
	}
	out[*used] = '\0';
}

int datadisk_run(char *const argv[], char *out, size_t outsz)
{
	int p[2];
	if (outsz)
		out[0] = '\0';
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		/* No /etc/mke2fs.conf or /etc/e2fsck.conf: both use compiled-in defaults. */
		char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", NULL};
		child_exec(argv, envp, p[1], p[1]);
	}
	close(p[1]);
	char chunk[4096];
	size_t used = 0;
	ssize_t r;
	while ((r = read(p[0], chunk, sizeof chunk)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		keep_tail(out, outsz, &used, chunk, (size_t)r);
	}
	close(p[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int datadisk_format(const char *mke2fs, const char *device, char *out, size_t outsz)
{
	/* -q: the progress lines would only fill the log. The journal and inode
	 * tables: mke2fs's defaults (the kernel zeroes inode tables lazily). */
	char *const argv[] = {(char *)mke2fs, "-q", "-t", "ext4", "-L", DATADISK_PARTNAME, (char *)device, NULL};
	return datadisk_run(argv, out, outsz);
}

int datadisk_fsck(const char *e2fsck, const char *device, char *out, size_t outsz)
{
	char *const argv[] = {(char *)e2fsck, "-p", (char *)device, NULL};
	return datadisk_run(argv, out, outsz);
}

bool datadisk_fsck_safe(int status)
{
	return status >= 0 && (status & ~3) == 0;
}

/* A tool's output as one log-friendly line. */
static void one_line(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
	for (char *c = s; *c; c++)
		if (*c == '\n' || *c == '\r' || *c == '\b')
			*c = *c == '\n' ? '|' : ' ';
}

/* --- the boot step ---------------------------------------------------------- */

/* Every way out that is not the data disk: RAM state, said loudly once. */
static const char *use_ram(const struct datadisk_env *env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *use_ram(const struct datadisk_env *env, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(current.reason, sizeof current.reason, fmt, ap);
	va_end(ap);
	if (current.mode != DATADISK_READONLY)
		current.mode = DATADISK_RAM;
	snprintf(current.state_dir, sizeof current.state_dir, "%s", env->ram_dir);
	mkdir(env->ram_dir, 0700);
	log_warn("datadisk.ram", "state in %s (RAM) does not survive a reboot: %s", env->ram_dir, current.reason);
	return current.state_dir;
}

static int mkdir_parents(const char *path, mode_t mode)
{
	char tmp[512];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *s = strchr(tmp + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return mkdir(tmp, mode) < 0 && errno != EEXIST ? -1 : 0;
}

/* After fsck left errors: the disk stays read-only, but the console password
 * and API keys are carried into RAM so the operator can still log in. */
static void copy_config(const char *from_root, const char *to_root)
{
	char from[512], to[512];
	snprintf(from, sizeof from, "%s/config", from_root);
	snprintf(to, sizeof to, "%s/config", to_root);
	DIR *d = opendir(from);
	if (!d || mkdir_parents(to, 0700) < 0) {
		if (d)
			closedir(d);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		char src[1024], dst[1024], data[65536];
		snprintf(src, sizeof src, "%s/%s", from, e->d_name);
		snprintf(dst, sizeof dst, "%s/%s", to, e->d_name);
		struct stat st;
		if (e->d_name[0] == '.' || stat(src, &st) < 0 || !S_ISREG(st.st_mode) ||
		    st.st_size >= (off_t)sizeof data)
			continue;
		ssize_t n = read_text(src, data, sizeof data);
		if (n >= 0 && file_replace(dst, data, (size_t)n, st.st_mode & 0777, false) < 0)
			log_warn("datadisk.readonly", "cannot copy %s into RAM: %s", src, strerror(errno));
	}
	closedir(d);
}

static bool mount_disk(const struct datadisk_env *env, bool readonly)
{
	unsigned long flags = MS_NOATIME | MS_NODEV | MS_NOSUID | (readonly ? MS_RDONLY : 0);
	if (mkdir_parents(env->mount_point, 0700) < 0 ||
	    mount(current.device, env->mount_point, "ext4", flags, NULL) < 0) {
		log_error("datadisk.mount", "cannot mount %s on %s: %s", current.device, env->mount_point,
			  strerror(errno));
		return false;
	}
	snprintf(current.mount_point, sizeof current.mount_point, "%s", env->mount_point);
	if (!readonly)
		chmod(env->mount_point, 0700); /* keys and the CA live below it */
	return true;
}

/* e2fsck -p; false if the disk must not be mounted read-write. */
static bool check_disk(const struct datadisk_env *env)
{
	char out[2048];
	uint64_t t0 = mono_ms();
	log_info("datadisk.fsck", "checking %s (e2fsck -p)", current.device);
	int rc = datadisk_fsck(env->e2fsck, current.device, out, sizeof out);
	one_line(out);
	if (datadisk_fsck_safe(rc)) {
		log_info("datadisk.fsck", "%s: %s in %.1f s (e2fsck status %d): %s", current.device,
			 rc == 0 ? "clean" : "errors fixed", (double)(mono_ms() - t0) / 1000, rc, out);
		return true;
	}
	log_error("datadisk.fsck",
		  "%s: FILESYSTEM ERRORS NOT FIXED (e2fsck status %d): %s -- mounting it read-only; repair it "
		  "(e2fsck -f) before its state can be used again",
		  current.device, rc, out);
	return false;
}

static bool format_disk(const struct datadisk_env *env, uint64_t bytes)
{
	char out[2048];
	uint64_t t0 = mono_ms();
	log_info("datadisk.format", "formatting %s (%.1f GiB, blank) as ext4, label %s", current.device,
		 (double)bytes / (1 << 30), DATADISK_PARTNAME);
	int rc = datadisk_format(env->mke2fs, current.device, out, sizeof out);
	one_line(out);
	if (rc != 0) {
		log_error("datadisk.format", "mke2fs failed on %s (status %d): %s", current.device, rc, out);
		return false;
	}
	log_info("datadisk.format", "%s formatted in %.1f s", current.device, (double)(mono_ms() - t0) / 1000);
	current.formatted = true;
	return true;
}

/* Opens the device exclusively (the kernel refuses O_EXCL on a block device
 * that is mounted or claimed) and says what it holds. */
static enum datadisk_content probe_device(char *what, size_t whatsz)
{
	int fd = open(current.device, O_RDONLY | O_EXCL | O_CLOEXEC);
	/* sysfs shows a new device a moment before devtmpfs has its node. */
	for (int i = 0; fd < 0 && errno == ENOENT && i < 10; i++) {
		sleep_ms(POLL_MS);
		fd = open(current.device, O_RDONLY | O_EXCL | O_CLOEXEC);
	}
	if (fd < 0) {
		snprintf(what, whatsz, errno == EBUSY ? "in use (busy)" : "cannot open: %s", strerror(errno));
		return DATADISK_UNREADABLE;
	}
	enum datadisk_content c = datadisk_probe_fd(fd, what, whatsz);
	close(fd);
	return c;
}

const char *datadisk_prepare(const struct datadisk_env *env)
{
	char path[512], cmdline[4096] = "", err[512] = "", what[256];
	struct datadisk_part part;
	memset(&current, 0, sizeof current);
	snprintf(path, sizeof path, "%s/cmdline", env->proc);
	read_text(path, cmdline, sizeof cmdline);
	if (datadisk_cmdline_live(cmdline))
		return use_ram(env, "live boot (cubeos.live on the kernel command line): the disks are not touched");

	int found = datadisk_find(env->sysfs, env->partname, env->wait_ms, &part, err, sizeof err);
	if (found < 0)
		return use_ram(env, "%s", err);
	if (found == 0)
		return use_ram(env, "no partition named %s (waited %.1f s)", env->partname,
			       (double)env->wait_ms / 1000);
	snprintf(current.device, sizeof current.device, "%s/%s", env->dev, part.name);
	log_info("datadisk.found", "%s is partition %s (%.1f GiB)", current.device, env->partname,
		 (double)part.bytes / (1 << 30));
	if (datadisk_in_use(env, &part, err, sizeof err))
		return use_ram(env, "%s is %s: not touching it", current.device, err);

	switch (probe_device(what, sizeof what)) {
	case DATADISK_EXT:
		log_info("datadisk.found", "%s holds %s", current.device, what);
		if (!check_disk(env)) {
			current.mode = DATADISK_READONLY;
			if (mount_disk(env, true)) {
				use_ram(env,
					"%s has filesystem errors e2fsck could not fix: mounted read-only on %s, "
					"its config copied into RAM",
					current.device, env->mount_point);
				copy_config(env->mount_point, env->ram_dir);
				return current.state_dir;
			}
			current.mode = DATADISK_RAM;
			return use_ram(env, "%s has filesystem errors e2fsck could not fix", current.device);
		}
		break;
	case DATADISK_BLANK:
		if (!format_disk(env, part.bytes))
			return use_ram(env, "formatting %s failed", current.device);
		break;
	case DATADISK_FOREIGN:
	case DATADISK_UNKNOWN:
		log_error("datadisk.refused",
			  "%s holds %s: refusing to format it (never destroys data); wipe it or "
			  "rename the partition to let cubeos use it",
			  current.device, what);
		return use_ram(env, "%s holds %s", current.device, what);
	case DATADISK_UNREADABLE: return use_ram(env, "%s: %s", current.device, what);
	}
	if (!mount_disk(env, false))
		return use_ram(env, "%s could not be mounted", current.device);
	current.mode = DATADISK_MOUNTED;
	snprintf(current.state_dir, sizeof current.state_dir, "%s", env->mount_point);
	log_info("datadisk.mounted", "%s on %s (ext4, %s): state is persistent", current.device, env->mount_point,
		 current.formatted ? "formatted this boot" : "existing filesystem, not formatted");
	return current.state_dir;
}

/* --- the shutdown step ------------------------------------------------------ */

/* PID1's own files under the mount point (service logs stay open after
 * their services stop) would keep it busy; nothing runs after this. */
static int close_own_files_under(const char *dir)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 0;
	size_t dlen = strlen(dir);
	int closed = 0, dfd = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		char link[64], target[1024];
		int fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd == dfd)
			continue;
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof target - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strncmp(target, dir, dlen) == 0 && (target[dlen] == '/' || target[dlen] == '\0')) {
			close(fd);
			closed++;
		}
	}
	closedir(d);
	return closed;
}

void datadisk_release(void)
{
	if (current.mode != DATADISK_MOUNTED && current.mode != DATADISK_READONLY)
		return;
	if (!current.mount_point[0])
		return;
	sync();
	int closed = close_own_files_under(current.mount_point);
	for (int i = 0; i < UMOUNT_TRIES; i++) {
		if (umount2(current.mount_point, 0) == 0) {
			log_info("datadisk.unmounted", "%s unmounted from %s (%d open files closed)", current.device,
				 current.mount_point, closed);
			current.mount_point[0] = '\0';
			return;
		}
		if (errno != EBUSY)
			break;
		sleep_ms(POLL_MS);
	}
	int why = errno;
	/* Read-only keeps the journal clean for the next boot even if something
	 * still holds a file open. */
	if (mount(NULL, current.mount_point, NULL, MS_REMOUNT | MS_RDONLY, NULL) == 0)
		log_warn("datadisk.unmount", "cannot unmount %s (%s): remounted read-only instead", current.mount_point,
			 strerror(why));
	else
		log_error("datadisk.unmount",
			  "cannot unmount %s (%s) nor remount it read-only (%s): data is synced, "
			  "the journal is replayed at the next boot",
			  current.mount_point, strerror(why), strerror(errno));
	sync();
}

/* --- status ------------------------------------------------------------------- */

static void human_size(uint64_t bytes, char *out, size_t outsz)
{
	if (bytes >= (uint64_t)1 << 30)
		snprintf(out, outsz, "%.1f GiB", (double)bytes / (1 << 30));
	else
		snprintf(out, outsz, "%llu MiB", (unsigned long long)(bytes >> 20));
}

void datadisk_describe(const struct datadisk *d, char *out, size_t outsz)
{
	struct statvfs vfs;
	char size[32], used[32];
	switch (d->mode) {
	case DATADISK_UNMANAGED: snprintf(out, outsz, "not managed (test mode)"); return;
	case DATADISK_RAM: snprintf(out, outsz, "RAM (not persistent): %s", d->reason); return;
	case DATADISK_READONLY:
		snprintf(out, outsz, "%s read-only on %s (filesystem errors); state in RAM (not persistent)", d->device,
			 d->mount_point);
		return;
	case DATADISK_MOUNTED: break;
	}
	if (statvfs(d->mount_point, &vfs) < 0) {
		snprintf(out, outsz, "%s on %s (cannot read its usage: %s)", d->device, d->mount_point,
			 strerror(errno));
		return;
	}
	uint64_t total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	uint64_t avail_root = (uint64_t)vfs.f_bfree * vfs.f_frsize;
	uint64_t in_use = total - avail_root;
	human_size(total, size, sizeof size);
	human_size(in_use, used, sizeof used);
	snprintf(out, outsz, "%s on %s, %s, %s used (%.0f%%)", d->device, d->mount_point, size, used,
		 total ? (double)in_use * 100 / (double)total : 0.0);
}
