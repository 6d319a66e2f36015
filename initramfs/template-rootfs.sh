#!/bin/bash
# Builds the root filesystem of a default template from Debian packages:
# an ext4 image with Debian 12 (minbase + the template's packages), the users
# root and user (uid 1000, /home/user, passwordless sudo) and cube-agent as
# /sbin/init.
#
#   initramfs/template-rootfs.sh NAME AGENT OUT    e.g. base build/cube-agent build/templates/base/rootfs.ext4
#
# NAME is a file initramfs/templates/NAME.packages (one package per line,
# "# include base" includes another list); initramfs/templates/NAME.startup.py,
# if there is one, becomes the interpreter's start-up file
# (/etc/cubeos/interpreter/startup/00-NAME.py, see agent/interp/README.md). The Debian part is slow (a download and
# dpkg of a few hundred packages), so it is cached in
# $CUBEOS_CACHE/templates/NAME-<hash>.ext4, keyed by this script, the package
# lists and the host's apt sources; the agent and the start-up file, which
# change often, are written into a copy of the cached image with debugfs.
set -euo pipefail

NAME=${1:?usage: template-rootfs.sh NAME AGENT OUT}
AGENT=${2:?usage: template-rootfs.sh NAME AGENT OUT}
OUT=${3:?usage: template-rootfs.sh NAME AGENT OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
LISTS=$HERE/templates
STARTUP=$LISTS/$NAME.startup.py
CACHE=${CUBEOS_CACHE:-/var/cache/cubeos}/templates
SUITE=bookworm
# What a sandbox sees as its disk: the image is sparse, and each sandbox's
# writes go to its own copy-on-write layer, so free space costs nothing.
SIZE=${TEMPLATE_ROOTFS_SIZE:-2G}
USER_UID=1000

die() {
	echo "template $NAME: error: $*" >&2
	exit 1
}
say() { echo "template $NAME: $*"; }

[ -f "$LISTS/$NAME.packages" ] || die "no package list $LISTS/$NAME.packages"
[ -x "$AGENT" ] || die "$AGENT missing (build the agent first)"
PATH=$PATH:/sbin:/usr/sbin
for t in mmdebstrap mkfs.ext4 debugfs apt-get; do
	command -v $t >/dev/null || die "$t not found (run: make deps)"
done

# The package list, with "# base"-style includes expanded (one level is all
# the templates need, but recursion costs nothing).
packages_of() {
	local line
	while IFS= read -r line; do
		case $line in
		"# include "*) packages_of "${line#\# include }" ;;
		"" | "#"*) ;;
		*) echo "$line" ;;
		esac
	done <"$LISTS/$1.packages"
}

# The host's own binary package sources, one "deb URI SUITE COMPONENT" line
# each, so the template comes from wherever this machine gets Debian from.
apt_sources() {
	apt-get indextargets --format 'deb $(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' | sort -u
}

PACKAGES=$(packages_of "$NAME" | sort -u | paste -sd, -)
[ -n "$PACKAGES" ] || die "$LISTS/$NAME.packages lists no package"
SOURCES=$(apt_sources)
[ -n "$SOURCES" ] || die "the host has no apt package sources (run: apt-get update)"
KEY=$({
	cat "$0"
	echo "$PACKAGES" "$SIZE" "$SUITE"
	echo "$SOURCES"
} | sha256sum | cut -c1-16)
CACHED=$CACHE/$NAME-$KEY.ext4

# Everything a sandbox needs that the packages do not bring. Runs inside the
# new tree ($1) after the packages are installed.
customize() {
	cat <<EOF
set -e
root="\$1"
chroot "\$root" useradd --create-home --uid $USER_UID --user-group --shell /bin/bash user
chroot "\$root" usermod --append --groups sudo user
echo 'user ALL=(ALL:ALL) NOPASSWD: ALL' >"\$root/etc/sudoers.d/user"
chmod 0440 "\$root/etc/sudoers.d/user"
echo cube >"\$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tcube\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"\$root/etc/hosts"
: >"\$root/etc/resolv.conf"
ln -sf /usr/bin/cube-agent "\$root/sbin/init"
# Debian's own caches are of no use in a read-only template image.
rm -rf "\$root"/var/cache/apt/*.bin "\$root"/var/lib/apt/lists/* "\$root"/var/log/*.log
EOF
}

build_cached() {
	local stage hook
	mkdir -p "$CACHE"
	stage=$(mktemp -d "$CACHE/.$NAME-stage.XXXXXX")
	hook=$stage.hook
	trap 'rm -rf "$stage" "$hook" "$CACHED.tmp"' EXIT
	customize >"$hook"
	say "phase=debian packages=$(echo "$PACKAGES" | tr , '\n' | wc -l) (download and install; a few minutes the first time)"
	# mmdebstrap refuses a non-empty target directory.
	rmdir "$stage"
	echo "$SOURCES" | mmdebstrap --variant=minbase --mode=root --format=directory \
		--include="$PACKAGES" \
		--aptopt='APT::Install-Recommends "false"' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--customize-hook="bash $hook \"\$1\"" \
		"$SUITE" "$stage" - 2>&1 | sed -u "s/^/template $NAME: /" ||
		die "mmdebstrap failed"
	say "phase=ext4 $(du -sh "$stage" | cut -f1) of files"
	truncate -s "$SIZE" "$CACHED.tmp"
	mkfs.ext4 -q -F -T default -L cube-root -m 0 -d "$stage" "$CACHED.tmp" ||
		die "mkfs.ext4 failed"
	mv -f "$CACHED.tmp" "$CACHED"
	rm -rf "$stage" "$hook"
	trap - EXIT
	# Older builds of this template are of no further use.
	find "$CACHE" -maxdepth 1 -name "$NAME-*.ext4" ! -name "$NAME-$KEY.ext4" -delete
}

# debugfs commands that write file $1 as $2 (root-owned, mode $3).
debugfs_put() {
	echo "rm $2"
	echo "write $1 $2"
	echo "sif $2 uid 0"
	echo "sif $2 gid 0"
	echo "sif $2 mode 0100$3"
}

# The parts that change more often than the Debian packages: the agent and
# the interpreter's start-up file (templates/NAME.startup.py, if any).
inject_files() {
	local tmp=$1 err
	err=$({
		debugfs_put "$AGENT" /usr/bin/cube-agent 755
		if [ -f "$STARTUP" ]; then
			for d in /etc/cubeos /etc/cubeos/interpreter /etc/cubeos/interpreter/startup; do
				echo "mkdir $d"
			done
			debugfs_put "$STARTUP" "/etc/cubeos/interpreter/startup/00-$NAME.py" 644
		fi
	} | debugfs -w -f - "$tmp" 2>&1 >/dev/null) || die "debugfs failed: $err"
	# debugfs prints its banner, and "rm" of a file that is not there yet.
	err=$(echo "$err" | grep -v -e '^debugfs ' -e 'File not found by ext2_lookup' || true)
	[ -z "$err" ] || die "debugfs: $err"
	debugfs -R "stat /usr/bin/cube-agent" "$tmp" 2>/dev/null | grep -q 'Mode:  0755' ||
		die "image check failed: /usr/bin/cube-agent is not 0755"
}

if [ -f "$CACHED" ]; then
	say "phase=debian cached ($CACHED)"
else
	build_cached
fi
mkdir -p "$(dirname "$OUT")"
trap 'rm -f "$OUT.tmp"' EXIT
cp --sparse=always "$CACHED" "$OUT.tmp"
inject_files "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
say "ready $OUT ($SIZE sparse, $(du -h "$OUT" | cut -f1) used)"
