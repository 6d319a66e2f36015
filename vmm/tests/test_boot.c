/*
 * test_boot.c - the pure parts of the VMM core, no KVM: e820, MP table,
 * GDT and page tables, ELF validation, zero page, gpa_ptr bounds, the bus
 * and the legacy devices (serial, i8042) driven through it.
 */
#include <elf.h>

#include "../../lib/log.h"
#include "../../lib/tests/test.h"
#include "../boot.h"
#include "../dev/dev.h"
#include "../snapfile.h"
#include "../vmm.h"

/* Fake guest RAM: low_size bytes at GPA 0 and high_size at 4 GiB. Only a
 * little is really allocated when high_size > 0: tests never touch it. */
static struct guest_mem fake_mem(uint64_t low, uint64_t high)
{
	struct guest_mem m = {.size = low + high, .low_size = low, .high_size = high, .backing_fd = -1};
	m.host = calloc(1, low + (high ? 4096 : 0));
	return m;
}

static uint64_t rd(const struct guest_mem *m, uint64_t gpa, int n)
{
	const uint8_t *p = gpa_ptr(m, gpa, (uint64_t)n);
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* --- gpa_ptr ------------------------------------------------------------ */

TEST(gpa_ptr_bounds)
{
	struct guest_mem m = {.host = (uint8_t *)0x10000, .size = 3 * 4096, .low_size = 2 * 4096, .high_size = 4096};
	CHECK(gpa_ptr(&m, 0, 8192) == m.host);
	CHECK(gpa_ptr(&m, 4096, 4096) == m.host + 4096);
	CHECK(gpa_ptr(&m, 4096, 4097) == NULL); /* runs off the end of low RAM */
	CHECK(gpa_ptr(&m, 8192, 1) == NULL);	/* the hole */
	CHECK(gpa_ptr(&m, GUEST_MMIO_HOLE, 1) == NULL);
	CHECK(gpa_ptr(&m, GUEST_HIGH_RAM, 4096) == m.host + 8192);
	CHECK(gpa_ptr(&m, GUEST_HIGH_RAM + 4095, 1) == m.host + 8192 + 4095);
	CHECK(gpa_ptr(&m, GUEST_HIGH_RAM + 4095, 2) == NULL);
	CHECK(gpa_ptr(&m, GUEST_HIGH_RAM + 4096, 0) == NULL);
	/* Overflow: gpa + len wraps around 2^64. */
	CHECK(gpa_ptr(&m, 16, UINT64_MAX) == NULL);
	CHECK(gpa_ptr(&m, UINT64_MAX, 2) == NULL);
	CHECK(gpa_ptr(&m, GUEST_HIGH_RAM + 8, UINT64_MAX - 4) == NULL);
	struct guest_mem none = {0};
	CHECK(gpa_ptr(&none, 0, 1) == NULL);
}

/* --- e820 ---------------------------------------------------------------- */

TEST(e820_small_guest)
{
	struct guest_mem m = {.size = 256 << 20, .low_size = 256 << 20};
	struct boot_e820 e[8];
	int n = boot_build_e820(&m, e, 8);
	CHECK_EQ_INT(n, 3);
	CHECK(e[0].addr == 0 && e[0].size == BOOT_EBDA && e[0].type == BOOT_E820_RAM);
	CHECK(e[1].addr == BOOT_EBDA && e[1].addr + e[1].size == 0x100000 && e[1].type == BOOT_E820_RESERVED);
	CHECK(e[2].addr == 0x100000 && e[2].size == (256 << 20) - 0x100000 && e[2].type == BOOT_E820_RAM);
}

TEST(e820_with_high_ram)
{
	struct guest_mem m = {
	    .size = 4ULL << 30, .low_size = GUEST_MMIO_HOLE, .high_size = (4ULL << 30) - GUEST_MMIO_HOLE};
	struct boot_e820 e[8];
	int n = boot_build_e820(&m, e, 8);
	CHECK_EQ_INT(n, 4);
	CHECK(e[2].addr + e[2].size == GUEST_MMIO_HOLE);
	CHECK(e[3].addr == GUEST_HIGH_RAM && e[3].size == (1ULL << 30) && e[3].type == BOOT_E820_RAM);
	CHECK_EQ_INT(boot_build_e820(&m, e, 2), 2); /* never writes past max */
}

/* --- MP table -------------------------------------------------------------- */

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s;
}

