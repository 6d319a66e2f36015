/*
 * test_gpt.c - the GPT writer of `install`: tables written to a sparse temp
 * file are checked by parsing them back here and by sgdisk (gdisk, a
 * dependency of image/), which knows nothing of our code.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/tests/test.h"
#include "../gpt.h"
#include "tmpdir.h"

#define DISK_SECTORS (4ull * 1024 * 1024 * 1024 / GPT_SECTOR) /* 4 GiB */

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A sparse disk file with a CubeOS table on it (partition 3 of templates_mib
 * MiB unless 0); returns its path (static). */
static const char *make_disk(struct gpt_layout *l, const uint8_t *code, uint64_t templates_mib)
{
	static char path[256];
	char *dir = tmpdir_make("gpt");
	snprintf(path, sizeof path, "%s/disk.img", dir);
	free(dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	char err[256] = "";
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)(DISK_SECTORS * GPT_SECTOR)) == 0);
	CHECK_EQ_INT(gpt_layout_cubeos(l, DISK_SECTORS, 128, 1024, templates_mib, err, sizeof err), 0);
	CHECK_EQ_INT(gpt_write(fd, l, code), 0);
	close(fd);
	return path;
}

static void remove_disk(const char *path)
{
	char dir[256];
	snprintf(dir, sizeof dir, "%s", path);
	*strrchr(dir, '/') = '\0';
	tmpdir_remove(dir);
}

static void read_at(const char *path, uint64_t off, void *buf, size_t n)
{
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0 && pread(fd, buf, n, (off_t)off) == (ssize_t)n);
	close(fd);
}

/* Runs a shell command; returns its output (static) or NULL if it failed. */
static const char *run(const char *cmd)
{
	static char out[8192];
	FILE *p = popen(cmd, "r");
	if (!p)
		return NULL;
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	return pclose(p) == 0 ? out : NULL;
}

TEST(crc32_matches_the_standard_check_value)
{
	/* The CRC-32 check value of "123456789" (IEEE 802.3, as zlib). */
	CHECK_EQ_INT(gpt_crc32("123456789", 9), 0xcbf43926u);
}

TEST(guid_text_round_trips_in_mixed_endian)
{
	struct gpt_guid g;
	char text[37];
	CHECK_EQ_INT(gpt_guid_parse(GPT_TYPE_ESP, &g), 0);
	/* C12A7328-...: the first group is stored little-endian. */
	CHECK(g.b[0] == 0x28 && g.b[3] == 0xc1 && g.b[4] == 0x1f && g.b[8] == 0xba && g.b[15] == 0x3b);
	gpt_guid_format(&g, text);
	CHECK_STREQ(text, GPT_TYPE_ESP);
	CHECK_EQ_INT(gpt_guid_parse("C12A7328-F81F-11D2-BA4B-00A0C93EC93", &g), -1);
	CHECK_EQ_INT(gpt_guid_parse("C12A7328-F81F-11D2-BA4B-00A0C93EC93BB", &g), -1);
	CHECK_EQ_INT(gpt_guid_parse("C12A7328xF81F-11D2-BA4B-00A0C93EC93B", &g), -1);
	CHECK_EQ_INT(gpt_guid_parse("G12A7328-F81F-11D2-BA4B-00A0C93EC93B", &g), -1);
	CHECK_EQ_INT(gpt_guid_parse("", &g), -1);
}

TEST(random_guids_are_version_4_and_differ)
{
	struct gpt_guid a, b;
	char ta[37], tb[37];
	CHECK_EQ_INT(gpt_guid_random(&a), 0);
	CHECK_EQ_INT(gpt_guid_random(&b), 0);
	gpt_guid_format(&a, ta);
	gpt_guid_format(&b, tb);
	CHECK(strcmp(ta, tb) != 0);
	CHECK(ta[14] == '4');
	CHECK(strchr("89AB", ta[19]) != NULL);
}

