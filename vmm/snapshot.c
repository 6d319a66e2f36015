/*
 * snapshot.c - save a paused VM's RAM and KVM state to a directory, and put
 * it back into a freshly created VM; see snapshot.h and README.md
 * ("Snapshot format").
 *
 * Payloads are written in a fixed order of length-prefixed blobs ("u32
 * length, bytes"), each holding one KVM UAPI struct as the kernel gives it.
 * The reader checks every length against the struct it expects before it
 * copies anything, and decodes every section before the first KVM call, so
 * a bad snapshot is refused before the VM is half restored.
 */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/fileio.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "config.h"
#include "snapfile.h"

#define PAGE_SIZE	4096ULL
#define MEM_WRITE_CHUNK (8ULL << 20) /* large sequential writes */
#define STATE_MAX_BYTES (64u << 20)  /* a state file is KiBs; anything huge is not ours */
#define CPUID_MAX	256
#define MSRS_MAX	1024
#define XSAVE_MAX	(1u << 20)
#define DEVICE_KIND_MAX 64

/* MSRs that matter for a running Linux guest, on top of what
 * KVM_GET_MSR_INDEX_LIST reports (it leaves out some emulated ones, and
 * EFER lives in sregs but is harmless to restore twice). Kept only if this
 * vCPU can read them. */
#define MSR_IA32_TSC		0x10
#define MSR_IA32_SPEC_CTRL	0x48
#define MSR_IA32_TSC_ADJUST	0x3b
#define MSR_IA32_MISC_ENABLE	0x1a0
#define MSR_IA32_PAT		0x277
#define MSR_MTRR_PHYS_BASE0	0x200 /* 8 pairs of base/mask */
#define MSR_MTRR_FIX_64K	0x250
#define MSR_MTRR_FIX_16K_80000	0x258
#define MSR_MTRR_FIX_16K_A0000	0x259
#define MSR_MTRR_FIX_4K_C0000	0x268 /* through 0x26f */
#define MSR_MTRR_DEF_TYPE	0x2ff
#define MSR_IA32_TSC_DEADLINE	0x6e0
#define MSR_EFER		0xc0000080
#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SYSCALL_MASK	0xc0000084
#define MSR_KERNEL_GS_BASE	0xc0000102
#define MSR_TSC_AUX		0xc0000103
#define MSR_KVM_WALL_CLOCK_NEW	0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define MSR_KVM_ASYNC_PF_EN	0x4b564d02
#define MSR_KVM_STEAL_TIME	0x4b564d03
#define MSR_KVM_PV_EOI_EN	0x4b564d04
#define MSR_KVM_POLL_CONTROL	0x4b564d05
#define MSR_KVM_ASYNC_PF_INT	0x4b564d06
#define MSR_KVM_ASYNC_PF_ACK	0x4b564d07

static const uint32_t extra_msrs[] = {
    MSR_IA32_TSC,
    MSR_IA32_TSC_ADJUST,
    MSR_IA32_TSC_DEADLINE,
    MSR_KVM_SYSTEM_TIME_NEW,
    MSR_KVM_WALL_CLOCK_NEW,
    MSR_KVM_ASYNC_PF_EN,
    MSR_KVM_ASYNC_PF_INT,
    MSR_KVM_ASYNC_PF_ACK,
    MSR_KVM_STEAL_TIME,
    MSR_KVM_PV_EOI_EN,
    MSR_KVM_POLL_CONTROL,
    MSR_IA32_MISC_ENABLE,
    MSR_EFER,
    MSR_STAR,
    MSR_LSTAR,
    MSR_CSTAR,
    MSR_SYSCALL_MASK,
    MSR_KERNEL_GS_BASE,
    MSR_TSC_AUX,
    MSR_IA32_SPEC_CTRL,
    MSR_IA32_PAT,
    MSR_MTRR_DEF_TYPE,
    MSR_MTRR_FIX_64K,
    MSR_MTRR_FIX_16K_80000,
    MSR_MTRR_FIX_16K_A0000,
};

