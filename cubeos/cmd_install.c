/*
 * cmd_install.c - `install DISK`: puts CubeOS on a disk, the same layout
 * image/mkimage.sh builds (see image/README.md):
 *
 *   protective MBR with SYSLINUX's gptmbr.bin boot code
 *   1  cubeos-esp        EFI system, legacy-BIOS bootable, LBA 2048, 128 MiB:
 *                        the ESP image
 *   2  cubeos-data       Linux filesystem, the rest: its first MiB zeroed, so
 *                        the first boot from the disk formats it
 *   3  cubeos-templates  Linux filesystem at the end of the disk, as big as
 *                        the templates image (whole MiB): the image copied in;
 *                        only when the source has one
 *
 * with fresh random disk and partition GUIDs. The install source is an ESP
 * image (the disk's ESP, made by image/mkesp.sh with the disk's kernel command
 * line) and, beside it, the templates image (image/mktemplates.sh: ext4 with
 * the default templates' root filesystems), looked for in this order:
 *   1. /cubeos/esp.img in the initramfs (PXE: the boot loader added it); no
 *      templates: the network boot does not bring them;
 *   2. boot/esp.img and boot/templates.img on the CubeOS ISO (volume ID
 *      CUBEOS: a CD or a USB stick; isomedium.c);
 *   3. the `cubeos-esp` partition of another disk (the running system's), and
 *      the `cubeos-templates` partition of the same disk.
 *
 * The command is the confirmation: nothing is asked, but what will be erased
 * is printed first. Refused: anything but a whole-disk block device, a disk
 * with a mounted (or swapped-on, or device-mapper-held) partition, such as the
 * running data disk, and the disk the install source is on.
 *
 * The writing runs in a child (`cubeos --install DISK`, shell_run), so PID1's
 * event loop never waits on the disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "gpt.h"
#include "install.h"
#include "isomedium.h"
#include "shell.h"

#define MIB		   (1024 * 1024)
#define ESP_FIRST_LBA	   2048
#define ESP_HIDDEN_SECTORS 2048				/* what image/mkesp.sh gives the FAT (its first LBA) */
#define MBR_CODE_PATH	   "/usr/lib/cubeos/gptmbr.bin" /* initramfs/host-rootfs.sh */
#define ISO_MOUNT_DIR	   "/run/cubeos-install"
#define MAX_MEMBERS	   128	/* the disk and its partitions */
#define EXT4_SB_OFFSET	   1024 /* the superblock, and its magic 0xEF53 in it */
#define EXT4_MAGIC_OFFSET  0x38

/* --- the admin command -------------------------------------------------------- */

void cmd_install(struct shell *sh, int argc, char **argv)
{
	if (!sh->os || !sh->os->pid1) {
		shell_printf(sh, "install: not available in test mode\r\n");
		return;
	}
	/* /proc/self/exe: the running cubeos, whatever path it was started by. */
	char *const child[] = {"/proc/self/exe", "--install", argv[0], NULL};
	shell_run(sh, child);
}

/* --- small helpers ------------------------------------------------------------ */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("install: ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	va_end(ap);
}

/* snprintf that says whether it all fitted (paths from sysfs names). */
static bool fmt(char *buf, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));
static bool fmt(char *buf, size_t n, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int r = vsnprintf(buf, n, f, ap);
	va_end(ap);
	return r >= 0 && (size_t)r < n;
}

/* Reads the first line of a small file (sysfs), without its newline. */
static int read_line(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	bool ok = fgets(buf, (int)n, f) != NULL;
	fclose(f);
	if (!ok)
		return -1;
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static bool parse_devnum(const char *s, dev_t *out)
{
	unsigned maj, min;
	if (sscanf(s, "%u:%u", &maj, &min) != 2)
		return false;
	*out = makedev(maj, min);
	return true;
}

static bool path_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
	const char *p = buf;
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w, n -= (size_t)w, off += (uint64_t)w;
	}
	return 0;
}

static int zero_range(int fd, uint64_t off, uint64_t len)
{
	static const char zeros[64 * 1024];
	while (len) {
		size_t n = len < sizeof zeros ? (size_t)len : sizeof zeros;
		if (pwrite_all(fd, zeros, n, off) < 0)
			return -1;
		off += n, len -= n;
	}
	return 0;
}

