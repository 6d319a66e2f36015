/* test_datadisk.c - finding the data partition in fake sysfs trees, telling
 * blank from filesystems in image files, the in-use checks, and (where the
 * tools exist) real mkfs.ext4 and the static mke2fs/e2fsck from thirdparty/. */
#include "../datadisk.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../lib/loop.h"
#include "../../lib/tests/test.h"
#include "tmpdir.h"

/* --- fake trees ----------------------------------------------------------------- */

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void mkdirs(const char *path)
{
	char tmp[512];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *s = strchr(tmp + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		mkdir(tmp, 0755);
		*s = '/';
	}
	mkdir(tmp, 0755);
}

/* <root>/class/block/<name>/{uevent,size,holders/} as the kernel shows a
 * block device; partname NULL for a whole disk. */
static void fake_block(const char *root, const char *name, unsigned minor, const char *partname, uint64_t sectors)
{
	char dir[512], path[600], text[512];
	snprintf(dir, sizeof dir, "%s/class/block/%s", root, name);
	mkdirs(dir);
	snprintf(path, sizeof path, "%s/holders", dir);
	mkdir(path, 0755);
	snprintf(text, sizeof text, "MAJOR=254\nMINOR=%u\nDEVNAME=%s\nDEVTYPE=%s\n%s%s%s", minor, name,
		 partname ? "partition" : "disk", partname ? "PARTN=2\nPARTNAME=" : "", partname ? partname : "",
		 partname ? "\n" : "");
	snprintf(path, sizeof path, "%s/uevent", dir);
	write_text(path, text);
	snprintf(text, sizeof text, "%llu\n", (unsigned long long)sectors);
	snprintf(path, sizeof path, "%s/size", dir);
	write_text(path, text);
}

static char *fake_sysfs(void)
{
	char *root = tmpdir_make("dd-sys");
	fake_block(root, "vda", 0, NULL, 16777216);
	fake_block(root, "vda1", 1, "cubeos-esp", 262144);
	return root;
}

/* --- finding -------------------------------------------------------------------- */

TEST(finds_the_partition_by_gpt_name)
{
	char *root = fake_sysfs();
	fake_block(root, "vda2", 2, "cubeos-data", 16384);
	struct datadisk_part p;
	char err[256] = "";
	CHECK_EQ_INT(datadisk_find(root, "cubeos-data", 0, &p, err, sizeof err), 1);
	CHECK_STREQ(p.name, "vda2");
	CHECK_EQ_INT(p.major, 254);
	CHECK_EQ_INT(p.minor, 2);
	CHECK(p.bytes == 16384ull * 512);
	tmpdir_remove(root);
	free(root);
}

TEST(no_partition_gives_up_after_the_wait)
{
	char *root = fake_sysfs();
	struct datadisk_part p;
	char err[256] = "";
	uint64_t t0 = mono_ms();
	CHECK_EQ_INT(datadisk_find(root, "cubeos-data", 300, &p, err, sizeof err), 0);
	uint64_t took = mono_ms() - t0;
	CHECK(took >= 300 && took < 2000);
	CHECK_EQ_INT(datadisk_find("/nonexistent-sysfs", "cubeos-data", 0, &p, err, sizeof err), 0);
	tmpdir_remove(root);
	free(root);
}

/* Block drivers probe asynchronously: the partition may show up after PID1 starts. */
TEST(waits_for_a_partition_that_appears_late)
{
	char *root = fake_sysfs();
	pid_t pid = fork();
	if (pid == 0) {
		usleep(250 * 1000);
		fake_block(root, "nvme0n1p2", 2, "cubeos-data", 2048);
		_exit(0);
	}
	struct datadisk_part p;
	char err[256] = "";
	uint64_t t0 = mono_ms();
	CHECK_EQ_INT(datadisk_find(root, "cubeos-data", 5000, &p, err, sizeof err), 1);
	uint64_t took = mono_ms() - t0;
	CHECK(took >= 200 && took < 4000);
	CHECK_STREQ(p.name, "nvme0n1p2");
	waitpid(pid, NULL, 0);
	tmpdir_remove(root);
	free(root);
}

TEST(two_partitions_with_the_name_are_refused)
{
	char *root = fake_sysfs();
	fake_block(root, "vda2", 2, "cubeos-data", 2048);
	fake_block(root, "sdb2", 18, "cubeos-data", 2048);
	struct datadisk_part p;
	char err[256] = "";
	CHECK_EQ_INT(datadisk_find(root, "cubeos-data", 1000, &p, err, sizeof err), -1);
	CHECK(strstr(err, "vda2") && strstr(err, "sdb2") && strstr(err, "2 partitions"));
	tmpdir_remove(root);
	free(root);
}

