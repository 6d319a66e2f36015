/*
 * kvm_guest.h - what the tests against the host's real /dev/kvm share
 * (test_kvm.c, test_snapshot.c): the check that skips a test where there is
 * no usable /dev/kvm, and the start of a hand-made real-mode guest, which
 * runs even where KVM only emulates CPL0, as on a PVM host.
 *
 * Static, like lib/tests/test.h; include it after test.h (it uses CHECK).
 */
#ifndef CUBE_KVM_GUEST_H
#define CUBE_KVM_GUEST_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../vmm.h"

/* False, after printing SKIP for the running test, when /dev/kvm cannot be opened. */
static inline bool kvm_usable(void)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		printf("SKIP %s: no /dev/kvm\n", test_current);
		return false;
	}
	return true;
}

/* Copies real-mode code to gpa (below 64 KiB) and points vCPU 0 at it, with
 * CS and DS based at 0 so the code's addresses are guest-physical. */
static inline void load_realmode(struct vm *vm, uint64_t gpa, const uint8_t *code, size_t len)
{
	memcpy(gpa_ptr(&vm->mem, gpa, len), code, len);
	struct vcpu *v = &vm->vcpus[0];
	struct kvm_sregs s;
	CHECK(ioctl(v->fd, KVM_GET_SREGS, &s) == 0);
	s.cs.base = 0;
	s.cs.selector = 0;
	s.ds.base = 0;
	s.ds.selector = 0;
	CHECK(ioctl(v->fd, KVM_SET_SREGS, &s) == 0);
	struct kvm_regs r = {.rip = gpa, .rflags = 2};
	CHECK(ioctl(v->fd, KVM_SET_REGS, &r) == 0);
}

#endif
