/*
 * mount.c - what PID1 mounts before anything else runs, and how it lets go
 * of the filesystems at shutdown. Only used in the real PID1 mode: test mode
 * never mounts anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "cubeos.h"
#include "datadisk.h"
#include "install.h"
#include "isomedium.h"

#define TEMPLATES_PARTNAME    "cubeos-templates"
#define TEMPLATES_MOUNT_POINT "/usr/lib/cubeos/templates"
#define LIVE_ISO_WAIT_MS      5000 /* how long a live boot waits for its CD drive or USB stick */

struct early_mount {
	const char *source, *target, *fstype;
	unsigned long flags;
	const char *data;
};

static const struct early_mount early_mounts[] = {
    {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
    {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
    {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
    {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate"},
    {"bpf", "/sys/fs/bpf", "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700"},
    {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
    {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
};

/* A failed mount is logged and skipped: PID1 carries on with what it has,
 * so the console stays usable to find out what is wrong. */
int mount_early(void)
{
	int failed = 0;
	for (size_t i = 0; i < sizeof early_mounts / sizeof early_mounts[0]; i++) {
		const struct early_mount *m = &early_mounts[i];
		mkdir(m->target, 0755);
		if (mount(m->source, m->target, m->fstype, m->flags, m->data) == 0 || errno == EBUSY)
			continue;
		log_error("mount", "cannot mount %s on %s: %s", m->fstype, m->target, strerror(errno));
		failed++;
	}
	return failed ? -1 : 0;
}

int console_attach(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	for (int i = 0; i < 3; i++)
		dup2(fd, i);
	if (fd > 2)
		close(fd);
	return 0;
}

/* The state directory: the data partition mounted on /var/lib/cubeos
 * (checked, or formatted if blank), else RAM with a warning (datadisk.c). */
const char *state_dir_prepare(void)
{
	struct datadisk_env env;
	datadisk_env_default(&env);
	return datadisk_prepare(&env);
}

static bool live_boot(void)
{
	char cmdline[4096];
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, cmdline, sizeof cmdline - 1) : -1;
	if (fd >= 0)
		close(fd);
	cmdline[n > 0 ? n : 0] = '\0';
	return datadisk_cmdline_live(cmdline);
}

/* A live boot never touches the disks: its templates come from the ISO it
 * booted from (image/mkiso.sh's boot/templates.img, loop-mounted). A network
 * boot (its initramfs carries the install source) has no medium to wait for. */
static void templates_mount_live(void)
{
	char what[512];
	if (access(INSTALL_PXE_SOURCE, F_OK) == 0) {
		log_info("templates", "network boot: no templates medium; the default templates are base from the "
				      "initramfs only");
		return;
	}
	int rc = isomedium_templates_mount(TEMPLATES_MOUNT_POINT, LIVE_ISO_WAIT_MS, what, sizeof what);
	if (rc > 0)
		log_info("templates", "%s mounted read-only on %s", what, TEMPLATES_MOUNT_POINT);
	else if (rc == 0)
		log_info("templates", "%s: the default templates are base from the initramfs only", what);
	else
		log_error("templates", "%s", what);
}

/* The image's templates partition (image/mkimage.sh: ext4 without a journal,
 * never written) holds the root filesystems of the default templates, one
 * <name>/rootfs.ext4 each; the api builds a template from each (its
 * template_defaults.c). A live ISO boot mounts the same image from the ISO.
 * Without either (PXE, a disk installed from PXE) the api still builds
 * `base` from the initramfs's small rootfs. */
void templates_mount(void)
{
	if (live_boot()) {
		templates_mount_live();
		return;
	}
	struct datadisk_part p;
	char err[256], dev[128];
	/* No wait: the data partition's search already waited for the disk. */
	int found = datadisk_find("/sys", TEMPLATES_PARTNAME, 0, &p, err, sizeof err);
	if (found < 0) {
		log_warn("templates", "%s", err);
		return;
	}
	if (found == 0) {
		log_info("templates", "no %s partition: the default templates are base from the initramfs only",
			 TEMPLATES_PARTNAME);
		return;
	}
	snprintf(dev, sizeof dev, "/dev/%s", p.name);
	mkdir(TEMPLATES_MOUNT_POINT, 0755);
	if (mount(dev, TEMPLATES_MOUNT_POINT, "ext4", MS_RDONLY | MS_NODEV | MS_NOSUID | MS_NOEXEC, NULL) < 0) {
		log_error("templates", "cannot mount %s on %s: %s", dev, TEMPLATES_MOUNT_POINT, strerror(errno));
		return;
	}
	log_info("templates", "%s (%s) mounted read-only on %s", dev, TEMPLATES_PARTNAME, TEMPLATES_MOUNT_POINT);
}

void mount_finish_readonly(void)
{
	sync();
	/* Services are stopped by now: the data disk can let go. The root may be
	 * the initramfs, which cannot be remounted: that is fine, it is in RAM. */
	datadisk_release();
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0 && errno != EINVAL)
		log_warn("shutdown", "cannot remount / read-only: %s", strerror(errno));
	sync();
}