/* --- what is on it ---------------------------------------------------------------- */

static char *scratch;

static const char *image_path(const char *name)
{
	static char path[512];
	if (!scratch)
		scratch = tmpdir_make("dd-img");
	snprintf(path, sizeof path, "%s/%s", scratch, name);
	return path;
}

/* A sparse zero file of size bytes with the given bytes written at off. */
static const char *image_with(const char *name, off_t size, off_t off, const void *bytes, size_t n)
{
	const char *path = image_path(name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, size) < 0 || (n && pwrite(fd, bytes, n, off) != (ssize_t)n))
		test_fail(__FILE__, __LINE__, "cannot make %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return path;
}

static enum datadisk_content probe(const char *path, char *what)
{
	return datadisk_probe_path(path, what, 256);
}

TEST(blank_image_is_blank)
{
	char what[256];
	CHECK_EQ_INT(probe(image_with("blank", 8 << 20, 0, NULL, 0), what), DATADISK_BLANK);
	CHECK_STREQ(what, "blank");
	CHECK_EQ_INT(probe(image_with("tiny", 4096, 0, NULL, 0), what), DATADISK_BLANK);
	CHECK_EQ_INT(probe(image_path("missing"), what), DATADISK_UNREADABLE);
}

static bool run_quiet(const char *cmd)
{
	char line[1024];
	snprintf(line, sizeof line, "%s >/dev/null 2>&1", cmd);
	return system(line) == 0;
}

TEST(ext4_made_by_mkfs_is_recognised)
{
	const char *mkfs = access("/sbin/mkfs.ext4", X_OK) == 0 ? "/sbin/mkfs.ext4" : "/usr/sbin/mkfs.ext4";
	if (access(mkfs, X_OK) != 0) {
		printf("  (skipped: no mkfs.ext4)\n");
		return;
	}
	const char *path = image_with("ext4", 32 << 20, 0, NULL, 0);
	char cmd[1024], what[256];
	snprintf(cmd, sizeof cmd, "%s -q -F -L cubeos-data %s", mkfs, path);
	if (!CHECK(run_quiet(cmd)))
		return;
	CHECK_EQ_INT(probe(path, what), DATADISK_EXT);
	CHECK_STREQ(what, "ext4, label \"cubeos-data\"");
	snprintf(cmd, sizeof cmd, "%s -q -F -t ext2 %s", mkfs, path);
	if (CHECK(run_quiet(cmd))) {
		CHECK_EQ_INT(probe(path, what), DATADISK_EXT);
		CHECK(strncmp(what, "ext2", 4) == 0);
	}
}

/* A FAT16 boot sector as mkfs.fat writes it (jump, OEM name, type string, signature). */
TEST(fat_is_refused)
{
	uint8_t bs[512] = {0xEB, 0x3C, 0x90, 'm', 'k', 'f', 's', '.', 'f', 'a', 't'};
	memcpy(bs + 54, "FAT16   ", 8);
	bs[510] = 0x55;
	bs[511] = 0xAA;
	char what[256];
	CHECK_EQ_INT(probe(image_with("fat", 8 << 20, 0, bs, sizeof bs), what), DATADISK_FOREIGN);
	CHECK_STREQ(what, "FAT (vfat)");
	if (access("/sbin/mkfs.vfat", X_OK) == 0) {
		const char *path = image_with("vfat", 40 << 20, 0, NULL, 0);
		char cmd[1024];
		snprintf(cmd, sizeof cmd, "/sbin/mkfs.vfat -F 32 %s", path);
		if (CHECK(run_quiet(cmd)))
			CHECK_EQ_INT(probe(path, what), DATADISK_FOREIGN);
		CHECK_STREQ(what, "FAT (vfat)");
	}
}

