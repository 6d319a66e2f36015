#!/bin/bash
# Builds (or fetches from the cache) a CubeOS kernel from Debian's
# linux-source-6.1: `make tinyconfig` plus the flavour's fragment.
#
#   kernel/build.sh guest OUT [CONFIG_OUT]   e.g. build/guest/vmlinux
#       the microVM guest: an uncompressed ELF vmlinux (kernel/guest.config)
#   kernel/build.sh host OUT [CONFIG_OUT]    e.g. build/host/bzImage build/host/config
#       the appliance: an EFI-stub bzImage (kernel/host.config)
#
# CONFIG_OUT (default OUT.config) receives the full .config.
# Cache: $CUBEOS_CACHE/kernel/<flavour>-<source version>-<sha256(<flavour>.config +
# build.sh), 16 hex>/{<image>,config,source}. A warm run only hashes two small
# files and copies the image when OUT differs, so it takes well under a second.
set -euo pipefail

FLAVOUR=${1:-}
OUT=${2:-}
[ -n "$OUT" ] || {
	echo "usage: kernel/build.sh guest|host OUT [CONFIG_OUT]" >&2
	exit 2
}
CONFIG_OUT=${3:-$OUT.config}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# TARGET: what the kernel's make builds; IMAGE: where it lands in the tree.
case $FLAVOUR in
guest) TARGET=vmlinux IMAGE=vmlinux ;;
host) TARGET=bzImage IMAGE=arch/x86/boot/bzImage ;;
*)
	echo "kernel: error: unknown flavour '$FLAVOUR' (guest or host)" >&2
	exit 2
	;;
esac
FRAGMENT=$HERE/$FLAVOUR.config
NAME=$(basename "$IMAGE")
SRC_PKG=linux-source-6.1
TARBALL=/usr/src/$SRC_PKG.tar.xz
CACHE=${CUBEOS_CACHE:-/var/cache/cubeos}/kernel

die() {
	echo "kernel: error: $*" >&2
	exit 1
}
phase() { echo "kernel: [$1/5] $2 ($(($(date +%s) - START))s)"; }

# Copies the cached image to OUT only when it differs, so make's timestamps
# (and everything built from OUT) stay put on warm runs.
install_output() {
	local dir=$1
	mkdir -p "$(dirname "$OUT")" "$(dirname "$CONFIG_OUT")"
	if ! cmp -s "$dir/$NAME" "$OUT"; then
		cp "$dir/$NAME" "$OUT.tmp" && mv -f "$OUT.tmp" "$OUT"
	fi
	if ! cmp -s "$dir/config" "$CONFIG_OUT"; then
		cp "$dir/config" "$CONFIG_OUT"
	fi
}

version=$(dpkg-query -W -f '${Version}' "$SRC_PKG" 2>/dev/null) ||
	die "$SRC_PKG is not installed (run: make deps)"
[ -r "$TARBALL" ] || die "$TARBALL missing (reinstall $SRC_PKG)"
key=$(cat "$FRAGMENT" "$HERE/build.sh" | sha256sum | cut -c1-16)
dir=$CACHE/$FLAVOUR-$version-$key

if [ -f "$dir/$NAME" ]; then
	install_output "$dir"
	echo "kernel: cached $dir/$NAME"
	exit 0
fi

START=$(date +%s)
mkdir -p "$CACHE"
# One builder per key; a second one waits and then finds the published dir.
exec 9>"$CACHE/.lock-$FLAVOUR-$key"
flock 9
if [ -f "$dir/$NAME" ]; then
	install_output "$dir"
	echo "kernel: cached $dir/$NAME (built by a concurrent run)"
	exit 0
fi

# A scratch tree takes gigabytes: drop those a killed build left behind (we
# hold the lock, so no live build of this key owns one).
rm -rf "$CACHE/.scratch-$FLAVOUR-$key".*
scratch=$(mktemp -d "$CACHE/.scratch-$FLAVOUR-$key.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
echo "kernel: building $FLAVOUR kernel $version ($key), scratch $scratch"

phase 1 "unpack $TARBALL"
tar -C "$scratch" -xJf "$TARBALL"
tree=$scratch/$SRC_PKG
[ -f "$tree/Makefile" ] || die "unexpected tarball layout: no $SRC_PKG/Makefile"

phase 2 "configure (tinyconfig + $FLAVOUR.config)"
# The kernel's make must not inherit our caller's flags or variables (make -s,
# V=1, CC=musl-gcc on the top-level command line travel in MAKEFLAGS).
kmake() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES make -C "$tree" ARCH=x86_64 "$@"; }
kmake -s tinyconfig >"$scratch/config.log" 2>&1 || {
	cat "$scratch/config.log" >&2
	die "tinyconfig failed"
}
# -m: merge only, then olddefconfig resolves dependencies once.
(cd "$tree" && ARCH=x86_64 scripts/kconfig/merge_config.sh -m .config "$FRAGMENT") >>"$scratch/config.log" 2>&1 || {
	cat "$scratch/config.log" >&2
	die "merge_config.sh failed"
}
kmake -s olddefconfig >>"$scratch/config.log" 2>&1 || {
	cat "$scratch/config.log" >&2
	die "olddefconfig failed"
}

phase 3 "verify every option of $FLAVOUR.config stuck"
# An option that Kconfig silently dropped (unmet dependency, renamed symbol)
# would otherwise only show up as a kernel that does not boot.
missing=()
while IFS= read -r line; do
	case $line in
	CONFIG_*=*)
		grep -qxF -- "$line" "$tree/.config" || missing+=("$line (got: $(grep -E "^(# )?${line%%=*}[= ]" "$tree/.config" || echo absent))")
		;;
	"# CONFIG_"*" is not set")
		sym=${line#\# }
		sym=${sym%% *}
		if grep -q "^$sym=" "$tree/.config"; then missing+=("$line (got: $(grep "^$sym=" "$tree/.config"))"); fi
		;;
	esac
done <"$FRAGMENT"
# Nothing is ever built as a module (no modules target, no modprobe at run
# time): an option that defaults to =m would silently be missing.
while IFS= read -r line; do
	missing+=("$line (modules are not built: set it =y or unset it in $FLAVOUR.config)")
done < <(grep '=m$' "$tree/.config" || true)
if [ ${#missing[@]} -gt 0 ]; then
	printf 'kernel:   not applied: %s\n' "${missing[@]}" >&2
	die "${#missing[@]} option(s) of $FRAGMENT did not stick"
fi

phase 4 "compile $TARGET (make -j$(nproc))"
kmake -j"$(nproc)" "$TARGET" >"$scratch/build.log" 2>&1 || {
	tail -50 "$scratch/build.log" >&2
	die "$TARGET build failed (log above)"
}
# Surface compiler warnings: a clean tinyconfig-based build has none.
grep -E 'warning:' "$scratch/build.log" | sed 's/^/kernel:   /' | head -20 || true

phase 5 "publish $dir"
stage=$scratch/out
mkdir "$stage"
cp "$tree/$IMAGE" "$stage/$NAME"
cp "$tree/.config" "$stage/config"
echo "$version $key" >"$stage/source"
rm -rf "$dir"
mv -T "$stage" "$dir"
install_output "$dir"
echo "kernel: built $dir/$NAME ($(du -h "$dir/$NAME" | cut -f1)) in $(($(date +%s) - START))s"