TEST(cubeos_layout_places_esp_at_1_mib_and_data_to_the_end)
{
	struct gpt_layout l;
	char err[256];
	CHECK_EQ_INT(gpt_layout_cubeos(&l, DISK_SECTORS, 128, 1024, 0, err, sizeof err), 0);
	CHECK_EQ_INT(l.nparts, 2);
	CHECK_STREQ(l.parts[0].name, "cubeos-esp");
	CHECK_EQ_INT(l.parts[0].first_lba, 2048);
	CHECK_EQ_INT(l.parts[0].last_lba, 2048 + 128 * 2048 - 1);
	CHECK_EQ_INT(l.parts[0].attributes, GPT_ATTR_LEGACY_BOOT);
	CHECK_STREQ(l.parts[1].name, "cubeos-data");
	CHECK_EQ_INT(l.parts[1].first_lba, 2048 + 128 * 2048);
	CHECK_EQ_INT(l.parts[1].last_lba, DISK_SECTORS - 34);
	CHECK_EQ_INT(gpt_layout_check(&l, err, sizeof err), 0);
}

TEST(too_small_disks_are_refused)
{
	struct gpt_layout l;
	char err[256] = "";
	CHECK_EQ_INT(gpt_layout_cubeos(&l, 512 * 2048, 128, 1024, 0, err, sizeof err), -1);
	CHECK(strstr(err, "too small") != NULL);
	CHECK_EQ_INT(gpt_layout_cubeos(&l, 0, 128, 1024, 0, err, sizeof err), -1);
}

TEST(templates_partition_goes_last_aligned_and_data_keeps_its_start)
{
	struct gpt_layout l;
	char err[256];
	CHECK_EQ_INT(gpt_layout_cubeos(&l, DISK_SECTORS, 128, 1024, 1061, err, sizeof err), 0);
	CHECK_EQ_INT(l.nparts, 3);
	CHECK_STREQ(l.parts[1].name, "cubeos-data");
	CHECK_EQ_INT(l.parts[1].first_lba, 2048 + 128 * 2048);
	CHECK_STREQ(l.parts[2].name, "cubeos-templates");
	CHECK_EQ_INT(l.parts[2].first_lba % 2048, 0);
	CHECK_EQ_INT(l.parts[2].last_lba - l.parts[2].first_lba + 1, 1061 * 2048);
	CHECK(l.parts[2].last_lba <= gpt_last_usable(DISK_SECTORS));
	/* As close to the end as the alignment allows: less than 1 MiB left over. */
	CHECK(gpt_last_usable(DISK_SECTORS) - l.parts[2].last_lba < 2048);
	CHECK_EQ_INT(l.parts[1].last_lba, l.parts[2].first_lba - 1);
	CHECK_EQ_INT(gpt_layout_check(&l, err, sizeof err), 0);
}

TEST(templates_count_in_the_minimum_size)
{
	struct gpt_layout l;
	char err[256] = "";
	/* 2 GiB: room for the ESP and 1 GiB of data, not for 1 GiB of templates too. */
	CHECK_EQ_INT(gpt_layout_cubeos(&l, 2048ull * 2048, 128, 1024, 0, err, sizeof err), 0);
	CHECK_EQ_INT(gpt_layout_cubeos(&l, 2048ull * 2048, 128, 1024, 1024, err, sizeof err), -1);
	CHECK(strstr(err, "too small") != NULL && strstr(err, "templates") != NULL);
	/* The smallest disk it accepts still leaves the data minimum. */
	uint64_t sectors = (1 + 128 + 1024 + 100 + 1 + 1) * 2048ull;
	CHECK_EQ_INT(gpt_layout_cubeos(&l, sectors, 128, 1024, 100, err, sizeof err), 0);
	CHECK(l.parts[1].last_lba - l.parts[1].first_lba + 1 >= 1024 * 2048);
	CHECK_EQ_INT(gpt_layout_check(&l, err, sizeof err), 0);
}