static int errf(char *err, size_t errsz, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int errf(char *err, size_t errsz, int code, const char *fmt, ...)
{
	if (errsz) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return code;
}

#define HOST_ERR(...) errf(err, errsz, SNAPSHOT_ERR_HOST, __VA_ARGS__)
#define BAD_SNAP(...) errf(err, errsz, SNAPSHOT_ERR_BAD, __VA_ARGS__)

static void path_in(char *out, size_t n, const char *dir, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* ======================================================================== */
/* Saving                                                                   */
/* ======================================================================== */

static void put_blob(struct snap_w *w, const void *p, uint32_t len)
{
	snap_w_u32(w, len);
	snap_w_put(w, p, len);
}

/* --- SNAP_CONFIG: u32 layout, then the config as JSON with "devices" ------ */
static void save_config(struct vm *vm, struct snap_w *w)
{
	struct buf b = BUF_INIT;
	struct jw j;
	jw_init(&j, &b);
	jw_obj(&j);
	vm_config_write_members(vm->cfg, &j);
	jw_key(&j, "devices");
	jw_arr(&j);
	for (int i = 0; i < vm->nr_devices; i++)
		jw_str(&j, vm->devices[i].kind);
	jw_end(&j);
	jw_end(&j);
	snap_w_begin(w, SNAP_CONFIG, 0);
	snap_w_u32(w, SNAPSHOT_CONFIG_LAYOUT);
	snap_w_put(w, b.data, b.len);
	snap_w_end(w);
	buf_free(&b);
}

/* --- SNAP_VM: u32 layout, u32 flags, [PIC master, PIC slave, IOAPIC, PIT2], clock.
 * The irqchip blobs are there only with SNAP_VM_IRQCHIP (a VM created
 * without the in-kernel irqchip, for tests, has none). */
#define SNAP_VM_IRQCHIP 1u

static int save_vm(struct vm *vm, struct snap_w *w, char *err, size_t errsz)
{
	struct kvm_irqchip chips[3];
	struct kvm_pit_state2 pit;
	memset(chips, 0, sizeof(chips));
	memset(&pit, 0, sizeof(pit));
	for (int i = 0; i < 3 && vm->has_irqchip; i++) {
		chips[i].chip_id = (uint32_t)i; /* KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC */
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chips[i]) < 0)
			return HOST_ERR("KVM_GET_IRQCHIP %d: %s", i, strerror(errno));
	}
	if (vm->has_irqchip && ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return HOST_ERR("KVM_GET_PIT2: %s", strerror(errno));
	struct kvm_clock_data clock;
	memset(&clock, 0, sizeof(clock));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return HOST_ERR("KVM_GET_CLOCK: %s", strerror(errno));
	snap_w_begin(w, SNAP_VM, 0);
	snap_w_u32(w, SNAPSHOT_VM_LAYOUT);
	snap_w_u32(w, vm->has_irqchip ? SNAP_VM_IRQCHIP : 0);
	if (vm->has_irqchip) {
		for (int i = 0; i < 3; i++)
			put_blob(w, &chips[i], sizeof(chips[i]));
		put_blob(w, &pit, sizeof(pit));
	}
	put_blob(w, &clock, sizeof(clock));
	snap_w_end(w);
	return 0;
}

/* The MSR indices worth trying: KVM's save/restore list plus extra_msrs,
 * without duplicates. Returns a malloc'd array. */
static uint32_t *msr_candidates(int kvm_fd, uint32_t *count)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + MSRS_MAX * sizeof(uint32_t));
	uint32_t *out = calloc(MSRS_MAX + sizeof(extra_msrs) / sizeof(extra_msrs[0]) + 16, sizeof(uint32_t));
	if (!l || !out) {
		free(l);
		free(out);
		return NULL;
	}
	uint32_t n = 0;
	l->nmsrs = MSRS_MAX;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) == 0)
		for (uint32_t i = 0; i < l->nmsrs && i < MSRS_MAX; i++)
			out[n++] = l->indices[i];
	size_t nextra = sizeof(extra_msrs) / sizeof(extra_msrs[0]);
	for (size_t i = 0; i < nextra + 16 + 8; i++) {
		uint32_t idx;
		if (i < nextra)
			idx = extra_msrs[i];
		else if (i < nextra + 16)
			idx = MSR_MTRR_PHYS_BASE0 + (uint32_t)(i - nextra); /* variable-range MTRRs */
		else
			idx = MSR_MTRR_FIX_4K_C0000 + (uint32_t)(i - nextra - 16);
		bool seen = false;
		for (uint32_t k = 0; k < n && !seen; k++)
			seen = out[k] == idx;
		if (!seen)
			out[n++] = idx;
	}
	free(l);
	*count = n;
	return out;
}

/* TSC first, so that whatever KVM derives from the guest TSC when the other
 * MSRs are written (TSC_DEADLINE, kvmclock) sees the restored value. */
static void tsc_first(struct kvm_msr_entry *e, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++) {
		if (e[i].index != MSR_IA32_TSC)
			continue;
		struct kvm_msr_entry t = e[i];
		memmove(&e[1], &e[0], i * sizeof(*e));
		e[0] = t;
		return;
	}
}

/* Reads every candidate MSR this vCPU has. KVM_GET_MSRS stops at the first
 * index it cannot read and returns how many it did: keep those, drop the
 * failing one and go on from the next. Returns the kept entries. */
static struct kvm_msrs *read_msrs(struct vm *vm, struct vcpu *v, char *err, size_t errsz)
{
	uint32_t n = 0;
	uint32_t *idx = msr_candidates(vm->kvm_fd, &n);
	struct kvm_msrs *all = idx ? calloc(1, sizeof(*all) + n * sizeof(struct kvm_msr_entry)) : NULL;
	struct kvm_msrs *part = idx ? calloc(1, sizeof(*part) + n * sizeof(struct kvm_msr_entry)) : NULL;
	if (!all || !part) {
		free(idx);
		free(all);
		free(part);
		HOST_ERR("out of memory for MSRs");
		return NULL;
	}
	uint32_t pos = 0;
	while (pos < n) {
		part->nmsrs = n - pos;
		for (uint32_t i = 0; i < part->nmsrs; i++)
			part->entries[i] = (struct kvm_msr_entry){.index = idx[pos + i]};
		int r = ioctl(v->fd, KVM_GET_MSRS, part);
		if (r < 0) {
			HOST_ERR("KVM_GET_MSRS on vCPU %d: %s", v->id, strerror(errno));
			free(idx);
			free(all);
			free(part);
			return NULL;
		}
		memcpy(&all->entries[all->nmsrs], part->entries, (size_t)r * sizeof(struct kvm_msr_entry));
		all->nmsrs += (uint32_t)r;
		pos += (uint32_t)r + 1; /* skip the one that failed (or step past the end) */
	}
	tsc_first(all->entries, all->nmsrs);
	free(idx);
	free(part);
	return all;
}

/* Returns the XSAVE area size to use: KVM_CAP_XSAVE2 says how big the area
 * is with dynamic features (AMX); 4096 without them; 0 without XSAVE. */
static uint32_t xsave_size(struct vm *vm)
{
	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) <= 0)
		return 0;
	int s = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return s > (int)sizeof(struct kvm_xsave) && s <= (int)XSAVE_MAX ? (uint32_t)s : sizeof(struct kvm_xsave);
}

static int save_xsave(struct vm *vm, struct vcpu *v, struct snap_w *w, char *err, size_t errsz)
{
	uint32_t size = xsave_size(vm);
	if (!size)
		return HOST_ERR("KVM has no XSAVE: this VMM needs KVM_CAP_XSAVE");
	void *x = calloc(1, size);
	if (!x)
		return HOST_ERR("out of memory for XSAVE");
	unsigned long req = size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	if (ioctl(v->fd, req, x) < 0) {
		free(x);
		return HOST_ERR("KVM_GET_XSAVE on vCPU %d: %s", v->id, strerror(errno));
	}
	put_blob(w, x, size);
	free(x);
	return 0;
}

