#!/bin/bash
# Builds the CubeOS network-boot tree: a directory to serve as the TFTP (or
# HTTP) root.
#
#   image/mkpxe.sh KERNEL INITRAMFS ESP_IMG OUT_DIR
#       e.g. build/host/bzImage build/host/initramfs.cpio.zst build/image/esp.img build/image/pxe
#
# OUT_DIR:
#   vmlinuz, initrd.zst      the kernel and the appliance initramfs
#   esp.img                  the install source (image/mkesp.sh --trim)
#   esp.cpio                 the same file as a cpio archive holding cubeos/esp.img,
#                            for loaders that cannot name an initrd file (pxelinux)
#   boot.ipxe                iPXE script: the kernel with `cubeos.live`, the
#                            initramfs, and esp.img placed at /cubeos/esp.img
#   pxelinux.0, ldlinux.c32, pxelinux.cfg/default    the same boot with PXELINUX (BIOS)
#
# The booted system runs from RAM (`cubeos.live`: state in RAM too) and can
# install itself to a disk from /cubeos/esp.img with `install DISK`.
#
# Environment: KERNEL_CMDLINE (as for mkimage.sh; `cubeos.live` is appended).
set -euo pipefail

usage="usage: mkpxe.sh KERNEL INITRAMFS ESP_IMG OUT_DIR"
KERNEL=${1:?$usage}
INITRAMFS=${2:?$usage}
ESP_IMG=${3:?$usage}
OUT=${4:?$usage}
OUT=${OUT%/}
KERNEL_CMDLINE=${KERNEL_CMDLINE:-console=tty0 console=ttyS0,115200 quiet panic=10}
LIVE_CMDLINE="$KERNEL_CMDLINE cubeos.live"
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$(dirname "$0")" log -1 --format=%ct 2>/dev/null || echo 0)}

PXELINUX=/usr/lib/PXELINUX/pxelinux.0
BIOS_LDLINUX=/usr/lib/syslinux/modules/bios/ldlinux.c32

die() {
	echo "mkpxe: error: $*" >&2
	exit 1
}

command -v cpio >/dev/null || die "cpio not found (run: make deps)"
for f in "$KERNEL" "$INITRAMFS" "$ESP_IMG" "$PXELINUX" "$BIOS_LDLINUX"; do
	[ -f "$f" ] || die "$f missing"
done

mkdir -p "$(dirname "$OUT")"
stage=$(mktemp -d "$(dirname "$OUT")/.pxe-work.XXXXXX")
trap 'rm -rf "$stage"' EXIT
dir=$stage/pxe
install -d "$dir/pxelinux.cfg"
install -m 0644 "$KERNEL" "$dir/vmlinuz"
install -m 0644 "$INITRAMFS" "$dir/initrd.zst"
install -m 0644 "$ESP_IMG" "$dir/esp.img"
install -m 0644 "$PXELINUX" "$BIOS_LDLINUX" "$dir/"

# esp.cpio: the kernel unpacks every initrd it is given into the same root, in
# order, so this one adds /cubeos/esp.img next to the appliance's files.
install -d "$stage/cpio/cubeos"
install -m 0600 "$ESP_IMG" "$stage/cpio/cubeos/esp.img"
find "$stage/cpio" -exec touch -h -d "@$EPOCH" {} +
(cd "$stage/cpio" && printf 'cubeos\ncubeos/esp.img\n' | cpio -o -H newc -R 0:0 --reproducible --quiet) >"$dir/esp.cpio"

# iPXE resolves these names against the script's own URL (tftp:// or http://).
# `initrd FILE NAME` makes iPXE wrap FILE in a cpio header named NAME.
# initrd=initrd.magic is what the kernel's EFI stub needs under iPXE's UEFI
# build; the BIOS path ignores it.
cat >"$dir/boot.ipxe" <<EOF
#!ipxe
# CubeOS: the live system from the network (runs from RAM; \`install DISK\` on
# the admin console installs it). Serve this directory over TFTP or HTTP.
echo CubeOS: loading the kernel, the system and the install source
kernel vmlinuz initrd=initrd.magic $LIVE_CMDLINE
initrd initrd.zst
initrd esp.img /cubeos/esp.img
boot
EOF

cat >"$dir/pxelinux.cfg/default" <<EOF
# CubeOS with PXELINUX (BIOS): DHCP filename "pxelinux.0", this directory as
# the TFTP root. esp.cpio brings the install source (/cubeos/esp.img).
SERIAL 0 115200
DEFAULT cubeos
PROMPT 0
TIMEOUT 0
LABEL cubeos
  KERNEL vmlinuz
  INITRD initrd.zst,esp.cpio
  APPEND $LIVE_CMDLINE
EOF
find "$dir" -exec touch -h -d "@$EPOCH" {} +

rm -rf "$OUT.old"
[ -e "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$dir" "$OUT"
rm -rf "$OUT.old"
echo "mkpxe: $OUT/: $(du -sh --apparent-size "$OUT" | cut -f1) (vmlinuz, initrd.zst, esp.img, esp.cpio, boot.ipxe, pxelinux)"
