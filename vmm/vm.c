/*
 * vm.c - the KVM VM: memory, vCPU threads, pause/resume, exit and plumbing
 * for devices (irqfd, ioeventfd, MMIO slots).
 *
 * vCPU threads and pause: a vCPU parks only after KVM_RUN returned EINTR.
 * Whoever wants the vCPUs out sets kvm_run->immediate_exit and sends
 * vm->kick_signal; KVM_RUN then completes any port-I/O or MMIO read the
 * thread emulated last (its result lives in kvm_run until the next entry)
 * and returns EINTR without running guest code. So a parked vCPU never
 * holds a half-finished instruction, and a snapshot of its registers is
 * consistent.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/loop.h"
#include "cpu.h"
#include "vmm.h"

/* Two pages KVM needs below 4 GiB for its real-mode TSS and identity map
 * (VMX); just under the top of the MMIO hole, clear of IOAPIC and LAPIC. */
#define KVM_TSS_ADDR	      0xfffbd000ULL
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL

#define KVM_API_EXPECTED 12

/* --- guest memory --------------------------------------------------------- */

void *gpa_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (!m->host)
		return NULL;
	if (gpa < m->low_size) {
		if (len > m->low_size - gpa)
			return NULL;
		return m->host + gpa;
	}
	if (gpa >= GUEST_HIGH_RAM) {
		uint64_t off = gpa - GUEST_HIGH_RAM;
		if (off >= m->high_size || len > m->high_size - off)
			return NULL;
		return m->host + m->low_size + off;
	}
	return NULL;
}

static int map_guest_ram(struct vm *vm, uint64_t bytes, int mem_fd, char *err, size_t errsz)
{
	struct guest_mem *m = &vm->mem;
	void *p;
	if (mem_fd >= 0) {
		/* MAP_PRIVATE over the snapshot's memory file: every clone
		 * shares the page cache and copies only the pages it writes. */
		p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, mem_fd, 0);
	} else {
		p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	}
	if (p == MAP_FAILED) {
		snprintf(err, errsz, "mapping %" PRIu64 " MiB of guest RAM: %s", bytes >> 20, strerror(errno));
		return -1;
	}
	m->host = p;
	m->size = bytes;
	m->low_size = bytes < GUEST_MMIO_HOLE ? bytes : GUEST_MMIO_HOLE;
	m->high_size = bytes - m->low_size;
	m->backing_fd = mem_fd;
	return 0;
}

static int set_memslot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host, char *err, size_t errsz)
{
	struct kvm_userspace_memory_region r = {
	    .slot = slot, .guest_phys_addr = gpa, .memory_size = size, .userspace_addr = (uintptr_t)host};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
		snprintf(err, errsz, "KVM_SET_USER_MEMORY_REGION slot %u (gpa 0x%" PRIx64 ", %" PRIu64 " MiB): %s",
			 slot, gpa, size >> 20, strerror(errno));
		return -1;
	}
	return 0;
}

static int register_guest_ram(struct vm *vm, char *err, size_t errsz)
{
	struct guest_mem *m = &vm->mem;
	if (set_memslot(vm, 0, 0, m->low_size, m->host, err, errsz) < 0)
		return -1;
	if (m->high_size && set_memslot(vm, 1, GUEST_HIGH_RAM, m->high_size, m->host + m->low_size, err, errsz) < 0)
		return -1;
	return 0;
}

/* --- KVM set-up ----------------------------------------------------------- */

struct kvm_cap_need {
	int cap;
	const char *name;
};

static const struct kvm_cap_need needed_caps[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},	{KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},		{KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
};

static const struct kvm_cap_need irqchip_caps[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
};

static int check_caps(int kvm_fd, const struct kvm_cap_need *caps, size_t n, char *err, size_t errsz)
{
	for (size_t i = 0; i < n; i++) {
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
			snprintf(err, errsz, "/dev/kvm lacks %s, which cube-vmm needs", caps[i].name);
			return -1;
		}
	}
	return 0;
}

