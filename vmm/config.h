/*
 * config.h - struct vm_config <-> JSON, for the snapshot's SNAP_CONFIG
 * section (and anyone who wants to print a configuration).
 *
 *   {"kernel":"/k/vmlinux","initrd":null,"cmdline":"quiet","vcpus":2,
 *    "mem_bytes":268435456,
 *    "disks":[{"base":"/img/rootfs.ext4","layer":null,"lower":[],"read_only":false}],
 *    "nics":[{"tap_name":"tap0","mac":"52:54:00:12:34:56"}],
 *    "vsock":{"guest_cid":3,"uds_path":"/run/v.sock"},   (null: no vsock)
 *    "serial_out":"stdio","control_path":null,"id":"i1a2b3","no_irqchip":false}
 *
 * File descriptors (tap_fd) are never written and read back as -1. Host
 * paths are kept; the caller decides which a restore overrides. The reader
 * is strict: unknown or mistyped members, out-of-range numbers and too many
 * disks, NICs or layers are errors that name the member.
 */
#ifndef CUBE_VMM_CONFIG_H
#define CUBE_VMM_CONFIG_H

#include <stddef.h>

#include "../lib/buf.h"
#include "vmm.h"

struct jw;

#define VM_CONFIG_MAX_MEM (1ULL << 40) /* 1 TiB: far above any sandbox, catches unit mistakes */

/* Appends cfg as one JSON object to out. 0 (cannot fail today). */
int vm_config_to_json(const struct vm_config *cfg, struct buf *out);
/* Writes cfg's members into an object the caller has opened, so a caller can
 * add its own (the snapshot adds "devices"). */
void vm_config_write_members(const struct vm_config *cfg, struct jw *w);
/* Fills cfg (overwritten; free it with vm_config_free) from json[0..len).
 * Accepts an optional "devices" array of strings (written by snapshots, for
 * people reading the state file) and ignores it. -1 with a message in err;
 * cfg is then left empty. */
int vm_config_from_json(const char *json, size_t len, struct vm_config *cfg, char *err, size_t errsz);
/* Frees the strings and empties cfg (tap_fds become -1). */
void vm_config_free(struct vm_config *cfg);

#endif