/* One ioctl that fills a fixed-size struct, written as a blob. */
static int save_one(struct vcpu *v, struct snap_w *w, unsigned long req, const char *name, void *buf, uint32_t size,
		    char *err, size_t errsz)
{
	memset(buf, 0, size);
	if (ioctl(v->fd, req, buf) < 0)
		return HOST_ERR("%s on vCPU %d: %s", name, v->id, strerror(errno));
	put_blob(w, buf, size);
	return 0;
}

/*
 * SNAP_VCPU payload, layout 1:
 *   u32 layout, u32 tsc_khz (0 = unknown),
 *   blobs: cpuid entries, mp_state, regs, sregs, xsave, xcrs (empty if the
 *   host has none), debugregs, lapic (empty without the in-kernel irqchip),
 *   msr entries, vcpu_events
 */
static int save_vcpu(struct vm *vm, struct vcpu *v, struct snap_w *w, char *err, size_t errsz)
{
	size_t csz = sizeof(struct kvm_cpuid2) + CPUID_MAX * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *cpuid = calloc(1, csz);
	if (!cpuid)
		return HOST_ERR("out of memory for CPUID");
	cpuid->nent = CPUID_MAX;
	if (ioctl(v->fd, KVM_GET_CPUID2, cpuid) < 0) {
		free(cpuid);
		return HOST_ERR("KVM_GET_CPUID2 on vCPU %d: %s", v->id, strerror(errno));
	}
	int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	snap_w_begin(w, SNAP_VCPU, (uint32_t)v->id);
	snap_w_u32(w, SNAPSHOT_VCPU_LAYOUT);
	snap_w_u32(w, khz > 0 ? (uint32_t)khz : 0);
	put_blob(w, cpuid->entries, cpuid->nent * (uint32_t)sizeof(struct kvm_cpuid_entry2));
	free(cpuid);

	union {
		struct kvm_mp_state mp;
		struct kvm_regs regs;
		struct kvm_sregs sregs;
		struct kvm_xcrs xcrs;
		struct kvm_debugregs dr;
		struct kvm_lapic_state lapic;
		struct kvm_vcpu_events ev;
	} u;
	if (save_one(v, w, KVM_GET_MP_STATE, "KVM_GET_MP_STATE", &u, sizeof(u.mp), err, errsz) ||
	    save_one(v, w, KVM_GET_REGS, "KVM_GET_REGS", &u, sizeof(u.regs), err, errsz) ||
	    save_one(v, w, KVM_GET_SREGS, "KVM_GET_SREGS", &u, sizeof(u.sregs), err, errsz) ||
	    save_xsave(vm, v, w, err, errsz))
		return SNAPSHOT_ERR_HOST;
	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0) {
		if (save_one(v, w, KVM_GET_XCRS, "KVM_GET_XCRS", &u, sizeof(u.xcrs), err, errsz))
			return SNAPSHOT_ERR_HOST;
	} else {
		put_blob(w, NULL, 0);
	}
	if (save_one(v, w, KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", &u, sizeof(u.dr), err, errsz))
		return SNAPSHOT_ERR_HOST;
	if (!vm->has_irqchip)
		put_blob(w, NULL, 0); /* no in-kernel LAPIC */
	else if (save_one(v, w, KVM_GET_LAPIC, "KVM_GET_LAPIC", &u, sizeof(u.lapic), err, errsz))
		return SNAPSHOT_ERR_HOST;
	struct kvm_msrs *msrs = read_msrs(vm, v, err, errsz);
	if (!msrs)
		return SNAPSHOT_ERR_HOST;
	put_blob(w, msrs->entries, msrs->nmsrs * (uint32_t)sizeof(struct kvm_msr_entry));
	free(msrs);
	if (save_one(v, w, KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", &u, sizeof(u.ev), err, errsz))
		return SNAPSHOT_ERR_HOST;
	snap_w_end(w);
	return 0;
}

/* SNAP_DEVICE payload, layout 1: u32 layout, blob kind, u64 length + the
 * device's own payload (which starts with the device's own version). */
static int save_device(struct vm *vm, int i, struct snap_w *w, char *err, size_t errsz)
{
	const struct vm_device *d = &vm->devices[i];
	const char *kind = d->kind ? d->kind : "";
	snap_w_begin(w, SNAP_DEVICE, (uint32_t)i);
	snap_w_u32(w, SNAPSHOT_DEVICE_LAYOUT);
	put_blob(w, kind, (uint32_t)strnlen(kind, DEVICE_KIND_MAX));
	size_t len_at = w->b.len;
	snap_w_u64(w, 0);
	if (d->save && d->save(d->dev, w) < 0)
		return HOST_ERR("saving device %d (%s) failed", i, kind);
	uint64_t len = w->b.len - len_at - 8;
	for (int k = 0; k < 8; k++)
		((uint8_t *)w->b.data)[len_at + (size_t)k] = (uint8_t)(len >> (8 * k));
	snap_w_end(w);
	return 0;
}

static int build_state(struct vm *vm, struct snap_w *w, char *err, size_t errsz)
{
	save_config(vm, w);
	if (save_vm(vm, w, err, errsz))
		return SNAPSHOT_ERR_HOST;
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (save_vcpu(vm, &vm->vcpus[i], w, err, errsz))
			return SNAPSHOT_ERR_HOST;
	for (int i = 0; i < vm->nr_devices; i++)
		if (save_device(vm, i, w, err, errsz))
			return SNAPSHOT_ERR_HOST;
	return 0;
}

static bool page_is_zero(const uint8_t *p, size_t n)
{
	static const uint8_t zero[PAGE_SIZE];
	return memcmp(p, zero, n) == 0;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off)
{
	while (n) {
		ssize_t r = pwrite(fd, p, n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

/* Non-zero runs of pages go out in writes of up to MEM_WRITE_CHUNK; zero
 * pages are skipped and become holes (ftruncate sets the length). */
static int write_sparse(int fd, const uint8_t *mem, uint64_t size)
{
	uint64_t off = 0;
	while (off < size) {
		while (off < size && page_is_zero(mem + off, (size_t)(size - off < PAGE_SIZE ? size - off : PAGE_SIZE)))
			off += PAGE_SIZE;
		uint64_t start = off;
		while (off < size && off - start < MEM_WRITE_CHUNK &&
		       !page_is_zero(mem + off, (size_t)(size - off < PAGE_SIZE ? size - off : PAGE_SIZE)))
			off += PAGE_SIZE;
		uint64_t end = off < size ? off : size;
		if (end > start && pwrite_all(fd, mem + start, (size_t)(end - start), (off_t)start) < 0)
			return -1;
	}
	return ftruncate(fd, (off_t)size);
}

/* To a temporary name, then renamed: running clones may have the old
 * memory file mapped MAP_PRIVATE, and rewriting it in place would change
 * the pages they have not copied yet. */
static int save_memory(struct vm *vm, const char *dir, char *err, size_t errsz)
{
	char path[4096], tmp[4200];
	path_in(path, sizeof(path), dir, SNAPSHOT_MEMORY_FILE);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return HOST_ERR("%s: %s", tmp, strerror(errno));
	if (write_sparse(fd, vm->mem.host, vm->mem.size) < 0 || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return HOST_ERR("writing %s: %s", tmp, strerror(e));
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return HOST_ERR("rename %s: %s", path, strerror(e));
	}
	return 0;
}

int snapshot_save(struct vm *vm, const char *dir, char *err, size_t errsz)
{
	if (!vm->cfg)
		return HOST_ERR("snapshot: the VM has no configuration");
	if (dir_make_all(dir, 0755) < 0)
		return HOST_ERR("creating %s: %s", dir, strerror(errno));
	char state[4096];
	path_in(state, sizeof(state), dir, SNAPSHOT_STATE_FILE);
	/* An old state file must not pair with a half-written new memory file. */
	if (unlink(state) < 0 && errno != ENOENT)
		return HOST_ERR("removing the old %s: %s", state, strerror(errno));

	struct snap_w w;
	snap_w_init(&w);
	w.dir = dir;
	int rc = build_state(vm, &w, err, errsz);
	if (rc == 0)
		rc = save_memory(vm, dir, err, errsz);
	if (rc == 0 && snap_w_write(&w, state) < 0)
		rc = HOST_ERR("writing %s: %s", state, strerror(errno));
	if (rc == 0)
		log_info("snapshot.saved", "dir=%s vcpus=%d devices=%d state_bytes=%zu mem_bytes=%" PRIu64, dir,
			 vm->nr_vcpus, vm->nr_devices, w.b.len + SNAP_TRAILER_LEN, vm->mem.size);
	snap_w_free(&w);
	return rc;
}

/* ======================================================================== */
/* Loading                                                                  */
/* ======================================================================== */

/* A missing file means the directory is not a (complete) snapshot. */
static int open_error(const char *path, char *err, size_t errsz)
{
	if (errno == ENOENT || errno == ENOTDIR)
		return BAD_SNAP("%s: %s (not a snapshot, or an incomplete one)", path, strerror(errno));
	return HOST_ERR("%s: %s", path, strerror(errno));
}

static int read_state(const char *dir, struct buf *out, char *err, size_t errsz)
{
	char path[4096];
	path_in(path, sizeof(path), dir, SNAPSHOT_STATE_FILE);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return open_error(path, err, errsz);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return HOST_ERR("%s: %s", path, strerror(errno));
	}
	if (st.st_size > STATE_MAX_BYTES) {
		close(fd);
		return BAD_SNAP("%s: %lld bytes, too big for a state file", path, (long long)st.st_size);
	}
	buf_reset(out);
	char *p = buf_reserve(out, (size_t)st.st_size);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, p + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			return HOST_ERR("reading %s: %s", path, strerror(e));
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf_commit(out, got);
	return 0;
}

/* Reads and validates dir/state into r (which points into file). */
static int open_state(const char *dir, struct buf *file, struct snap_r *r, char *err, size_t errsz)
{
	int rc = read_state(dir, file, err, errsz);
	if (rc)
		return rc;
	char why[200];
	if (snap_r_open(r, file->data, file->len, why, sizeof(why)) < 0)
		return BAD_SNAP("%s/%s: %s", dir, SNAPSHOT_STATE_FILE, why);
	return 0;
}

static int parse_config_section(const struct snap_r *r, struct vm_config *cfg, char *err, size_t errsz)
{
	const struct snap_section *s = snap_r_find(r, SNAP_CONFIG, 0);
	if (!s)
		return BAD_SNAP("snapshot has no configuration section");
	struct snap_cur c;
	snap_cur_init(&c, s->data, s->len);
	uint32_t layout = snap_cur_u32(&c);
	if (c.bad || layout != SNAPSHOT_CONFIG_LAYOUT)
		return BAD_SNAP("configuration section: layout %" PRIu32 ", this VMM reads %d", layout,
				SNAPSHOT_CONFIG_LAYOUT);
	char why[200];
	if (vm_config_from_json((const char *)c.p, (size_t)c.left, cfg, why, sizeof(why)) < 0)
		return BAD_SNAP("configuration section: %s", why);
	return 0;
}

int snapshot_load_config(const char *dir, struct vm_config *cfg, char *err, size_t errsz)
{
	struct buf file = BUF_INIT;
	struct snap_r r;
	memset(&r, 0, sizeof(r));
	int rc = open_state(dir, &file, &r, err, errsz);
	if (rc == 0)
		rc = parse_config_section(&r, cfg, err, errsz);
	snap_r_free(&r);
	buf_free(&file);
	return rc;
}

int snapshot_open_memory(const char *dir, uint64_t mem_bytes, char *err, size_t errsz)
{
	char path[4096];
	path_in(path, sizeof(path), dir, SNAPSHOT_MEMORY_FILE);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return open_error(path, err, errsz);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return HOST_ERR("%s: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != mem_bytes) {
		close(fd);
		if ((uint64_t)st.st_size < mem_bytes)
			return BAD_SNAP("%s: truncated, %lld of %" PRIu64 " bytes", path, (long long)st.st_size,
					mem_bytes);
		return BAD_SNAP("%s: %lld bytes, the snapshot's RAM is %" PRIu64, path, (long long)st.st_size,
				mem_bytes);
	}
	return fd;
}

/* --- decoding: every length checked before any KVM call ----------------- */

struct blob {
	const uint8_t *p;
	uint32_t len;
};

/* Next blob; its length must be want (or, with want == 0, anything). */
static int get_blob(struct snap_cur *c, struct blob *b, uint32_t want, const char *what, char *err, size_t errsz)
{
	b->len = snap_cur_u32(c);
	b->p = snap_cur_ptr(c, b->len);
	if (c->bad)
		return BAD_SNAP("%s: payload ends early", what);
	if (want && b->len != want)
		return BAD_SNAP("%s: %" PRIu32 " bytes, expected %" PRIu32, what, b->len, want);
	return 0;
}

struct vm_snap {
	uint32_t flags;
	struct blob chip[3], pit, clock;
};

struct vcpu_snap {
	uint32_t tsc_khz;
	struct blob cpuid, mp, regs, sregs, xsave, xcrs, dregs, lapic, msrs, events;
};

struct dev_snap {
	struct blob kind;
	const uint8_t *data;
	uint64_t len;
};

static int check_layout(struct snap_cur *c, uint32_t want, const char *what, char *err, size_t errsz)
{
	uint32_t v = snap_cur_u32(c);
	if (c->bad)
		return BAD_SNAP("%s: empty payload", what);
	if (v != want)
		return BAD_SNAP("%s: layout %" PRIu32 ", this VMM reads %" PRIu32, what, v, want);
	return 0;
}

static int decode_vm(const struct snap_r *r, struct vm_snap *s, char *err, size_t errsz)
{
	const struct snap_section *sec = snap_r_find(r, SNAP_VM, 0);
	if (!sec)
		return BAD_SNAP("snapshot has no VM section");
	struct snap_cur c;
	snap_cur_init(&c, sec->data, sec->len);
	const char *names[3] = {"VM section: PIC master", "VM section: PIC slave", "VM section: IOAPIC"};
	int rc = check_layout(&c, SNAPSHOT_VM_LAYOUT, "VM section", err, errsz);
	s->flags = snap_cur_u32(&c);
	if (!rc && s->flags & ~SNAP_VM_IRQCHIP)
		rc = BAD_SNAP("VM section: unknown flags 0x%" PRIx32, s->flags);
	for (int i = 0; i < 3 && !rc && (s->flags & SNAP_VM_IRQCHIP); i++)
		rc = get_blob(&c, &s->chip[i], sizeof(struct kvm_irqchip), names[i], err, errsz);
	if (!rc && (s->flags & SNAP_VM_IRQCHIP))
		rc = get_blob(&c, &s->pit, sizeof(struct kvm_pit_state2), "VM section: PIT", err, errsz);
	if (!rc)
		rc = get_blob(&c, &s->clock, sizeof(struct kvm_clock_data), "VM section: clock", err, errsz);
	if (!rc && c.left)
		rc = BAD_SNAP("VM section: %" PRIu64 " unexpected bytes at the end", c.left);
	return rc;
}

static int decode_vcpu(const struct snap_section *sec, struct vcpu_snap *s, char *err, size_t errsz)
{
	char what[64];
	snprintf(what, sizeof(what), "vCPU %" PRIu32, sec->index);
	struct snap_cur c;
	snap_cur_init(&c, sec->data, sec->len);
	if (check_layout(&c, SNAPSHOT_VCPU_LAYOUT, what, err, errsz))
		return SNAPSHOT_ERR_BAD;
	s->tsc_khz = snap_cur_u32(&c);
	struct {
		struct blob *b;
		uint32_t want;
		const char *name;
	} parts[] = {
	    {&s->cpuid, 0, "CPUID"},
	    {&s->mp, sizeof(struct kvm_mp_state), "MP state"},
	    {&s->regs, sizeof(struct kvm_regs), "regs"},
	    {&s->sregs, sizeof(struct kvm_sregs), "sregs"},
	    {&s->xsave, 0, "XSAVE"},
	    {&s->xcrs, 0, "XCRs"},
	    {&s->dregs, sizeof(struct kvm_debugregs), "debug registers"},
	    {&s->lapic, 0, "LAPIC"},
	    {&s->msrs, 0, "MSRs"},
	    {&s->events, sizeof(struct kvm_vcpu_events), "vCPU events"},
	};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		char part[96];
		snprintf(part, sizeof(part), "%s %s", what, parts[i].name);
		if (get_blob(&c, parts[i].b, parts[i].want, part, err, errsz))
			return SNAPSHOT_ERR_BAD;
	}
	if (c.left)
		return BAD_SNAP("%s: %" PRIu64 " unexpected bytes at the end", what, c.left);
	if (s->cpuid.len % sizeof(struct kvm_cpuid_entry2) ||
	    s->cpuid.len / sizeof(struct kvm_cpuid_entry2) > CPUID_MAX)
		return BAD_SNAP("%s CPUID: %" PRIu32 " bytes is not a list of at most %d entries", what, s->cpuid.len,
				CPUID_MAX);
	if (s->xsave.len < sizeof(struct kvm_xsave) || s->xsave.len > XSAVE_MAX)
		return BAD_SNAP("%s XSAVE: %" PRIu32 " bytes, expected %zu..%u", what, s->xsave.len,
				sizeof(struct kvm_xsave), XSAVE_MAX);
	if (s->xcrs.len && s->xcrs.len != sizeof(struct kvm_xcrs))
		return BAD_SNAP("%s XCRs: %" PRIu32 " bytes, expected %zu", what, s->xcrs.len, sizeof(struct kvm_xcrs));
	if (s->lapic.len && s->lapic.len != sizeof(struct kvm_lapic_state))
		return BAD_SNAP("%s LAPIC: %" PRIu32 " bytes, expected %zu", what, s->lapic.len,
				sizeof(struct kvm_lapic_state));
	if (s->msrs.len % sizeof(struct kvm_msr_entry) || s->msrs.len / sizeof(struct kvm_msr_entry) > MSRS_MAX)
		return BAD_SNAP("%s MSRs: %" PRIu32 " bytes is not a list of at most %d entries", what, s->msrs.len,
				MSRS_MAX);
	return 0;
}

static int decode_device(const struct snap_section *sec, struct dev_snap *s, char *err, size_t errsz)
{
	char what[64];
	snprintf(what, sizeof(what), "device %" PRIu32, sec->index);
	struct snap_cur c;
	snap_cur_init(&c, sec->data, sec->len);
	if (check_layout(&c, SNAPSHOT_DEVICE_LAYOUT, what, err, errsz) || get_blob(&c, &s->kind, 0, what, err, errsz))
		return SNAPSHOT_ERR_BAD;
	if (s->kind.len > DEVICE_KIND_MAX)
		return BAD_SNAP("%s: kind is %" PRIu32 " bytes long", what, s->kind.len);
	s->len = snap_cur_u64(&c);
	s->data = snap_cur_ptr(&c, s->len);
	if (c.bad)
		return BAD_SNAP("%s: payload ends early", what);
	if (c.left)
		return BAD_SNAP("%s: %" PRIu64 " unexpected bytes at the end", what, c.left);
	return 0;
}

/* The snapshot must describe this very VM: same RAM, vCPUs and devices in
 * the same order. */
static int check_match(struct vm *vm, const struct snap_r *r, struct dev_snap *devs, char *err, size_t errsz)
{
	struct vm_config cfg;
	int rc = parse_config_section(r, &cfg, err, errsz);
	if (rc)
		return rc;
	uint64_t mem = cfg.mem_bytes;
	vm_config_free(&cfg);
	if (mem != vm->mem.size)
		return BAD_SNAP("snapshot RAM is %" PRIu64 " bytes, the VM has %" PRIu64, mem, vm->mem.size);
	uint32_t nv = snap_r_count(r, SNAP_VCPU), nd = snap_r_count(r, SNAP_DEVICE);
	if (nv != (uint32_t)vm->nr_vcpus)
		return BAD_SNAP("snapshot has %" PRIu32 " vCPUs, the VM %d", nv, vm->nr_vcpus);
	if (nd != (uint32_t)vm->nr_devices)
		return BAD_SNAP("snapshot has %" PRIu32 " devices, the VM %d", nd, vm->nr_devices);
	for (int i = 0; i < vm->nr_devices; i++) {
		const struct snap_section *s = snap_r_find(r, SNAP_DEVICE, (uint32_t)i);
		if (!s)
			return BAD_SNAP("snapshot has no section for device %d", i);
		if ((rc = decode_device(s, &devs[i], err, errsz)))
			return rc;
		const char *kind = vm->devices[i].kind ? vm->devices[i].kind : "";
		if (strlen(kind) != devs[i].kind.len || memcmp(kind, devs[i].kind.p, devs[i].kind.len) != 0)
			return BAD_SNAP("device %d is \"%.*s\" in the snapshot but \"%s\" in this VM", i,
					(int)devs[i].kind.len, (const char *)devs[i].kind.p, kind);
		if (!vm->devices[i].load && devs[i].len)
			return BAD_SNAP("device %d (%s) has saved state but cannot load it", i, kind);
	}
	return 0;
}

int snapshot_validate(const struct snap_r *r, char *err, size_t errsz)
{
	struct vm_config cfg;
	int rc = parse_config_section(r, &cfg, err, errsz);
	if (rc)
		return rc;
	vm_config_free(&cfg);
	struct vm_snap vs;
	if ((rc = decode_vm(r, &vs, err, errsz)))
		return rc;
	for (uint32_t i = 0; i < r->nr_sections; i++) {
		const struct snap_section *s = &r->sections[i];
		struct vcpu_snap cpu;
		struct dev_snap dev;
		switch (s->tag) {
		case SNAP_CONFIG:
		case SNAP_VM:
			if (s->index != 0)
				return BAD_SNAP("section tag %" PRIu32 " with index %" PRIu32, s->tag, s->index);
			break;
		case SNAP_VCPU:
			if (s->index >= VMM_MAX_VCPUS)
				return BAD_SNAP("vCPU section index %" PRIu32 " out of range", s->index);
			if ((rc = decode_vcpu(s, &cpu, err, errsz)))
				return rc;
			break;
		case SNAP_DEVICE:
			if (s->index >= VMM_MAX_DEVICES)
				return BAD_SNAP("device section index %" PRIu32 " out of range", s->index);
			if ((rc = decode_device(s, &dev, err, errsz)))
				return rc;
			break;
		default: return BAD_SNAP("unknown section tag %" PRIu32, s->tag);
		}
	}
	return 0;
}

/* --- applying ----------------------------------------------------------- */

/* Copies a blob into an aligned buffer of at least size bytes (zero-padded)
 * and runs one ioctl on it. */
static int set_from_blob(int fd, unsigned long req, const struct blob *b, size_t size, const char *name, int vcpu,
			 char *err, size_t errsz)
{
	size_t n = size > b->len ? size : b->len;
	void *buf = calloc(1, n);
	if (!buf)
		return HOST_ERR("out of memory for %s", name);
	memcpy(buf, b->p, b->len);
	int r = ioctl(fd, req, buf);
	int e = errno;
	free(buf);
	if (r < 0) {
		if (vcpu >= 0)
			return HOST_ERR("%s on vCPU %d: %s", name, vcpu, strerror(e));
		return HOST_ERR("%s: %s", name, strerror(e));
	}
	return 0;
}

static int check_irqchip(const struct vm *vm, const struct vm_snap *s, char *err, size_t errsz)
{
	bool had = s->flags & SNAP_VM_IRQCHIP;
	if (had != vm->has_irqchip)
		return BAD_SNAP("the snapshot was taken %s the in-kernel irqchip, this VM runs %s it",
				had ? "with" : "without", vm->has_irqchip ? "with" : "without");
	for (int i = 0; had && i < 3; i++) {
		struct kvm_irqchip chip;
		memcpy(&chip, s->chip[i].p, sizeof(chip));
		if (chip.chip_id != (uint32_t)i)
			return BAD_SNAP("VM section: irqchip %d has id %" PRIu32, i, chip.chip_id);
	}
	return 0;
}

/* The interrupt sources that live in the VM, not in a vCPU: PIC, IOAPIC,
 * then the PIT. Called once every vCPU's LAPIC is in place, because these
 * can raise an interrupt the moment they are set: KVM_SET_PIT2 starts the
 * PIT's timer from the saved count, KVM_SET_IRQCHIP replays a saved IOAPIC
 * request. Done earlier, such an interrupt reached the vCPU's LAPIC while
 * it still held its reset state, and KVM_SET_LAPIC then overwrote it: the
 * guest never saw that tick. A Linux guest whose clock events come from the
 * PIT (the LAPIC timer is not always usable under nested virtualization)
 * waits for it forever: KVM's PIT re-injects only after the guest
 * acknowledges the previous tick, so no further tick comes and every timer
 * in the guest stops. */
static int restore_vm_irq_sources(struct vm *vm, const struct vm_snap *s, char *err, size_t errsz)
{
	if (!vm->has_irqchip)
		return 0;
	for (int i = 0; i < 3; i++) {
		struct kvm_irqchip chip;
		memcpy(&chip, s->chip[i].p, sizeof(chip));
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return HOST_ERR("KVM_SET_IRQCHIP %d: %s", i, strerror(errno));
	}
	return set_from_blob(vm->vm_fd, KVM_SET_PIT2, &s->pit, sizeof(struct kvm_pit_state2), "KVM_SET_PIT2", -1, err,
			     errsz);
}

static int restore_cpuid(struct vcpu *v, const struct vcpu_snap *s, char *err, size_t errsz)
{
	uint32_t nent = s->cpuid.len / (uint32_t)sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + s->cpuid.len);
	if (!c)
		return HOST_ERR("out of memory for CPUID");
	c->nent = nent;
	memcpy(c->entries, s->cpuid.p, s->cpuid.len);
	int r = ioctl(v->fd, KVM_SET_CPUID2, c);
	int e = errno;
	free(c);
	if (r < 0)
		return HOST_ERR("KVM_SET_CPUID2 on vCPU %d: %s", v->id, strerror(e));
	return 0;
}

static int restore_msrs(struct vcpu *v, const struct vcpu_snap *s, char *err, size_t errsz)
{
	uint32_t n = s->msrs.len / (uint32_t)sizeof(struct kvm_msr_entry);
	struct kvm_msrs *m = calloc(1, sizeof(*m) + s->msrs.len);
	if (!m)
		return HOST_ERR("out of memory for MSRs");
	m->nmsrs = n;
	memcpy(m->entries, s->msrs.p, s->msrs.len);
	tsc_first(m->entries, n);
	int r = ioctl(v->fd, KVM_SET_MSRS, m);
	int e = errno;
	uint32_t failed = r >= 0 && (uint32_t)r < n ? m->entries[r].index : 0;
	free(m);
	if (r < 0)
		return HOST_ERR("KVM_SET_MSRS on vCPU %d: %s", v->id, strerror(e));
	if ((uint32_t)r < n)
		return HOST_ERR("KVM_SET_MSRS on vCPU %d: MSR 0x%" PRIx32 " refused (%d of %" PRIu32 " set)", v->id,
				failed, r, n);
	return 0;
}

/* A different TSC rate would make the guest's clocks run fast or slow. */
static void restore_tsc_khz(struct vm *vm, struct vcpu *v, uint32_t khz)
{
	int now = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	if (!khz || now <= 0 || (uint32_t)now == khz)
		return;
	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) > 0 &&
	    ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)khz) == 0)
		return;
	log_warn("snapshot.tsc",
		 "vcpu=%d snapshot TSC %" PRIu32 " kHz, this host %d kHz and no TSC scaling: guest "
		 "clocks may drift until it recalibrates",
		 v->id, khz, now);
}

/*
 * The order KVM needs: CPUID first (it decides which XSAVE features, CR4
 * bits and MSRs are valid), MP state, regs, sregs (CR0/CR4/EFER before the
 * XSAVE and XCR0 that depend on them), XSAVE, XCRs, debug registers, the
 * LAPIC (before the MSRs: TSC_DEADLINE only sticks when the LAPIC timer is
 * in deadline mode; APIC_BASE is in sregs), the MSRs with TSC first, and
 * vCPU events last, because the setters above may clear pending
 * exception/interrupt/NMI state that the events carry.
 */
static int restore_vcpu(struct vm *vm, struct vcpu *v, const struct vcpu_snap *s, char *err, size_t errsz)
{
	int fd = v->fd, id = v->id;
	restore_tsc_khz(vm, v, s->tsc_khz);
	if (restore_cpuid(v, s, err, errsz) ||
	    set_from_blob(fd, KVM_SET_MP_STATE, &s->mp, sizeof(struct kvm_mp_state), "KVM_SET_MP_STATE", id, err,
			  errsz) ||
	    set_from_blob(fd, KVM_SET_REGS, &s->regs, sizeof(struct kvm_regs), "KVM_SET_REGS", id, err, errsz) ||
	    set_from_blob(fd, KVM_SET_SREGS, &s->sregs, sizeof(struct kvm_sregs), "KVM_SET_SREGS", id, err, errsz))
		return SNAPSHOT_ERR_HOST;
	/* KVM_SET_XSAVE copies as many bytes as this host's XSAVE2 size; a
	 * zero-padded buffer at least that big keeps it inside our memory. */
	uint32_t host_xsave = xsave_size(vm);
	if (s->xsave.len > host_xsave)
		return HOST_ERR("vCPU %d: the snapshot's XSAVE area is %" PRIu32 " bytes, this host's %" PRIu32, id,
				s->xsave.len, host_xsave);
	if (set_from_blob(fd, KVM_SET_XSAVE, &s->xsave, host_xsave, "KVM_SET_XSAVE", id, err, errsz))
		return SNAPSHOT_ERR_HOST;
	if (s->xcrs.len &&
	    set_from_blob(fd, KVM_SET_XCRS, &s->xcrs, sizeof(struct kvm_xcrs), "KVM_SET_XCRS", id, err, errsz))
		return SNAPSHOT_ERR_HOST;
	if (set_from_blob(fd, KVM_SET_DEBUGREGS, &s->dregs, sizeof(struct kvm_debugregs), "KVM_SET_DEBUGREGS", id, err,
			  errsz) ||
	    (s->lapic.len && set_from_blob(fd, KVM_SET_LAPIC, &s->lapic, sizeof(struct kvm_lapic_state),
					   "KVM_SET_LAPIC", id, err, errsz)) ||
	    restore_msrs(v, s, err, errsz) ||
	    set_from_blob(fd, KVM_SET_VCPU_EVENTS, &s->events, sizeof(struct kvm_vcpu_events), "KVM_SET_VCPU_EVENTS",
			  id, err, errsz))
		return SNAPSHOT_ERR_HOST;
	return 0;
}

