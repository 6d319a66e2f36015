/*
 * gpt.c - a fresh GUID partition table for `install` (see gpt.h).
 *
 * Every multi-byte field is written little-endian byte by byte, so the
 * result does not depend on the host, and the whole table is built in memory
 * before the first write.
 */
#include "gpt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../lib/le.h"

#define GPT_HEADER_SIZE 92
#define GPT_REVISION	0x00010000u
#define GPT_ALIGN	2048 /* 1 MiB in sectors: where every tool starts partitions */
#define MBR_PART_OFFSET 446
#define MBR_TYPE_GPT	0xee
#define MIB_SECTORS	(1024 * 1024 / GPT_SECTOR)

uint32_t gpt_crc32(const void *data, size_t n)
{
	/* Bitwise: the table is a few KiB of code for a few KiB of data. */
	const uint8_t *p = data;
	uint32_t crc = 0xffffffffu;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
	}
	return ~crc;
}

uint64_t gpt_first_usable(void)
{
	return 2 + GPT_ARRAY_SECTORS; /* MBR, header, entries */
}

uint64_t gpt_last_usable(uint64_t sectors)
{
	return sectors - 2 - GPT_ARRAY_SECTORS; /* backup entries and header at the end */
}

/* --- GUIDs --------------------------------------------------------------------- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Text order -> on-disk order: the first three groups are stored
 * little-endian (mixed-endian, as the specification says). */
static const int guid_byte_order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};

int gpt_guid_parse(const char *text, struct gpt_guid *out)
{
	uint8_t raw[16];
	size_t n = 0;
	for (size_t i = 0; text[i]; i++) {
		bool dash_here = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash_here) {
			if (text[i] != '-')
				return -1;
			continue;
		}
		int hi = hex_digit(text[i]), lo = text[i + 1] ? hex_digit(text[i + 1]) : -1;
		if (hi < 0 || lo < 0 || n == 16)
			return -1;
		raw[n++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	if (n != 16 || strlen(text) != 36)
		return -1;
	for (int i = 0; i < 16; i++)
		out->b[guid_byte_order[i]] = raw[i];
	return 0;
}

void gpt_guid_format(const struct gpt_guid *g, char out[37])
{
	char *p = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		p += sprintf(p, "%02X", g->b[guid_byte_order[i]]);
	}
}