TEST(other_filesystems_and_containers_are_refused_by_name)
{
	static const struct {
		const char *name;
		off_t off;
		const char *magic;
		size_t len;
		const char *want;
	} cases[] = {
	    {"xfs", 0, "XFSB", 4, "XFS"},
	    {"btrfs", 0x10040, "_BHRfS_M", 8, "btrfs"},
	    {"luks", 0, "LUKS\xba\xbe", 6, "LUKS (encrypted volume)"},
	    {"swap", 4086, "SWAPSPACE2", 10, "swap"},
	    {"swap64k", 65526, "SWAPSPACE2", 10, "swap"},
	    {"lvm", 512, "LABELONE", 8, "LVM physical volume"},
	    {"iso", 0x8001, "CD001", 5, "ISO 9660"},
	    {"ntfs", 3, "NTFS    ", 8, "NTFS"},
	    {"md", 4096, "\xfc\x4e\x2b\xa9", 4, "Linux RAID (md) member"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char what[256];
		const char *path = image_with(cases[i].name, 8 << 20, cases[i].off, cases[i].magic, cases[i].len);
		CHECK_EQ_INT(probe(path, what), DATADISK_FOREIGN);
		if (strcmp(what, cases[i].want) != 0)
			test_fail(__FILE__, __LINE__, "%s: got \"%s\"", cases[i].name, what);
	}
}

TEST(unknown_data_anywhere_at_either_end_is_refused)
{
	char what[256];
	CHECK_EQ_INT(probe(image_with("junk", 8 << 20, 5000, "x", 1), what), DATADISK_UNKNOWN);
	CHECK_STREQ(what, "unknown data at offset 5000");
	off_t size = 8 << 20;
	CHECK_EQ_INT(probe(image_with("tail", size, size - 100, "zfs?", 4), what), DATADISK_UNKNOWN);
	CHECK(strstr(what, "unknown data at offset") != NULL);
	/* A stray 0xEF53 without a plausible superblock is not ext. */
	uint8_t sb[2] = {0x53, 0xEF};
	uint8_t bad_bs[4] = {0xff, 0, 0, 0}; /* log block size 255 */
	const char *path = image_with("badext", size, 1024 + 56, sb, 2);
	int fd = open(path, O_WRONLY);
	CHECK(pwrite(fd, bad_bs, 4, 1024 + 24) == 4);
	close(fd);
	CHECK_EQ_INT(probe(path, what), DATADISK_UNKNOWN);
}

/* --- the static tools (thirdparty/ e2fsprogs), when built --------------------------- */

static const char *thirdparty_tool(const char *name)
{
	static char path[2][512];
	static int k;
	const char *cache = getenv("CUBEOS_CACHE") ? getenv("CUBEOS_CACHE") : "/var/cache/cubeos";
	char *p = path[k++ % 2];
	snprintf(p, 512, "%s/thirdparty/e2fsprogs/bin/%s", cache, name);
	return p;
}

TEST(static_mke2fs_formats_and_e2fsck_passes)
{
	const char *mke2fs = thirdparty_tool("mke2fs"), *e2fsck = thirdparty_tool("e2fsck");
	if (access(mke2fs, X_OK) != 0 || access(e2fsck, X_OK) != 0) {
		printf("  (skipped: %s not built; bash thirdparty/build.sh e2fsprogs)\n", mke2fs);
		return;
	}
	const char *path = image_with("static", 64 << 20, 0, NULL, 0);
	char out[2048], what[256];
	CHECK_EQ_INT(probe(path, what), DATADISK_BLANK);
	int rc = datadisk_format(mke2fs, path, out, sizeof out);
	if (!CHECK_EQ_INT(rc, 0))
		printf("  mke2fs said: %s\n", out);
	CHECK_EQ_INT(probe(path, what), DATADISK_EXT);
	CHECK_STREQ(what, "ext4, label \"cubeos-data\"");
	rc = datadisk_fsck(e2fsck, path, out, sizeof out);
	CHECK_EQ_INT(rc, 0);
	CHECK(strstr(out, "cubeos-data: clean") != NULL);
	CHECK(datadisk_fsck_safe(rc));
}

/* --- in use, live boots, running tools --------------------------------------------- */

TEST(in_use_checks_holders_mounts_and_swap)
{
	char *root = fake_sysfs();
	fake_block(root, "vda2", 2, "cubeos-data", 2048);
	char proc[600], path[700], sys[600], why[256];
	snprintf(proc, sizeof proc, "%s/proc", root);
	snprintf(sys, sizeof sys, "%s", root);
	snprintf(path, sizeof path, "%s/self", proc);
	mkdirs(path);
	snprintf(path, sizeof path, "%s/self/mountinfo", proc);
	write_text(path, "22 1 0:21 / /proc rw - proc proc rw\n30 1 254:1 / /boot rw - vfat /dev/vda1 rw\n");
	snprintf(path, sizeof path, "%s/swaps", proc);
	write_text(path, "Filename Type Size Used Priority\n");
	struct datadisk_env env;
	datadisk_env_default(&env);
	env.sysfs = sys;
	env.proc = proc;
	struct datadisk_part p;
	char err[256];
	if (!CHECK_EQ_INT(datadisk_find(sys, "cubeos-data", 0, &p, err, sizeof err), 1))
		return;
	CHECK(!datadisk_in_use(&env, &p, why, sizeof why));

	snprintf(path, sizeof path, "%s/self/mountinfo", proc);
	write_text(path, "22 1 0:21 / /proc rw - proc proc rw\n31 1 254:2 / /mnt/data rw - ext4 /dev/vda2 rw\n");
	CHECK(datadisk_in_use(&env, &p, why, sizeof why));
	CHECK_STREQ(why, "already mounted on /mnt/data");
	write_text(path, "");

	snprintf(path, sizeof path, "%s/swaps", proc);
	write_text(path, "Filename Type Size Used Priority\n/dev/vda2 partition 1024 0 -2\n");
	CHECK(datadisk_in_use(&env, &p, why, sizeof why));
	CHECK_STREQ(why, "in use as swap");
	write_text(path, "");

	snprintf(path, sizeof path, "%s/class/block/vda2/holders/dm-0", root);
	mkdir(path, 0755);
	CHECK(datadisk_in_use(&env, &p, why, sizeof why));
	CHECK_STREQ(why, "held by dm-0");
	tmpdir_remove(root);
	free(root);
}

TEST(live_boot_is_read_from_the_command_line)
{
	CHECK(datadisk_cmdline_live("console=ttyS0 cubeos.live quiet\n"));
	CHECK(datadisk_cmdline_live("cubeos.live"));
	CHECK(datadisk_cmdline_live("quiet cubeos.live=1"));
	CHECK(!datadisk_cmdline_live("quiet cubeos.live=0"));
	CHECK(!datadisk_cmdline_live("console=ttyS0 quiet panic=10\n"));
	CHECK(!datadisk_cmdline_live("cubeos.lively x.cubeos.live"));
	CHECK(!datadisk_cmdline_live(""));
}

TEST(run_collects_output_and_status)
{
	char out[64];
	char *const ok[] = {"/bin/sh", "-c", "echo hello; echo world >&2; exit 3", NULL};
	CHECK_EQ_INT(datadisk_run(ok, out, sizeof out), 3);
	CHECK_STREQ(out, "hello\nworld\n");
	char *const missing[] = {"/nonexistent/mke2fs", NULL};
	CHECK_EQ_INT(datadisk_run(missing, out, sizeof out), 127);
	CHECK(strstr(out, "cannot run /nonexistent/mke2fs") != NULL);
	/* Long output: the tail is kept, it says what went wrong. */
	char *const chatty[] = {"/bin/sh", "-c", "i=0; while [ $i -lt 500 ]; do echo line$i; i=$((i+1)); done", NULL};
	CHECK_EQ_INT(datadisk_run(chatty, out, sizeof out), 0);
	CHECK_EQ_INT(strlen(out), sizeof out - 1);
	CHECK(strstr(out, "line499\n") != NULL);
	char *const killed[] = {"/bin/sh", "-c", "kill -9 $$", NULL};
	CHECK_EQ_INT(datadisk_run(killed, out, sizeof out), 128 + 9);
	CHECK(datadisk_fsck_safe(0) && datadisk_fsck_safe(1) && datadisk_fsck_safe(2));
	CHECK(!datadisk_fsck_safe(4) && !datadisk_fsck_safe(8) && !datadisk_fsck_safe(-1) &&
	      !datadisk_fsck_safe(128 + 9));
}

TEST(describe_says_where_the_state_is)
{
	struct datadisk d = {.mode = DATADISK_UNMANAGED};
	char out[512];
	datadisk_describe(&d, out, sizeof out);
	CHECK_STREQ(out, "not managed (test mode)");
	d.mode = DATADISK_RAM;
	snprintf(d.reason, sizeof d.reason, "no partition named cubeos-data");
	datadisk_describe(&d, out, sizeof out);
	CHECK_STREQ(out, "RAM (not persistent): no partition named cubeos-data");
	d.mode = DATADISK_MOUNTED;
	snprintf(d.device, sizeof d.device, "/dev/vda2");
	snprintf(d.mount_point, sizeof d.mount_point, "/tmp");
	datadisk_describe(&d, out, sizeof out);
	CHECK(strncmp(out, "/dev/vda2 on /tmp, ", 19) == 0 && strstr(out, " used (") != NULL);
	CHECK_EQ_INT(datadisk_current()->mode, DATADISK_UNMANAGED);
}

/* Last: removes the image files. */
TEST(cleanup)
{
	if (scratch)
		tmpdir_remove(scratch);
	free(scratch);
	scratch = NULL;
}