/* --- the target disk -------------------------------------------------------- */

struct target {
	const char *path;
	int fd;
	dev_t dev;
	char name[NAME_MAX + 1];    /* kernel name: vda, sda, nvme0n1 */
	char sysfs[PATH_MAX];	    /* /sys/devices/.../block/vda */
	dev_t members[MAX_MEMBERS]; /* the disk and its partitions */
	size_t nmembers;
	char parts[512]; /* "vda1 (cubeos-esp), vda2 (cubeos-data)" for the warning */
	uint64_t bytes;
};

static bool is_member(const struct target *t, dev_t d)
{
	for (size_t i = 0; i < t->nmembers; i++)
		if (t->members[i] == d)
			return true;
	return false;
}

/* PARTNAME= from a partition's uevent (its GPT name), or "". */
static void part_label(const char *dir, char *out, size_t n)
{
	char path[PATH_MAX], line[256];
	out[0] = '\0';
	snprintf(path, sizeof path, "%s/uevent", dir);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "PARTNAME=", 9) == 0) {
			line[strcspn(line, "\n")] = '\0';
			fmt(out, n, "%s", line + 9);
		}
	fclose(f);
}

static void collect_partitions(struct target *t)
{
	t->members[t->nmembers++] = t->dev;
	DIR *d = opendir(t->sysfs);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d)) && t->nmembers < MAX_MEMBERS;) {
		char dir[PATH_MAX], path[PATH_MAX + 16], num[32], label[128];
		if (e->d_name[0] == '.' || !fmt(dir, sizeof dir, "%s/%s", t->sysfs, e->d_name) ||
		    !fmt(path, sizeof path, "%s/partition", dir) || !path_exists(path))
			continue;
		snprintf(path, sizeof path, "%s/dev", dir);
		dev_t pd;
		if (read_line(path, num, sizeof num) < 0 || !parse_devnum(num, &pd))
			continue;
		t->members[t->nmembers++] = pd;
		part_label(dir, label, sizeof label);
		size_t used = strlen(t->parts);
		snprintf(t->parts + used, sizeof t->parts - used, "%s%s%s%s%s", used ? ", " : "", e->d_name,
			 label[0] ? " (" : "", label, label[0] ? ")" : "");
	}
	closedir(d);
}