TEST(bad_layouts_are_refused_before_writing)
{
	struct gpt_layout l;
	char err[256];
	CHECK_EQ_INT(gpt_layout_cubeos(&l, DISK_SECTORS, 128, 1024, 0, err, sizeof err), 0);
	struct gpt_layout overlap = l;
	overlap.parts[1].first_lba = overlap.parts[0].last_lba;
	CHECK_EQ_INT(gpt_layout_check(&overlap, err, sizeof err), -1);
	CHECK(strstr(err, "overlap") != NULL);
	struct gpt_layout outside = l;
	outside.parts[1].last_lba = DISK_SECTORS - 1;
	CHECK_EQ_INT(gpt_layout_check(&outside, err, sizeof err), -1);
	struct gpt_layout early = l;
	early.parts[0].first_lba = 1;
	CHECK_EQ_INT(gpt_layout_check(&early, err, sizeof err), -1);
	struct gpt_layout name = l;
	name.parts[0].name[0] = '\n';
	CHECK_EQ_INT(gpt_layout_check(&name, err, sizeof err), -1);
	CHECK_EQ_INT(gpt_write(-1, &overlap, NULL), -1);
}

TEST(written_table_parses_back_with_valid_crcs)
{
	struct gpt_layout l;
	uint8_t code[GPT_MBR_CODE_SIZE];
	memset(code, 0xab, sizeof code);
	const char *disk = make_disk(&l, code, 0);
	uint8_t mbr[512], hdr[512], bak[512], array[GPT_ARRAY_SECTORS * GPT_SECTOR];
	read_at(disk, 0, mbr, sizeof mbr);
	CHECK(mbr[0] == 0xab && mbr[439] == 0xab && mbr[510] == 0x55 && mbr[511] == 0xaa);
	CHECK(mbr[446 + 4] == 0xee && get32(mbr + 446 + 8) == 1 && get32(mbr + 446 + 12) == DISK_SECTORS - 1);

	read_at(disk, 512, hdr, sizeof hdr);
	CHECK(memcmp(hdr, "EFI PART", 8) == 0);
	uint32_t crc = get32(hdr + 16);
	memset(hdr + 16, 0, 4);
	CHECK_EQ_INT(gpt_crc32(hdr, 92), crc);
	CHECK_EQ_INT(get64(hdr + 24), 1);
	CHECK_EQ_INT(get64(hdr + 32), DISK_SECTORS - 1);
	CHECK_EQ_INT(get64(hdr + 72), 2);
	read_at(disk, 2 * 512, array, sizeof array);
	CHECK_EQ_INT(gpt_crc32(array, sizeof array), get32(hdr + 88));
	CHECK(memcmp(array + 56, "c\0u\0b\0e\0o\0s\0-\0e\0s\0p\0\0\0", 22) == 0);
	CHECK_EQ_INT(get64(array + 48), GPT_ATTR_LEGACY_BOOT);
	CHECK(memcmp(array + 16, l.parts[0].guid.b, 16) == 0);

	read_at(disk, (DISK_SECTORS - 1) * 512, bak, sizeof bak);
	CHECK(memcmp(bak, "EFI PART", 8) == 0);
	CHECK_EQ_INT(get64(bak + 24), DISK_SECTORS - 1);
	CHECK_EQ_INT(get64(bak + 32), 1);
	CHECK_EQ_INT(get64(bak + 72), DISK_SECTORS - 33);
	read_at(disk, (DISK_SECTORS - 33) * 512, array, sizeof array);
	CHECK_EQ_INT(gpt_crc32(array, sizeof array), get32(bak + 88));
	remove_disk(disk);
}

