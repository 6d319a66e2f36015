/*
 * boot.c - loads an ELF vmlinux and builds what the 64-bit Linux boot
 * protocol expects: zero page, command line, e820, MP table, GDT, identity
 * page tables and the BSP's long-mode register set. See boot.h for where
 * each structure lives.
 *
 * The builders write through gpa_ptr into a struct guest_mem only, so the
 * unit tests run them against malloc'd memory without KVM.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/le.h"
#include "../lib/log.h"
#include "boot.h"
#include "cpu.h"

/* --- stores into guest memory (wider ones: lib/le.h) ---------------------- */

static void put8(uint8_t *p, uint8_t v)
{
	p[0] = v;
}

/* --- e820 --------------------------------------------------------------- */

static int e820_add(struct boot_e820 *out, int n, int max, uint64_t addr, uint64_t size, uint32_t type)
{
	if (size == 0 || n >= max)
		return n;
	out[n] = (struct boot_e820){.addr = addr, .size = size, .type = type};
	return n + 1;
}

int boot_build_e820(const struct guest_mem *m, struct boot_e820 *out, int max)
{
	int n = 0;
	n = e820_add(out, n, max, 0, BOOT_EBDA, BOOT_E820_RAM);
	n = e820_add(out, n, max, BOOT_EBDA, BOOT_HIGH_MEMORY - BOOT_EBDA, BOOT_E820_RESERVED);
	if (m->low_size > BOOT_HIGH_MEMORY)
		n = e820_add(out, n, max, BOOT_HIGH_MEMORY, m->low_size - BOOT_HIGH_MEMORY, BOOT_E820_RAM);
	n = e820_add(out, n, max, GUEST_HIGH_RAM, m->high_size, BOOT_E820_RAM);
	return n;
}

/* --- MP table (Intel MultiProcessor Specification 1.4) --------------------- */

#define MP_SPEC_REV	 4
#define MP_FLOAT_LEN	 16
#define MP_HEADER_LEN	 44
#define MP_PROC_LEN	 20
#define MP_ENTRY_LEN	 8
#define MP_LAPIC_VERSION 0x14
#define MP_IOAPIC_VER	 0x11
#define MP_IRQS		 24

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_IOINTR = 3, MP_LINTR = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };

static uint8_t mp_checksum(const uint8_t *p, size_t n)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += p[i];
	return (uint8_t)(0x100 - sum);
}

static uint8_t *mp_processor(uint8_t *p, int id)
{
	put8(p, MP_PROCESSOR);
	put8(p + 1, (uint8_t)id); /* local APIC id */
	put8(p + 2, MP_LAPIC_VERSION);
	put8(p + 3, id == 0 ? 0x3 : 0x1);	/* enabled, BSP on vCPU 0 */
	put_le32(p + 4, 0x600);			/* signature: family 6 */
	put_le32(p + 8, (1u << 9) | (1u << 0)); /* features: APIC, FPU */
	return p + MP_PROC_LEN;
}

static uint8_t *mp_intr(uint8_t *p, int kind, int type, int src_irq, int dst_id, int dst_pin)
{
	put8(p, (uint8_t)kind);
	put8(p + 1, (uint8_t)type);
	put_le16(p + 2, 0); /* polarity and trigger: conforming to the bus (ISA: edge, high) */
	put8(p + 4, 0);	    /* source bus: ISA */
	put8(p + 5, (uint8_t)src_irq);
	put8(p + 6, (uint8_t)dst_id);
	put8(p + 7, (uint8_t)dst_pin);
	return p + MP_ENTRY_LEN;
}

static size_t mptable_size(int nr_vcpus)
{
	return MP_FLOAT_LEN + MP_HEADER_LEN + (size_t)nr_vcpus * MP_PROC_LEN + MP_ENTRY_LEN * (2 + MP_IRQS + 2);
}

