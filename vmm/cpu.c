/*
 * cpu.c - what a vCPU needs before it can run Linux: CPUID, MSRs, LAPIC
 * wiring and a sane FPU.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../lib/log.h"
#include "cpu.h"

#define CPUID_MAX_ENTRIES 256

#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT	       (1u << 28) /* EBX[23:16] is valid */
#define KVM_CPUID_SIGNATURE    0x40000000u

/* MSR numbers (Intel SDM vol. 4). */
#define MSR_IA32_TSC		0x10
#define MSR_IA32_SYSENTER_CS	0x174
#define MSR_IA32_SYSENTER_ESP	0x175
#define MSR_IA32_SYSENTER_EIP	0x176
#define MSR_IA32_MISC_ENABLE	0x1a0
#define MSR_MTRR_DEF_TYPE	0x2ff
#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SYSCALL_MASK	0xc0000084
#define MSR_KERNEL_GS_BASE	0xc0000102
#define MISC_ENABLE_FAST_STRING 1ULL
#define MTRR_DEF_ENABLE		(1ULL << 11)
#define MTRR_TYPE_WRBACK	6ULL

/* LAPIC register offsets and LVT delivery modes. */
#define APIC_LVT_LINT0	 0x350
#define APIC_LVT_LINT1	 0x360
#define APIC_MODE_MASK	 (7u << 8)
#define APIC_MODE_NMI	 (4u << 8)
#define APIC_MODE_EXTINT (7u << 8)

static struct kvm_cpuid2 *get_supported_cpuid(int kvm_fd, char *err, size_t errsz)
{
	size_t sz = sizeof(struct kvm_cpuid2) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, sz);
	if (!c) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		snprintf(err, errsz, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		free(c);
		return NULL;
	}
	return c;
}

/* The topology the guest sees: one socket of nr_vcpus single-threaded
 * cores, whatever the host's is (its counts would make the guest invent
 * packages and siblings that do not exist). */
struct topology {
	int apic_id;
	int nr_vcpus;
};

static uint32_t order_of(int n)
{
	uint32_t bits = 0;
	while ((1 << bits) < n)
		bits++;
	return bits;
}

/* Leaves 0xB and 0x1F: sub-leaf 0 is the SMT level, 1 the core level. */
static void patch_extended_topology(struct kvm_cpuid_entry2 *e, const struct topology *t)
{
	e->edx = (uint32_t)t->apic_id; /* x2APIC id on every sub-leaf */
	if (e->index == 0) {
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (1u << 8) | 0;
	} else if (e->index == 1) {
		e->eax = order_of(t->nr_vcpus);
		e->ebx = (uint32_t)t->nr_vcpus;
		e->ecx = (2u << 8) | 1;
	} else {
		e->eax = e->ebx = 0;
		e->ecx = e->index; /* level type 0: no more levels */
	}
}

static void patch_cpuid_entry(struct kvm_cpuid_entry2 *e, const struct topology *t)
{
	switch (e->function) {
	case 1:
		/* EBX[31:24] initial APIC id, EBX[23:16] logical processors per
		 * package; ECX bit 31: "running on a hypervisor". */
		e->ebx = (e->ebx & 0x0000ffffu) | ((uint32_t)t->apic_id << 24) | ((uint32_t)t->nr_vcpus << 16);
		e->ecx |= CPUID_1_ECX_HYPERVISOR;
		if (t->nr_vcpus > 1)
			e->edx |= CPUID_1_EDX_HTT;
		break;
	case 0xb:
	case 0x1f: patch_extended_topology(e, t); break;
	case 0x80000008:
		/* AMD: ECX[7:0] cores per package - 1; [15:12] 0 = derive the
		 * APIC id width from it. */
		e->ecx = (e->ecx & ~0xf0ffu) | (uint32_t)(t->nr_vcpus - 1);
		break;
	case KVM_CPUID_SIGNATURE:
		/* "KVMKVMKVM\0\0\0": the guest then uses the paravirt leaves
		 * (kvm-clock) that 0x40000001 advertises as KVM supports them. */
		e->ebx = 0x4b4d564b; /* "KVMK" */
		e->ecx = 0x564b4d56; /* "VMKV" */
		e->edx = 0x4d;	     /* "M\0\0\0" */
		if (e->eax < 0x40000001)
			e->eax = 0x40000001;
		break;
	default: break;
	}
}

