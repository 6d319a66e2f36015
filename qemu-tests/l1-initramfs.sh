#!/usr/bin/env bash
# l1-initramfs.sh KDIR - prints the path of the L1 base initramfs (cpio.gz):
# static busybox plus the kernel modules L1 needs, with their dependencies.
# It changes only with the kernel, busybox or this script, so it is cached
# under $CUBEOS_CACHE/l1/initramfs-<hash>.cpio.gz. The test payload (init,
# scripts, binaries) is a second, uncompressed cpio that run.sh appends:
# Linux unpacks concatenated archives in order.
set -euo pipefail
KDIR=$1
CACHE=${CUBEOS_CACHE:-/var/cache/cubeos}/l1
BUSYBOX=${BUSYBOX:-/bin/busybox}
# kvm_* for /dev/kvm; tun for the net test's TAP; virtio_pci/blk and 9p for
# L1's own disk and result share; ext4/overlay/loop for images; vhost_vsock
# for the QEMU baseline, whose vsock is the kernel's.
MODULES="kvm_amd kvm_intel tun virtio_pci virtio_blk virtio_net 9p 9pnet_virtio ext4 overlay loop vsock vhost_vsock"

release=$(cat "$KDIR/release")
key=$( (echo "$KDIR" "$MODULES"; sha256sum "$BUSYBOX" "${BASH_SOURCE[0]}" | cut -d' ' -f1) | sha256sum | cut -c1-16)
out=$CACHE/initramfs-$key.cpio.gz
if [ -s "$out" ]; then
	echo "$out"
	exit 0
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,lib/modules/"$release"}
cp "$BUSYBOX" "$stage/bin/busybox"
for m in $MODULES; do
	modprobe -d "$KDIR" -S "$release" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | sort -u | while read -r f; do
	rel=${f#"$KDIR"/}
	mkdir -p "$stage/$(dirname "$rel")"
	cp "$f" "$stage/$rel"
done
cp "$KDIR"/lib/modules/"$release"/modules.{builtin,builtin.modinfo,order} "$stage/lib/modules/$release/"
depmod -b "$stage" "$release"
mkdir -p "$CACHE"
(cd "$stage" && find . | sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 >"$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