int boot_build_mptable(struct guest_mem *m, int nr_vcpus)
{
	size_t total = mptable_size(nr_vcpus);
	if (nr_vcpus < 1 || nr_vcpus > VMM_MAX_VCPUS || total > BOOT_LEGACY_HOLE - BOOT_EBDA)
		return -1;
	uint8_t *base = gpa_ptr(m, BOOT_EBDA, total);
	if (!base)
		return -1;
	memset(base, 0, total);
	uint8_t *fp = base, *hdr = base + MP_FLOAT_LEN, *p = hdr + MP_HEADER_LEN;
	int ioapic_id = nr_vcpus; /* the first id after the CPUs' */
	int entries = 0;

	for (int i = 0; i < nr_vcpus; i++, entries++)
		p = mp_processor(p, i);
	put8(p, MP_BUS);
	memcpy(p + 2, "ISA   ", 6);
	p += MP_ENTRY_LEN, entries++;
	put8(p, MP_IOAPIC);
	put8(p + 1, (uint8_t)ioapic_id);
	put8(p + 2, MP_IOAPIC_VER);
	put8(p + 3, 1); /* enabled */
	put_le32(p + 4, (uint32_t)IOAPIC_BASE);
	p += MP_ENTRY_LEN, entries++;
	for (int irq = 0; irq < MP_IRQS; irq++, entries++)
		p = mp_intr(p, MP_IOINTR, MP_INT, irq, ioapic_id, irq);
	p = mp_intr(p, MP_LINTR, MP_EXTINT, 0, 0xff, 0), entries++; /* all LAPICs, LINT0 */
	p = mp_intr(p, MP_LINTR, MP_NMI, 0, 0xff, 1), entries++;    /* all LAPICs, LINT1 */

	size_t table_len = (size_t)(p - hdr);
	memcpy(hdr, "PCMP", 4);
	put_le16(hdr + 4, (uint16_t)table_len);
	put8(hdr + 6, MP_SPEC_REV);
	memcpy(hdr + 8, "CUBEOS  ", 8);
	memcpy(hdr + 16, "CUBE-VMM    ", 12);
	put_le16(hdr + 34, (uint16_t)entries);
	put_le32(hdr + 36, (uint32_t)LAPIC_BASE);
	put8(hdr + 7, mp_checksum(hdr, table_len));

	memcpy(fp, "_MP_", 4);
	put_le32(fp + 4, (uint32_t)(BOOT_EBDA + MP_FLOAT_LEN));
	put8(fp + 8, 1); /* length in 16-byte units */
	put8(fp + 9, MP_SPEC_REV);
	put8(fp + 10, mp_checksum(fp, MP_FLOAT_LEN));
	return (int)total;
}

/* --- GDT and page tables ------------------------------------------------- */

/* A flat segment descriptor: base 0, limit 4 GiB (granular), given the
 * access byte and the flags nibble (G, D/B, L). */
static uint64_t gdt_entry(uint8_t access, uint8_t flags)
{
	uint64_t limit = 0xfffff;
	return (limit & 0xffff) | ((uint64_t)access << 40) | (((limit >> 16) & 0xf) << 48) | ((uint64_t)flags << 52);
}

#define GDT_CODE64_ACCESS 0x9b /* present, code, execute/read, accessed */
#define GDT_DATA_ACCESS	  0x93 /* present, data, read/write, accessed */
#define GDT_TSS_ACCESS	  0x8b /* present, 64-bit TSS (busy) */
#define GDT_FLAGS_CODE64  0xa  /* G, L */
#define GDT_FLAGS_DATA	  0xc  /* G, D/B */
#define GDT_ENTRIES	  5    /* the TSS descriptor takes two slots in long mode */

int boot_build_gdt(struct guest_mem *m)
{
	uint8_t *g = gpa_ptr(m, BOOT_GDT_ADDR, GDT_ENTRIES * 8);
	if (!g)
		return -1;
	memset(g, 0, GDT_ENTRIES * 8);
	put_le64(g + BOOT_GDT_CODE, gdt_entry(GDT_CODE64_ACCESS, GDT_FLAGS_CODE64));
	put_le64(g + BOOT_GDT_DATA, gdt_entry(GDT_DATA_ACCESS, GDT_FLAGS_DATA));
	put_le64(g + BOOT_GDT_TSS, gdt_entry(GDT_TSS_ACCESS, 0x8));
	return 0;
}