TEST(mptable_checksums_and_entries)
{
	for (int cpus = 1; cpus <= VMM_MAX_VCPUS; cpus += 7) {
		struct guest_mem m = fake_mem(1 << 20, 0);
		int used = boot_build_mptable(&m, cpus);
		CHECK(used > 0);
		const uint8_t *fp = gpa_ptr(&m, BOOT_EBDA, 16);
		CHECK(memcmp(fp, "_MP_", 4) == 0);
		CHECK_EQ_INT(sum(fp, 16), 0);
		CHECK_EQ_INT(fp[8], 1);
		uint64_t table = rd(&m, BOOT_EBDA + 4, 4);
		const uint8_t *hdr = gpa_ptr(&m, table, 44);
		CHECK(memcmp(hdr, "PCMP", 4) == 0);
		uint64_t len = rd(&m, table + 4, 2);
		CHECK(table + len <= 0xa0000);
		CHECK_EQ_INT(sum(gpa_ptr(&m, table, len), len), 0);
		CHECK(rd(&m, table + 36, 4) == LAPIC_BASE);
		uint64_t count = rd(&m, table + 34, 2);
		CHECK_EQ_INT(count, (uint64_t)cpus + 2 + 24 + 2);
		/* Walk the entries: CPUs first with the BSP flag only on 0. */
		uint64_t p = table + 44;
		int procs = 0, ioints = 0, lints = 0, ioapics = 0;
		for (uint64_t i = 0; i < count; i++) {
			int type = (int)rd(&m, p, 1);
			if (type == 0) {
				CHECK_EQ_INT(rd(&m, p + 1, 1), (uint64_t)procs);
				CHECK_EQ_INT(rd(&m, p + 3, 1), procs == 0 ? 3u : 1u);
				procs++;
				p += 20;
				continue;
			}
			if (type == 2) {
				ioapics++;
				CHECK(rd(&m, p + 4, 4) == IOAPIC_BASE);
			}
			if (type == 3) {
				CHECK_EQ_INT(rd(&m, p + 5, 1), (uint64_t)ioints); /* ISA irq n -> pin n */
				CHECK_EQ_INT(rd(&m, p + 7, 1), (uint64_t)ioints);
				ioints++;
			}
			lints += type == 4;
			p += 8;
		}
		CHECK_EQ_INT(procs, cpus);
		CHECK_EQ_INT(ioapics, 1);
		CHECK_EQ_INT(ioints, 24);
		CHECK_EQ_INT(lints, 2);
		CHECK(p == table + len);
		free(m.host);
	}
}

TEST(mptable_refuses_bad_cpu_counts)
{
	struct guest_mem m = fake_mem(1 << 20, 0);
	CHECK(boot_build_mptable(&m, 0) < 0);
	CHECK(boot_build_mptable(&m, VMM_MAX_VCPUS + 1) < 0);
	free(m.host);
	struct guest_mem tiny = fake_mem(0x9f000, 0); /* EBDA outside RAM */
	CHECK(boot_build_mptable(&tiny, 1) < 0);
	free(tiny.host);
}

/* --- GDT and page tables ------------------------------------------------------ */

TEST(gdt_has_flat_long_mode_segments)
{
	struct guest_mem m = fake_mem(1 << 20, 0);
	CHECK(boot_build_gdt(&m) == 0);
	CHECK(rd(&m, BOOT_GDT_ADDR, 8) == 0);
	uint64_t code = rd(&m, BOOT_GDT_ADDR + BOOT_GDT_CODE, 8);
	uint64_t data = rd(&m, BOOT_GDT_ADDR + BOOT_GDT_DATA, 8);
	CHECK(code == 0x00af9b000000ffffULL); /* L=1, D=0, G=1, present code */
	CHECK(data == 0x00cf93000000ffffULL);
	CHECK(((rd(&m, BOOT_GDT_ADDR + BOOT_GDT_TSS, 8) >> 40) & 0xff) == 0x8b);
	free(m.host);
}

