# Kernels (included by the top Makefile). See kernel/README.md.
#
#   make guest-kernel    build/guest/vmlinux (+ vmlinux.config), cached in
#                        $(CUBEOS_CACHE)/kernel/guest-<source version>-<hash>/
#   make host-kernel     build/host/bzImage (+ config), the appliance's EFI-stub
#                        kernel, cached in $(CUBEOS_CACHE)/kernel/host-<...>-<hash>/
#
# kernel/build.sh always runs (FORCE): the cache key also covers the installed
# linux-source version, which make cannot see. A warm run takes well under a
# second and rewrites the image only when it differs, so anything built from it
# is not remade needlessly.

GUEST_VMLINUX := $(BUILD)/guest/vmlinux
HOST_BZIMAGE := $(BUILD)/host/bzImage

.PHONY: guest-kernel host-kernel FORCE
guest-kernel: $(GUEST_VMLINUX)
host-kernel: $(HOST_BZIMAGE)

$(GUEST_VMLINUX): FORCE
	@bash kernel/build.sh guest $@

$(HOST_BZIMAGE): FORCE
	@bash kernel/build.sh host $@ $(BUILD)/host/config

FORCE:
