# Guest test rootfs (included by the top Makefile). See initramfs/README.md.
#
#   make guest-rootfs    build/guest/rootfs.ext4: cube-agent as /sbin/init,
#                        busybox, bash, users root and user (ext4, 64 MiB sparse)
#
# Remade when the agent, the script or the host's busybox/bash/C.UTF-8 locale change.

GUEST_ROOTFS := $(BUILD)/guest/rootfs.ext4

.PHONY: guest-rootfs
guest-rootfs: $(GUEST_ROOTFS)

$(GUEST_ROOTFS): initramfs/guest-rootfs.sh initramfs/initramfs.mk $(BUILD)/cube-agent \
		$(wildcard /bin/busybox /bin/bash-static /usr/lib/locale/C.utf8/LC_CTYPE)
	@bash initramfs/guest-rootfs.sh $(BUILD)/cube-agent $@

# Default templates' root filesystems, from Debian packages (see
# initramfs/template-rootfs.sh): the Debian part is cached in
# $(CUBEOS_CACHE)/templates, only the agent is written in again here.
#
#   make templates       build/templates/<name>/rootfs.ext4 for every
#                        initramfs/templates/<name>.packages
TEMPLATE_NAMES  := $(patsubst initramfs/templates/%.packages,%,$(wildcard initramfs/templates/*.packages))
TEMPLATE_ROOTFS := $(TEMPLATE_NAMES:%=$(BUILD)/templates/%/rootfs.ext4)

.PHONY: templates
templates: $(TEMPLATE_ROOTFS)

$(BUILD)/templates/%/rootfs.ext4: initramfs/template-rootfs.sh initramfs/templates/%.packages \
		$(wildcard initramfs/templates/*.packages initramfs/templates/*.startup.py) $(BUILD)/cube-agent
	@bash initramfs/template-rootfs.sh $* $(BUILD)/cube-agent $@