/* A whole-disk block device: sysfs names it and lists its partitions. */
static int target_identify(struct target *t, const char *path)
{
	struct stat st;
	t->path = path;
	if (stat(path, &st) < 0) {
		say("error: %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISBLK(st.st_mode)) {
		say("error: %s is not a block device (give a disk, e.g. /dev/sda, /dev/vda, /dev/nvme0n1)", path);
		return -1;
	}
	t->dev = st.st_rdev;
	char link[64];
	snprintf(link, sizeof link, "/sys/dev/block/%u:%u", major(t->dev), minor(t->dev));
	if (!realpath(link, t->sysfs)) {
		say("error: %s: no such disk in /sys (%s)", path, strerror(errno));
		return -1;
	}
	snprintf(t->name, sizeof t->name, "%s", strrchr(t->sysfs, '/') + 1);
	char part[PATH_MAX + 16];
	snprintf(part, sizeof part, "%s/partition", t->sysfs);
	if (path_exists(part)) {
		say("error: %s is a partition: give the whole disk", path);
		return -1;
	}
	collect_partitions(t);
	return 0;
}

/* Mounted anywhere (mountinfo's third field is the device number)? */
static bool target_mounted(const struct target *t, char *what, size_t n)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	bool found = false;
	while (f && !found && fgets(line, sizeof line, f)) {
		char devnum[32], mnt[2048];
		dev_t d;
		if (sscanf(line, "%*s %*s %31s %*s %2047s", devnum, mnt) == 2 && parse_devnum(devnum, &d) &&
		    is_member(t, d)) {
			snprintf(what, n, "%u:%u is mounted on %s", major(d), minor(d), mnt);
			found = true;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static bool target_swapping(const struct target *t, char *what, size_t n)
{
	FILE *f = fopen("/proc/swaps", "re");
	char line[1024], dev[1024];
	bool found = false;
	struct stat st;
	while (f && !found && fgets(line, sizeof line, f))
		if (sscanf(line, "%1023s", dev) == 1 && stat(dev, &st) == 0 && S_ISBLK(st.st_mode) &&
		    is_member(t, st.st_rdev)) {
			snprintf(what, n, "%s is in use as swap", dev);
			found = true;
		}
	if (f)
		fclose(f);
	return found;
}

/* Device-mapper or RAID on the disk shows up in its holders/ directory. */
static bool target_held(const struct target *t, char *what, size_t n)
{
	char dir[PATH_MAX + 16];
	snprintf(dir, sizeof dir, "%s/holders", t->sysfs);
	DIR *d = opendir(dir);
	bool found = false;
	for (struct dirent *e; d && !found && (e = readdir(d));)
		if (e->d_name[0] != '.') {
			snprintf(what, n, "it is held by %s (device-mapper or RAID)", e->d_name);
			found = true;
		}
	if (d)
		closedir(d);
	return found;
}

static int target_open(struct target *t)
{
	char why[2200];
	if (target_mounted(t, why, sizeof why) || target_swapping(t, why, sizeof why) ||
	    target_held(t, why, sizeof why)) {
		say("error: refusing %s: %s (a disk in use, e.g. the running data disk, is never erased)", t->path,
		    why);
		return -1;
	}
	/* O_EXCL on a block device: the kernel refuses it while anything has the
	 * disk or a partition claimed, a last guard after the checks above. */
	t->fd = open(t->path, O_RDWR | O_EXCL | O_CLOEXEC);
	if (t->fd < 0) {
		say("error: cannot open %s for writing: %s%s", t->path, strerror(errno),
		    errno == EBUSY ? " (in use)" : "");
		return -1;
	}
	int sector = 0;
	if (ioctl(t->fd, BLKGETSIZE64, &t->bytes) < 0 || ioctl(t->fd, BLKSSZGET, &sector) < 0) {
		say("error: %s: cannot read its size: %s", t->path, strerror(errno));
		return -1;
	}
	if (sector != GPT_SECTOR) {
		say("error: %s has %d-byte logical sectors; this version installs only to 512-byte-sector disks",
		    t->path, sector);
		return -1;
	}
	return 0;
}

/* --- the install source ------------------------------------------------------ */

/* One image to copy onto the target: the ESP, or the templates. */
struct image {
	char what[512];
	int fd; /* -1: none */
	uint64_t bytes;
	dev_t disk; /* the disk it is read from, 0 if RAM */
};

struct source {
	struct image esp;
	struct image templates; /* fd -1: none, the disk gets no partition 3 */
};

static void image_close(struct image *im)
{
	if (im->fd >= 0)
		close(im->fd);
	im->fd = -1;
}

static int image_from_file(struct image *im, const char *path)
{
	im->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (im->fd < 0)
		return -1;
	struct stat st;
	if (fstat(im->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		image_close(im);
		return -1;
	}
	im->bytes = (uint64_t)st.st_size;
	return 0;
}

/* Mounts the medium read-only, opens the images and detaches the mount at
 * once: the open files keep it alive, and nothing is left to clean up. A
 * medium without templates (an older ISO) still installs. */
static int source_from_iso_device(const char *dev, dev_t disk, void *ctx)
{
	struct source *s = ctx;
	if (isomedium_mount(dev, ISO_MOUNT_DIR) < 0) {
		say("warning: %s looks like the CubeOS ISO but does not mount: %s", dev, strerror(errno));
		return -1;
	}
	int rc = image_from_file(&s->esp, ISO_MOUNT_DIR "/" ISOMEDIUM_ESP);
	if (rc == 0 && image_from_file(&s->templates, ISO_MOUNT_DIR "/" ISOMEDIUM_TEMPLATES) == 0) {
		snprintf(s->templates.what, sizeof s->templates.what, "the CubeOS ISO on %s (%s)", dev,
			 ISOMEDIUM_TEMPLATES);
		s->templates.disk = disk;
	}
	umount2(ISO_MOUNT_DIR, MNT_DETACH);
	if (rc < 0) {
		say("warning: %s has no %s", dev, ISOMEDIUM_ESP);
		return -1;
	}
	snprintf(s->esp.what, sizeof s->esp.what, "the CubeOS ISO on %s (%s)", dev, ISOMEDIUM_ESP);
	s->esp.disk = disk;
	return 0;
}

/* Opens a partition of that GPT name on a disk other than the target (and
 * on disk `on` unless it is 0). */
static int image_from_partition(struct image *im, const char *label, const struct target *t, dev_t on)
{
	DIR *d = opendir("/sys/class/block");
	int rc = -1;
	for (struct dirent *e; d && rc < 0 && (e = readdir(d));) {
		char dir[PATH_MAX], name[128], path[PATH_MAX + 16], num[32], dev[300];
		dev_t disk;
		snprintf(path, sizeof path, "/sys/class/block/%s", e->d_name);
		if (e->d_name[0] == '.' || !realpath(path, dir))
			continue;
		part_label(dir, name, sizeof name);
		if (strcmp(name, label) != 0)
			continue;
		/* The partition's directory sits inside its disk's. */
		snprintf(path, sizeof path, "%s/../dev", dir);
		if (read_line(path, num, sizeof num) < 0 || !parse_devnum(num, &disk) || (on && disk != on))
			continue;
		if (disk == t->dev) {
			say("note: %s's own %s (%s) cannot be the source of an install to it", t->path, label,
			    e->d_name);
			continue;
		}
		snprintf(dev, sizeof dev, "/dev/%s", e->d_name);
		im->fd = open(dev, O_RDONLY | O_CLOEXEC);
		if (im->fd < 0 || ioctl(im->fd, BLKGETSIZE64, &im->bytes) < 0) {
			say("warning: cannot read %s: %s", dev, strerror(errno));
			image_close(im);
			continue;
		}
		snprintf(im->what, sizeof im->what, "the %s partition %s", label, dev);
		im->disk = disk;
		rc = 0;
	}
	if (d)
		closedir(d);
	return rc;
}

/* The ESP and the templates come from one place: the network boot (which
 * brings no templates), the ISO, or another CubeOS disk (the running one). */
static int source_find(struct source *s, const struct target *t)
{
	memset(s, 0, sizeof *s);
	s->esp.fd = s->templates.fd = -1;
	if (image_from_file(&s->esp, INSTALL_PXE_SOURCE) == 0) {
		snprintf(s->esp.what, sizeof s->esp.what, "%s (network boot)", INSTALL_PXE_SOURCE);
		return 0;
	}
	if (isomedium_each("/sys", source_from_iso_device, s) == 0)
		return 0;
	if (image_from_partition(&s->esp, "cubeos-esp", t, 0) == 0) {
		image_from_partition(&s->templates, INSTALL_TEMPLATES_PARTNAME, t, s->esp.disk);
		return 0;
	}
	say("error: no install source: no %s (network boot), no CubeOS ISO (volume %s) in a drive or on a USB "
	    "stick, no cubeos-esp partition on another disk",
	    INSTALL_PXE_SOURCE, ISOMEDIUM_VOLUME);
	return -1;
}

/* The image must be the disk's ESP: a FAT boot sector whose hidden-sector
 * count is its first LBA (or SYSLINUX would not boot it under BIOS). */
static int source_check(const struct source *s, const struct target *t)
{
	const struct image *esp = &s->esp;
	if (esp->disk && esp->disk == t->dev) {
		say("error: refusing %s: the install source is on it (%s)", t->path, esp->what);
		return -1;
	}
	if (esp->bytes < GPT_SECTOR || esp->bytes > (uint64_t)INSTALL_ESP_MIB * MIB) {
		say("error: %s is %llu bytes: not an ESP image of at most %d MiB", esp->what,
		    (unsigned long long)esp->bytes, INSTALL_ESP_MIB);
		return -1;
	}
	unsigned char boot[GPT_SECTOR];
	if (pread(esp->fd, boot, sizeof boot, 0) != (ssize_t)sizeof boot) {
		say("error: cannot read %s: %s", esp->what, strerror(errno));
		return -1;
	}
	uint32_t hidden =
	    (uint32_t)boot[0x1c] | (uint32_t)boot[0x1d] << 8 | (uint32_t)boot[0x1e] << 16 | (uint32_t)boot[0x1f] << 24;
	if (boot[510] != 0x55 || boot[511] != 0xaa || hidden != ESP_HIDDEN_SECTORS) {
		say("error: %s is not a CubeOS ESP image (FAT boot sector with %d hidden sectors)", esp->what,
		    ESP_HIDDEN_SECTORS);
		return -1;
	}
	return 0;
}

/* The templates must be an ext4 image (image/mktemplates.sh). A bad one
 * costs only the templates: the install goes on without partition 3, and the
 * installed system builds `base` from its initramfs. */
static void templates_check(struct source *s)
{
	struct image *tp = &s->templates;
	unsigned char sb[EXT4_SB_OFFSET + EXT4_MAGIC_OFFSET + 2];
	if (tp->fd < 0)
		return;
	bool ext4 = tp->bytes >= MIB && tp->bytes <= (uint64_t)INSTALL_TEMPLATES_MAX_MIB * MIB &&
		    pread(tp->fd, sb, sizeof sb, 0) == (ssize_t)sizeof sb &&
		    sb[EXT4_SB_OFFSET + EXT4_MAGIC_OFFSET] == 0x53 &&
		    sb[EXT4_SB_OFFSET + EXT4_MAGIC_OFFSET + 1] == 0xef;
	if (!ext4) {
		say("warning: %s (%llu bytes) is not an ext4 image of the templates: installing without them", tp->what,
		    (unsigned long long)tp->bytes);
		image_close(tp);
	}
}

/* --- writing ---------------------------------------------------------------- */

static int read_mbr_code(uint8_t code[GPT_MBR_CODE_SIZE])
{
	int fd = open(MBR_CODE_PATH, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, code, GPT_MBR_CODE_SIZE) : -1;
	if (fd >= 0)
		close(fd);
	if (n < 1) {
		say("error: %s missing: this build cannot make a BIOS-bootable disk", MBR_CODE_PATH);
		return -1;
	}
	memset(code + n, 0, GPT_MBR_CODE_SIZE - (size_t)n);
	return 0;
}

/* Prints 0%, 10%, ... 100% as bytes go by. */
struct progress {
	uint64_t total, done;
	int shown;
};

static void progress_add(struct progress *p, uint64_t n)
{
	p->done += n;
	int pct = p->total ? (int)(p->done * 100 / p->total) : 100;
	if (pct / 10 > p->shown / 10 || (pct == 100 && p->shown < 100)) {
		p->shown = pct;
		say("%d%%", pct);
	}
}

static bool all_zero(const char *buf, size_t n)
{
	return n == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, n - 1) == 0);
}

/* Zeros go down as a zero-out request where the disk takes one: the
 * templates image is mostly holes, and a virtual disk then stays sparse. */
static int write_chunk(int fd, const char *buf, size_t n, uint64_t off)
{
	if (n % GPT_SECTOR == 0 && all_zero(buf, n)) {
		uint64_t range[2] = {off, n};
		if (ioctl(fd, BLKZEROOUT, range) == 0)
			return 0;
	}
	return pwrite_all(fd, buf, n, off);
}

static int copy_image(const struct image *im, const struct target *t, uint64_t to, struct progress *p)
{
	static char buf[1 << 20];
	for (uint64_t off = 0; off < im->bytes;) {
		size_t want = im->bytes - off < sizeof buf ? (size_t)(im->bytes - off) : sizeof buf;
		ssize_t r = pread(im->fd, buf, want, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			say("error: reading %s: %s", im->what, r < 0 ? strerror(errno) : "ends early");
			return -1;
		}
		if (write_chunk(t->fd, buf, (size_t)r, to + off) < 0) {
			say("error: writing %s: %s", t->path, strerror(errno));
			return -1;
		}
		off += (uint64_t)r;
		progress_add(p, (uint64_t)r);
	}
	return 0;
}

static int write_disk(const struct target *t, const struct source *s, const struct gpt_layout *l,
		      const uint8_t *mbr_code)
{
	const struct gpt_part *data = &l->parts[1];
	uint64_t templates_bytes = s->templates.fd >= 0 ? s->templates.bytes : 0;
	struct progress p = {.total = s->esp.bytes + templates_bytes + 3 * MIB, .shown = -10};
	progress_add(&p, 0);
	/* Old partition tables and signatures first (ISO 9660, filesystems at
	 * the disk's ends), so a disk interrupted half-way is plainly blank. */
	if (zero_range(t->fd, 0, MIB) < 0 || zero_range(t->fd, t->bytes - MIB, MIB) < 0) {
		say("error: writing %s: %s", t->path, strerror(errno));
		return -1;
	}
	progress_add(&p, 2 * MIB);
	if (copy_image(&s->esp, t, (uint64_t)ESP_FIRST_LBA * GPT_SECTOR, &p) < 0)
		return -1;
	if (templates_bytes && copy_image(&s->templates, t, l->parts[2].first_lba * GPT_SECTOR, &p) < 0)
		return -1;
	/* A data partition that starts with zeros is blank: the first boot formats it. */
	if (zero_range(t->fd, data->first_lba * GPT_SECTOR, MIB) < 0 || gpt_write(t->fd, l, mbr_code) < 0 ||
	    fsync(t->fd) < 0) {
		say("error: writing %s: %s", t->path, strerror(errno));
		return -1;
	}
	progress_add(&p, MIB);
	return 0;
}

static void print_plan(const struct target *t, const struct source *s)
{
	char model[128] = "", path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/device/model", t->sysfs);
	if (read_line(path, model, sizeof model) < 0)
		model[0] = '\0';
	say("ERASING everything on %s (%s, %llu MiB%s%s), partitions: %s", t->path, t->name,
	    (unsigned long long)(t->bytes / MIB), model[0] ? ", " : "", model, t->parts[0] ? t->parts : "none");
	say("source: %s, %llu KiB", s->esp.what, (unsigned long long)(s->esp.bytes / 1024));
	if (s->templates.fd >= 0)
		say("templates: %s, %llu MiB", s->templates.what, (unsigned long long)(s->templates.bytes / MIB));
	else
		say("templates: none with this source: the installed system has only the small base template");
}

static uint64_t part_mib(const struct gpt_part *p)
{
	return (p->last_lba - p->first_lba + 1) * GPT_SECTOR / MIB;
}

static void print_result(const struct target *t, const struct gpt_layout *l)
{
	char guid[37], templates[64] = "";
	gpt_guid_format(&l->disk_guid, guid);
	if (l->nparts > 2)
		snprintf(templates, sizeof templates, ", 3 cubeos-templates %llu MiB",
			 (unsigned long long)part_mib(&l->parts[2]));
	say("done: %s: 1 cubeos-esp %d MiB, 2 cubeos-data %llu MiB (formatted at its first boot)%s; disk GUID %s",
	    t->path, INSTALL_ESP_MIB, (unsigned long long)part_mib(&l->parts[1]), templates, guid);
	say("remove the install medium (or boot from the disk) and reboot");
}

int install_main(const char *disk)
{
	struct target t = {.fd = -1};
	struct source s = {.esp.fd = -1, .templates.fd = -1};
	struct gpt_layout l;
	uint8_t mbr_code[GPT_MBR_CODE_SIZE];
	char err[256];
	int rc = 1;
	if (target_identify(&t, disk) < 0 || target_open(&t) < 0 || source_find(&s, &t) < 0 ||
	    source_check(&s, &t) < 0 || read_mbr_code(mbr_code) < 0)
		goto out;
	templates_check(&s);
	/* Partition 3 is the templates image rounded up to whole MiB. */
	uint64_t templates_mib = s.templates.fd >= 0 ? (s.templates.bytes + MIB - 1) / MIB : 0;
	if (gpt_layout_cubeos(&l, t.bytes / GPT_SECTOR, INSTALL_ESP_MIB, INSTALL_MIN_DATA_MIB, templates_mib, err,
			      sizeof err) < 0) {
		say("error: %s: %s", t.path, err);
		goto out;
	}
	print_plan(&t, &s);
	if (write_disk(&t, &s, &l, mbr_code) < 0)
		goto out;
	/* The kernel rereads the new table, so the partitions show up now. */
	if (ioctl(t.fd, BLKRRPART) < 0)
		say("note: the kernel did not reread the partition table (%s); it will at the next boot",
		    strerror(errno));
	print_result(&t, &l);
	rc = 0;
out:
	if (t.fd >= 0)
		close(t.fd);
	image_close(&s.esp);
	image_close(&s.templates);
	return rc;
}