TEST(page_tables_identity_map_4g)
{
	struct guest_mem m = fake_mem(1 << 20, 0);
	CHECK(boot_build_page_tables(&m) == 0);
	/* Walk a few addresses through PML4 -> PDPT -> PD (2 MiB pages). */
	uint64_t probes[] = {0, 0x7000, 0x1000000, 0x3fffffff, 0x40000000, 0xbfe00000, 0xffffffff};
	for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
		uint64_t va = probes[i];
		uint64_t pml4e = rd(&m, BOOT_PML4 + ((va >> 39) & 511) * 8, 8);
		CHECK(pml4e & 1);
		uint64_t pdpte = rd(&m, (pml4e & ~0xfffULL) + ((va >> 30) & 511) * 8, 8);
		CHECK(pdpte & 1);
		uint64_t pde = rd(&m, (pdpte & ~0xfffULL) + ((va >> 21) & 511) * 8, 8);
		CHECK((pde & 0x83) == 0x83);
		CHECK((pde & ~0x1fffffULL) + (va & 0x1fffff) == va);
	}
	/* Page tables sit clear of the zero page and the command line. */
	CHECK(BOOT_PD + 4 * 4096 <= BOOT_CMDLINE);
	CHECK(BOOT_ZERO_PAGE + 4096 <= BOOT_PML4);
	free(m.host);
}

/* --- ELF --------------------------------------------------------------------- */

struct elf_img {
	uint8_t b[4096];
	Elf64_Ehdr *eh;
	Elf64_Phdr *ph; /* two program headers */
};

/* A Linux-like image: two PT_LOADs, virtual addresses high, physical at
 * 16 MiB, entry given as the physical address. */
static void elf_good(struct elf_img *e)
{
	memset(e, 0, sizeof *e);
	e->eh = (Elf64_Ehdr *)e->b;
	e->ph = (Elf64_Phdr *)(e->b + sizeof(Elf64_Ehdr));
	memcpy(e->eh->e_ident, ELFMAG, SELFMAG);
	e->eh->e_ident[EI_CLASS] = ELFCLASS64;
	e->eh->e_ident[EI_DATA] = ELFDATA2LSB;
	e->eh->e_type = ET_EXEC;
	e->eh->e_machine = EM_X86_64;
	e->eh->e_entry = 0x1000000;
	e->eh->e_phoff = sizeof(Elf64_Ehdr);
	e->eh->e_phentsize = sizeof(Elf64_Phdr);
	e->eh->e_phnum = 2;
	e->ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
				.p_offset = 1024,
				.p_vaddr = 0xffffffff81000000ULL,
				.p_paddr = 0x1000000,
				.p_filesz = 1024,
				.p_memsz = 1024};
	e->ph[1] = (Elf64_Phdr){.p_type = PT_LOAD,
				.p_offset = 2048,
				.p_vaddr = 0xffffffff81400000ULL,
				.p_paddr = 0x1400000,
				.p_filesz = 512,
				.p_memsz = 0x10000};
	memset(e->b + 1024, 0xaa, 1024);
	memset(e->b + 2048, 0xbb, 512);
}

static int check(struct elf_img *e, const struct guest_mem *m, struct boot_elf *out)
{
	char err[256];
	return boot_check_elf(e->b, sizeof e->b, m, out, err, sizeof err);
}

TEST(elf_good_image_loads)
{
	struct guest_mem m = fake_mem(32 << 20, 0);
	struct elf_img e;
	elf_good(&e);
	struct boot_elf info;
	char err[256];
	CHECK(boot_load_elf(&m, e.b, sizeof e.b, &info, err, sizeof err) == 0);
	CHECK(info.entry == 0x1000000);
	CHECK(info.load_start == 0x1000000);
	CHECK(info.load_end == 0x1410000);
	CHECK(rd(&m, 0x1000000, 1) == 0xaa && rd(&m, 0x10003ff, 1) == 0xaa);
	CHECK(rd(&m, 0x1400000, 1) == 0xbb && rd(&m, 0x1400200, 1) == 0); /* bss zeroed */
	/* A virtual entry point is translated through its segment. */
	e.eh->e_entry = 0xffffffff81000010ULL;
	CHECK(check(&e, &m, &info) == 0);
	CHECK(info.entry == 0x1000010);
	free(m.host);
}

TEST(elf_bad_images_are_refused)
{
	struct guest_mem m = fake_mem(32 << 20, 0);
	struct elf_img e;
	struct boot_elf info;
	char err[256];

	elf_good(&e), e.b[0] = 0x7e;
	CHECK(check(&e, &m, &info) < 0);
	CHECK(boot_check_elf(e.b, 10, &m, &info, err, sizeof err) < 0); /* shorter than a header */
	elf_good(&e), e.eh->e_ident[EI_CLASS] = ELFCLASS32;
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.eh->e_machine = EM_386;
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.eh->e_type = ET_DYN;
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.eh->e_phoff = 4090; /* headers past the end */
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.eh->e_phoff = UINT64_MAX - 8;
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.eh->e_phentsize = 32;
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.ph[0].p_offset = 4000; /* segment data past the end */
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.ph[0].p_offset = UINT64_MAX;
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.ph[0].p_filesz = 2048, e.ph[0].p_memsz = 1024;
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.ph[1].p_paddr = 0x9f000; /* over the boot structures */
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.ph[1].p_memsz = 32 << 20; /* beyond RAM */
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.ph[1].p_paddr = UINT64_MAX - 16; /* wraps */
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.eh->e_entry = 0x5000000; /* entry nowhere */
	CHECK(check(&e, &m, &info) < 0);
	elf_good(&e), e.ph[0].p_type = PT_NOTE, e.ph[1].p_type = PT_NOTE;
	CHECK(check(&e, &m, &info) < 0);
	free(m.host);
}