static int open_kvm(struct vm *vm, bool want_irqchip, char *err, size_t errsz)
{
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		snprintf(err, errsz, "open /dev/kvm: %s", strerror(errno));
		return -1;
	}
	int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_EXPECTED) {
		snprintf(err, errsz, "/dev/kvm API version %d, cube-vmm needs %d", api, KVM_API_EXPECTED);
		return -1;
	}
	if (check_caps(vm->kvm_fd, needed_caps, sizeof needed_caps / sizeof needed_caps[0], err, errsz) < 0)
		return -1;
	if (want_irqchip &&
	    check_caps(vm->kvm_fd, irqchip_caps, sizeof irqchip_caps / sizeof irqchip_caps[0], err, errsz) < 0)
		return -1;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		snprintf(err, errsz, "KVM_CREATE_VM: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int create_irqchip(struct vm *vm, char *err, size_t errsz)
{
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0) {
		snprintf(err, errsz, "KVM_SET_TSS_ADDR: %s", strerror(errno));
		return -1;
	}
	uint64_t ident = KVM_IDENTITY_MAP_ADDR;
	/* Only VMX needs it; other back ends may refuse, which is harmless. */
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0)
		log_debug("vm.identity_map", "KVM_SET_IDENTITY_MAP_ADDR: %s (ignored)", strerror(errno));
	if (vm->cfg->no_irqchip)
		return 0;
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		snprintf(err, errsz, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return -1;
	}
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		snprintf(err, errsz, "KVM_CREATE_PIT2: %s", strerror(errno));
		return -1;
	}
	vm->has_irqchip = true;
	return 0;
}

static int create_vcpu(struct vm *vm, int id, char *err, size_t errsz)
{
	struct vcpu *v = &vm->vcpus[id];
	v->vm = vm;
	v->id = id;
	v->state = VCPU_STOPPED;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0) {
		snprintf(err, errsz, "KVM_CREATE_VCPU %d: %s", id, strerror(errno));
		return -1;
	}
	int sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0) {
		snprintf(err, errsz, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		return -1;
	}
	v->run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		snprintf(err, errsz, "mmap kvm_run of vCPU %d: %s", id, strerror(errno));
		return -1;
	}
	v->run_size = (size_t)sz;
	return cpu_set_cpuid(vm, v, err, errsz);
}

static void kick_handler(int sig)
{
	(void)sig; /* its only job is to interrupt KVM_RUN */
}

