/*
 * isomedium.c - finding and mounting the CubeOS ISO (see isomedium.h).
 */
#include "isomedium.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define ISO_PVD_OFFSET	     32768 /* ISO 9660: the primary volume descriptor, sector 16 */
#define ISO_VOLUME_ID_OFFSET 40
#define ISO_VOLUME_ID_LEN    32
#define LIVE_ISO_DIR	     "/run/cubeos-iso" /* the ISO while its templates are mounted */
#define POLL_MS		     100
#define LOOP_TRIES	     3

bool isomedium_is_cubeos(const char *dev)
{
	int fd = open(dev, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return false; /* an empty CD drive: ENOMEDIUM */
	unsigned char pvd[ISO_VOLUME_ID_OFFSET + ISO_VOLUME_ID_LEN];
	bool iso = pread(fd, pvd, sizeof pvd, ISO_PVD_OFFSET) == (ssize_t)sizeof pvd && pvd[0] == 1 &&
		   memcmp(pvd + 1, "CD001", 5) == 0;
	close(fd);
	if (!iso)
		return false;
	/* The volume ID is padded with spaces to its 32 bytes. */
	char want[ISO_VOLUME_ID_LEN];
	memset(want, ' ', sizeof want);
	memcpy(want, ISOMEDIUM_VOLUME, strlen(ISOMEDIUM_VOLUME));
	return memcmp(pvd + ISO_VOLUME_ID_OFFSET, want, sizeof want) == 0;
}

/* Loop devices, RAM disks and device-mapper volumes are never the medium. */
static bool skip_block_name(const char *name)
{
	return name[0] == '.' || strncmp(name, "loop", 4) == 0 || strncmp(name, "ram", 3) == 0 ||
	       strncmp(name, "zram", 4) == 0 || strncmp(name, "dm-", 3) == 0;
}

static bool disk_devnum(const char *sysfs, const char *name, dev_t *out)
{
	char path[512];
	unsigned maj, min;
	snprintf(path, sizeof path, "%s/block/%s/dev", sysfs, name);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	bool ok = fscanf(f, "%u:%u", &maj, &min) == 2;
	fclose(f);
	if (ok)
		*out = makedev(maj, min);
	return ok;
}

int isomedium_each(const char *sysfs, int (*fn)(const char *dev, dev_t disk, void *ctx), void *ctx)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/block", sysfs);
	DIR *d = opendir(dir);
	int rc = -1;
	for (struct dirent *e; d && rc < 0 && (e = readdir(d));) {
		char dev[300];
		dev_t disk;
		if (skip_block_name(e->d_name) || !disk_devnum(sysfs, e->d_name, &disk))
			continue;
		snprintf(dev, sizeof dev, "/dev/%s", e->d_name);
		if (isomedium_is_cubeos(dev))
			rc = fn(dev, disk, ctx);
	}
	if (d)
		closedir(d);
	return rc;
}

int isomedium_mount(const char *dev, const char *dir)
{
	mkdir(dir, 0700);
	return mount(dev, dir, "iso9660", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

/* --- a live boot's templates -------------------------------------------------- */

/* Binds file_fd to a free loop device, read-only and cleared by the kernel
 * once its last user (the mount) lets go. Returns the loop device's fd. */
static int loop_attach_readonly(int file_fd, char *loopdev, size_t n)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -1;
	int fd = -1;
	/* Another process may take the free device between the two calls. */
	for (int i = 0; i < LOOP_TRIES && fd < 0; i++) {
		int num = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (num < 0)
			break;
		snprintf(loopdev, n, "/dev/loop%d", num);
		fd = open(loopdev, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			break;
		struct loop_config c;
		memset(&c, 0, sizeof c);
		c.fd = (unsigned)file_fd;
		c.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
		if (ioctl(fd, LOOP_CONFIGURE, &c) < 0) {
			int e = errno;
			close(fd);
			fd = -1;
			errno = e;
			if (e != EBUSY)
				break;
		}
	}
	int e = errno;
	close(ctl);
	errno = e;
	return fd;
}

struct live_templates {
	const char *target;
	char *what;
	size_t whatsz;
	int found; /* the isomedium_templates_mount result */
};

/* With the ISO mounted on LIVE_ISO_DIR: its templates image onto target. */
static int mount_templates_image(struct live_templates *lt, const char *dev)
{
	int file = open(LIVE_ISO_DIR "/" ISOMEDIUM_TEMPLATES, O_RDONLY | O_CLOEXEC);
	if (file < 0) {
		snprintf(lt->what, lt->whatsz, "the CubeOS ISO on %s has no %s", dev, ISOMEDIUM_TEMPLATES);
		return 0;
	}
	char loopdev[64];
	int loop = loop_attach_readonly(file, loopdev, sizeof loopdev);
	int e = errno;
	close(file); /* the loop device holds its own reference */
	if (loop < 0) {
		snprintf(lt->what, lt->whatsz, "no loop device for %s on %s: %s", ISOMEDIUM_TEMPLATES, dev,
			 strerror(e));
		return -1;
	}
	mkdir(lt->target, 0755);
	int rc = mount(loopdev, lt->target, "ext4", MS_RDONLY | MS_NODEV | MS_NOSUID | MS_NOEXEC, NULL);
	e = errno;
	close(loop); /* the mount keeps it; its unmount clears it (autoclear) */
	if (rc < 0) {
		snprintf(lt->what, lt->whatsz, "cannot mount %s (%s on %s) on %s: %s", loopdev, ISOMEDIUM_TEMPLATES,
			 dev, lt->target, strerror(e));
		return -1;
	}
	snprintf(lt->what, lt->whatsz, "%s (%s on %s)", loopdev, ISOMEDIUM_TEMPLATES, dev);
	return 1;
}

static int live_templates_from(const char *dev, dev_t disk, void *ctx)
{
	struct live_templates *lt = ctx;
	(void)disk;
	if (isomedium_mount(dev, LIVE_ISO_DIR) < 0) {
		snprintf(lt->what, lt->whatsz, "%s looks like the CubeOS ISO but does not mount: %s", dev,
			 strerror(errno));
		lt->found = -1;
		return -1; /* maybe another drive holds a good copy */
	}
	lt->found = mount_templates_image(lt, dev);
	/* The open loop device keeps the ISO's filesystem alive: its own mount
	 * point is not needed, and nothing is left to clean up. */
	umount2(LIVE_ISO_DIR, MNT_DETACH);
	rmdir(LIVE_ISO_DIR);
	return 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int isomedium_templates_mount(const char *target, unsigned wait_ms, char *what, size_t whatsz)
{
	struct live_templates lt = {.target = target, .what = what, .whatsz = whatsz, .found = 0};
	/* CD drives and USB sticks are probed asynchronously: poll a while. */
	for (unsigned waited = 0;; waited += POLL_MS) {
		if (isomedium_each("/sys", live_templates_from, &lt) == 0)
			return lt.found;
		if (waited >= wait_ms)
			break;
		sleep_ms(POLL_MS);
	}
	if (lt.found == 0)
		snprintf(what, whatsz, "no CubeOS ISO (volume %s) appeared within %u ms", ISOMEDIUM_VOLUME, wait_ms);
	return lt.found;
}
