#!/bin/bash
# Assembles the appliance initramfs: the whole CubeOS userland in one
# compressed cpio archive, loaded by the boot loader next to the host kernel.
# The system therefore runs from RAM and is immutable; state lives on the data
# partition (found and formatted by cubeos).
#
#   initramfs/host-rootfs.sh BUILD_DIR OUT      e.g. build build/host/initramfs.cpio.zst
#
# Contents (all owned by root in the archive, whoever runs the build):
#   /init -> /sbin/init -> /sbin/cubeos   the PID1 (the kernel runs /init from an initramfs)
#   /usr/bin/cube-vmm, /usr/bin/guestctl  the VMM and its control client
#   /usr/bin/cube-api, /usr/bin/cube-proxy, /usr/bin/cube-dns  the control plane (E2B REST API,
#                                       sandbox proxy, DNS for <domain> and *.<domain>)
#   /usr/bin/cube, /usr/bin/cubemastercli -> cube  the CLI (templates, sandboxes; api/cli.h)
#   /usr/lib/cubeos/vmlinux               the guest kernel
#   /usr/lib/cubeos/rootfs.ext4           the default guest rootfs
#   /usr/lib/cubeos/cube-agent            the guest agent cube-api injects into OCI imports
#   /usr/lib/cubeos/gptmbr.bin            MBR boot code for `install` (SYSLINUX)
#   /cubeos/                              where a network boot puts esp.img (install source)
#   /usr/lib/cubeos/mke2fs, e2fsck        format and check the data disk (thirdparty/ e2fsprogs)
#   /dev/console                          so the kernel can give PID1 a console before devtmpfs
#   /etc/os-release, mount points
# With HOST_ROOTFS_BUSYBOX=1 a static busybox is added as /usr/lib/cubeos/busybox
# (off the PATH, no applet links: nothing runs it unless an operator's debugging
# build wires it in). Off by default: the appliance has no shell.
#
# No privileges needed: GNU cpio writes every owner as 0:0 (-R 0:0), and the one
# device node is appended as a hand-written newc entry instead of a mknod.
set -euo pipefail

BUILD=${1:?usage: host-rootfs.sh BUILD_DIR OUT}
OUT=${2:?usage: host-rootfs.sh BUILD_DIR OUT}
BUSYBOX=/bin/busybox
# Fixed timestamps make the archive reproducible (the kernel keeps file mtimes).
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$(dirname "$0")" log -1 --format=%ct 2>/dev/null || echo 0)}
ZSTD_LEVEL=${HOST_ROOTFS_ZSTD_LEVEL:-19}

die() {
	echo "host-rootfs: error: $*" >&2
	exit 1
}

CUBEOS=$BUILD/bin/cubeos
VMM=$BUILD/cube-vmm
GUESTCTL=$BUILD/guestctl
API=$BUILD/cube-api
PROXY=$BUILD/cube-proxy
DNS=$BUILD/cube-dns
CLI=$BUILD/cube
AGENT=$BUILD/cube-agent
GUEST_KERNEL=$BUILD/guest/vmlinux
GUEST_ROOTFS=$BUILD/guest/rootfs.ext4
# SYSLINUX's GPT MBR boot code: cubeos's `install` writes it to the disks it
# partitions, as image/mkimage.sh does to the qcow2.
GPTMBR=/usr/lib/syslinux/mbr/gptmbr.bin
E2FSPROGS_BIN=${E2FSPROGS_BIN:-${THIRDPARTY_DIR:-${CUBEOS_CACHE:-/var/cache/cubeos}/thirdparty}/e2fsprogs/bin}
MKE2FS=$E2FSPROGS_BIN/mke2fs
E2FSCK=$E2FSPROGS_BIN/e2fsck
for f in "$MKE2FS" "$E2FSCK"; do
	[ -x "$f" ] || die "$f missing (run: bash thirdparty/build.sh e2fsprogs)"
done
for f in "$CUBEOS" "$VMM" "$GUESTCTL" "$API" "$PROXY" "$DNS" "$CLI" "$AGENT"; do
	[ -x "$f" ] || die "$f missing (run: make)"
done
[ -f "$GUEST_KERNEL" ] || die "$GUEST_KERNEL missing (run: make guest-kernel)"
[ -f "$GUEST_ROOTFS" ] || die "$GUEST_ROOTFS missing (run: make guest-rootfs)"
[ -f "$GPTMBR" ] || die "$GPTMBR missing (run: make deps: syslinux-common)"
for t in cpio zstd; do
	command -v $t >/dev/null || die "$t not found (run: make deps)"