static int install_kick_signal(struct vm *vm, char *err, size_t errsz)
{
	vm->kick_signal = SIGRTMIN + 1;
	struct sigaction sa = {.sa_handler = kick_handler}; /* no SA_RESTART: KVM_RUN must return EINTR */
	sigemptyset(&sa.sa_mask);
	if (sigaction(vm->kick_signal, &sa, NULL) < 0) {
		snprintf(err, errsz, "sigaction: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void on_exit_event(void *arg, uint32_t events)
{
	struct vm *vm = arg;
	uint64_t v;
	if (read(vm->exit_efd, &v, sizeof v) < 0 && errno != EAGAIN)
		log_warn("vm.exit_event", "read: %s", strerror(errno));
	loop_stop(vm->loop);
}

static int init_sync(struct vm *vm, char *err, size_t errsz)
{
	/* Recursive: a device handler runs on a vCPU thread with vm->lock held
	 * and may call vm_request_exit (i8042 reset), which takes it too. */
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&vm->lock, &a);
	pthread_mutexattr_destroy(&a);
	pthread_cond_init(&vm->cond, NULL);
	vm->exit_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (vm->exit_efd < 0) {
		snprintf(err, errsz, "eventfd: %s", strerror(errno));
		return -1;
	}
	if (vm->loop) {
		struct loop_io *io = calloc(1, sizeof *io);
		if (!io || loop_io_add(vm->loop, io, vm->exit_efd, EPOLLIN, on_exit_event, vm) < 0) {
			free(io);
			snprintf(err, errsz, "watching the exit eventfd failed");
			return -1;
		}
		vm->exit_io = io;
	}
	return 0;
}

int vm_init(struct vm *vm, struct vm_config *cfg, struct loop *loop, int mem_fd, char *err, size_t errsz)
{
	memset(vm, 0, sizeof *vm);
	vm->kvm_fd = vm->vm_fd = vm->exit_efd = -1;
	vm->mem.backing_fd = -1;
	vm->cfg = cfg;
	vm->loop = loop;
	vm->nr_vcpus = cfg->nr_vcpus;
	for (int i = 0; i < VMM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > VMM_MAX_VCPUS) {
		snprintf(err, errsz, "%d vCPUs: must be 1..%d", cfg->nr_vcpus, VMM_MAX_VCPUS);
		return -1;
	}
	if (cfg->mem_bytes < (16ULL << 20) || cfg->mem_bytes % 4096) {
		snprintf(err, errsz, "guest RAM of %" PRIu64 " bytes: need at least 16 MiB, in whole pages",
			 cfg->mem_bytes);
		return -1;
	}
	if (init_sync(vm, err, errsz) < 0 || install_kick_signal(vm, err, errsz) < 0)
		return -1;
	if (open_kvm(vm, !cfg->no_irqchip, err, errsz) < 0 || create_irqchip(vm, err, errsz) < 0)
		return -1;
	if (map_guest_ram(vm, cfg->mem_bytes, mem_fd, err, errsz) < 0 || register_guest_ram(vm, err, errsz) < 0)
		return -1;
	for (int i = 0; i < cfg->nr_vcpus; i++)
		if (create_vcpu(vm, i, err, errsz) < 0)
			return -1;
	return 0;
}

/* --- vCPU threads ---------------------------------------------------------- */

const char *vcpu_state_name(enum vcpu_state s)
{
	switch (s) {
	case VCPU_RUNNING: return "running";
	case VCPU_PAUSED: return "paused";
	case VCPU_STOPPED: return "stopped";
	}
	return "?";
}

static void log_vcpu_regs(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		log_error("vcpu.regs", "vcpu=%d registers unreadable: %s", v->id, strerror(errno));
		return;
	}
	log_error("vcpu.regs",
		  "vcpu=%d rip=0x%llx rsp=0x%llx rflags=0x%llx rax=0x%llx rbx=0x%llx rcx=0x%llx rdx=0x%llx "
		  "rsi=0x%llx rdi=0x%llx cr0=0x%llx cr2=0x%llx cr3=0x%llx cr4=0x%llx efer=0x%llx cs=0x%x",
		  v->id, r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, s.cr0, s.cr2, s.cr3, s.cr4,
		  s.efer, s.cs.selector);
}

static uint64_t vcpu_rip(struct vcpu *v)
{
	struct kvm_regs r;
	return ioctl(v->fd, KVM_GET_REGS, &r) < 0 ? 0 : r.rip;
}

static void handle_pio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	/* A string instruction (rep outsb/insb) hands over count items at once. */
	for (uint32_t i = 0; i < run->io.count; i++) {
		if (!bus_access(&v->vm->pio, run->io.port, data, run->io.size, is_write))
			log_debug("vcpu.pio", "vcpu=%d unclaimed %s port 0x%x size %u", v->id, is_write ? "out" : "in",
				  run->io.port, run->io.size);
		data += run->io.size;
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len <= 8 ? run->mmio.len : 8;
	if (!bus_access(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write))
		log_debug("vcpu.mmio", "vcpu=%d unclaimed %s 0x%llx len %u", v->id,
			  run->mmio.is_write ? "write" : "read", run->mmio.phys_addr, len);
}

/* Returns false when the vCPU must stop. */
static bool handle_exit(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_run *run = v->run;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		pthread_mutex_lock(&vm->lock);
		handle_pio(v);
		pthread_mutex_unlock(&vm->lock);
		v->exits++;
		return true;
	case KVM_EXIT_MMIO:
		pthread_mutex_lock(&vm->lock);
		handle_mmio(v);
		pthread_mutex_unlock(&vm->lock);
		v->exits++;
		return true;
	case KVM_EXIT_INTR: return true;
	case KVM_EXIT_HLT:
		/* Only without the in-kernel LAPIC (tests): nothing can wake it. */
		log_info("vm.halt", "vcpu=%d halted with no irqchip to wake it: stopping the VM", v->id);
		vm_request_exit(vm, VMM_EXIT_OK);
		return false;
	case KVM_EXIT_SHUTDOWN:
		log_error("vm.triple_fault", "vcpu=%d triple fault (KVM_EXIT_SHUTDOWN) at rip=0x%" PRIx64, v->id,
			  vcpu_rip(v));
		log_vcpu_regs(v);
		vm_request_exit(vm, VMM_EXIT_TRIPLE_FAULT);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		log_info("vm.system_event", "vcpu=%d system event %u (shutdown/reset)", v->id, run->system_event.type);
		vm_request_exit(vm, VMM_EXIT_OK);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		log_error("vm.kvm_error",
			  "vcpu=%d KVM internal error, suberror %u (1=emulation, 2=simultaneous #PF, "
			  "3=delivery event)",
			  v->id, run->internal.suberror);
		log_vcpu_regs(v);
		vm_request_exit(vm, VMM_EXIT_KVM_ERROR);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		log_error("vm.kvm_error", "vcpu=%d VM entry failed, hardware reason 0x%llx", v->id,
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		log_vcpu_regs(v);
		vm_request_exit(vm, VMM_EXIT_KVM_ERROR);
		return false;
	default:
		log_error("vm.kvm_error", "vcpu=%d unexpected KVM exit reason %u", v->id, run->exit_reason);
		log_vcpu_regs(v);
		vm_request_exit(vm, VMM_EXIT_KVM_ERROR);
		return false;
	}
}

/* Called after KVM_RUN returned EINTR (or before the first entry). Parks
 * while a pause is requested. Returns false when the vCPU must stop. */
static bool vcpu_sync(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool go_on = true;
	pthread_mutex_lock(&vm->lock);
	if (vm->pause_requested && !vm->exiting) {
		v->state = VCPU_PAUSED;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_requested && !vm->exiting)
			pthread_cond_wait(&vm->cond, &vm->lock);
	}
	if (vm->exiting) {
		go_on = false;
	} else {
		v->state = VCPU_RUNNING;
		v->run->immediate_exit = 0;
	}
	pthread_mutex_unlock(&vm->lock);
	return go_on;
}

