/*
 * cpu.h - per-vCPU set-up: CPUID, boot MSRs, LAPIC wiring, FPU.
 */
#ifndef CUBE_VMM_CPU_H
#define CUBE_VMM_CPU_H

#include <stddef.h>

#include "vmm.h"

/* KVM_SET_CPUID2 with the host's supported leaves, patched for this vCPU
 * (APIC ids, hypervisor bit, KVM signature). Needed before the first
 * KVM_RUN on boot and on restore alike, so vm_init calls it. */
int cpu_set_cpuid(struct vm *vm, struct vcpu *v, char *err, size_t errsz);

/* Boot-only state: MSRs, LAPIC LINT0/LINT1 and the FPU control words.
 * A restore overwrites all of this from the snapshot instead. */
int cpu_setup_boot(struct vm *vm, struct vcpu *v, char *err, size_t errsz);

#endif
