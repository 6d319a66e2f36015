/*
 * test_kvm.c - the VMM core against the host's real /dev/kvm, with tiny
 * hand-made real-mode guests (they run even where KVM only emulates CPL0,
 * as on a PVM host). Without /dev/kvm each test prints SKIP and passes.
 */
#include <elf.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "../../lib/loop.h"
#include "../../lib/tests/test.h"
#include "../boot.h"
#include "../control.h"
#include "../dev/dev.h"
#include "../vmm.h"
#include "kvm_guest.h"

#define GUEST_CODE    0x1000
#define GUEST_COUNTER 0x3000
#define TEST_TIMEOUT  20000

struct tvm {
	struct vm vm;
	struct vm_config cfg;
	struct loop *loop;
	struct loop_timer timeout;
	bool ok;
};

static bool irqchip_refused; /* this host's KVM refused KVM_CREATE_IRQCHIP */

/* Creates a 1-vCPU VM, falling back to no irqchip if the host refuses one.
 * Returns false (after printing SKIP) when there is no usable /dev/kvm. */
static bool tvm_init(struct tvm *t, const char *serial_out)
{
	memset(t, 0, sizeof *t);
	if (!kvm_usable())
		return false;
	t->cfg.nr_vcpus = 1;
	t->cfg.mem_bytes = 16 << 20;
	t->cfg.no_irqchip = irqchip_refused;
	t->loop = loop_new();
	char err[256];
	if (vm_init(&t->vm, &t->cfg, t->loop, -1, err, sizeof err) < 0) {
		vm_destroy(&t->vm);
		if (!t->cfg.no_irqchip && strstr(err, "IRQCHIP")) {
			printf("note: %s; retrying without the in-kernel irqchip\n", err);
			irqchip_refused = true;
			loop_free(t->loop);
			return tvm_init(t, serial_out);
		}
		printf("SKIP %s: %s\n", test_current, err);
		loop_free(t->loop);
		return false;
	}
	CHECK(serial_create(&t->vm, serial_out, err, sizeof err) == 0);
	CHECK(i8042_create(&t->vm, err, sizeof err) == 0);
	t->ok = true;
	return true;
}

static void tvm_free(struct tvm *t)
{
	vm_destroy(&t->vm);
	loop_timer_disarm(t->loop, &t->timeout);
	loop_free(t->loop);
}

static void on_timeout(void *arg)
{
	struct tvm *t = arg;
	printf("guest timed out\n");
	vm_request_exit(&t->vm, 99);
}

/* Runs the guest until it ends; returns the exit code. */
static int tvm_run(struct tvm *t)
{
	loop_timer_arm(t->loop, &t->timeout, TEST_TIMEOUT, on_timeout, t);
	CHECK(vm_start_vcpus(&t->vm) == 0);
	loop_run(t->loop);
	return t->vm.exit_code;
}

static char *slurp(const char *path)
{
	static char buf[256];
	memset(buf, 0, sizeof buf);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return buf;
	if (read(fd, buf, sizeof buf - 1) < 0)
		buf[0] = 0;
	close(fd);
	return buf;
}

TEST(serial_hi_then_i8042_reset_exits_ok)
{
	static const uint8_t code[] = {
	    0xba, 0xf8, 0x03, /* mov dx, 0x3f8 */
	    0xb0, 'h',	      /* mov al, 'h' */
	    0xee,	      /* out dx, al */
	    0xb0, 'i',	      /* mov al, 'i' */
	    0xee,	      /* out dx, al */
	    0xe4, 0x64,	      /* in al, 0x64 (status: no keyboard) */
	    0xb0, 0xfe,	      /* mov al, 0xfe */
	    0xe6, 0x64,	      /* out 0x64, al: reset */
	    0xf4,	      /* hlt (never reached) */
	};
	char path[] = "/tmp/test_kvm_serial_XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	struct tvm t;
	if (!tvm_init(&t, path))
		goto out;
	load_realmode(&t.vm, GUEST_CODE, code, sizeof code);
	CHECK_EQ_INT(tvm_run(&t), VMM_EXIT_OK);
	tvm_free(&t); /* joins the vCPU thread */
	CHECK_STREQ(slurp(path), "hi");
	CHECK(t.vm.vcpus[0].exits >= 4);
	CHECK(t.vm.vcpus[0].state == VCPU_STOPPED);
out:
	unlink(path);
}

/* A minimal ELF64 executable: one PT_LOAD (the whole file) at paddr,
 * entry at the code that follows the headers. Returns its size. */
static size_t build_elf(uint8_t *buf, size_t cap, const uint8_t *code, size_t n, uint64_t paddr)
{
	size_t hdrs = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
	if (hdrs + n > cap)
		return 0;
	memset(buf, 0, hdrs);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = paddr + hdrs;
	eh->e_phoff = sizeof *eh;
	eh->e_ehsize = sizeof *eh;
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 1;
	Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof *eh);
	ph->p_type = PT_LOAD;
	ph->p_flags = PF_R | PF_X;
	ph->p_offset = 0;
	ph->p_vaddr = ph->p_paddr = paddr;
	ph->p_filesz = hdrs + n;
	ph->p_memsz = hdrs + n + 4096;
	memcpy(buf + hdrs, code, n);
	return hdrs + n;
}

