/*
 * snapshot.h - save a paused VM to a directory, and restore one from it.
 *
 *   dir/memory  guest RAM, byte for byte (mem.size bytes; all-zero pages are
 *               holes). A restore maps it MAP_PRIVATE, so every clone shares
 *               the page cache and copies only the pages it writes.
 *   dir/state   the state file (snapfile.h): SNAP_CONFIG, SNAP_VM, one
 *               SNAP_VCPU per vCPU, one SNAP_DEVICE per device. Written
 *               last, atomically: a directory without it is no snapshot.
 *
 * Restore, in a new process:
 *
 *   snapshot_load_config(dir, &cfg)       validate the state file, get the config
 *   fd = snapshot_open_memory(dir, cfg.mem_bytes)
 *   vm_init(vm, &cfg, loop, fd)           (no boot)
 *   create the same devices in the same order
 *   snapshot_restore(vm, dir)             KVM state, then devices
 *   vm_start_vcpus(vm)
 *
 * Every function returns 0 (or an fd) on success; on failure a message in
 * err and one of the codes below, so the caller can exit with
 * VMM_EXIT_BAD_SNAPSHOT for a snapshot that is truncated, corrupt, of
 * another version or does not match the VM, and VMM_EXIT_HOST for anything
 * the host got wrong (I/O errors, KVM refusing state).
 */
#ifndef CUBE_VMM_SNAPSHOT_H
#define CUBE_VMM_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "vmm.h"

#define SNAPSHOT_ERR_HOST -1 /* host error: I/O, out of memory, a KVM ioctl failed */
#define SNAPSHOT_ERR_BAD  -2 /* the snapshot itself is bad or does not fit this VM */

#define SNAPSHOT_MEMORY_FILE "memory"
#define SNAPSHOT_STATE_FILE  "state"

/* Layout versions of the payloads this file owns (each payload starts with one). */
#define SNAPSHOT_CONFIG_LAYOUT 1
#define SNAPSHOT_VM_LAYOUT     1
#define SNAPSHOT_VCPU_LAYOUT   1
#define SNAPSHOT_DEVICE_LAYOUT 1

/* Precondition: the VM is paused (every vCPU out of KVM_RUN, devices
 * paused) and nothing else touches it. Creates dir if needed. Returns 0 or
 * SNAPSHOT_ERR_HOST. */
int snapshot_save(struct vm *vm, const char *dir, char *err, size_t errsz);

/* Reads and validates dir/state and fills cfg (free with vm_config_free). */
int snapshot_load_config(const char *dir, struct vm_config *cfg, char *err, size_t errsz);

/* Opens dir/memory read-only and checks it holds exactly mem_bytes. Returns
 * the fd (the caller owns it), SNAPSHOT_ERR_BAD or SNAPSHOT_ERR_HOST. */
int snapshot_open_memory(const char *dir, uint64_t mem_bytes, char *err, size_t errsz);

/* After vm_init with the memory fd and after the devices were created:
 * checks vCPU count, RAM size and device list against the snapshot, then
 * restores VM-wide state, each vCPU, the clock, each device's load() and
 * finally each device's restored(). */
int snapshot_restore(struct vm *vm, const char *dir, char *err, size_t errsz);

struct snap_r;
/* Decodes every section of an opened state file without touching KVM:
 * layouts, blob sizes, indices, the configuration. 0 or SNAPSHOT_ERR_BAD.
 * snapshot_restore runs it first; the fuzzer runs it on every input. */
int snapshot_validate(const struct snap_r *r, char *err, size_t errsz);

#endif
