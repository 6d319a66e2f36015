/*
 * gpt.h - writes a GUID partition table (UEFI specification, chapter 5) onto
 * a disk or an image file: the protective MBR (with boot code), the primary
 * header and entry array at LBA 1-33, and the backup copies at the end.
 *
 * Only what `install` needs: a fresh table from a layout, never an edit of an
 * existing one, and 512-byte logical sectors.
 */
#ifndef CUBEOS_GPT_H
#define CUBEOS_GPT_H

#include <stddef.h>
#include <stdint.h>

#define GPT_SECTOR	     512
#define GPT_ENTRIES	     128 /* the usual array: 128 entries of 128 bytes = 32 sectors */
#define GPT_ENTRY_SIZE	     128
#define GPT_ARRAY_SECTORS    (GPT_ENTRIES * GPT_ENTRY_SIZE / GPT_SECTOR)
#define GPT_NAME_MAX	     36 /* UTF-16 code units in an entry's name */
#define GPT_MAX_PARTS	     4
#define GPT_MBR_CODE_SIZE    440	 /* boot code before the disk signature */
#define GPT_ATTR_LEGACY_BOOT (1ull << 2) /* "legacy BIOS bootable": what gptmbr.bin looks for */

/* Partition type GUIDs, in text form (sgdisk's ef00 and 8300). */
#define GPT_TYPE_ESP	  "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
#define GPT_TYPE_LINUX_FS "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

/* A GUID as stored on disk (the first three fields little-endian). */
struct gpt_guid {
	uint8_t b[16];
};

struct gpt_part {
	char name[GPT_NAME_MAX + 1]; /* ASCII */
	struct gpt_guid type, guid;
	uint64_t first_lba, last_lba; /* inclusive */
	uint64_t attributes;
};

struct gpt_layout {
	uint64_t sectors; /* the whole disk */
	struct gpt_guid disk_guid;
	struct gpt_part parts[GPT_MAX_PARTS];
	size_t nparts;
};

/* The first and last LBA partitions may use on a disk of `sectors`. */
uint64_t gpt_first_usable(void);
uint64_t gpt_last_usable(uint64_t sectors);

/* "C12A7328-F81F-..." -> on-disk bytes; -1 if malformed. */
int gpt_guid_parse(const char *text, struct gpt_guid *out);
/* On-disk bytes -> "C12A7328-F81F-..." (37 bytes with the NUL). */
void gpt_guid_format(const struct gpt_guid *g, char out[37]);
/* A random (version 4) GUID from getrandom(); -1 if no randomness. */
int gpt_guid_random(struct gpt_guid *out);

/* The CRC-32 GPT uses (IEEE 802.3, as zlib's crc32()). */
uint32_t gpt_crc32(const void *data, size_t n);

/* The CubeOS disk: partition 1 "cubeos-esp" (EFI system, legacy-BIOS
 * bootable) at LBA 2048 of esp_mib MiB, partition 2 "cubeos-data" (Linux
 * filesystem) to the end, or, if templates_mib is not 0, up to partition 3
 * "cubeos-templates" (Linux filesystem) of templates_mib MiB at the end of
 * the disk, 1 MiB aligned; fresh random GUIDs. -1 with a reason in err if
 * the disk is too small (it needs min_data_mib MiB for data). */
int gpt_layout_cubeos(struct gpt_layout *l, uint64_t sectors, uint64_t esp_mib, uint64_t min_data_mib,
		      uint64_t templates_mib, char *err, size_t errlen);

/* Checks a layout: partitions inside the usable area, not overlapping, named
 * in ASCII. -1 with a reason in err. */
int gpt_layout_check(const struct gpt_layout *l, char *err, size_t errlen);

/* Writes the protective MBR (boot code: GPT_MBR_CODE_SIZE bytes, or NULL for
 * none), the primary GPT and the backup GPT of a checked layout to fd. Does
 * not fsync. -1 with errno set (EINVAL for a bad layout). */
int gpt_write(int fd, const struct gpt_layout *l, const uint8_t *mbr_code);

#endif