/* Last of the KVM state: kvmclock continues from the saved value, so the
 * guest's monotonic clock does not jump by the time the snapshot sat on
 * disk. Flags are cleared on purpose: KVM_CLOCK_REALTIME would make KVM
 * advance the clock by the elapsed wall time. */
static int restore_clock(struct vm *vm, const struct vm_snap *s, char *err, size_t errsz)
{
	struct kvm_clock_data clock;
	memcpy(&clock, s->clock.p, sizeof(clock));
	struct kvm_clock_data set;
	memset(&set, 0, sizeof(set));
	set.clock = clock.clock;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &set) < 0)
		return HOST_ERR("KVM_SET_CLOCK: %s", strerror(errno));
	return 0;
}

static int restore_devices(struct vm *vm, const struct dev_snap *devs, char *err, size_t errsz)
{
	for (int i = 0; i < vm->nr_devices; i++) {
		struct vm_device *d = &vm->devices[i];
		if (!d->load)
			continue;
		char why[200] = "";
		if (d->load(d->dev, devs[i].data, (size_t)devs[i].len, why, sizeof(why)) < 0)
			return BAD_SNAP("device %d (%s): %s", i, d->kind ? d->kind : "", why[0] ? why : "load failed");
	}
	for (int i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i].restored)
			vm->devices[i].restored(vm->devices[i].dev);
	return 0;
}