done
# Every program must be static: the initramfs has no libc and no loader.
for f in "$CUBEOS" "$VMM" "$GUESTCTL" "$API" "$PROXY" "$DNS" "$CLI" "$AGENT" "$MKE2FS" "$E2FSCK"; do
	if file -b "$f" 2>/dev/null | grep -q 'dynamically linked'; then
		die "$f is dynamically linked: the initramfs has no shared libraries"
	fi
done

mkdir -p "$(dirname "$OUT")"
stage=$(mktemp -d "$(dirname "$OUT")/.host-rootfs-stage.XXXXXX")
trap 'rm -rf "$stage" "$OUT.tmp" "$OUT.cpio"' EXIT

# --- tree -----------------------------------------------------------------------
# Mount points exist so cubeos mounts without creating them (it would anyway).
install -d -m 0755 "$stage"/{dev,proc,sys,run,etc,var,var/lib,mnt,sbin,usr,usr/bin,usr/sbin,usr/lib/cubeos}
install -d -m 0700 "$stage/root"
install -d -m 1777 "$stage/tmp"

install -m 0755 "$CUBEOS" "$stage/sbin/cubeos"
ln -s cubeos "$stage/sbin/init"
ln -s sbin/init "$stage/init"
install -m 0755 "$VMM" "$stage/usr/bin/cube-vmm"
install -m 0755 "$GUESTCTL" "$stage/usr/bin/guestctl"
install -m 0755 "$API" "$stage/usr/bin/cube-api"
install -m 0755 "$PROXY" "$stage/usr/bin/cube-proxy"
install -m 0755 "$DNS" "$stage/usr/bin/cube-dns"
install -m 0755 "$CLI" "$stage/usr/bin/cube"
ln -s cube "$stage/usr/bin/cubemastercli"
install -m 0644 "$GUEST_KERNEL" "$stage/usr/lib/cubeos/vmlinux"
install -m 0644 "$GUEST_ROOTFS" "$stage/usr/lib/cubeos/rootfs.ext4"
install -m 0755 "$AGENT" "$stage/usr/lib/cubeos/cube-agent"
install -m 0644 "$GPTMBR" "$stage/usr/lib/cubeos/gptmbr.bin"
# Network boots add the install source here (/cubeos/esp.img, image/mkpxe.sh);
# the kernel does not create parent directories when it unpacks a cpio.
install -d -m 0755 "$stage/cubeos"
# Off the PATH: only cubeos runs them, on the data partition (cubeos/datadisk.c).
install -m 0755 "$MKE2FS" "$stage/usr/lib/cubeos/mke2fs"
install -m 0755 "$E2FSCK" "$stage/usr/lib/cubeos/e2fsck"
if [ "${HOST_ROOTFS_BUSYBOX:-0}" = 1 ]; then
	[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (install busybox-static)"
	install -m 0755 "$BUSYBOX" "$stage/usr/lib/cubeos/busybox"
fi

version=$(git -C "$(dirname "$0")" describe --always --dirty 2>/dev/null || echo unknown)
cat >"$stage/etc/os-release" <<EOF
NAME="CubeOS"
ID=cubeos
PRETTY_NAME="CubeOS ($version)"
VERSION_ID=$version
EOF

find "$stage" -exec touch -h -d "@$EPOCH" {} +

# --- archive --------------------------------------------------------------------
# newc_entry NAME MODE MAJOR MINOR: one cpio "newc" header for an empty inode
# (a device node here), padded to 4 bytes as the format wants.
newc_entry() {
	local name=$1 mode=$2 rmaj=$3 rmin=$4 ino=$5
	local namesize=$((${#name} + 1))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
		"$ino" "$mode" 0 0 1 "$EPOCH" 0 0 0 "$rmaj" "$rmin" "$namesize" 0 "$name"
	# header (110 bytes) + name + NUL, padded to a multiple of 4
	local pad=$(((4 - (110 + namesize) % 4) % 4))
	head -c "$pad" /dev/zero
}

{
	(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet)
	# A second archive: the kernel unpacks concatenated cpio archives in order.
	{
		newc_entry dev/console $((0020000 | 0600)) 5 1 1
		newc_entry TRAILER!!! 0 0 0 0
	}
} >"$OUT.cpio"
# The kernel's zstd decoder handles windows up to 128 MiB; level 19 uses 8 MiB.
zstd -q -f -T0 -"$ZSTD_LEVEL" --rm "$OUT.cpio" -o "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
echo "host-rootfs: $OUT ($(du -h --apparent-size "$OUT" | cut -f1), $(du -sh --apparent-size "$stage" | cut -f1) unpacked)"
