/*
 * boot.h - 64-bit direct boot of an ELF vmlinux (Linux boot protocol,
 * "64-bit boot protocol" in Documentation/x86/boot.rst).
 *
 * Where the boot structures go in guest physical memory:
 *
 *   0x00000500  GDT: null, code 0x08 (64-bit), data 0x10, TSS 0x18
 *   0x00007000  zero page (struct boot_params, with the e820 table)
 *   0x00009000  PML4
 *   0x0000a000  PDPT
 *   0x0000b000  four page directories, 2 MiB pages: identity map of 0..4 GiB
 *   0x00020000  kernel command line (BOOT_CMDLINE_MAX bytes)
 *   0x0009fc00  EBDA: MP floating pointer, then the MP configuration table
 *   0x000a0000  legacy VGA/ROM hole up to 1 MiB (reserved in e820)
 *   0x01000000  the kernel, where its PT_LOAD p_paddr put it (>= 1 MiB)
 *   top of RAM  initrd, page aligned, below 2 GiB and the MMIO hole
 */
#ifndef CUBE_VMM_BOOT_H
#define CUBE_VMM_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "vmm.h"

#define BOOT_GDT_ADDR	  0x500ULL
#define BOOT_ZERO_PAGE	  0x7000ULL
#define BOOT_PML4	  0x9000ULL
#define BOOT_PDPT	  0xa000ULL
#define BOOT_PD		  0xb000ULL /* 4 pages */
#define BOOT_CMDLINE	  0x20000ULL
#define BOOT_CMDLINE_MAX  4096ULL
#define BOOT_EBDA	  0x9fc00ULL
#define BOOT_LEGACY_HOLE  0xa0000ULL
#define BOOT_HIGH_MEMORY  0x100000ULL	/* 1 MiB: nothing of the kernel below */
#define BOOT_INITRD_MAX	  0x80000000ULL /* initrd ends below 2 GiB (initrd_addr_max 0x7fffffff) */
#define BOOT_IDENTITY_MAP 0x100000000ULL

#define BOOT_GDT_CODE 0x08
#define BOOT_GDT_DATA 0x10
#define BOOT_GDT_TSS  0x18

/* One e820 entry (type 1 = RAM, 2 = reserved). */
struct boot_e820 {
	uint64_t addr, size;
	uint32_t type;
};
#define BOOT_E820_RAM	   1
#define BOOT_E820_RESERVED 2

/* Builds the e820 map of RAM: below the EBDA, 1 MiB..the end of low RAM,
 * and high RAM above 4 GiB. Returns the number of entries. */
int boot_build_e820(const struct guest_mem *m, struct boot_e820 *out, int max);

/* Writes the MP floating pointer and configuration table at BOOT_EBDA.
 * Returns the bytes used, or -1 if it does not fit. */
int boot_build_mptable(struct guest_mem *m, int nr_vcpus);

/* GDT at BOOT_GDT_ADDR and identity page tables at BOOT_PML4.. */
int boot_build_gdt(struct guest_mem *m);
int boot_build_page_tables(struct guest_mem *m);

/* What boot_check_elf learned from a valid vmlinux. */
struct boot_elf {
	uint64_t entry;	     /* guest physical entry point */
	uint64_t load_start; /* lowest p_paddr of a PT_LOAD */
	uint64_t load_end;   /* highest p_paddr + p_memsz */
};
/* Validates an ELF image against guest RAM: ELF64, little-endian, x86-64,
 * executable, sane program headers, every PT_LOAD within RAM at or above
 * BOOT_HIGH_MEMORY and within the file, entry inside a loaded segment. */
int boot_check_elf(const void *img, size_t len, const struct guest_mem *m, struct boot_elf *out, char *err,
		   size_t errsz);
/* Validates, then copies the segments (and zeroes their bss). */
int boot_load_elf(struct guest_mem *m, const void *img, size_t len, struct boot_elf *out, char *err, size_t errsz);

/* Picks the initrd's address: page aligned, as high as possible below low
 * RAM's end and BOOT_INITRD_MAX, above kernel_end. -1 if it cannot fit. */
int boot_place_initrd(const struct guest_mem *m, uint64_t kernel_end, uint64_t size, uint64_t *gpa);

/* Writes the command line and the zero page (setup header + e820). */
int boot_build_zero_page(struct guest_mem *m, const char *cmdline, uint64_t initrd_gpa, uint64_t initrd_size, char *err,
			 size_t errsz);

/* Appends every vm->mmio_cmdline fragment to base; returns a malloc'd string. */
char *boot_full_cmdline(const struct vm *vm, const char *base);

/* The whole boot: loads vm->cfg->kernel and initrd, writes every boot
 * structure, sets up every vCPU (MSRs, LAPIC, FPU) and the BSP's registers
 * for the 64-bit entry. cmdline is the caller's part of the command line. */
int boot_linux(struct vm *vm, const char *cmdline, char *err, size_t errsz);

#endif
