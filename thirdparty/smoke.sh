#!/usr/bin/env bash
# thirdparty/smoke.sh — compile one tiny static musl program per third-party
# library against the cache built by build.sh, run it and check its output.
# Flags come from thirdparty.mk, so the fragment is tested too.
# Last line: "thirdparty: N passed, M failed" (exit status 1 if M > 0).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CUBEOS_CACHE=${CUBEOS_CACHE:-/var/cache/cubeos}
export THIRDPARTY_DIR=${THIRDPARTY_DIR:-$CUBEOS_CACHE/thirdparty}
CC=musl-gcc
WFLAGS=(-static -O2 -Wall -Wextra -Werror)

for l in linux-uapi zlib libelf libbpf mbedtls lwip e2fsprogs; do
  [[ -f $THIRDPARTY_DIR/$l/.done ]] || { echo "thirdparty: $l missing in $THIRDPARTY_DIR (run thirdparty/build.sh first)" >&2; exit 1; }
done

OUT=$(mktemp -d /tmp/cubeos-tp-smoke.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
pass=0 fail=0

mkvar() {  # value of a thirdparty.mk variable
  make -s --no-print-directory -f "$HERE/thirdparty.mk" CUBEOS_CACHE="$CUBEOS_CACHE" \
    THIRDPARTY_DIR="$THIRDPARTY_DIR" "thirdparty-print-$1"
}

ok()  { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }

# check <name> <expected output> <command...>
check() {
  local name=$1 want=$2 got rc=0; shift 2
  got=$("$@" 2>"$OUT/$name.err") || rc=$?
  if (( rc != 0 )); then
    bad "$name" "exit status $rc: $(tr '\n' ' ' < "$OUT/$name.err")"
  elif [[ $got != "$want" ]]; then
    bad "$name" "expected '$want', got '$got'"
  else
    ok "$name"
  fi
}

# cc <name> <flags...> : compile into $OUT/<name>; 1 (and a FAIL) on error
cc() {
  local name=$1; shift
  # shellcheck disable=SC2068
  if ! $CC "${WFLAGS[@]}" -o "$OUT/$name" $@ 2>"$OUT/$name.cc.err"; then
    bad "$name" "compile failed: $(head -c 2000 "$OUT/$name.cc.err")"
    return 1
  fi
}

S=$HERE/smoke
root=$([[ $(id -u) == 0 ]] && echo 1 || echo 0)

# zlib
if cc zlib "$(mkvar ZLIB_CFLAGS)" "$S/zlib.c" "$(mkvar ZLIB_LDLIBS)"; then
  check zlib "zlib: version match, roundtrip ok" "$OUT/zlib"
fi

# mbedtls
if cc mbedtls "$(mkvar MBEDTLS_CFLAGS)" "$S/mbedtls.c" "$(mkvar MBEDTLS_LDLIBS)"; then
  check mbedtls "mbedtls: sha256(abc)=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad drbg ok x509 ok ssl ok" "$OUT/mbedtls"
fi

# libelf
if cc libelf "$(mkvar LIBELF_CFLAGS)" "$S/libelf.c" "$(mkvar LIBELF_LDLIBS)"; then
  check libelf "libelf: ELF64 .text found, main found" "$OUT/libelf"
fi

# BPF object for the two BPF tests
bpfobj_ok=1
# shellcheck disable=SC2046
if ! clang -O2 -g -target bpf $(mkvar BPF_CFLAGS) -c "$S/smoke.bpf.c" -o "$OUT/smoke.bpf.o" 2>"$OUT/bpf.err"; then
  bad libbpf "clang -target bpf failed: $(head -c 2000 "$OUT/bpf.err")"; bpfobj_ok=0
fi

# libbpf (+ libelf + zlib)
if (( bpfobj_ok )) && cc libbpf "$(mkvar LIBBPF_CFLAGS)" "$S/libbpf.c" "$(mkvar LIBBPF_LDLIBS)"; then
  v=$(sed -n 's/^#define LIBBPF_\(MAJOR\|MINOR\)_VERSION \([0-9]*\)/\2/p' "$THIRDPARTY_DIR/libbpf/include/bpf/libbpf_version.h" | paste -sd.)
  if (( root )); then want="libbpf: v$v open ok, load ok, test_run ok, count=1"
  else want="libbpf: v$v open ok, load skipped (not root)"; fi
  check libbpf "$want" "$OUT/libbpf" "$OUT/smoke.bpf.o"
fi

# light skeleton: skel_internal.h only, no libbpf.a / libelf
if (( bpfobj_ok )); then
  if ! bpftool gen skeleton -L "$OUT/smoke.bpf.o" name smoke > "$OUT/smoke.lskel.h" 2>"$OUT/lskel.err"; then
    bad bpf-lskel "bpftool gen skeleton -L failed: $(head -c 2000 "$OUT/lskel.err")"
  elif cc bpf-lskel "$(mkvar LIBBPF_LSKEL_CFLAGS)" -I"$OUT" "$S/bpf_lskel.c"; then
    if (( root )); then want="bpf-lskel: load ok, test_run ok, count=1"
    else want="bpf-lskel: load skipped (not root)"; fi
    check bpf-lskel "$want" "$OUT/bpf-lskel"
  fi
fi

# lwIP
if cc lwip "$(mkvar LWIP_CFLAGS)" "$S/lwip.c" "$(mkvar LWIP_LDLIBS)"; then
  v=$(sed -n 's/^#define LWIP_VERSION_\(MAJOR\|MINOR\|REVISION\) *\([0-9]*\).*$/\2/p' "$THIRDPARTY_DIR/lwip/include/lwip/init.h" | paste -sd.)
  check lwip "lwip: $v ip4 10.11.12.13 ip6 FD00::1 tcp ping ok" "$OUT/lwip"
fi

# e2fsprogs: the two static programs format and check an ext4 image file,
# with an empty environment (as PID1 runs them: no PATH, no /etc/mke2fs.conf needed).
e2fs_roundtrip() {
  local bin=$THIRDPARTY_DIR/e2fsprogs/bin img=$OUT/e2fs.img f out
  for f in "$bin/mke2fs" "$bin/e2fsck"; do
    file -b "$f" | grep -q 'statically linked' || { echo "$f is not static" >&2; return 1; }
  done
  truncate -s 64M "$img"
  env -i "$bin/mke2fs" -q -t ext4 -L cubeos-data "$img" >&2 || return 1
  out=$(env -i "$bin/e2fsck" -n "$img" 2>&1) || { echo "$out" >&2; return 1; }
  case $out in *"cubeos-data: clean,"*) ;; *) echo "e2fsck said: $out" >&2; return 1 ;; esac
  env -i "$bin/e2fsck" -fn "$img" >&2 || return 1
  echo "e2fsprogs: static, mke2fs ext4 ok, e2fsck clean"
}
check e2fsprogs "e2fsprogs: static, mke2fs ext4 ok, e2fsck clean" e2fs_roundtrip

echo "thirdparty: $pass passed, $fail failed"
(( fail == 0 ))