/* Decodes every section, then applies them; nothing touches KVM before the
 * whole snapshot is known to be well-formed and to match the VM. */
static int restore_from(struct vm *vm, const struct snap_r *r, char *err, size_t errsz)
{
	struct vm_snap vs;
	struct vcpu_snap cpus[VMM_MAX_VCPUS];
	struct dev_snap devs[VMM_MAX_DEVICES];
	memset(devs, 0, sizeof(devs));
	int rc = snapshot_validate(r, err, errsz);
	if (!rc)
		rc = check_match(vm, r, devs, err, errsz);
	if (!rc)
		rc = decode_vm(r, &vs, err, errsz);
	for (int i = 0; i < vm->nr_vcpus && !rc; i++) {
		const struct snap_section *s = snap_r_find(r, SNAP_VCPU, (uint32_t)vm->vcpus[i].id);
		rc = s ? decode_vcpu(s, &cpus[i], err, errsz) : BAD_SNAP("snapshot has no section for vCPU %d", i);
	}
	if (!rc)
		rc = check_irqchip(vm, &vs, err, errsz);
	for (int i = 0; i < vm->nr_vcpus && !rc; i++)
		rc = restore_vcpu(vm, &vm->vcpus[i], &cpus[i], err, errsz);
	if (!rc)
		rc = restore_clock(vm, &vs, err, errsz);
	if (!rc)
		rc = restore_vm_irq_sources(vm, &vs, err, errsz);
	if (!rc)
		rc = restore_devices(vm, devs, err, errsz);
	return rc;
}

int snapshot_restore(struct vm *vm, const char *dir, char *err, size_t errsz)
{
	struct buf file = BUF_INIT;
	struct snap_r r;
	memset(&r, 0, sizeof(r));
	int rc = open_state(dir, &file, &r, err, errsz);
	if (rc == 0)
		rc = restore_from(vm, &r, err, errsz);
	if (rc == 0)
		log_info("snapshot.restored", "dir=%s vcpus=%d devices=%d", dir, vm->nr_vcpus, vm->nr_devices);
	snap_r_free(&r);
	buf_free(&file);
	return rc;
}
