#!/bin/bash
# Assembles the guest test rootfs: an ext4 image made with `mkfs.ext4 -d`
# from a staging directory (no loop mounts, no privileges needed).
#
#   initramfs/guest-rootfs.sh AGENT OUT     e.g. build/cube-agent build/guest/rootfs.ext4
#
# Contents: cube-agent as /usr/bin/cube-agent and /sbin/init (as PID1 it is the
# guest agent and mounts /proc, /sys, /dev... itself), busybox applets in /bin,
# bash as /bin/bash (E2B SDKs run `/bin/bash -l -c CMD`), users root and user.
#
# Ownership inside the image never depends on who runs the build: after
# mkfs, debugfs sets every inode to root:root and /home/user to 1000:1000.
set -euo pipefail

AGENT=${1:?usage: guest-rootfs.sh AGENT OUT}
OUT=${2:?usage: guest-rootfs.sh AGENT OUT}
SIZE=${GUEST_ROOTFS_SIZE:-64M}
BUSYBOX=/bin/busybox
BASH_STATIC=/bin/bash-static
LOCALE_DIR=/usr/lib/locale/C.utf8
USER_UID=1000
USER_GID=1000

die() {
	echo "rootfs: error: $*" >&2
	exit 1
}

for f in "$AGENT" "$BUSYBOX" "$BASH_STATIC"; do
	[ -x "$f" ] || die "$f missing (build the agent / run: make deps)"
done
for t in mkfs.ext4 debugfs; do
	command -v $t >/dev/null || PATH=$PATH:/sbin:/usr/sbin
	command -v $t >/dev/null || die "$t not found (install e2fsprogs: make deps)"
done

mkdir -p "$(dirname "$OUT")"
stage=$(mktemp -d "$(dirname "$OUT")/.rootfs-stage.XXXXXX")
trap 'rm -rf "$stage" "$OUT.tmp" "$stage.debugfs" "$stage.debugfs.err"' EXIT

# --- directories ----------------------------------------------------------------
# Mount points exist in the image so PID1 can mount even on a read-only root.
install -d -m 0755 "$stage"/{bin,sbin,etc,dev,proc,sys,run,mnt,opt,home,var,var/log,usr,usr/bin,usr/sbin}
install -d -m 0755 "$stage"/usr/local/{bin,sbin} "$stage/home/user"
install -d -m 0700 "$stage/root"
install -d -m 1777 "$stage/tmp" "$stage/var/tmp"

# --- programs -------------------------------------------------------------------
install -m 0755 "$AGENT" "$stage/usr/bin/cube-agent"
ln -s /usr/bin/cube-agent "$stage/sbin/init"
install -m 0755 "$BUSYBOX" "$stage/bin/busybox"
install -m 0755 "$BASH_STATIC" "$stage/bin/bash"
# Every applet in /bin except those that would shadow PID1's role.
for applet in $("$BUSYBOX" --list); do
	case $applet in busybox | init | linuxrc | bash) continue ;; esac
	[ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
done
# Scripts' shebangs name /usr/bin/env.
ln -s /bin/busybox "$stage/usr/bin/env"
# glibc's C.UTF-8 is a compiled locale, not built in: without it bash warns
# "setlocale: LC_ALL: cannot change locale (C.UTF-8)" on every terminal.
if [ -d "$LOCALE_DIR" ]; then
	install -d -m 0755 "$stage/usr/lib/locale"
	cp -r "$LOCALE_DIR" "$stage/usr/lib/locale/"
fi

# --- configuration --------------------------------------------------------------
cat >"$stage/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/bash
user:x:$USER_UID:$USER_GID:user:/home/user:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$stage/etc/group" <<EOF
root:x:0:
user:x:$USER_GID:
nogroup:x:65534:
EOF
cat >"$stage/etc/shadow" <<EOF
root:*:19000:0:99999:7:::
user:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
chmod 0600 "$stage/etc/shadow"
# glibc-static bash resolves users through NSS: files only.
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$stage/etc/nsswitch.conf"
echo cube >"$stage/etc/hostname"
cat >"$stage/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	cube
::1	localhost ip6-localhost ip6-loopback
EOF
cat >"$stage/etc/profile" <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022
# Interactive shells (terminals): name the user, host and directory.
case $- in *i*) PS1='\u@\h:\w\$ ' ;; esac
EOF
echo 'CubeOS guest' >"$stage/etc/issue"
touch "$stage/etc/resolv.conf"

# --- image ----------------------------------------------------------------------
rm -f "$OUT.tmp"
# -T default: 4 KiB blocks (mke2fs would pick 1 KiB "small" ones for 64 MiB);
# -m 0: no blocks reserved for root in a scratch guest disk. The image file is
# sparse, so 64 MiB costs only what the files use.
mkfs.ext4 -q -F -T default -i 8192 -L cube-root -m 0 -E root_owner=0:0 -d "$stage" "$OUT.tmp" "$SIZE" \
	>"$stage.debugfs.err" 2>&1 || {
	cat "$stage.debugfs.err" >&2
	die "mkfs.ext4 failed"
}

# Ownership: mkfs -d copies the staging owner (whoever ran the build).
{
	(cd "$stage" && find . -mindepth 1) | while IFS= read -r p; do
		p=${p#.}
		case $p in
		/home/user | /home/user/*) echo "sif $p uid $USER_UID"; echo "sif $p gid $USER_GID" ;;
		*) echo "sif $p uid 0"; echo "sif $p gid 0" ;;
		esac
	done
} >"$stage.debugfs"
debugfs -w -f "$stage.debugfs" "$OUT.tmp" >/dev/null 2>"$stage.debugfs.err" || {
	cat "$stage.debugfs.err" >&2
	die "debugfs ownership pass failed"
}
if grep -v '^debugfs ' "$stage.debugfs.err" | grep -q .; then
	cat "$stage.debugfs.err" >&2
	die "debugfs ownership pass reported errors"
fi
rm -f "$stage.debugfs.err"

# Check what PID1 and the SDKs depend on, in the image itself.
check() {
	debugfs -R "stat $1" "$OUT.tmp" 2>/dev/null | grep -q -- "$2" || die "image check failed: $1 lacks '$2'"
}
check /sbin/init 'Fast link dest: "/usr/bin/cube-agent"'
check /usr/bin/cube-agent 'Mode:  0755'
check /bin/bash 'Mode:  0755'
check /home/user "User:  $USER_UID   Group:  $USER_GID"
check /tmp 'Mode:  01777'
check /etc/shadow 'User:     0   Group:     0'

mv -f "$OUT.tmp" "$OUT"
echo "rootfs: $OUT ($SIZE sparse, $(du -h "$OUT" | cut -f1) used)"