int gpt_guid_random(struct gpt_guid *out)
{
	uint8_t raw[16];
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return -1;
	raw[6] = (uint8_t)((raw[6] & 0x0f) | 0x40); /* version 4 */
	raw[8] = (uint8_t)((raw[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	for (int i = 0; i < 16; i++)
		out->b[guid_byte_order[i]] = raw[i];
	return 0;
}

/* --- layout -------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	errno = EINVAL;
	return -1;
}

static int add_part(struct gpt_layout *l, const char *name, const char *type, uint64_t first, uint64_t last,
		    uint64_t attributes)
{
	struct gpt_part *p = &l->parts[l->nparts++];
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "%s", name);
	p->first_lba = first;
	p->last_lba = last;
	p->attributes = attributes;
	if (gpt_guid_parse(type, &p->type) < 0 || gpt_guid_random(&p->guid) < 0)
		return -1;
	return 0;
}

/* Partition 3 goes last and ends on a 1 MiB boundary below the backup GPT
 * (as image/mkimage.sh places it), so the data partition keeps number 2 and
 * its start whether or not the disk has templates. */
static uint64_t templates_first_lba(uint64_t sectors, uint64_t templates_mib)
{
	uint64_t end = gpt_last_usable(sectors) + 1, size = templates_mib * MIB_SECTORS;
	return end < size ? 0 : (end - size) / GPT_ALIGN * GPT_ALIGN;
}

int gpt_layout_cubeos(struct gpt_layout *l, uint64_t sectors, uint64_t esp_mib, uint64_t min_data_mib,
		      uint64_t templates_mib, char *err, size_t errlen)
{
	memset(l, 0, sizeof *l);
	l->sectors = sectors;
	uint64_t esp_first = GPT_ALIGN, esp_last = esp_first + esp_mib * MIB_SECTORS - 1;
	uint64_t data_first = esp_last + 1;
	/* Room for the ESP, the data minimum and the templates, plus the
	 * alignment the templates may lose and the backup GPT. */
	uint64_t need = data_first + (min_data_mib + templates_mib) * MIB_SECTORS + (templates_mib ? GPT_ALIGN : 0) +
			1 + GPT_ARRAY_SECTORS + 1;
	if (sectors < need) {
		snprintf(err, errlen, "the disk is too small: %llu MiB; CubeOS needs at least %llu MiB%s",
			 (unsigned long long)(sectors / MIB_SECTORS),
			 (unsigned long long)(1 + esp_mib + min_data_mib + templates_mib + (templates_mib ? 1 : 0) + 1),
			 templates_mib ? " (with its templates)" : "");
		errno = ENOSPC;
		return -1;
	}
	uint64_t templates_first = templates_mib ? templates_first_lba(sectors, templates_mib) : 0;
	uint64_t data_last = templates_mib ? templates_first - 1 : gpt_last_usable(sectors);
	if (gpt_guid_random(&l->disk_guid) < 0 ||
	    add_part(l, "cubeos-esp", GPT_TYPE_ESP, esp_first, esp_last, GPT_ATTR_LEGACY_BOOT) < 0 ||
	    add_part(l, "cubeos-data", GPT_TYPE_LINUX_FS, data_first, data_last, 0) < 0 ||
	    (templates_mib && add_part(l, "cubeos-templates", GPT_TYPE_LINUX_FS, templates_first,
				       templates_first + templates_mib * MIB_SECTORS - 1, 0) < 0)) {
		snprintf(err, errlen, "no random numbers for the GUIDs: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int gpt_layout_check(const struct gpt_layout *l, char *err, size_t errlen)
{
	if (l->sectors < gpt_first_usable() + 2 + GPT_ARRAY_SECTORS)
		return fail(err, errlen, "the disk is too small for a GPT");
	if (l->nparts > GPT_MAX_PARTS)
		return fail(err, errlen, "too many partitions");
	for (size_t i = 0; i < l->nparts; i++) {
		const struct gpt_part *p = &l->parts[i];
		if (p->first_lba < gpt_first_usable() || p->last_lba > gpt_last_usable(l->sectors) ||
		    p->first_lba > p->last_lba)
			return fail(err, errlen, "a partition lies outside the usable sectors");
		for (size_t j = 0; j < i; j++)
			if (p->first_lba <= l->parts[j].last_lba && l->parts[j].first_lba <= p->last_lba)
				return fail(err, errlen, "partitions overlap");
		for (const char *c = p->name; *c; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
				return fail(err, errlen, "a partition name is not printable ASCII");
	}
	return 0;
}

/* --- on-disk structures ------------------------------------------------------- */

static void build_entries(const struct gpt_layout *l, uint8_t *array)
{
	memset(array, 0, GPT_ARRAY_SECTORS * GPT_SECTOR);
	for (size_t i = 0; i < l->nparts; i++) {
		const struct gpt_part *p = &l->parts[i];
		uint8_t *e = array + i * GPT_ENTRY_SIZE;
		memcpy(e, p->type.b, 16);
		memcpy(e + 16, p->guid.b, 16);
		put_le64(e + 32, p->first_lba);
		put_le64(e + 40, p->last_lba);
		put_le64(e + 48, p->attributes);
		for (size_t c = 0; p->name[c] && c < GPT_NAME_MAX; c++)
			put_le16(e + 56 + 2 * c, (uint8_t)p->name[c]); /* ASCII is UTF-16LE with a zero high byte */
	}
}

static void build_header(const struct gpt_layout *l, uint8_t *sector, uint64_t my_lba, uint64_t other_lba,
			 uint64_t entries_lba, uint32_t entries_crc)
{
	memset(sector, 0, GPT_SECTOR);
	memcpy(sector, "EFI PART", 8);
	put_le32(sector + 8, GPT_REVISION);
	put_le32(sector + 12, GPT_HEADER_SIZE);
	put_le64(sector + 24, my_lba);
	put_le64(sector + 32, other_lba);
	put_le64(sector + 40, gpt_first_usable());
	put_le64(sector + 48, gpt_last_usable(l->sectors));
	memcpy(sector + 56, l->disk_guid.b, 16);
	put_le64(sector + 72, entries_lba);
	put_le32(sector + 80, GPT_ENTRIES);
	put_le32(sector + 84, GPT_ENTRY_SIZE);
	put_le32(sector + 88, entries_crc);
	put_le32(sector + 16, gpt_crc32(sector, GPT_HEADER_SIZE)); /* computed with its own field zero */
}

/* One partition of type 0xEE covering the disk (up to what 32 bits hold), so
 * MBR-only tools see the disk as in use. Not marked active, as the UEFI
 * specification asks; gptmbr.bin does not need it. */
static void build_protective_mbr(const struct gpt_layout *l, uint8_t *sector, const uint8_t *code)
{
	memset(sector, 0, GPT_SECTOR);
	if (code)
		memcpy(sector, code, GPT_MBR_CODE_SIZE);
	uint8_t *pe = sector + MBR_PART_OFFSET;
	uint64_t size = l->sectors - 1;
	pe[1] = 0x00, pe[2] = 0x02, pe[3] = 0x00; /* CHS of LBA 1 */
	pe[4] = MBR_TYPE_GPT;
	pe[5] = 0xff, pe[6] = 0xff, pe[7] = 0xff; /* CHS: beyond what CHS can say */
	put_le32(pe + 8, 1);
	put_le32(pe + 12, size > 0xffffffffu ? 0xffffffffu : (uint32_t)size);
	sector[510] = 0x55;
	sector[511] = 0xaa;
}

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t offset)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)offset);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w, n -= (size_t)w, offset += (uint64_t)w;
	}
	return 0;
}

int gpt_write(int fd, const struct gpt_layout *l, const uint8_t *mbr_code)
{
	char err[128];
	if (gpt_layout_check(l, err, sizeof err) < 0)
		return -1;
	static uint8_t array[GPT_ARRAY_SECTORS * GPT_SECTOR];
	uint8_t mbr[GPT_SECTOR], primary[GPT_SECTOR], backup[GPT_SECTOR];
	build_entries(l, array);
	uint32_t entries_crc = gpt_crc32(array, sizeof array);
	uint64_t last = l->sectors - 1, backup_entries = last - GPT_ARRAY_SECTORS;
	build_header(l, primary, 1, last, 2, entries_crc);
	build_header(l, backup, last, 1, backup_entries, entries_crc);
	build_protective_mbr(l, mbr, mbr_code);
	/* Backup first, primary last: a disk interrupted half-way has no valid
	 * primary header rather than one that points at garbage. */
	if (pwrite_all(fd, array, sizeof array, backup_entries * GPT_SECTOR) < 0 ||
	    pwrite_all(fd, backup, GPT_SECTOR, last * GPT_SECTOR) < 0 ||
	    pwrite_all(fd, array, sizeof array, 2 * GPT_SECTOR) < 0 || pwrite_all(fd, mbr, GPT_SECTOR, 0) < 0 ||
	    pwrite_all(fd, primary, GPT_SECTOR, GPT_SECTOR) < 0)
		return -1;
	return 0;
}
