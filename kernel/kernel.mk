# Guest kernel (included by the top Makefile). See kernel/README.md.
#
#   make guest-kernel    build/guest/vmlinux (+ vmlinux.config), cached in
#                        $(CUBEOS_CACHE)/kernel/guest-<source version>-<hash>/
#
# kernel/build.sh always runs (FORCE): the cache key also covers the installed
# linux-source version, which make cannot see. A warm run takes well under a
# second and rewrites build/guest/vmlinux only when it differs, so anything
# built from it is not remade needlessly.

GUEST_VMLINUX := $(BUILD)/guest/vmlinux

.PHONY: guest-kernel FORCE
guest-kernel: $(GUEST_VMLINUX)

$(GUEST_VMLINUX): FORCE
	@bash kernel/build.sh $@

FORCE:
