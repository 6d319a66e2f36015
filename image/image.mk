# Appliance images (included by the top Makefile). See image/README.md.
#
#   make host-initramfs  build/host/initramfs.cpio.zst: the whole appliance
#                        userland (cubeos as /init, cube-vmm, guestctl, the guest
#                        kernel and rootfs), zstd-compressed cpio
#   make image           build/image/cubeos.qcow2: GPT, ESP with SYSLINUX (BIOS)
#                        and syslinux.efi (UEFI) + kernel + initramfs, and an empty
#                        cubeos-data partition; built without mounts or root
#   make run-image       boot it in QEMU, serial console on stdio (FIRMWARE=uefi
#                        for OVMF); `image/run.sh --check` boots it and times
#                        "cubeos up"
#   make image-test      boot tests of the image (image/test.sh): SeaBIOS and OVMF
#                        boots, a scripted admin console session, poweroff; serial
#                        logs in build/image/test-*.log
#
# Environment: IMAGE_SIZE (virtual disk, 8G), ESP_SIZE_MIB (128), KERNEL_CMDLINE,
# HOST_ROOTFS_BUSYBOX=1 (adds a debugging busybox to the initramfs, off the PATH).

HOST_INITRAMFS := $(BUILD)/host/initramfs.cpio.zst
IMAGE_QCOW2    := $(BUILD)/image/cubeos.qcow2

.PHONY: host-initramfs image run-image image-test
host-initramfs: $(HOST_INITRAMFS)
image: $(IMAGE_QCOW2)

$(HOST_INITRAMFS): initramfs/host-rootfs.sh image/image.mk $(BUILD)/bin/cubeos $(BUILD)/cube-vmm \
		$(BUILD)/guestctl $(BUILD)/guest/vmlinux $(BUILD)/guest/rootfs.ext4
	@bash initramfs/host-rootfs.sh $(BUILD) $@

$(IMAGE_QCOW2): image/mkimage.sh image/image.mk $(BUILD)/host/bzImage $(HOST_INITRAMFS)
	@bash image/mkimage.sh $(BUILD)/host/bzImage $(HOST_INITRAMFS) $@

run-image: $(IMAGE_QCOW2)
	bash image/run.sh $(IMAGE_QCOW2)

image-test: image
	@bash image/test.sh $(IMAGE_QCOW2)
