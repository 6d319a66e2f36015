#!/usr/bin/env bash
# l1-kernel.sh - prints the directory of the L1 kernel: Debian's current 6.1
# kernel package (the one linux-image-amd64 depends on), unpacked, with its
# modules.dep generated (the .deb ships none). Cached by package version under
# $CUBEOS_CACHE/l1/<kernel-release>_<package-version>/:
#   boot/vmlinuz-<release>, lib/modules/<release>/..., release (a file).
# Without the package index (offline), the newest cached kernel is used.
set -euo pipefail
CACHE=${CUBEOS_CACHE:-/var/cache/cubeos}/l1

newest_cached() {
	ls -d "$CACHE"/*/release 2>/dev/null | sort -V | tail -n 1 | xargs -r dirname
}

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1/ {print $2; exit}')
ver=$([ -n "$pkg" ] && apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '$1 == "Version:" {print $2; exit}' || true)
if [ -z "$pkg" ] || [ -z "$ver" ]; then
	dir=$(newest_cached)
	[ -n "$dir" ] || { echo "l1-kernel: no linux-image-6.1 in the package index and none cached" >&2; exit 1; }
	echo "l1-kernel: package index has no linux-image-amd64; using cached $dir" >&2
	echo "$dir"
	exit 0
fi
release=${pkg#linux-image-}
dir=$CACHE/${release}_$ver
if [ -f "$dir/release" ]; then
	echo "$dir"
	exit 0
fi

echo "l1-kernel: fetching $pkg $ver" >&2
tmp=$(mktemp -d "$CACHE.tmp.XXXXXX" 2>/dev/null || { mkdir -p "$(dirname "$CACHE")" && mktemp -d "$CACHE.tmp.XXXXXX"; })
chmod 755 "$tmp" # apt-get download runs as _apt where it can
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "$pkg=$ver" >&2)
mkdir -p "$tmp/root"
dpkg-deb -x "$tmp"/*.deb "$tmp/root"
depmod -b "$tmp/root" "$release"
echo "$release" >"$tmp/root/release"
mkdir -p "$CACHE"
rm -rf "$dir"
mv "$tmp/root" "$dir"
echo "$dir"