static void block_signals_but_kick(int kick)
{
	sigset_t set;
	sigfillset(&set);
	sigdelset(&set, kick);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	block_signals_but_kick(vm->kick_signal);
	bool go_on = vcpu_sync(v);
	while (go_on) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				go_on = vcpu_sync(v);
				continue;
			}
			log_error("vm.kvm_error", "vcpu=%d KVM_RUN: %s", v->id, strerror(errno));
			vm_request_exit(vm, VMM_EXIT_KVM_ERROR);
			break;
		}
		go_on = handle_exit(v);
	}
	pthread_mutex_lock(&vm->lock);
	v->state = VCPU_STOPPED;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vm_start_vcpus(struct vm *vm)
{
	vm->start_ms = mono_ms();
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		v->state = VCPU_RUNNING;
		int e = pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (e) {
			v->state = VCPU_STOPPED;
			log_error("vm.start", "creating the thread of vCPU %d: %s", i, strerror(e));
			vm_request_exit(vm, VMM_EXIT_HOST);
			return -1;
		}
	}
	return 0;
}

/* Knocks every vCPU out of KVM_RUN. Caller holds vm->lock. */
static void kick_vcpus(struct vm *vm)
{
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (!v->run)
			continue;
		v->run->immediate_exit = 1;
		if (v->state != VCPU_STOPPED)
			pthread_kill(v->thread, vm->kick_signal);
	}
}

static bool all_vcpus_out(const struct vm *vm)
{
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].state == VCPU_RUNNING)
			return false;
	return true;
}

int vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_requested = true;
	kick_vcpus(vm);
	while (!all_vcpus_out(vm))
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->paused = true;
	pthread_mutex_unlock(&vm->lock);
	for (int i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i].pause)
			vm->devices[i].pause(vm->devices[i].dev);
	return 0;
}

int vm_resume(struct vm *vm)
{
	for (int i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i].resume)
			vm->devices[i].resume(vm->devices[i].dev);
	pthread_mutex_lock(&vm->lock);
	vm->pause_requested = false;
	vm->paused = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

bool vm_is_paused(const struct vm *vm)
{
	return vm->paused;
}

void vm_request_exit(struct vm *vm, int code)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->exiting) {
		vm->exiting = true;
		vm->exit_code = code;
	}
	kick_vcpus(vm);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	uint64_t one = 1;
	if (vm->exit_efd >= 0 && write(vm->exit_efd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_warn("vm.exit_event", "write: %s", strerror(errno));
}

static void join_vcpus(struct vm *vm)
{
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->thread && !pthread_equal(v->thread, pthread_self()))
			pthread_join(v->thread, NULL);
		v->thread = 0;
	}
}

