#!/bin/bash
# Builds the appliance disk image, BIOS and UEFI bootable, without mounting
# anything (no loop devices, no root needed):
#
#   image/mkimage.sh KERNEL INITRAMFS OUT.qcow2 [TEMPLATES_IMG]
#       e.g. build/host/bzImage build/host/initramfs.cpio.zst build/image/cubeos.qcow2 build/image/templates.img
#
# Layout (GPT, see image/README.md):
#   1  ESP, FAT32, "cubeos-esp": SYSLINUX (BIOS) and syslinux.efi (UEFI), one
#      config, the kernel and the initramfs: the whole, immutable system
#   2  "cubeos-data": empty; cubeos formats it at first boot
#   3  "cubeos-templates" (only with TEMPLATES_IMG, image/mktemplates.sh's
#      ext4 image, also the ISO's): mounted read-only; the root filesystems of
#      the default templates (initramfs/template-rootfs.sh). Last on the disk,
#      so the data partition keeps its number and start.
#
# Steps: the ESP is made as a file of its own by image/mkesp.sh (mkfs.vfat,
# `syslinux --install` and mtools all work on image files), the disk as a sparse raw file
# partitioned by sgdisk, the ESP copied in at its offset with dd, then the raw
# disk converted to a compressed qcow2.
#
# Environment: IMAGE_SIZE (virtual disk size, default 16G), ESP_SIZE_MIB (128),
# KERNEL_CMDLINE (default below).
set -euo pipefail

KERNEL=${1:?usage: mkimage.sh KERNEL INITRAMFS OUT.qcow2}
INITRAMFS=${2:?usage: mkimage.sh KERNEL INITRAMFS OUT.qcow2}
OUT=${3:?usage: mkimage.sh KERNEL INITRAMFS OUT.qcow2 [TEMPLATES_IMG]}
TEMPLATES_IMG=${4:-}
IMAGE_SIZE=${IMAGE_SIZE:-16G}
ESP_SIZE_MIB=${ESP_SIZE_MIB:-128}
# tty0 first, ttyS0 last: kernel messages go to both, and the last console= is
# /dev/console (PID1's log lines and first-boot secrets: the serial port).
# quiet: only kernel warnings and worse.
KERNEL_CMDLINE=${KERNEL_CMDLINE:-console=tty0 console=ttyS0,115200 quiet panic=10}
# Partitions start on 1 MiB boundaries (sector 2048), as every tool expects.
SECTOR=512
ESP_START=2048
# Partition type GUIDs (sgdisk short codes): EFI system, Linux filesystem.
TYPE_ESP=ef00
TYPE_DATA=8300
DATA_LABEL=cubeos-data
TEMPLATES_LABEL=cubeos-templates
ESP_LABEL=cubeos-esp
# Fixed identifiers keep the build reproducible. Installs that clone the image
# onto several disks of one machine would rename them (cubeos `install`).
DISK_GUID=8C1D0B5E-2E0A-4B9F-9C55-435542454F53
ESP_GUID=8C1D0B5E-2E0A-4B9F-9C55-455350000001
DATA_GUID=8C1D0B5E-2E0A-4B9F-9C55-444154410002
TEMPLATES_GUID=8C1D0B5E-2E0A-4B9F-9C55-54504C000003
FAT_VOLID=C0BE0501

SYSLINUX_MBR=/usr/lib/syslinux/mbr/gptmbr.bin

die() {
	echo "image: error: $*" >&2
	exit 1
}

PATH=$PATH:/sbin:/usr/sbin
for t in sgdisk qemu-img dd; do
	command -v $t >/dev/null || die "$t not found (run: make deps; image/deps.txt)"
done
for f in "$KERNEL" "$INITRAMFS" "$SYSLINUX_MBR"; do
	[ -f "$f" ] || die "$f missing"
done
[ -z "$TEMPLATES_IMG" ] || [ -f "$TEMPLATES_IMG" ] || die "$TEMPLATES_IMG missing (image/mktemplates.sh makes it)"

mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d "$(dirname "$OUT")/.image-work.XXXXXX")
trap 'rm -rf "$work" "$OUT.tmp"' EXIT
esp=$work/esp.img
disk=$work/disk.raw