/* --- initrd and zero page ------------------------------------------------------ */

TEST(initrd_goes_high_and_page_aligned)
{
	struct guest_mem m = {.size = 256 << 20, .low_size = 256 << 20};
	uint64_t gpa;
	CHECK(boot_place_initrd(&m, 0x2000000, 5000, &gpa) == 0);
	CHECK(gpa % 4096 == 0 && gpa + 5000 <= (256 << 20) && gpa >= (256 << 20) - 8192);
	CHECK(boot_place_initrd(&m, 0x2000000, 255 << 20, &gpa) < 0); /* would overlap the kernel */
	CHECK(boot_place_initrd(&m, 0, UINT64_MAX, &gpa) < 0);
	struct guest_mem big = {.size = 3ULL << 30, .low_size = 3ULL << 30};
	CHECK(boot_place_initrd(&big, 0x2000000, 4096, &gpa) == 0);
	CHECK(gpa + 4096 <= BOOT_INITRD_MAX);
}

TEST(zero_page_header_and_cmdline)
{
	struct guest_mem m = fake_mem(32 << 20, 0);
	char err[256];
	CHECK(boot_build_zero_page(&m, "console=ttyS0 quiet", 0x1f00000, 12345, err, sizeof err) == 0);
	CHECK(rd(&m, BOOT_ZERO_PAGE + 0x1fe, 2) == 0xaa55);
	CHECK(rd(&m, BOOT_ZERO_PAGE + 0x202, 4) == 0x53726448);
	CHECK(rd(&m, BOOT_ZERO_PAGE + 0x210, 1) == 0xff);
	CHECK(rd(&m, BOOT_ZERO_PAGE + 0x228, 4) == BOOT_CMDLINE);
	CHECK(rd(&m, BOOT_ZERO_PAGE + 0x218, 4) == 0x1f00000);
	CHECK(rd(&m, BOOT_ZERO_PAGE + 0x21c, 4) == 12345);
	CHECK(rd(&m, BOOT_ZERO_PAGE + 0x1e8, 1) == 3);
	CHECK(rd(&m, BOOT_ZERO_PAGE + 0x2d0 + 2 * 20, 8) == 0x100000);
	CHECK_STREQ((char *)gpa_ptr(&m, BOOT_CMDLINE, 1), "console=ttyS0 quiet");
	char *huge = malloc(BOOT_CMDLINE_MAX + 1);
	memset(huge, 'x', BOOT_CMDLINE_MAX);
	huge[BOOT_CMDLINE_MAX] = 0;
	CHECK(boot_build_zero_page(&m, huge, 0, 0, err, sizeof err) < 0);
	free(huge);
	free(m.host);
}

TEST(cmdline_gets_every_mmio_fragment)
{
	static struct vm vm;
	uint64_t base;
	int gsi;
	CHECK(vm_alloc_mmio_slot(&vm, &base, &gsi) == 0);
	CHECK(base == VIRTIO_MMIO_BASE && gsi == VIRTIO_MMIO_IRQ0);
	CHECK(vm_alloc_mmio_slot(&vm, &base, &gsi) == 0);
	CHECK(base == VIRTIO_MMIO_BASE + VIRTIO_MMIO_SIZE && gsi == VIRTIO_MMIO_IRQ0 + 1);
	char *s = boot_full_cmdline(&vm, "console=ttyS0");
	CHECK_STREQ(s, "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6");
	free(s);
	for (int i = 2; i < VMM_MAX_MMIO_SLOTS; i++)
		CHECK(vm_alloc_mmio_slot(&vm, &base, &gsi) == 0);
	CHECK(vm_alloc_mmio_slot(&vm, &base, &gsi) < 0);
}

/* --- bus --------------------------------------------------------------------- */

struct probe {
	uint64_t off;
	uint32_t len;
	int calls;
};