void vm_destroy(struct vm *vm)
{
	if (vm->vm_fd >= 0 || vm->exit_efd >= 0) {
		bool had_threads = false;
		for (int i = 0; i < vm->nr_vcpus; i++)
			had_threads |= vm->vcpus[i].thread != 0;
		if (had_threads) {
			pthread_mutex_lock(&vm->lock);
			if (!vm->exiting) {
				vm->exiting = true;
				vm->exit_code = VMM_EXIT_OK;
			}
			kick_vcpus(vm);
			pthread_cond_broadcast(&vm->cond);
			pthread_mutex_unlock(&vm->lock);
			join_vcpus(vm);
		}
	}
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->run)
			munmap(v->run, v->run_size);
		if (v->fd >= 0)
			close(v->fd);
		v->run = NULL;
		v->fd = -1;
	}
	if (vm->exit_io) {
		loop_io_del(vm->loop, vm->exit_io);
		free(vm->exit_io);
		vm->exit_io = NULL;
	}
	if (vm->mem.host)
		munmap(vm->mem.host, vm->mem.size);
	vm->mem.host = NULL;
	if (vm->mem.backing_fd >= 0)
		close(vm->mem.backing_fd);
	vm->mem.backing_fd = -1;
	if (vm->exit_efd >= 0)
		close(vm->exit_efd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->exit_efd = vm->vm_fd = vm->kvm_fd = -1;
}

/* --- interrupts, ioeventfds, devices --------------------------------------- */

int vm_irq_line(struct vm *vm, int gsi, int level)
{
	if (!vm->has_irqchip)
		return 0;
	struct kvm_irq_level l = {.irq = (uint32_t)gsi, .level = (uint32_t)level};
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0) {
		log_warn("vm.irq", "KVM_IRQ_LINE gsi %d level %d: %s", gsi, level, strerror(errno));
		return -1;
	}
	return 0;
}

int vm_irqfd(struct vm *vm, int gsi)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (!vm->has_irqchip)
		return fd; /* tests without irqchip: signals go nowhere */
	struct kvm_irqfd req = {.fd = (uint32_t)fd, .gsi = (uint32_t)gsi};
	if (ioctl(vm->vm_fd, KVM_IRQFD, &req) < 0) {
		log_error("vm.irqfd", "KVM_IRQFD gsi %d: %s", gsi, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int vm_ioeventfd(struct vm *vm, uint64_t mmio_addr, uint32_t len, int datamatch)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return -1;
	struct kvm_ioeventfd req = {.addr = mmio_addr, .len = len, .fd = fd};
	if (datamatch >= 0) {
		req.datamatch = (uint64_t)datamatch;
		req.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
	}
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &req) < 0) {
		log_error("vm.ioeventfd", "KVM_IOEVENTFD 0x%" PRIx64 ": %s", mmio_addr, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int vm_alloc_mmio_slot(struct vm *vm, uint64_t *base, int *gsi)
{
	if (vm->nr_mmio_slots == VMM_MAX_MMIO_SLOTS)
		return -1;
	int i = vm->nr_mmio_slots++;
	*base = VIRTIO_MMIO_BASE + (uint64_t)i * VIRTIO_MMIO_SIZE;
	*gsi = VIRTIO_MMIO_IRQ0 + i;
	snprintf(vm->mmio_cmdline[i], sizeof vm->mmio_cmdline[i], "virtio_mmio.device=4K@0x%llx:%d",
		 (unsigned long long)*base, *gsi);
	return 0;
}

int vm_add_device(struct vm *vm, const struct vm_device *d)
{
	if (vm->nr_devices == VMM_MAX_DEVICES)
		return -1;
	vm->devices[vm->nr_devices++] = *d;
	return 0;
}

/* --- memory statistics ------------------------------------------------------ */

static void smaps_field(const char *line, const char *name, uint64_t *out)
{
	size_t n = strlen(name);
	if (strncmp(line, name, n) == 0 && line[n] == ':')
		*out = strtoull(line + n + 1, NULL, 10) * 1024; /* "Rss:  123 kB" */
}

int vm_mem_stats(const struct vm *vm, struct vm_mem_stats *st)
{
	memset(st, 0, sizeof *st);
	st->guest_bytes = vm->mem.size;
	FILE *f = fopen("/proc/self/smaps", "re");
	if (!f)
		return -1;
	char line[512];
	bool in_ram = false, found = false;
	uintptr_t want = (uintptr_t)vm->mem.host;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		char dash;
		/* A mapping header starts with "lo-hi "; field lines with a name. */
		if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
			if (found && in_ram)
				break;
			in_ram = lo == want;
			found |= in_ram;
			continue;
		}
		if (!in_ram)
			continue;
		smaps_field(line, "Rss", &st->rss);
		smaps_field(line, "Pss", &st->pss);
		smaps_field(line, "Shared_Clean", &st->shared_clean);
		smaps_field(line, "Shared_Dirty", &st->shared_dirty);
		smaps_field(line, "Private_Clean", &st->private_clean);
		smaps_field(line, "Private_Dirty", &st->private_dirty);
	}
	fclose(f);
	return found ? 0 : -1;
}