# --- the ESP, as a file (image/mkesp.sh: shared with the ISO and PXE) -----------
ESP_FAT_VOLID=$FAT_VOLID KERNEL_CMDLINE=$KERNEL_CMDLINE \
	bash "$(dirname "$0")/mkesp.sh" "$KERNEL" "$INITRAMFS" "$esp" "$ESP_SIZE_MIB" >"$work/esp.log" ||
	die "building the ESP failed"
esp_used=$(sed -n 's/.* FAT, \([0-9]*\) KiB used.*/\1/p' "$work/esp.log")

# --- the templates partition: image/mktemplates.sh's image, whole MiB --------------
templates_mib=0
if [ -n "$TEMPLATES_IMG" ]; then
	templates_mib=$((($(stat -c %s "$TEMPLATES_IMG") + 1048575) / 1048576))
fi

# --- the disk -------------------------------------------------------------------
truncate -s "$IMAGE_SIZE" "$disk"
esp_end=$((ESP_START + ESP_SIZE_MIB * 1024 * 1024 / SECTOR - 1))
disk_sectors=$(($(stat -c %s "$disk") / SECTOR))
# The backup GPT takes the last 33 sectors; partitions stay 1 MiB aligned.
templates_start=$(((disk_sectors - 34 - templates_mib * 2048) / 2048 * 2048))
data_end=$((templates_mib ? templates_start - 1 : 0))
templates_part=()
if [ "$templates_mib" -gt 0 ]; then
	templates_part=(--new=3:"$templates_start":$((templates_start + templates_mib * 2048 - 1))
		--typecode=3:"$TYPE_DATA" --change-name=3:"$TEMPLATES_LABEL" --partition-guid=3:"$TEMPLATES_GUID")
fi
# -A 1:set:2: "legacy BIOS bootable", the flag gptmbr.bin looks for.
sgdisk --clear --disk-guid="$DISK_GUID" \
	--new=1:"$ESP_START":"$esp_end" --typecode=1:"$TYPE_ESP" --change-name=1:"$ESP_LABEL" \
	--partition-guid=1:"$ESP_GUID" --attributes=1:set:2 \
	--new=2:0:"$data_end" --typecode=2:"$TYPE_DATA" --change-name=2:"$DATA_LABEL" --partition-guid=2:"$DATA_GUID" \
	"${templates_part[@]}" "$disk" >/dev/null || die "sgdisk failed"
# The MBR boot code (440 bytes, before the disk signature and the protective
# partition table sgdisk wrote): finds the legacy-bootable GPT partition and
# chains to its boot sector, SYSLINUX's.
dd if="$SYSLINUX_MBR" of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$esp" of="$disk" bs=1M seek=$((ESP_START * SECTOR / 1048576)) conv=notrunc,sparse status=none
if [ "$templates_mib" -gt 0 ]; then
	dd if="$TEMPLATES_IMG" of="$disk" bs=1M seek=$((templates_start / 2048)) conv=notrunc,sparse status=none
fi
sgdisk --verify "$disk" >"$work/verify" 2>&1 || {
	cat "$work/verify" >&2
	die "sgdisk --verify failed"
}

# --- qcow2 ----------------------------------------------------------------------
# Compressed clusters (zstd) for the shipped file; QEMU reads them as they are
# and writes new data uncompressed. Empty space (the data partition) is holes.
qemu-img convert -q -f raw -O qcow2 -c -o compression_type=zstd "$disk" "$OUT.tmp" ||
	die "qemu-img convert failed"
mv -f "$OUT.tmp" "$OUT"

virt=$(qemu-img info --output=json "$OUT" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
echo "image: $OUT: $(du -h --apparent-size "$OUT" | cut -f1) file, $((virt / 1048576)) MiB virtual"
sgdisk --print "$disk" | sed -n '/^Number/,$p' | sed 's/^/image:   /'
echo "image:   ESP: $esp_used KiB used of $ESP_SIZE_MIB MiB (kernel $(stat -c %s "$KERNEL"), initramfs $(stat -c %s "$INITRAMFS"))"
