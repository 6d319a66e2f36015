/*
 * dev.h - the legacy devices every guest gets: the 8250 console UART and
 * a minimal i8042 (reset line), plus quiet stubs for ports Linux probes.
 */
#ifndef CUBE_VMM_DEV_H
#define CUBE_VMM_DEV_H

#include <stddef.h>

#include "../vmm.h"

/* COM1 at SERIAL_COM1_PORT, IRQ SERIAL_COM1_IRQ. out: a file path,
 * "stdio", "pty" (prints the pty's path on stdout) or NULL/"none"
 * (discard). Input comes from stdin ("stdio") or the pty, read on the
 * loop thread. Registers itself as a vm_device ("serial"). */
int serial_create(struct vm *vm, const char *out, char *err, size_t errsz);

/* i8042 at 0x60/0x64 (0xFE to 0x64 resets: the VM ends with VMM_EXIT_OK),
 * port 0x61, and silent stand-ins for POST (0x80), CMOS (0x70/0x71), PCI
 * configuration (0xcf8..0xcff) and absent COM2-4. */
int i8042_create(struct vm *vm, char *err, size_t errsz);

#endif
