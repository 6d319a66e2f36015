/*
 * test_snapshot.c - snapshot and restore against the host's real /dev/kvm,
 * with a hand-made real-mode guest (it runs even where KVM only emulates
 * CPL0, as on a PVM host): the guest counts in memory and in EBX and
 * reports every step on a port; a clone restored from the snapshot must
 * continue from the saved count, write only its private copy of RAM, and
 * a corrupt snapshot must be refused. Without /dev/kvm each test prints
 * SKIP and passes.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/tests/test.h"
#include "../config.h"
#include "../snapfile.h"
#include "../snapshot.h"
#include "../vmm.h"
#include "kvm_guest.h"

#define GUEST_CODE    0x1000
#define GUEST_COUNTER 0x2000
#define GUEST_SCRATCH 0x3000
#define PROGRESS_PORT 0x510

/* mov dx, 0x510; again: inc dword [0x2000]; inc ebx; mov eax, [0x2000]; out dx, eax; jmp again */
static const uint8_t counter_code[] = {
    0xba, 0x10, 0x05,		  /* mov dx, PROGRESS_PORT */
    0x66, 0xff, 0x06, 0x00, 0x20, /* inc dword [GUEST_COUNTER] */
    0x66, 0x43,			  /* inc ebx */
    0x66, 0xa1, 0x00, 0x20,	  /* mov eax, [GUEST_COUNTER] */
    0x66, 0xef,			  /* out dx, eax */
    0xeb, 0xf1,			  /* jmp again (0x1003) */
};

/* What the progress port has seen; written on the vCPU thread under vm->lock. */
struct progress {
	uint32_t first, last;
	uint64_t outs;
};

static void progress_io(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct progress *p = dev;
	if (!is_write || len != 4)
		return;
	uint32_t v;
	memcpy(&v, data, 4);
	if (!p->outs)
		p->first = v;
	p->last = v;
	__atomic_store_n(&p->outs, p->outs + 1, __ATOMIC_RELEASE);
}

/* A device with state, to check the SNAP_DEVICE path end to end. */
struct token_dev {
	uint64_t token;
	bool restored;
};

static int token_save(void *dev, struct snap_w *w)
{
	struct token_dev *t = dev;
	snap_w_u32(w, 1);
	snap_w_u64(w, t->token);
	return 0;
}

static int token_load(void *dev, const void *data, size_t len, char *err, size_t errsz)
{
	struct token_dev *t = dev;
	struct snap_cur c;
	snap_cur_init(&c, data, len);
	uint32_t version = snap_cur_u32(&c);
	t->token = snap_cur_u64(&c);
	if (c.bad || version != 1 || c.left) {
		snprintf(err, errsz, "bad token payload (%zu bytes)", len);
		return -1;
	}
	return 0;
}

static void token_restored(void *dev)
{
	((struct token_dev *)dev)->restored = true;
}

struct tvm {
	struct vm vm;
	struct vm_config cfg;
	struct progress prog;
	struct token_dev token;
};

static bool irqchip_refused; /* this host's KVM refused KVM_CREATE_IRQCHIP */

/* Registers what both the original and the clone have: the port and the device. */
static void tvm_add_devices(struct tvm *t)
{
	CHECK(bus_add(&t->vm.pio, PROGRESS_PORT, 4, progress_io, &t->prog) == 0);
	struct vm_device d = {
	    .kind = "test-token", .dev = &t->token, .save = token_save, .load = token_load, .restored = token_restored};
	CHECK(vm_add_device(&t->vm, &d) == 0);
}

/* vm_init with a fallback to no irqchip if the host refuses one. cfg must be filled. */
static bool tvm_init(struct tvm *t, int mem_fd)
{
	char err[256];
	t->cfg.no_irqchip = t->cfg.no_irqchip || irqchip_refused;
	if (vm_init(&t->vm, &t->cfg, NULL, mem_fd, err, sizeof err) < 0) {
		vm_destroy(&t->vm);
		if (!t->cfg.no_irqchip && strstr(err, "IRQCHIP") && mem_fd < 0) {
			printf("note: %s; retrying without the in-kernel irqchip\n", err);
			irqchip_refused = true;
			return tvm_init(t, mem_fd);
		}
		printf("SKIP %s: %s\n", test_current, err);
		return false;
	}
	tvm_add_devices(t);
	return true;
}

static bool tvm_boot(struct tvm *t)
{
	memset(t, 0, sizeof *t);
	t->cfg.nr_vcpus = 1;
	t->cfg.mem_bytes = 16 << 20;
	t->cfg.id = strdup("snaptest");
	if (!tvm_init(t, -1)) {
		vm_config_free(&t->cfg);
		return false;
	}
	load_realmode(&t->vm, GUEST_CODE, counter_code, sizeof counter_code);
	t->token.token = 0x5eed5eed12345678ULL;
	return true;
}