int cpu_set_cpuid(struct vm *vm, struct vcpu *v, char *err, size_t errsz)
{
	struct kvm_cpuid2 *c = get_supported_cpuid(vm->kvm_fd, err, errsz);
	if (!c)
		return -1;
	struct topology t = {.apic_id = v->id, .nr_vcpus = vm->nr_vcpus};
	for (uint32_t i = 0; i < c->nent; i++)
		patch_cpuid_entry(&c->entries[i], &t);
	int r = ioctl(v->fd, KVM_SET_CPUID2, c);
	if (r < 0)
		snprintf(err, errsz, "KVM_SET_CPUID2 on vCPU %d: %s", v->id, strerror(errno));
	free(c);
	return r < 0 ? -1 : 0;
}

static int set_boot_msrs(struct vcpu *v, char *err, size_t errsz)
{
	static const struct {
		uint32_t index;
		uint64_t value;
	} boot_msrs[] = {
	    {MSR_IA32_SYSENTER_CS, 0},
	    {MSR_IA32_SYSENTER_ESP, 0},
	    {MSR_IA32_SYSENTER_EIP, 0},
	    {MSR_STAR, 0},
	    {MSR_CSTAR, 0},
	    {MSR_KERNEL_GS_BASE, 0},
	    {MSR_SYSCALL_MASK, 0},
	    {MSR_LSTAR, 0},
	    {MSR_IA32_TSC, 0}, /* all vCPUs start with the same TSC */
	    {MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING},
	    {MSR_MTRR_DEF_TYPE, MTRR_DEF_ENABLE | MTRR_TYPE_WRBACK},
	};
	enum { N = sizeof boot_msrs / sizeof boot_msrs[0] };
	struct kvm_msrs *m = calloc(1, sizeof *m + N * sizeof(struct kvm_msr_entry));
	if (!m) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	m->nmsrs = N;
	for (int i = 0; i < N; i++) {
		m->entries[i].index = boot_msrs[i].index;
		m->entries[i].data = boot_msrs[i].value;
	}
	int r = ioctl(v->fd, KVM_SET_MSRS, m);
	free(m);
	if (r < 0) {
		snprintf(err, errsz, "KVM_SET_MSRS on vCPU %d: %s", v->id, strerror(errno));
		return -1;
	}
	/* KVM stops at the first MSR it refuses; the rest are optional extras
	 * for the guest, so say which one and go on. */
	if (r < N)
		log_warn("cpu.msrs", "vcpu=%d KVM accepted %d of %d boot MSRs; first refused: 0x%x", v->id, r, N,
			 boot_msrs[r].index);
	return 0;
}

static uint32_t lapic_reg(const struct kvm_lapic_state *s, int off)
{
	uint32_t v;
	memcpy(&v, s->regs + off, 4);
	return v;
}

static void lapic_set_reg(struct kvm_lapic_state *s, int off, uint32_t v)
{
	memcpy(s->regs + off, &v, 4);
}

/* LINT0 takes the PIC's ExtINT, LINT1 NMIs: what a PC BIOS leaves behind
 * and what the MP table tells the guest. */
static int wire_lapic(struct vm *vm, struct vcpu *v, char *err, size_t errsz)
{
	if (!vm->has_irqchip)
		return 0;
	struct kvm_lapic_state s;
	if (ioctl(v->fd, KVM_GET_LAPIC, &s) < 0) {
		snprintf(err, errsz, "KVM_GET_LAPIC on vCPU %d: %s", v->id, strerror(errno));
		return -1;
	}
	lapic_set_reg(&s, APIC_LVT_LINT0, (lapic_reg(&s, APIC_LVT_LINT0) & ~APIC_MODE_MASK) | APIC_MODE_EXTINT);
	lapic_set_reg(&s, APIC_LVT_LINT1, (lapic_reg(&s, APIC_LVT_LINT1) & ~APIC_MODE_MASK) | APIC_MODE_NMI);
	if (ioctl(v->fd, KVM_SET_LAPIC, &s) < 0) {
		snprintf(err, errsz, "KVM_SET_LAPIC on vCPU %d: %s", v->id, strerror(errno));
		return -1;
	}
	return 0;
}

static int init_fpu(struct vcpu *v, char *err, size_t errsz)
{
	struct kvm_fpu fpu;
	memset(&fpu, 0, sizeof fpu);
	fpu.fcw = 0x37f;    /* FNINIT default: all exceptions masked */
	fpu.mxcsr = 0x1f80; /* SSE default: all exceptions masked */
	if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0) {
		snprintf(err, errsz, "KVM_SET_FPU on vCPU %d: %s", v->id, strerror(errno));
		return -1;
	}
	return 0;
}

int cpu_setup_boot(struct vm *vm, struct vcpu *v, char *err, size_t errsz)
{
	if (set_boot_msrs(v, err, errsz) < 0 || wire_lapic(vm, v, err, errsz) < 0 || init_fpu(v, err, errsz) < 0)
		return -1;
	return 0;
}