/* Boots code as a "kernel" through boot_linux (64-bit long mode, paging,
 * GDT, zero page) and returns the exit code. */
static int boot_elf_code(const uint8_t *code, size_t n, const char *serial_path)
{
	char kpath[] = "/tmp/test_kvm_elf_XXXXXX";
	int fd = mkstemp(kpath);
	uint8_t img[4096];
	size_t len = build_elf(img, sizeof img, code, n, 0x200000);
	CHECK(write(fd, img, len) == (ssize_t)len);
	close(fd);
	struct tvm t;
	int code_out = -1;
	if (tvm_init(&t, serial_path)) {
		char err[256] = "";
		t.cfg.kernel = kpath;
		int r = boot_linux(&t.vm, "console=ttyS0", err, sizeof err);
		if (r < 0)
			printf("boot_linux: %s\n", err);
		CHECK(r == 0);
		if (r == 0)
			code_out = tvm_run(&t);
		tvm_free(&t);
	} else {
		code_out = -2;
	}
	unlink(kpath);
	return code_out;
}

TEST(long_mode_boot_path_runs_64bit_code)
{
	static const uint8_t code[] = {
	    0x66, 0xba, 0xf8, 0x03, /* mov dx, 0x3f8 */
	    0xb0, 'o',	0xee,	    /* out 'o' */
	    0xb0, 'k',	0xee,	    /* out 'k' */
	    0x48, 0x8b, 0x06,	    /* mov rax, [rsi]: the zero page is mapped */
	    0xb0, 0xfe, 0xe6, 0x64, /* reset */
	    0xf4,
	};
	char path[] = "/tmp/test_kvm_serial_XXXXXX";
	close(mkstemp(path));
	int r = boot_elf_code(code, sizeof code, path);
	if (r != -2) {
		CHECK_EQ_INT(r, VMM_EXIT_OK);
		CHECK_STREQ(slurp(path), "ok");
	}
	unlink(path);
}

TEST(triple_fault_exits_with_its_code)
{
	/* Long mode with an empty IDT: #UD cannot be delivered, nor the #GP
	 * and #DF that follow: a triple fault. */
	static const uint8_t code[] = {0x0f, 0x0b, 0xf4}; /* ud2 */
	int r = boot_elf_code(code, sizeof code, NULL);
	if (r != -2)
		CHECK_EQ_INT(r, VMM_EXIT_TRIPLE_FAULT);
}

static uint32_t read_counter(struct tvm *t)
{
	uint32_t v;
	memcpy(&v, gpa_ptr(&t->vm.mem, GUEST_COUNTER, 4), 4);
	return v;
}

static void sleep_ms(int ms)
{
	usleep((useconds_t)ms * 1000);
}

TEST(pause_and_resume_a_looping_guest)
{
	static const uint8_t code[] = {
	    0x66, 0xff, 0x06, 0x00, 0x30, /* inc dword [0x3000] */
	    0xe6, 0x80,			  /* out 0x80, al: an I/O exit per round */
	    0xeb, 0xf7,			  /* jmp back to the inc */
	};
	struct tvm t;
	if (!tvm_init(&t, NULL))
		return;
	load_realmode(&t.vm, GUEST_CODE, code, sizeof code);
	CHECK(vm_start_vcpus(&t.vm) == 0);
	sleep_ms(200);
	for (int round = 0; round < 5; round++) {
		CHECK(vm_pause(&t.vm) == 0);
		CHECK(vm_is_paused(&t.vm));
		CHECK(t.vm.vcpus[0].state == VCPU_PAUSED);
		uint32_t a = read_counter(&t);
		uint64_t exits = t.vm.vcpus[0].exits;
		/* Paused: the loop is stopped at an instruction boundary, so
		 * the registers are consistent. */
		struct kvm_regs r;
		CHECK(ioctl(t.vm.vcpus[0].fd, KVM_GET_REGS, &r) == 0);
		CHECK(r.rip >= GUEST_CODE && r.rip < GUEST_CODE + sizeof code);
		sleep_ms(100);
		CHECK_EQ_INT(read_counter(&t), a);
		CHECK(t.vm.vcpus[0].exits == exits);
		CHECK(vm_resume(&t.vm) == 0);
		CHECK(!vm_is_paused(&t.vm));
		sleep_ms(100);
		CHECK(read_counter(&t) > a);
	}
	vm_request_exit(&t.vm, VMM_EXIT_OK);
	tvm_free(&t);
}

TEST(memory_stats_see_the_guest_ram_mapping)
{
	struct tvm t;
	if (!tvm_init(&t, NULL))
		return;
	memset(gpa_ptr(&t.vm.mem, 0, 1 << 20), 1, 1 << 20);
	struct vm_mem_stats st;
	CHECK(vm_mem_stats(&t.vm, &st) == 0);
	CHECK(st.guest_bytes == 16 << 20);
	CHECK(st.rss >= 1 << 20);
	CHECK(st.private_dirty >= 1 << 20);
	tvm_free(&t);
}