static void tvm_free(struct tvm *t)
{
	vm_destroy(&t->vm);
	vm_config_free(&t->cfg);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits until the guest has reported at least n more steps. */
static bool wait_outs(struct tvm *t, uint64_t n)
{
	uint64_t start = __atomic_load_n(&t->prog.outs, __ATOMIC_ACQUIRE), t0 = now_ms();
	while (__atomic_load_n(&t->prog.outs, __ATOMIC_ACQUIRE) < start + n) {
		if (now_ms() - t0 > 20000)
			return test_fail(__FILE__, __LINE__, "guest made no progress in 20 s");
		usleep(1000);
	}
	return true;
}

static uint32_t guest_counter(struct tvm *t)
{
	uint32_t v;
	memcpy(&v, gpa_ptr(&t->vm.mem, GUEST_COUNTER, 4), 4);
	return v;
}

static uint64_t vcpu_rbx(struct tvm *t)
{
	struct kvm_regs r;
	memset(&r, 0, sizeof r);
	CHECK(ioctl(t->vm.vcpus[0].fd, KVM_GET_REGS, &r) == 0);
	return r.rbx;
}

static uint64_t kvm_clock_ns(struct tvm *t)
{
	struct kvm_clock_data c;
	memset(&c, 0, sizeof c);
	CHECK(ioctl(t->vm.vm_fd, KVM_GET_CLOCK, &c) == 0);
	return c.clock;
}

static char *make_tmpdir(void)
{
	char tmpl[] = "/tmp/test_snapshot.XXXXXX";
	char *d = mkdtemp(tmpl);
	return d ? strdup(d) : NULL;
}

static void rm_rf(const char *dir)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* Restores dir into clone (config from the snapshot). Returns the snapshot_* code. */
static int restore_into(struct tvm *clone, const char *dir, char *err, size_t errsz)
{
	memset(clone, 0, sizeof *clone);
	int rc = snapshot_load_config(dir, &clone->cfg, err, errsz);
	if (rc)
		return rc;
	int fd = snapshot_open_memory(dir, clone->cfg.mem_bytes, err, errsz);
	if (fd < 0) {
		vm_config_free(&clone->cfg);
		return fd;
	}
	if (!tvm_init(clone, fd)) {
		vm_config_free(&clone->cfg);
		snprintf(err, errsz, "vm_init failed");
		return SNAPSHOT_ERR_HOST;
	}
	return snapshot_restore(&clone->vm, dir, err, errsz);
}

TEST(clone_continues_from_saved_state)
{
	if (!kvm_usable())
		return;
	struct tvm orig, clone;
	if (!tvm_boot(&orig))
		return;
	char *dir = make_tmpdir();
	char err[256] = "";
	CHECK(vm_start_vcpus(&orig.vm) == 0);
	if (!wait_outs(&orig, 1000))
		goto out_orig;
	CHECK(vm_pause(&orig.vm) == 0);
	/* The pause may land between any two instructions of the loop, so
	 * EBX and the last value written to the port may trail the memory
	 * counter by one; the next value written is always last + 1. */
	uint32_t saved = guest_counter(&orig);
	uint64_t saved_rbx = vcpu_rbx(&orig);
	uint32_t saved_last = orig.prog.last;
	CHECK(saved >= 1000);
	CHECK(saved - (uint32_t)saved_rbx <= 1); /* EBX counts with memory */
	CHECK(saved - saved_last <= 1);
	uint64_t clock_at_save = kvm_clock_ns(&orig);
	if (!CHECK_EQ_INT(snapshot_save(&orig.vm, dir, err, sizeof err), 0)) {
		fprintf(stderr, "  %s\n", err);
		goto out_orig;
	}
	struct stat st;
	char path[300];
	snprintf(path, sizeof path, "%s/memory", dir);
	CHECK(stat(path, &st) == 0 && st.st_size == 16 << 20);
	CHECK((uint64_t)st.st_blocks * 512 < (1 << 20)); /* sparse: almost all of RAM is zero */

	usleep(300 * 1000); /* the snapshot sits on disk for a while */
	int rc = restore_into(&clone, dir, err, sizeof err);
	if (!CHECK_EQ_INT(rc, 0)) {
		fprintf(stderr, "  restore: %s\n", err);
		goto out_orig;
	}
	CHECK_STREQ(clone.cfg.id, "snaptest");
	CHECK(clone.token.token == 0x5eed5eed12345678ULL && clone.token.restored);
	/* kvmclock continues where it stopped rather than jumping by the 300 ms on disk. */
	uint64_t clone_clock = kvm_clock_ns(&clone);
	CHECK(clone_clock >= clock_at_save && clone_clock - clock_at_save < 200ull * 1000 * 1000);
	CHECK(vcpu_rbx(&clone) == saved_rbx);

	CHECK(vm_start_vcpus(&clone.vm) == 0);
	if (wait_outs(&clone, 1000)) {
		CHECK_EQ_INT(clone.prog.first, saved_last + 1);
		CHECK(vm_pause(&clone.vm) == 0);
		uint32_t now = guest_counter(&clone);
		CHECK(now > saved + 999);
		CHECK(now - (uint32_t)vcpu_rbx(&clone) <= 1);
		/* The clone's writes stay in its private copy. */
		memset(gpa_ptr(&clone.vm.mem, GUEST_SCRATCH, 64), 0xab, 64);
		int fd = open(path, O_RDONLY);
		uint32_t in_file = 0;
		uint8_t scratch = 0xff;
		CHECK(pread(fd, &in_file, 4, GUEST_COUNTER) == 4 && in_file == saved);
		CHECK(pread(fd, &scratch, 1, GUEST_SCRATCH) == 1 && scratch == 0);
		close(fd);
		CHECK_EQ_INT(guest_counter(&orig), saved); /* the original did not move either */
	}
	tvm_free(&clone);

	/* The original resumes where it paused. */
	uint64_t outs = orig.prog.outs;
	CHECK(vm_resume(&orig.vm) == 0);
	if (wait_outs(&orig, 10))
		CHECK(guest_counter(&orig) > saved && orig.prog.outs > outs);
out_orig:
	tvm_free(&orig);
	rm_rf(dir);
	free(dir);
}

/* Saves a paused, never-started VM once; the tests below damage copies of it. */
static bool save_sample(char **dir)
{
	struct tvm t;
	*dir = NULL;
	if (!tvm_boot(&t))
		return false;
	*dir = make_tmpdir();
	char err[256] = "";
	bool ok = CHECK_EQ_INT(snapshot_save(&t.vm, *dir, err, sizeof err), 0);
	if (!ok)
		fprintf(stderr, "  %s\n", err);
	tvm_free(&t);
	return ok;
}

static void flip_byte(const char *path, off_t at)
{
	int fd = open(path, O_RDWR);
	uint8_t b = 0;
	CHECK(pread(fd, &b, 1, at) == 1);
	b ^= 0x10;
	CHECK(pwrite(fd, &b, 1, at) == 1);
	close(fd);
}

TEST(corrupt_snapshots_refused)
{
	if (!kvm_usable())
		return;
	char *dir;
	if (!save_sample(&dir))
		goto out;
	char state[300], memory[300], err[256];
	snprintf(state, sizeof state, "%s/state", dir);
	snprintf(memory, sizeof memory, "%s/memory", dir);
	struct vm_config cfg;
	struct stat st;
	CHECK(stat(state, &st) == 0);

	/* A flipped byte in the middle of the state file. */
	flip_byte(state, st.st_size / 2);
	CHECK_EQ_INT(snapshot_load_config(dir, &cfg, err, sizeof err), SNAPSHOT_ERR_BAD);
	CHECK(strstr(err, "checksum mismatch") != NULL);
	flip_byte(state, st.st_size / 2);
	CHECK_EQ_INT(snapshot_load_config(dir, &cfg, err, sizeof err), 0);
	vm_config_free(&cfg);

	/* A truncated memory file. */
	CHECK(truncate(memory, 8 << 20) == 0);
	CHECK_EQ_INT(snapshot_open_memory(dir, 16 << 20, err, sizeof err), SNAPSHOT_ERR_BAD);
	CHECK(strstr(err, "truncated") != NULL);

	/* A truncated state file. */
	CHECK(truncate(state, st.st_size - 1) == 0);
	CHECK_EQ_INT(snapshot_load_config(dir, &cfg, err, sizeof err), SNAPSHOT_ERR_BAD);
	CHECK(strstr(err, "truncated") != NULL);

	/* No state file at all (a snapshot cut short before its last step). */
	unlink(state);
	CHECK_EQ_INT(snapshot_load_config(dir, &cfg, err, sizeof err), SNAPSHOT_ERR_BAD);
	CHECK(strstr(err, "not a snapshot") != NULL);
	CHECK_EQ_INT(snapshot_load_config("/nonexistent/dir", &cfg, err, sizeof err), SNAPSHOT_ERR_BAD);
out:
	if (dir)
		rm_rf(dir);
	free(dir);
}

TEST(mismatched_vm_refused)
{
	if (!kvm_usable())
		return;
	char *dir;
	if (!save_sample(&dir))
		goto out;
	char err[256] = "";
	struct tvm clone;
	memset(&clone, 0, sizeof clone);
	CHECK_EQ_INT(snapshot_load_config(dir, &clone.cfg, err, sizeof err), 0);
	clone.cfg.nr_vcpus = 2; /* not what the snapshot has */
	int fd = snapshot_open_memory(dir, clone.cfg.mem_bytes, err, sizeof err);
	CHECK(fd >= 0);
	if (tvm_init(&clone, fd)) {
		CHECK_EQ_INT(snapshot_restore(&clone.vm, dir, err, sizeof err), SNAPSHOT_ERR_BAD);
		CHECK(strstr(err, "1 vCPUs, the VM 2") != NULL);
		vm_destroy(&clone.vm);
	}
	vm_config_free(&clone.cfg);
out:
	if (dir)
		rm_rf(dir);
	free(dir);
}

/* --- an interrupt raised by restoring the PIT ---------------------------- */

#define PIT_TEST_VECTOR 0x30
#define LAPIC_SVR	0xf0
#define LAPIC_IRR	0x200

static uint32_t *lapic_reg(struct kvm_lapic_state *s, int off)
{
	return (uint32_t *)(s->regs + off);
}

/* Wires the original's PIT to its vCPU: LAPIC software-enabled, IOAPIC
 * pin 0 edge-triggered to PIT_TEST_VECTOR on APIC 0, then the PIT armed as
 * one-shot (mode 0) with a count of 2: it fires within microseconds, now
 * and again whenever that PIT state is restored. Once it has fired, the
 * vector is taken back out of the LAPIC, so the snapshot holds no pending
 * tick: any the clone has, its own restored PIT raised. */
static bool arm_pit_tick(struct tvm *t)
{
	struct kvm_lapic_state la;
	struct kvm_irqchip io = {.chip_id = KVM_IRQCHIP_IOAPIC};
	struct kvm_pit_state2 pit;
	int vcpu = t->vm.vcpus[0].fd, vmfd = t->vm.vm_fd;
	if (!CHECK(ioctl(vcpu, KVM_GET_LAPIC, &la) == 0))
		return false;
	*lapic_reg(&la, LAPIC_SVR) = 0x1ff;
	CHECK(ioctl(vcpu, KVM_SET_LAPIC, &la) == 0);
	CHECK(ioctl(vmfd, KVM_GET_IRQCHIP, &io) == 0);
	io.chip.ioapic.redirtbl[0].bits = PIT_TEST_VECTOR; /* fixed, physical, edge, unmasked, APIC 0 */
	CHECK(ioctl(vmfd, KVM_SET_IRQCHIP, &io) == 0);
	CHECK(ioctl(vmfd, KVM_GET_PIT2, &pit) == 0);
	pit.channels[0].mode = 0;
	pit.channels[0].count = 2;
	CHECK(ioctl(vmfd, KVM_SET_PIT2, &pit) == 0);
	usleep(50 * 1000);
	CHECK(ioctl(vcpu, KVM_GET_LAPIC, &la) == 0);
	uint32_t *irr = lapic_reg(&la, LAPIC_IRR + 0x10 * (PIT_TEST_VECTOR / 32));
	if (!CHECK(*irr & (1u << (PIT_TEST_VECTOR % 32)))) /* the PIT reaches the vCPU at all */
		return false;
	*irr = 0;
	return CHECK(ioctl(vcpu, KVM_SET_LAPIC, &la) == 0);
}

/* A restore must put the vCPUs' LAPICs in place before the PIT (and the
 * IOAPIC) that raise interrupts into them: a tick the restored PIT raises
 * at once must be pending in the clone's LAPIC, not lost in the reset state
 * KVM_SET_LAPIC overwrites. Lost, it left a guest that takes its clock
 * events from the PIT without any timer for good. */
TEST(pit_tick_raised_by_restore_reaches_the_vcpu)
{
	if (!kvm_usable())
		return;
	struct tvm orig, clone;
	if (!tvm_boot(&orig))
		return;
	char *dir = make_tmpdir();
	char err[256] = "";
	if (orig.vm.cfg->no_irqchip) {
		printf("SKIP %s: no in-kernel irqchip here\n", test_current);
		goto out_orig;
	}
	if (!arm_pit_tick(&orig))
		goto out_orig;
	if (!CHECK_EQ_INT(snapshot_save(&orig.vm, dir, err, sizeof err), 0)) {
		fprintf(stderr, "  %s\n", err);
		goto out_orig;
	}
	if (CHECK_EQ_INT(restore_into(&clone, dir, err, sizeof err), 0)) {
		usleep(50 * 1000);
		struct kvm_lapic_state la;
		CHECK(ioctl(clone.vm.vcpus[0].fd, KVM_GET_LAPIC, &la) == 0);
		CHECK(*lapic_reg(&la, LAPIC_IRR + 0x10 * (PIT_TEST_VECTOR / 32)) & (1u << (PIT_TEST_VECTOR % 32)));
	} else {
		fprintf(stderr, "  restore: %s\n", err);
	}
	tvm_free(&clone);
out_orig:
	tvm_free(&orig);
	rm_rf(dir);
	free(dir);
}