static void probe_fn(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct probe *p = dev;
	p->off = off;
	p->len = len;
	p->calls++;
	if (!is_write)
		memset(data, 0x11, len);
}

TEST(bus_routes_and_rejects)
{
	struct bus b = {0};
	struct probe a = {0}, c = {0};
	CHECK(bus_add(&b, 0x3f8, 8, probe_fn, &a) == 0);
	CHECK(bus_add(&b, 0xd0000000, 0x1000, probe_fn, &c) == 0);
	CHECK(bus_add(&b, 0x3fc, 8, probe_fn, &c) < 0);		 /* overlaps */
	CHECK(bus_add(&b, 0x3f0, 9, probe_fn, &c) < 0);		 /* overlaps at the start */
	CHECK(bus_add(&b, 0x100, 0, probe_fn, &c) < 0);		 /* empty */
	CHECK(bus_add(&b, UINT64_MAX - 4, 8, probe_fn, &c) < 0); /* wraps */
	uint8_t d[8];
	CHECK(bus_access(&b, 0x3fd, d, 1, false));
	CHECK(a.off == 5 && a.len == 1 && d[0] == 0x11);
	CHECK(bus_access(&b, 0xd0000ffc, d, 4, true));
	CHECK(c.off == 0xffc && c.len == 4);
	/* Straddling the end of a region is unclaimed: reads all-ones. */
	memset(d, 0, sizeof d);
	CHECK(!bus_access(&b, 0xd0000ffe, d, 4, false));
	CHECK(d[0] == 0xff && d[3] == 0xff);
	CHECK(!bus_access(&b, 0x3f6, d, 4, false));
	CHECK(!bus_access(&b, 0x80, d, 1, true));
	CHECK_EQ_INT(a.calls, 1);
	CHECK_EQ_INT(c.calls, 1);
	for (int i = b.n; i < BUS_MAX_REGIONS; i++)
		CHECK(bus_add(&b, 0x1000 + (uint64_t)i * 16, 16, probe_fn, &a) == 0);
	CHECK(bus_add(&b, 0x9000, 1, probe_fn, &a) < 0); /* full */
}

/* --- legacy devices through the port bus (no KVM: no irqchip) ----------------- */

static struct vm *fake_vm(void)
{
	static struct vm vm;
	memset(&vm, 0, sizeof vm);
	vm.exit_efd = -1;
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	return &vm;
}

static uint8_t inb(struct vm *vm, uint16_t port)
{
	uint8_t v = 0;
	bus_access(&vm->pio, port, &v, 1, false);
	return v;
}

static void outb(struct vm *vm, uint16_t port, uint8_t v)
{
	bus_access(&vm->pio, port, &v, 1, true);
}

TEST(serial_registers_behave_like_a_16550a)
{
	struct vm *vm = fake_vm();
	char err[256];
	CHECK(serial_create(vm, NULL, err, sizeof err) == 0);
	uint16_t p = SERIAL_COM1_PORT;
	CHECK_EQ_INT(inb(vm, p + 5) & 0x60, 0x60); /* THR empty, transmitter empty */
	CHECK_EQ_INT(inb(vm, p + 2) & 0x0f, 0x01); /* no interrupt */
	/* DLAB selects the divisor latch. */
	outb(vm, p + 3, 0x80);
	outb(vm, p + 0, 0x01);
	outb(vm, p + 1, 0x02);
	CHECK_EQ_INT(inb(vm, p + 0), 1);
	CHECK_EQ_INT(inb(vm, p + 1), 2);
	outb(vm, p + 3, 0x03);
	CHECK_EQ_INT(inb(vm, p + 1), 0);
	/* Scratch register. */
	outb(vm, p + 7, 0x5a);
	CHECK_EQ_INT(inb(vm, p + 7), 0x5a);
	/* Loopback as Linux's probe does it: RTS|OUT2 -> CTS|DCD. */
	outb(vm, p + 4, 0x10 | 0x0a);
	CHECK_EQ_INT(inb(vm, p + 6) & 0xf0, 0x90);
	/* Loopback data comes back with "data ready" and an RX interrupt. */
	outb(vm, p + 1, 0x01);
	outb(vm, p + 0, 'x');
	CHECK_EQ_INT(inb(vm, p + 5) & 1, 1);
	CHECK_EQ_INT(inb(vm, p + 2) & 0x0f, 0x04);
	CHECK_EQ_INT(inb(vm, p + 0), 'x');
	CHECK_EQ_INT(inb(vm, p + 5) & 1, 0);
	outb(vm, p + 4, 0x0b);
	/* Enabling THRE interrupts raises one at once; reading IIR acks it. */
	outb(vm, p + 1, 0x02);
	CHECK_EQ_INT(inb(vm, p + 2) & 0x0f, 0x02);
	CHECK_EQ_INT(inb(vm, p + 2) & 0x0f, 0x01);
	outb(vm, p + 0, 'y'); /* each byte sent: THR empty again */
	CHECK_EQ_INT(inb(vm, p + 2) & 0x0f, 0x02);
	/* FIFO enable shows in IIR. */
	outb(vm, p + 2, 0x07);
	CHECK_EQ_INT(inb(vm, p + 2) & 0xc0, 0xc0);
	/* Absent COM2: reads float. */
	CHECK_EQ_INT(inb(vm, 0x2f8 + 5), 0xff);
	CHECK_EQ_INT(vm->nr_devices, 1);
	CHECK_STREQ(vm->devices[0].kind, "serial");
}

