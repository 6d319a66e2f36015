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
