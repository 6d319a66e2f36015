#!/bin/bash
# Builds the CubeOS live/installer ISO, hybrid BIOS/UEFI, CD or USB stick:
#
#   image/mkiso.sh KERNEL INITRAMFS ESP_IMG OUT.iso [TEMPLATES_IMG]
#       e.g. build/host/bzImage build/host/initramfs.cpio.zst build/image/esp.img build/image/cubeos.iso \
#            build/image/templates.img
#
# ESP_IMG is the install source (image/mkesp.sh --trim: the disk's ESP, with
# the disk's kernel command line); it is carried as /boot/esp.img for
# `install DISK`. TEMPLATES_IMG (image/mktemplates.sh: the disk image's
# partition 3) is carried as /boot/templates.img: the live system loop-mounts
# it read-only for its default templates, and `install DISK` copies it onto
# partition 3 of the disk.
#
# ISO tree (ISO 9660 with Rock Ridge, volume ID CUBEOS: `install` finds the
# medium by it):
#   /isolinux/isolinux.bin, ldlinux.c32, isolinux.cfg   BIOS El Torito (ISOLINUX)
#   /cubeos/vmlinuz, /cubeos/initrd.zst                 what ISOLINUX loads
#   /boot/efi.img     UEFI El Torito image: a FAT (image/mkesp.sh) holding
#                     systemd-boot as BOOTX64.EFI, the kernel and the initramfs
#   /boot/esp.img     the install source
#   /boot/templates.img  the default templates' root filesystems (ext4)
#
# Both boot paths add `cubeos.live` to the kernel command line: cubeos then
# keeps its state in RAM and never touches a disk unless told to (`install`).
# The system is the initramfs, so the live system runs from RAM; only the
# default templates are read from the medium (cubeos mounts them from it at
# boot), so the medium stays in while sandboxes run.
#
# Hybrid: an isohybrid MBR (ISOLINUX's isohdpfx.bin) makes BIOS boot the file
# written raw to a USB stick, and an MBR/GPT partition entry for efi.img
# (-isohybrid-gpt-basdat) lets UEFI find it there too.
#
# Environment: KERNEL_CMDLINE (as for mkimage.sh; `cubeos.live` is appended),
# SOURCE_DATE_EPOCH (timestamps; defaults to the last commit: reproducible).
set -euo pipefail

usage="usage: mkiso.sh KERNEL INITRAMFS ESP_IMG OUT.iso [TEMPLATES_IMG]"
KERNEL=${1:?$usage}
INITRAMFS=${2:?$usage}
ESP_IMG=${3:?$usage}
OUT=${4:?$usage}
TEMPLATES_IMG=${5:-}
KERNEL_CMDLINE=${KERNEL_CMDLINE:-console=tty0 console=ttyS0,115200 quiet panic=10}
LIVE_CMDLINE="$KERNEL_CMDLINE cubeos.live"
VOLUME_ID=CUBEOS # cubeos/cmd_install.c looks for this volume ID

ISOLINUX_BIN=/usr/lib/ISOLINUX/isolinux.bin
ISOHYBRID_MBR=/usr/lib/ISOLINUX/isohdpfx.bin
BIOS_LDLINUX=/usr/lib/syslinux/modules/bios/ldlinux.c32
SYSTEMD_BOOT=/usr/lib/systemd/boot/efi/systemd-bootx64.efi

die() {
	echo "mkiso: error: $*" >&2
	exit 1
}

command -v xorriso >/dev/null || die "xorriso not found (run: make deps; image/deps.txt)"
for t in mcopy mmd mdel; do
	command -v $t >/dev/null || die "$t not found (run: make deps; image/deps.txt)"
done
for f in "$KERNEL" "$INITRAMFS" "$ESP_IMG" "$ISOLINUX_BIN" "$ISOHYBRID_MBR" "$BIOS_LDLINUX" "$SYSTEMD_BOOT"; do
	[ -f "$f" ] || die "$f missing"
done
[ -z "$TEMPLATES_IMG" ] || [ -f "$TEMPLATES_IMG" ] || die "$TEMPLATES_IMG missing (image/mktemplates.sh makes it)"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$(dirname "$0")" log -1 --format=%ct 2>/dev/null || echo 0)}

mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d "$(dirname "$OUT")/.iso-work.XXXXXX")
trap 'rm -rf "$work" "$OUT.tmp"' EXIT
tree=$work/tree
install -d "$tree/isolinux" "$tree/cubeos" "$tree/boot"

# --- BIOS: ISOLINUX reads the kernel and initramfs from the ISO 9660 tree -----
install -m 0644 "$ISOLINUX_BIN" "$BIOS_LDLINUX" "$tree/isolinux/"
cat >"$tree/isolinux/isolinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT cubeos
PROMPT 0
TIMEOUT 0
LABEL cubeos
  LINUX /cubeos/vmlinuz
  INITRD /cubeos/initrd.zst
  APPEND $LIVE_CMDLINE
EOF
install -m 0644 "$KERNEL" "$tree/cubeos/vmlinuz"
install -m 0644 "$INITRAMFS" "$tree/cubeos/initrd.zst"

# --- UEFI: a FAT image of the right size for what it holds ----------------------
# El Torito counts the image in 512-byte sectors in 16 bits: up to 32 MiB is
# safe with every firmware, so no slack beyond what the files need.
need_mib=$((($(stat -c %s "$KERNEL") + $(stat -c %s "$INITRAMFS") + 1048575) / 1048576 + 3))
[ "$need_mib" -le 32 ] || echo "mkiso: warning: the UEFI boot image is $need_mib MiB, over El Torito's 32 MiB" >&2
KERNEL_CMDLINE=$LIVE_CMDLINE ESP_FAT_LABEL=CUBEOS-EFI \
	bash "$(dirname "$0")/mkesp.sh" "$KERNEL" "$INITRAMFS" "$tree/boot/efi.img" "$need_mib" >"$work/efi.log" ||
	die "building the UEFI boot image failed"
# The loader: systemd-boot, not the disk's syslinux.efi. syslinux.efi reads the
# FAT itself in 512-byte sectors and crashes on a CD, whose El Torito image
# the firmware presents with 2048-byte blocks; systemd-boot reads files
# through the firmware's own FAT driver. No menu: timeout 0.
efi=$tree/boot/efi.img
export MTOOLS_SKIP_CHECK=1
printf 'default cubeos.conf\ntimeout 0\nconsole-mode keep\n' >"$work/loader.conf"
printf 'title CubeOS (live)\nlinux /cubeos/vmlinuz\ninitrd /cubeos/initrd.zst\noptions %s\n' "$LIVE_CMDLINE" >"$work/cubeos.conf"
mdel -i "$efi" ::/EFI/BOOT/ldlinux.e64 ::/EFI/BOOT/syslinux.cfg
mcopy -o -i "$efi" "$SYSTEMD_BOOT" ::/EFI/BOOT/BOOTX64.EFI
mmd -i "$efi" ::/loader ::/loader/entries
mcopy -i "$efi" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$efi" "$work/cubeos.conf" ::/loader/entries/cubeos.conf

# --- the install source -----------------------------------------------------------
install -m 0644 "$ESP_IMG" "$tree/boot/esp.img"
# A copy, not a link: the tree's timestamps are set below. ISO 9660 has no
# holes, so the medium carries the image's full size.
templates_note=none
if [ -n "$TEMPLATES_IMG" ]; then
	cp --sparse=always --reflink=auto "$TEMPLATES_IMG" "$tree/boot/templates.img"
	chmod 0644 "$tree/boot/templates.img"
	templates_note=$(du -h --apparent-size "$TEMPLATES_IMG" | cut -f1)
fi

find "$tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
xorriso -report_about WARNING -as mkisofs -quiet -o "$OUT.tmp" -V "$VOLUME_ID" -r \
	-isohybrid-mbr "$ISOHYBRID_MBR" \
	-b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
	-eltorito-alt-boot -e boot/efi.img -no-emul-boot -isohybrid-gpt-basdat \
	"$tree" || die "xorriso failed"
mv -f "$OUT.tmp" "$OUT"
echo "mkiso: $OUT: $(du -h --apparent-size "$OUT" | cut -f1) (UEFI boot image $need_mib MiB, install source $(du -h --apparent-size "$ESP_IMG" | cut -f1), templates $templates_note)"