struct probe {
	int writes;
	uint8_t last;
};

static void probe_access(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct probe *p = dev;
	if (is_write) {
		p->writes++;
		p->last = data[0];
	} else {
		memset(data, 0x5a, len);
	}
}

TEST(guest_port_io_reaches_the_right_bus_region)
{
	static const uint8_t code[] = {
	    0xb0, 0x42,		    /* mov al, 0x42 */
	    0xe6, 0x90,		    /* out 0x90, al: probe */
	    0xe4, 0x91,		    /* in al, 0x91: probe reads 0x5a */
	    0xe6, 0x92,		    /* out 0x92, al: probe sees 0x5a */
	    0xe4, 0x99,		    /* in al, 0x99: unclaimed, 0xff */
	    0xe6, 0x90,		    /* out 0x90, al: probe sees 0xff */
	    0xb0, 0xfe, 0xe6, 0x64, /* reset */
	};
	struct probe p = {0};
	struct tvm t;
	if (!tvm_init(&t, NULL))
		return;
	CHECK(bus_add(&t.vm.pio, 0x90, 4, probe_access, &p) == 0);
	load_realmode(&t.vm, GUEST_CODE, code, sizeof code);
	CHECK_EQ_INT(tvm_run(&t), VMM_EXIT_OK);
	CHECK_EQ_INT(p.writes, 3);
	CHECK_EQ_INT(p.last, 0xff);
	tvm_free(&t);
}

TEST(report_irqchip)
{
	if (irqchip_refused)
		printf("note: this host refused KVM_CREATE_IRQCHIP; guests ran without it\n");
	CHECK(true);
}

static void quiet_logs(void) __attribute__((constructor));
static void quiet_logs(void)
{
	log_set_level(LOG_WARN);
}

/* --- control socket (no KVM needed: a VM shell with a loop) ----------------- */

static void stop_loop(void *arg)
{
	loop_stop(arg);
}

/* Runs the loop for ms, then returns what the client socket has received. */
static char *pump(struct loop *l, int client, int ms)
{
	static char out[65536];
	struct loop_timer t = {0};
	loop_timer_arm(l, &t, (uint64_t)ms, stop_loop, l);
	loop_run(l);
	ssize_t n = recv(client, out, sizeof out - 1, MSG_DONTWAIT);
	out[n > 0 ? n : 0] = 0;
	return out;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void send_str(int fd, const char *s)
{
	CHECK(write(fd, s, strlen(s)) == (ssize_t)strlen(s));
}

TEST(control_socket_requests_errors_and_limits)
{
	static struct vm vm;
	memset(&vm, 0, sizeof vm);
	vm.loop = loop_new();
	vm.exit_efd = -1;
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	char path[] = "/tmp/test_ctl_XXXXXX";
	close(mkstemp(path));
	char err[256];
	struct control *c = control_open(&vm, path, err, sizeof err);
	CHECK(c != NULL);
	int a = connect_unix(path), b = connect_unix(path);
	CHECK(a >= 0 && b >= 0);

	send_str(a, "{\"op\":\"ping\"}\n");
	CHECK_STREQ(pump(vm.loop, a, 50), "{\"ok\":true,\"state\":\"running\"}\n");
	send_str(a, "{\"op\":\"ping\"\n"); /* malformed */
	CHECK(strstr(pump(vm.loop, a, 50), "\"ok\":false,\"error\":") != NULL);
	send_str(a, "{\"op\":\"fly\"}\n{\"op\":\"stats\"}\n");
	char *r = pump(vm.loop, a, 50);
	CHECK(strstr(r, "unknown op") != NULL);
	CHECK(strstr(r, "\"pid\":") != NULL && strstr(r, "\"vcpus\":[]") != NULL);
	send_str(b, "{\"op\":\"snapshot\"}\n"); /* second client; no dir */
	CHECK(strstr(pump(vm.loop, b, 50), "needs \\\"dir\\\"") != NULL);

	/* A line over 64 KiB is refused and that connection closed. */
	char *big = malloc(CONTROL_MAX_LINE + 100);
	memset(big, ' ', CONTROL_MAX_LINE + 100);
	CHECK(write(b, big, CONTROL_MAX_LINE + 100) > 0);
	free(big);
	CHECK(strstr(pump(vm.loop, b, 100), "longer than 64 KiB") != NULL);
	CHECK(pump(vm.loop, b, 20)[0] == 0);
	CHECK(read(b, err, 1) == 0); /* closed */

	send_str(a, "{\"op\":\"shutdown\"}\n");
	CHECK(strstr(pump(vm.loop, a, 50), "\"ok\":true") != NULL);
	CHECK(vm.exiting && vm.exit_code == VMM_EXIT_OK);

	close(a);
	close(b);
	control_close(c);
	CHECK(access(path, F_OK) != 0); /* socket file removed */
	loop_free(vm.loop);
}
