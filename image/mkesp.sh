#!/bin/bash
# Builds the CubeOS EFI system partition as a FAT image file, without mounting
# anything: the one piece every medium shares (the qcow2's partition 1, the
# ISO's El Torito EFI image and install source, the PXE install source).
#
#   image/mkesp.sh KERNEL INITRAMFS OUT SIZE_MIB [--trim]
#
# Contents (see image/README.md):
#   /syslinux/ldlinux.sys, ldlinux.c32, syslinux.cfg   BIOS (SYSLINUX boot sector installed)
#   /EFI/BOOT/BOOTX64.EFI, ldlinux.e64, syslinux.cfg   UEFI (removable-media path)
#   /cubeos/vmlinuz, /cubeos/initrd.zst                the system
#
# The FAT is made with 2048 hidden sectors, the first LBA of the ESP on a CubeOS
# disk: SYSLINUX's boot sector adds them to its reads, so the same image copied
# to LBA 2048 of any disk boots under BIOS (and under UEFI, which does not care).
# FAT32 from 64 MiB up (what the UEFI specification asks of a disk's ESP);
# smaller images, such as the ISO's El Torito image, get the FAT type
# mkfs.vfat picks for their size (UEFI reads FAT12/16/32 on removable media).
#
# --trim cuts the file after its last MiB that holds anything. The filesystem
# still describes SIZE_MIB (FAT tables sized for it), so the trimmed file
# written at the start of a SIZE_MIB partition is that whole filesystem: free
# clusters are found from the FAT, never from their content. This is the
# install source (`install` copies it); it is smaller to carry in an ISO or
# over TFTP than SIZE_MIB of mostly zeros.
#
# Environment: KERNEL_CMDLINE (the kernel command line), ESP_FAT_VOLID (volume
# ID, fixed by default so builds are reproducible), ESP_FAT_LABEL (CUBEOS-ESP).
set -euo pipefail

usage="usage: mkesp.sh KERNEL INITRAMFS OUT SIZE_MIB [--trim]"
KERNEL=${1:?$usage}
INITRAMFS=${2:?$usage}
OUT=${3:?$usage}
SIZE_MIB=${4:?$usage}
TRIM=${5:-}
KERNEL_CMDLINE=${KERNEL_CMDLINE:-console=tty0 console=ttyS0,115200 quiet panic=10}
FAT_VOLID=${ESP_FAT_VOLID:-C0BE0501}
FAT_LABEL=${ESP_FAT_LABEL:-CUBEOS-ESP}
# The first LBA of the ESP on a CubeOS disk (1 MiB, as mkimage.sh and
# `install` place it).
HIDDEN_SECTORS=2048

SYSLINUX_EFI=/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi
SYSLINUX_EFI_LDLINUX=/usr/lib/syslinux/modules/efi64/ldlinux.e64

die() {
	echo "mkesp: error: $*" >&2
	exit 1
}

PATH=$PATH:/sbin:/usr/sbin
for t in mkfs.vfat syslinux mmd mcopy mdir; do
	command -v $t >/dev/null || die "$t not found (run: make deps; image/deps.txt)"
done
for f in "$KERNEL" "$INITRAMFS" "$SYSLINUX_EFI" "$SYSLINUX_EFI_LDLINUX"; do
	[ -f "$f" ] || die "$f missing"
done
case $SIZE_MIB in '' | *[!0-9]*) die "SIZE_MIB must be a number of MiB, not '$SIZE_MIB'" ;; esac
case $TRIM in '' | --trim) ;; *) die "unknown option '$TRIM' ($usage)" ;; esac

mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d "$(dirname "$OUT")/.esp-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
esp=$work/esp.img
export MTOOLS_SKIP_CHECK=1 # mtools: no geometry checks on a plain image file

# One file, read by SYSLINUX from /syslinux/ (BIOS) and by syslinux.efi from
# the directory it was started from, /EFI/BOOT/ (UEFI). No menu, no wait.
cat >"$work/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT cubeos
PROMPT 0
TIMEOUT 0
LABEL cubeos
  LINUX /cubeos/vmlinuz
  INITRD /cubeos/initrd.zst
  APPEND $KERNEL_CMDLINE
EOF

fat_type=()
[ "$SIZE_MIB" -ge 64 ] && fat_type=(-F 32)
truncate -s "${SIZE_MIB}M" "$esp"
mkfs.vfat "${fat_type[@]}" -n "$FAT_LABEL" -i "$FAT_VOLID" -h "$HIDDEN_SECTORS" "$esp" >/dev/null ||
	die "mkfs.vfat failed"
# BIOS: ldlinux.sys + ldlinux.c32 into /syslinux and the SYSLINUX boot sector
# (the directory must exist first).
mmd -i "$esp" ::/syslinux
syslinux --install --directory /syslinux "$esp" || die "syslinux --install failed"
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/cubeos
mcopy -i "$esp" "$work/syslinux.cfg" ::/syslinux/syslinux.cfg
# UEFI: the removable-media path firmware boots without any NVRAM entry.
mcopy -i "$esp" "$SYSLINUX_EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$SYSLINUX_EFI_LDLINUX" ::/EFI/BOOT/ldlinux.e64
mcopy -i "$esp" "$work/syslinux.cfg" ::/EFI/BOOT/syslinux.cfg
# The system. A full image fails here ("Disk full"), not at boot.
mcopy -i "$esp" "$KERNEL" ::/cubeos/vmlinuz || die "the kernel does not fit in $SIZE_MIB MiB"
mcopy -i "$esp" "$INITRAMFS" ::/cubeos/initrd.zst || die "the initramfs does not fit in $SIZE_MIB MiB"
free=$(mdir -i "$esp" -/ ::/ | awk '/bytes free/ {gsub(/[^0-9]/, ""); print}')

# trim_zero_tail FILE: cut FILE after its last MiB that is not all zeros.
trim_zero_tail() {
	local file=$1 mib
	mib=$(($(stat -c %s "$file") / 1048576))
	while [ "$mib" -gt 1 ] &&
		cmp -s <(dd if="$file" bs=1M skip=$((mib - 1)) count=1 status=none) <(head -c 1M /dev/zero); do
		mib=$((mib - 1))
	done
	truncate -s "${mib}M" "$file"
}
[ "$TRIM" = --trim ] && trim_zero_tail "$esp"

mv -f "$esp" "$OUT"
echo "mkesp: $OUT: $SIZE_MIB MiB FAT, $(((SIZE_MIB * 1048576 - free) / 1024)) KiB used$([ "$TRIM" = --trim ] && echo ", trimmed to $(($(stat -c %s "$OUT") / 1048576)) MiB")"