TEST(serial_state_survives_save_and_load)
{
	struct vm *vm = fake_vm();
	char err[256];
	CHECK(serial_create(vm, NULL, err, sizeof err) == 0);
	uint16_t p = SERIAL_COM1_PORT;
	outb(vm, p + 3, 0x83);
	outb(vm, p + 0, 0x0c);
	outb(vm, p + 3, 0x03);
	outb(vm, p + 1, 0x03);
	outb(vm, p + 7, 0x77);
	struct snap_w w;
	snap_w_init(&w);
	size_t start = w.b.len; /* the payload is what save() appended */
	CHECK(vm->devices[0].save(vm->devices[0].dev, &w) == 0);
	size_t len = w.b.len - start;
	char *copy = malloc(len);
	memcpy(copy, w.b.data + start, len);
	snap_w_free(&w);
	outb(vm, p + 7, 0);
	outb(vm, p + 1, 0);
	CHECK(vm->devices[0].load(vm->devices[0].dev, copy, len, err, sizeof err) == 0);
	CHECK_EQ_INT(inb(vm, p + 7), 0x77);
	CHECK_EQ_INT(inb(vm, p + 1), 0x03);
	outb(vm, p + 3, 0x83);
	CHECK_EQ_INT(inb(vm, p + 0), 0x0c);
	CHECK(vm->devices[0].load(vm->devices[0].dev, copy, len - 1, err, sizeof err) < 0);
	copy[0] = 9; /* unknown layout version */
	CHECK(vm->devices[0].load(vm->devices[0].dev, copy, len, err, sizeof err) < 0);
	free(copy);
}

TEST(i8042_reset_ends_the_vm_and_probes_are_quiet)
{
	struct vm *vm = fake_vm();
	char err[256];
	CHECK(i8042_create(vm, err, sizeof err) == 0);
	CHECK_EQ_INT(inb(vm, I8042_CMD_PORT) & 0x03, 0); /* nothing to read, ready for input */
	outb(vm, I8042_CMD_PORT, 0xaa);			 /* self test */
	CHECK_EQ_INT(inb(vm, I8042_CMD_PORT) & 0x01, 1);
	CHECK_EQ_INT(inb(vm, I8042_DATA_PORT), 0x55);
	outb(vm, I8042_CMD_PORT, 0x60); /* write CTR */
	outb(vm, I8042_DATA_PORT, 0x45);
	outb(vm, I8042_CMD_PORT, 0x20);
	CHECK_EQ_INT(inb(vm, I8042_DATA_PORT), 0x45);
	CHECK(inb(vm, 0x61) != inb(vm, 0x61)); /* refresh bit toggles */
	CHECK_EQ_INT(inb(vm, 0xcfc), 0xff);    /* no PCI */
	outb(vm, 0x70, 0x0d);
	CHECK_EQ_INT(inb(vm, 0x71), 0x80); /* CMOS: "valid", nothing else */
	outb(vm, 0x70, 0x0a);
	CHECK_EQ_INT(inb(vm, 0x71), 0); /* no update in progress */
	CHECK(bus_access(&vm->pio, 0x80, (uint8_t[]){0}, 1, true));
	CHECK(!vm->exiting);
	outb(vm, I8042_CMD_PORT, 0xfe);
	CHECK(vm->exiting);
	CHECK_EQ_INT(vm->exit_code, VMM_EXIT_OK);
}

static void quiet_logs(void) __attribute__((constructor));
static void quiet_logs(void)
{
	log_set_level(LOG_WARN);
}