#define PTE_PRESENT 0x1ULL
#define PTE_RW	    0x2ULL
#define PTE_PS	    0x80ULL /* 2 MiB page in a page directory */

int boot_build_page_tables(struct guest_mem *m)
{
	uint8_t *pml4 = gpa_ptr(m, BOOT_PML4, 4096);
	uint8_t *pdpt = gpa_ptr(m, BOOT_PDPT, 4096);
	uint8_t *pd = gpa_ptr(m, BOOT_PD, 4 * 4096);
	if (!pml4 || !pdpt || !pd)
		return -1;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	memset(pd, 0, 4 * 4096);
	put_le64(pml4, BOOT_PDPT | PTE_PRESENT | PTE_RW);
	for (uint64_t i = 0; i < 4; i++)
		put_le64(pdpt + i * 8, (BOOT_PD + i * 4096) | PTE_PRESENT | PTE_RW);
	/* 2048 entries of 2 MiB: the first 4 GiB, which holds every boot
	 * structure, the kernel and the initrd. */
	for (uint64_t i = 0; i < 2048; i++)
		put_le64(pd + i * 8, (i << 21) | PTE_PRESENT | PTE_RW | PTE_PS);
	return 0;
}

/* --- ELF ------------------------------------------------------------------ */

static int elf_fail(char *err, size_t errsz, const char *what)
{
	snprintf(err, errsz, "kernel image: %s", what);
	return -1;
}

static int check_ehdr(const Elf64_Ehdr *eh, size_t len, char *err, size_t errsz)
{
	if (len < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		return elf_fail(err, errsz, "not an ELF file (use the uncompressed vmlinux, not a bzImage)");
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB)
		return elf_fail(err, errsz, "not a little-endian ELF64 file");
	if (eh->e_machine != EM_X86_64)
		return elf_fail(err, errsz, "not an x86-64 ELF file");
	if (eh->e_type != ET_EXEC)
		return elf_fail(err, errsz, "not an executable ELF file");
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0)
		return elf_fail(err, errsz, "no usable program headers");
	if (eh->e_phoff > len || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
		return elf_fail(err, errsz, "program headers lie outside the file");
	return 0;
}

static int check_load_segment(const Elf64_Phdr *ph, size_t len, const struct guest_mem *m, char *err, size_t errsz)
{
	if (ph->p_filesz > ph->p_memsz)
		return elf_fail(err, errsz, "a segment's file size exceeds its memory size");
	if (ph->p_offset > len || ph->p_filesz > len - ph->p_offset)
		return elf_fail(err, errsz, "a segment lies outside the file");
	if (ph->p_paddr < BOOT_HIGH_MEMORY)
		return elf_fail(err, errsz, "a segment loads below 1 MiB, over the boot structures");
	if (ph->p_paddr + ph->p_memsz < ph->p_paddr || !gpa_ptr(m, ph->p_paddr, ph->p_memsz))
		return elf_fail(err, errsz, "a segment lies outside guest RAM (more --mem?)");
	return 0;
}

/* The entry point as a physical address: Linux's e_entry already is one
 * (phys_startup_64); a plain ELF gives a virtual one inside a segment. */
static int elf_entry(const Elf64_Ehdr *eh, const Elf64_Phdr *ph, uint64_t *entry)
{
	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && eh->e_entry >= ph[i].p_paddr &&
		    eh->e_entry - ph[i].p_paddr < ph[i].p_memsz) {
			*entry = eh->e_entry;
			return 0;
		}
	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && eh->e_entry >= ph[i].p_vaddr &&
		    eh->e_entry - ph[i].p_vaddr < ph[i].p_memsz) {
			*entry = ph[i].p_paddr + (eh->e_entry - ph[i].p_vaddr);
			return 0;
		}
	return -1;
}

