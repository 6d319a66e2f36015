/*
 * isomedium.h - the CubeOS ISO (image/mkiso.sh) as a block device: a CD or
 * DVD drive, or a USB stick the ISO was written to raw. Two users:
 *
 *   `install DISK` (cmd_install.c) takes its install source (boot/esp.img)
 *   and the templates (boot/templates.img) from it;
 *   a live boot from it (templates_mount, mount.c) loop-mounts
 *   boot/templates.img read-only on the templates directory.
 *
 * The medium is recognised by its ISO 9660 volume ID, nothing else: only
 * the primary volume descriptor is read before a device is mounted.
 */
#ifndef CUBEOS_ISOMEDIUM_H
#define CUBEOS_ISOMEDIUM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define ISOMEDIUM_VOLUME    "CUBEOS"		 /* image/mkiso.sh's volume ID */
#define ISOMEDIUM_ESP	    "boot/esp.img"	 /* the install source, inside the ISO */
#define ISOMEDIUM_TEMPLATES "boot/templates.img" /* image/mktemplates.sh's ext4 image */

/* True if dev holds an ISO 9660 volume named ISOMEDIUM_VOLUME. An empty
 * drive or an unreadable device is simply not ours. */
bool isomedium_is_cubeos(const char *dev);

/* Calls fn for every whole disk in <sysfs>/block holding the CubeOS ISO
 * (dev: "/dev/sr0", disk: its device number), until fn returns 0. Returns 0
 * if some fn returned 0, -1 if none did (or no medium was found). */
int isomedium_each(const char *sysfs, int (*fn)(const char *dev, dev_t disk, void *ctx), void *ctx);

/* Mounts the medium's ISO 9660 read-only (nosuid, nodev, noexec) on dir,
 * creating dir. -1 with errno set. */
int isomedium_mount(const char *dev, const char *dir);

/* A live boot's templates: waits up to wait_ms for the CubeOS ISO, mounts
 * it, loop-mounts its ISOMEDIUM_TEMPLATES read-only (ext4) on target and
 * lets go of the ISO's own mount (the loop device keeps it open). Returns 1
 * (what: "/dev/loop0 (boot/templates.img on /dev/sr0)"), 0 if no medium
 * appeared or it has no templates (what says which), -1 on an error (what
 * says it). */
int isomedium_templates_mount(const char *target, unsigned wait_ms, char *what, size_t whatsz);

#endif