TEST(sgdisk_verifies_the_written_table)
{
	if (!run("command -v sgdisk || ls /sbin/sgdisk /usr/sbin/sgdisk")) {
		fprintf(stderr, "test_gpt: sgdisk missing (make deps: gdisk), skipping its check\n");
		return;
	}
	struct gpt_layout l;
	uint8_t code[GPT_MBR_CODE_SIZE] = {0};
	const char *disk = make_disk(&l, code, 0);
	char cmd[512], guid[37];
	snprintf(cmd, sizeof cmd, "PATH=$PATH:/sbin:/usr/sbin sgdisk --verify %s 2>&1", disk);
	const char *out = run(cmd);
	CHECK(out && strstr(out, "No problems found") != NULL);
	if (out && !strstr(out, "No problems found"))
		fprintf(stderr, "sgdisk --verify said: %s\n", out);

	snprintf(cmd, sizeof cmd, "PATH=$PATH:/sbin:/usr/sbin sgdisk --info=1 %s 2>&1", disk);
	out = run(cmd);
	CHECK(out && strstr(out, "Partition GUID code: C12A7328-F81F-11D2-BA4B-00A0C93EC93B (EFI system partition)"));
	CHECK(out && strstr(out, "First sector: 2048 "));
	CHECK(out && strstr(out, "Last sector: 264191 "));
	CHECK(out && strstr(out, "Attribute flags: 0000000000000004"));
	CHECK(out && strstr(out, "Partition name: 'cubeos-esp'"));
	gpt_guid_format(&l.parts[0].guid, guid);
	CHECK(out && strstr(out, guid));

	snprintf(cmd, sizeof cmd, "PATH=$PATH:/sbin:/usr/sbin sgdisk --info=2 %s 2>&1", disk);
	out = run(cmd);
	CHECK(out && strstr(out, "0FC63DAF-8483-4772-8E79-3D69D8477DE4 (Linux filesystem)"));
	CHECK(out && strstr(out, "First sector: 264192 "));
	CHECK(out && strstr(out, "Partition name: 'cubeos-data'"));

	snprintf(cmd, sizeof cmd, "PATH=$PATH:/sbin:/usr/sbin sgdisk --print %s 2>&1", disk);
	out = run(cmd);
	gpt_guid_format(&l.disk_guid, guid);
	CHECK(out && strstr(out, guid));
	remove_disk(disk);
}

TEST(sgdisk_verifies_a_table_with_templates)
{
	if (!run("command -v sgdisk || ls /sbin/sgdisk /usr/sbin/sgdisk"))
		return; /* said once by the test above */
	struct gpt_layout l;
	uint8_t code[GPT_MBR_CODE_SIZE] = {0};
	const char *disk = make_disk(&l, code, 1061);
	char cmd[512], want[64];
	snprintf(cmd, sizeof cmd, "PATH=$PATH:/sbin:/usr/sbin sgdisk --verify %s 2>&1", disk);
	const char *out = run(cmd);
	CHECK(out && strstr(out, "No problems found") != NULL);
	if (out && !strstr(out, "No problems found"))
		fprintf(stderr, "sgdisk --verify said: %s\n", out);
	snprintf(cmd, sizeof cmd, "PATH=$PATH:/sbin:/usr/sbin sgdisk --info=3 %s 2>&1", disk);
	out = run(cmd);
	CHECK(out && strstr(out, "0FC63DAF-8483-4772-8E79-3D69D8477DE4 (Linux filesystem)"));
	CHECK(out && strstr(out, "Partition name: 'cubeos-templates'"));
	snprintf(want, sizeof want, "First sector: %llu ", (unsigned long long)l.parts[2].first_lba);
	CHECK(out && strstr(out, want));
	CHECK(out && strstr(out, "(1.0 GiB)"));
	snprintf(cmd, sizeof cmd, "PATH=$PATH:/sbin:/usr/sbin sgdisk --info=2 %s 2>&1", disk);
	out = run(cmd);
	snprintf(want, sizeof want, "Last sector: %llu ", (unsigned long long)l.parts[1].last_lba);
	CHECK(out && strstr(out, "First sector: 264192 ") && strstr(out, want));
	remove_disk(disk);
}
