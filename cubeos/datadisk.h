/*
 * datadisk.h - the data partition: where config, state and logs survive a
 * reboot.
 *
 * At boot cubeos looks for the GPT partition named "cubeos-data", checks it
 * with e2fsck (or formats it with mke2fs if it is blank) and mounts it on
 * /var/lib/cubeos, which becomes the state directory. Live boots
 * (`cubeos.live` on the kernel command line), machines without the partition
 * and anything that looks unsafe keep the state in RAM (/run/cubeos) instead,
 * with a warning. Nothing that looks like data is ever formatted.
 *
 * The pieces take their roots (sysfs, /dev, /proc) and tool paths as
 * parameters so the tests can run them against fake trees and image files.
 */
#ifndef CUBEOS_DATADISK_H
#define CUBEOS_DATADISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DATADISK_PARTNAME    "cubeos-data"
#define DATADISK_MOUNT_POINT "/var/lib/cubeos"
#define DATADISK_RAM_DIR     "/run/cubeos"

/* Where things are; datadisk_env_default() fills the real paths. */
struct datadisk_env {
	const char *sysfs;	 /* "/sys" */
	const char *dev;	 /* "/dev" */
	const char *proc;	 /* "/proc": cmdline, self/mountinfo, swaps */
	const char *mke2fs;	 /* "/usr/lib/cubeos/mke2fs" */
	const char *e2fsck;	 /* "/usr/lib/cubeos/e2fsck" */
	const char *mount_point; /* DATADISK_MOUNT_POINT */
	const char *ram_dir;	 /* DATADISK_RAM_DIR */
	const char *partname;	 /* DATADISK_PARTNAME */
	unsigned wait_ms;	 /* how long to wait for the partition to appear */
};

void datadisk_env_default(struct datadisk_env *env);

/* One block device found in sysfs. */
struct datadisk_part {
	char name[64]; /* DEVNAME, e.g. "vda2" */
	unsigned major, minor;
	uint64_t bytes;
};

/* Scans <sysfs>/class/block/<x>/uevent for PARTNAME=<partname>, polling until
 * wait_ms have passed (block drivers probe asynchronously). Returns 1 and
 * fills *out when exactly one partition has the name, 0 when none appeared,
 * -1 (reason in err) when several have it: cubeos does not guess. */
int datadisk_find(const char *sysfs, const char *partname, unsigned wait_ms, struct datadisk_part *out, char *err,
		  size_t errsz);

/* What the first MiB and the last 512 KiB of a device hold. */
enum datadisk_content {
	DATADISK_BLANK,	  /* zeros only: safe to format */
	DATADISK_EXT,	  /* an ext2/3/4 superblock */
	DATADISK_FOREIGN, /* another filesystem, a volume manager, swap, ...: never touched */
	DATADISK_UNKNOWN, /* not zeros but nothing recognised: never touched either */
	DATADISK_UNREADABLE,
};

/* Probes an open device or image file; names what was found in what
 * ("ext4", "FAT (vfat)", "LUKS", "unknown data at offset 4096", ...). */
enum datadisk_content datadisk_probe_fd(int fd, char *what, size_t whatsz);
enum datadisk_content datadisk_probe_path(const char *path, char *what, size_t whatsz);

/* True if the kernel command line (the text of /proc/cmdline) asks for a live
 * boot: the word `cubeos.live`, or `cubeos.live=` with a value other than 0. */
bool datadisk_cmdline_live(const char *cmdline);

/* Returns true (reason in why) if the partition is mounted, active swap, or
 * held by another block device (device mapper, md). */
bool datadisk_in_use(const struct datadisk_env *env, const struct datadisk_part *p, char *why, size_t whysz);

/* Runs a program with an empty signal mask, stdin /dev/null and its output
 * collected in out (the last outsz-1 bytes are kept). Returns its exit
 * status, 128+signal if it was killed, -1 if it could not run. */
int datadisk_run(char *const argv[], char *out, size_t outsz);

/* mke2fs -t ext4 -L cubeos-data on device (a block device or an image file). */
int datadisk_format(const char *mke2fs, const char *device, char *out, size_t outsz);
/* e2fsck -p: returns e2fsck's exit status (0 clean, 1 fixed, 2 fixed and
 * reboot wanted, 4 errors left, 8 operational error, ...). */
int datadisk_fsck(const char *e2fsck, const char *device, char *out, size_t outsz);
/* e2fsck statuses after which the filesystem may be mounted read-write. */
bool datadisk_fsck_safe(int status);

enum datadisk_mode {
	DATADISK_UNMANAGED, /* datadisk_prepare() never ran (test mode) */
	DATADISK_RAM,	    /* state in RAM */
	DATADISK_MOUNTED,   /* state on the data disk */
	DATADISK_READONLY,  /* disk mounted read-only (fsck found errors), state in RAM */
};

struct datadisk {
	enum datadisk_mode mode;
	bool formatted; /* formatted during this boot */
	char device[128];
	char mount_point[256];
	char state_dir[256];
	char reason[256]; /* why the state is in RAM */
};

/* The boot step: finds, checks or formats, and mounts the data disk; returns
 * the state directory (the mount point, or the RAM directory). Never fails:
 * every problem ends in RAM state and a log line. */
const char *datadisk_prepare(const struct datadisk_env *env);
/* The shutdown step, after the services stopped: sync and unmount. */
void datadisk_release(void);
/* What this boot decided (mode DATADISK_UNMANAGED before datadisk_prepare). */
const struct datadisk *datadisk_current(void);

/* One line for `status`: device, mount point, size and use, or RAM. */
void datadisk_describe(const struct datadisk *d, char *out, size_t outsz);

#endif
