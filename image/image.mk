# Appliance images (included by the top Makefile). See image/README.md.
#
#   make host-initramfs  build/host/initramfs.cpio.zst: the whole appliance
#                        userland (cubeos as /init, cube-vmm, guestctl, cube-api,
#                        cube-proxy, the guest kernel and rootfs), zstd-compressed cpio
#   make image           all three outputs, then their sizes:
#                        build/image/cubeos.qcow2: GPT, ESP with SYSLINUX (BIOS)
#                        and syslinux.efi (UEFI) + kernel + initramfs, and an empty
#                        cubeos-data partition, the cubeos-templates partition
#                        at its end; built without mounts or root
#                        build/image/cubeos.iso: hybrid BIOS/UEFI live ISO (CD or
#                        USB stick), runs from RAM, `install DISK`
#                        build/image/pxe/: TFTP/HTTP root (iPXE script, pxelinux)
#                        build/image/esp.img: the install source they carry
#                        build/image/templates.img: the default templates
#                        (ext4, image/mktemplates.sh): the qcow2's partition 3,
#                        the ISO's /boot/templates.img
#   make run-image       boot it in QEMU, serial console on stdio (FIRMWARE=uefi
#                        for OVMF); `image/run.sh --check` boots it and times
#                        "cubeos up"
#   make image-test      boot tests of the image (image/test.sh): SeaBIOS and OVMF
#                        boots, a scripted admin console session, poweroff; serial
#                        logs in build/image/test-*.log
#   make image-bench     image sizes and boot time to boot.done / services.up under
#                        SeaBIOS and OVMF, 3 runs each (image/bench.sh)
#   make api-bench       sandbox create latency (to 201, to the first command) at
#                        concurrency 1 and 10, memory per idle sandbox, on the
#                        booted qcow2 (image/bench-api.sh)
#
# Environment: IMAGE_SIZE (virtual disk, 16G), ESP_SIZE_MIB (128), KERNEL_CMDLINE,
# HOST_ROOTFS_BUSYBOX=1 (adds a debugging busybox to the initramfs, off the PATH).

HOST_INITRAMFS := $(BUILD)/host/initramfs.cpio.zst
IMAGE_QCOW2    := $(BUILD)/image/cubeos.qcow2
IMAGE_ESP      := $(BUILD)/image/esp.img
IMAGE_TEMPLATES := $(BUILD)/image/templates.img
IMAGE_ISO      := $(BUILD)/image/cubeos.iso
IMAGE_PXE      := $(BUILD)/image/pxe/boot.ipxe
ESP_SIZE_MIB   ?= 128

.PHONY: host-initramfs image iso pxe run-image image-test image-bench api-bench
host-initramfs: $(HOST_INITRAMFS)
iso: $(IMAGE_ISO)
pxe: $(IMAGE_PXE)
image: $(IMAGE_QCOW2) $(IMAGE_ISO) $(IMAGE_PXE)
	@echo "image: sizes:"
	@for f in $(IMAGE_QCOW2) $(IMAGE_ISO) $(dir $(IMAGE_PXE)) $(IMAGE_ESP) $(IMAGE_TEMPLATES) $(HOST_INITRAMFS) $(BUILD)/host/bzImage; do \
	  printf 'image:   %-8s %s\n' "$$(du -sh --apparent-size "$$f" | cut -f1)" "$$f"; done

$(HOST_INITRAMFS): initramfs/host-rootfs.sh image/image.mk $(BUILD)/bin/cubeos $(BUILD)/cube-vmm \
		$(BUILD)/guestctl $(BUILD)/cube-api $(BUILD)/cube-proxy $(BUILD)/cube-dns $(BUILD)/cube \
		$(BUILD)/cube-agent $(BUILD)/guest/vmlinux $(BUILD)/guest/rootfs.ext4 $(THIRDPARTY_DIR)/e2fsprogs/.done
	@E2FSPROGS_BIN='$(E2FSPROGS_BIN)' bash initramfs/host-rootfs.sh $(BUILD) $@

# mke2fs + e2fsck (static musl, thirdparty/): cubeos formats and checks the data disk.
$(THIRDPARTY_DIR)/e2fsprogs/.done:
	bash thirdparty/build.sh e2fsprogs

# The default templates' root filesystems in one ext4 image: the qcow2's
# partition 3 and the ISO's /boot/templates.img (`install` copies either).
$(IMAGE_TEMPLATES): image/mktemplates.sh $(TEMPLATE_ROOTFS)
	@bash image/mktemplates.sh $(BUILD)/templates $@

$(IMAGE_QCOW2): image/mkimage.sh image/mkesp.sh image/image.mk $(BUILD)/host/bzImage $(HOST_INITRAMFS) $(IMAGE_TEMPLATES)
	@bash image/mkimage.sh $(BUILD)/host/bzImage $(HOST_INITRAMFS) $@ $(IMAGE_TEMPLATES)

# The install source: the disk's ESP (same size, same command line as the
# qcow2's), its empty tail cut off.
$(IMAGE_ESP): image/mkesp.sh image/image.mk $(BUILD)/host/bzImage $(HOST_INITRAMFS)
	@bash image/mkesp.sh $(BUILD)/host/bzImage $(HOST_INITRAMFS) $@ $(ESP_SIZE_MIB) --trim

$(IMAGE_ISO): image/mkiso.sh image/mkesp.sh image/image.mk $(BUILD)/host/bzImage $(HOST_INITRAMFS) $(IMAGE_ESP) \
		$(IMAGE_TEMPLATES)
	@bash image/mkiso.sh $(BUILD)/host/bzImage $(HOST_INITRAMFS) $(IMAGE_ESP) $@ $(IMAGE_TEMPLATES)

$(IMAGE_PXE): image/mkpxe.sh image/image.mk $(BUILD)/host/bzImage $(HOST_INITRAMFS) $(IMAGE_ESP)
	@bash image/mkpxe.sh $(BUILD)/host/bzImage $(HOST_INITRAMFS) $(IMAGE_ESP) $(dir $@)

run-image: $(IMAGE_QCOW2)
	bash image/run.sh $(IMAGE_QCOW2)

image-test: image
	@bash agent/tests/sdk-deps.sh # the SDKs that tests/test_sdk.py drives
	@ISO=$(IMAGE_ISO) PXE_DIR=$(dir $(IMAGE_PXE)) bash image/test.sh $(IMAGE_QCOW2)

image-bench: image
	@bash image/bench.sh $(IMAGE_QCOW2)

api-bench: $(IMAGE_QCOW2)
	@bash image/bench-api.sh $(IMAGE_QCOW2)