int boot_check_elf(const void *img, size_t len, const struct guest_mem *m, struct boot_elf *out, char *err,
		   size_t errsz)
{
	const Elf64_Ehdr *eh = img;
	if (check_ehdr(eh, len, err, errsz) < 0)
		return -1;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)((const uint8_t *)img + eh->e_phoff);
	out->load_start = UINT64_MAX;
	out->load_end = 0;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (check_load_segment(&ph[i], len, m, err, errsz) < 0)
			return -1;
		if (ph[i].p_paddr < out->load_start)
			out->load_start = ph[i].p_paddr;
		if (ph[i].p_paddr + ph[i].p_memsz > out->load_end)
			out->load_end = ph[i].p_paddr + ph[i].p_memsz;
	}
	if (out->load_end == 0)
		return elf_fail(err, errsz, "no PT_LOAD segment");
	if (elf_entry(eh, ph, &out->entry) < 0)
		return elf_fail(err, errsz, "entry point outside every loaded segment");
	return 0;
}

int boot_load_elf(struct guest_mem *m, const void *img, size_t len, struct boot_elf *out, char *err, size_t errsz)
{
	if (boot_check_elf(img, len, m, out, err, errsz) < 0)
		return -1;
	const Elf64_Ehdr *eh = img;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)((const uint8_t *)img + eh->e_phoff);
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		uint8_t *dst = gpa_ptr(m, ph[i].p_paddr, ph[i].p_memsz); /* checked above */
		memcpy(dst, (const uint8_t *)img + ph[i].p_offset, ph[i].p_filesz);
		memset(dst + ph[i].p_filesz, 0, ph[i].p_memsz - ph[i].p_filesz);
	}
	return 0;
}

/* --- initrd, command line, zero page ---------------------------------------- */

int boot_place_initrd(const struct guest_mem *m, uint64_t kernel_end, uint64_t size, uint64_t *gpa)
{
	uint64_t top = m->low_size < BOOT_INITRD_MAX ? m->low_size : BOOT_INITRD_MAX;
	uint64_t start_min = (kernel_end + 4095) & ~4095ULL;
	if (size > top || top - size < start_min)
		return -1;
	*gpa = (top - size) & ~4095ULL;
	return 0;
}

/* Offsets in struct boot_params (Documentation/x86/zero-page.rst and boot.rst). */
#define ZP_EXT_RAMDISK_IMAGE 0x0c0
#define ZP_EXT_RAMDISK_SIZE  0x0c4
#define ZP_EXT_CMD_LINE_PTR  0x0c8
#define ZP_E820_ENTRIES	     0x1e8
#define ZP_BOOT_FLAG	     0x1fe
#define ZP_HEADER	     0x202
#define ZP_VERSION	     0x206
#define ZP_TYPE_OF_LOADER    0x210
#define ZP_LOADFLAGS	     0x211
#define ZP_RAMDISK_IMAGE     0x218
#define ZP_RAMDISK_SIZE	     0x21c
#define ZP_CMD_LINE_PTR	     0x228
#define ZP_INITRD_ADDR_MAX   0x22c
#define ZP_KERNEL_ALIGNMENT  0x230
#define ZP_CMDLINE_SIZE	     0x238
#define ZP_E820_TABLE	     0x2d0
#define ZP_E820_MAX	     128

#define BOOT_PROTOCOL_VERSION 0x020f
#define LOADER_UNDEFINED      0xff
#define LOADED_HIGH	      0x01
#define KERNEL_ALIGNMENT      0x1000000

int boot_build_zero_page(struct guest_mem *m, const char *cmdline, uint64_t initrd_gpa, uint64_t initrd_size, char *err,
			 size_t errsz)
{
	size_t clen = strlen(cmdline);
	if (clen + 1 > BOOT_CMDLINE_MAX) {
		snprintf(err, errsz, "kernel command line is %zu bytes, the limit is %llu", clen,
			 (unsigned long long)BOOT_CMDLINE_MAX - 1);
		return -1;
	}
	uint8_t *cl = gpa_ptr(m, BOOT_CMDLINE, BOOT_CMDLINE_MAX);
	uint8_t *zp = gpa_ptr(m, BOOT_ZERO_PAGE, 4096);
	if (!cl || !zp) {
		snprintf(err, errsz, "guest RAM too small for the boot structures");
		return -1;
	}
	memset(cl, 0, BOOT_CMDLINE_MAX);
	memcpy(cl, cmdline, clen);
	memset(zp, 0, 4096);

	put_le16(zp + ZP_BOOT_FLAG, 0xaa55);
	put_le32(zp + ZP_HEADER, 0x53726448); /* "HdrS" */
	put_le16(zp + ZP_VERSION, BOOT_PROTOCOL_VERSION);
	put8(zp + ZP_TYPE_OF_LOADER, LOADER_UNDEFINED);
	put8(zp + ZP_LOADFLAGS, LOADED_HIGH);
	put_le32(zp + ZP_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE);
	put_le32(zp + ZP_EXT_CMD_LINE_PTR, (uint32_t)(BOOT_CMDLINE >> 32));
	put_le32(zp + ZP_CMDLINE_SIZE, (uint32_t)(BOOT_CMDLINE_MAX - 1));
	put_le32(zp + ZP_INITRD_ADDR_MAX, (uint32_t)(BOOT_INITRD_MAX - 1));
	put_le32(zp + ZP_KERNEL_ALIGNMENT, KERNEL_ALIGNMENT);
	put_le32(zp + ZP_RAMDISK_IMAGE, (uint32_t)initrd_gpa);
	put_le32(zp + ZP_RAMDISK_SIZE, (uint32_t)initrd_size);
	put_le32(zp + ZP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_gpa >> 32));
	put_le32(zp + ZP_EXT_RAMDISK_SIZE, (uint32_t)(initrd_size >> 32));

	struct boot_e820 e[ZP_E820_MAX];
	int n = boot_build_e820(m, e, ZP_E820_MAX);
	put8(zp + ZP_E820_ENTRIES, (uint8_t)n);
	for (int i = 0; i < n; i++) {
		uint8_t *p = zp + ZP_E820_TABLE + i * 20;
		put_le64(p, e[i].addr);
		put_le64(p + 8, e[i].size);
		put_le32(p + 16, e[i].type);
	}
	return 0;
}

char *boot_full_cmdline(const struct vm *vm, const char *base)
{
	size_t n = strlen(base) + 1;
	for (int i = 0; i < vm->nr_mmio_slots; i++)
		n += strlen(vm->mmio_cmdline[i]) + 1;
	char *s = malloc(n);
	if (!s)
		return NULL;
	strcpy(s, base);
	for (int i = 0; i < vm->nr_mmio_slots; i++) {
		if (*s)
			strcat(s, " ");
		strcat(s, vm->mmio_cmdline[i]);
	}
	return s;
}

/* --- files ------------------------------------------------------------------ */

static void *map_file(const char *path, size_t *len, char *err, size_t errsz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errsz, "open %s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size <= 0) {
		snprintf(err, errsz, "%s: empty or unreadable", path);
		close(fd);
		return NULL;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		snprintf(err, errsz, "mmap %s: %s", path, strerror(errno));
		return NULL;
	}
	*len = (size_t)st.st_size;
	return p;
}

static int load_kernel(struct vm *vm, struct boot_elf *elf, char *err, size_t errsz)
{
	size_t len;
	void *img = map_file(vm->cfg->kernel, &len, err, errsz);
	if (!img)
		return -1;
	int r = boot_load_elf(&vm->mem, img, len, elf, err, errsz);
	munmap(img, len);
	return r;
}

static int load_initrd(struct vm *vm, uint64_t kernel_end, uint64_t *gpa, uint64_t *size, char *err, size_t errsz)
{
	*gpa = *size = 0;
	if (!vm->cfg->initrd)
		return 0;
	size_t len;
	void *img = map_file(vm->cfg->initrd, &len, err, errsz);
	if (!img)
		return -1;
	int r = boot_place_initrd(&vm->mem, kernel_end, len, gpa);
	if (r < 0)
		snprintf(err, errsz, "initrd %s (%zu bytes) does not fit in guest RAM above the kernel",
			 vm->cfg->initrd, len);
	else
		memcpy(gpa_ptr(&vm->mem, *gpa, len), img, len);
	munmap(img, len);
	*size = len;
	return r;
}

/* --- BSP registers ------------------------------------------------------------ */

#define CR0_PE	 (1ULL << 0)
#define CR0_MP	 (1ULL << 1)
#define CR0_ET	 (1ULL << 4)
#define CR0_NE	 (1ULL << 5)
#define CR0_WP	 (1ULL << 16)
#define CR0_AM	 (1ULL << 18)
#define CR0_PG	 (1ULL << 31)
#define CR4_PAE	 (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

static struct kvm_segment flat_segment(uint16_t sel, uint8_t type, bool code)
{
	struct kvm_segment s = {
	    .base = 0,
	    .limit = 0xffffffff,
	    .selector = sel,
	    .type = type,
	    .present = 1,
	    .dpl = 0,
	    .db = code ? 0 : 1,
	    .s = 1,
	    .l = code ? 1 : 0,
	    .g = 1,
	};
	return s;
}

static int set_bsp_registers(struct vcpu *v, uint64_t entry, char *err, size_t errsz)
{
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		snprintf(err, errsz, "KVM_GET_SREGS: %s", strerror(errno));
		return -1;
	}
	s.cs = flat_segment(BOOT_GDT_CODE, 0xb, true);
	s.ds = s.es = s.fs = s.gs = s.ss = flat_segment(BOOT_GDT_DATA, 0x3, false);
	s.tr = flat_segment(BOOT_GDT_TSS, 0xb, false);
	s.tr.s = 0;
	s.tr.limit = 0xfffff;
	s.tr.db = 0;
	s.gdt.base = BOOT_GDT_ADDR;
	s.gdt.limit = GDT_ENTRIES * 8 - 1;
	s.idt.base = 0;
	s.idt.limit = 0;
	s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	s.cr3 = BOOT_PML4;
	s.cr4 = CR4_PAE;
	s.efer = EFER_LME | EFER_LMA;
	if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0) {
		snprintf(err, errsz, "KVM_SET_SREGS: %s", strerror(errno));
		return -1;
	}
	struct kvm_regs r;
	memset(&r, 0, sizeof r);
	r.rflags = 2; /* bit 1 is always set */
	r.rip = entry;
	r.rsi = BOOT_ZERO_PAGE; /* 64-bit boot protocol: RSI = boot_params */
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0) {
		snprintf(err, errsz, "KVM_SET_REGS: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int build_boot_structures(struct vm *vm, const char *cmdline, uint64_t initrd_gpa, uint64_t initrd_size,
				 char *err, size_t errsz)
{
	if (boot_build_gdt(&vm->mem) < 0 || boot_build_page_tables(&vm->mem) < 0 ||
	    boot_build_mptable(&vm->mem, vm->nr_vcpus) < 0) {
		snprintf(err, errsz, "guest RAM too small for the boot structures");
		return -1;
	}
	char *full = boot_full_cmdline(vm, cmdline);
	if (!full) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	log_info("boot.cmdline", "%s", full);
	int r = boot_build_zero_page(&vm->mem, full, initrd_gpa, initrd_size, err, errsz);
	free(full);
	return r;
}

int boot_linux(struct vm *vm, const char *cmdline, char *err, size_t errsz)
{
	struct boot_elf elf;
	uint64_t initrd_gpa, initrd_size;
	if (load_kernel(vm, &elf, err, errsz) < 0)
		return -1;
	if (load_initrd(vm, elf.load_end, &initrd_gpa, &initrd_size, err, errsz) < 0)
		return -1;
	if (build_boot_structures(vm, cmdline, initrd_gpa, initrd_size, err, errsz) < 0)
		return -1;
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (cpu_setup_boot(vm, &vm->vcpus[i], err, errsz) < 0)
			return -1;
	log_info("boot.kernel", "entry=0x%" PRIx64 " kernel=0x%" PRIx64 "..0x%" PRIx64 " initrd=0x%" PRIx64 "+%" PRIu64,
		 elf.entry, elf.load_start, elf.load_end, initrd_gpa, initrd_size);
	return set_bsp_registers(&vm->vcpus[0], elf.entry, err, errsz);
}
