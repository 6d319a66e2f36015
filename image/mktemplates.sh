#!/bin/bash
# Builds the templates image: one ext4 filesystem holding the root
# filesystems of the default templates, <name>/rootfs.ext4 each
# (initramfs/template-rootfs.sh). The same file becomes partition 3
# `cubeos-templates` of the disk image (image/mkimage.sh) and
# /boot/templates.img on the ISO (image/mkiso.sh), and `install DISK` copies
# it onto partition 3 of the installed disk:
#
#   image/mktemplates.sh TEMPLATES_DIR OUT.img
#       e.g. build/templates build/image/templates.img
#
# ext4 without a journal (cubeos mounts it read-only, nothing ever writes
# it), no reserved blocks, label cubeos-templates, owned by root. Its size is
# what the rootfs images use (mkfs.ext4 -d keeps their holes) plus 1/8 and
# 32 MiB for the metadata, in whole MiB.
set -euo pipefail

usage="usage: mktemplates.sh TEMPLATES_DIR OUT.img"
TEMPLATES=${1:?$usage}
OUT=${2:?$usage}
LABEL=cubeos-templates

die() {
	echo "mktemplates: error: $*" >&2
	exit 1
}

PATH=$PATH:/sbin:/usr/sbin
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found (run: make deps; image/deps.txt)"
[ -d "$TEMPLATES" ] || die "$TEMPLATES is not a directory (run: make templates)"
names=$(cd "$TEMPLATES" && for d in */; do if [ -f "$d/rootfs.ext4" ]; then echo "${d%/}"; fi; done)
[ -n "$names" ] || die "no <name>/rootfs.ext4 in $TEMPLATES (run: make templates)"

used_mib=$(du -s -B1M "$TEMPLATES" | cut -f1)
size_mib=$((used_mib + used_mib / 8 + 32))
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT.tmp"
trap 'rm -f "$OUT.tmp"' EXIT
truncate -s "${size_mib}M" "$OUT.tmp"
echo "mktemplates: $OUT: copying $used_mib MiB of root filesystems into a $size_mib MiB ext4"
# A fixed UUID and hash seed, and E2FSPROGS_FAKE_TIME (mke2fs's own knob for
# its timestamps) from SOURCE_DATE_EPOCH, keep the build reproducible.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$(dirname "$0")" log -1 --format=%ct 2>/dev/null || echo 0)}
fs_id=8c1d0b5e-2e0a-4b9f-9c55-54504c000003
E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -T default -O ^has_journal -m 0 -L "$LABEL" -U "$fs_id" \
	-E root_owner=0:0,hash_seed="$fs_id" -d "$TEMPLATES" "$OUT.tmp" ||
	die "mkfs.ext4 of $TEMPLATES failed"
mv -f "$OUT.tmp" "$OUT"
echo "mktemplates: $OUT: $(tr '\n' ' ' <<<"$names")($used_mib MiB used, $size_mib MiB image, $(du -sh "$OUT" | cut -f1) on disk)"
