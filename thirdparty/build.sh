#!/usr/bin/env bash
# thirdparty/build.sh — build CubeOS's third-party C libraries as static musl
# libraries from Debian *source* packages, into a cache outside the work tree.
#
#   thirdparty/build.sh [lib...]   (default: all; a lib's deps are always included)
#   env: CUBEOS_CACHE (/var/cache/cubeos), THIRDPARTY_DIR ($CUBEOS_CACHE/thirdparty),
#        JOBS (nproc)
#
# Output: $THIRDPARTY_DIR/<lib>-<key>/{include,lib} plus a stable relative
# symlink $THIRDPARTY_DIR/<lib> -> <lib>-<key>. <key> is a short
# sha256 of the Debian source version, this script's own build_<lib>()
# function text, extra input files, the compiler identity and the keys of the
# libraries it builds against. A keyed dir with a .done stamp is never rebuilt.
# See thirdparty/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/build.sh"
CUBEOS_CACHE=${CUBEOS_CACHE:-/var/cache/cubeos}
TP=${THIRDPARTY_DIR:-$CUBEOS_CACHE/thirdparty}
SRCDIR="$TP/src"              # downloaded Debian source files (kept, re-used)
BUILDROOT="$TP/build"         # scratch trees (removed after a good build)
CC=musl-gcc
OPT_CFLAGS="-O2"
JOBS=${JOBS:-$(nproc)}

# name:source-package:deps (deps = other entries whose headers it builds against)
LIBS=(
  "linux-uapi:-:"
  "zlib:zlib:"
  "libelf:elfutils:zlib"
  "libbpf:libbpf:zlib libelf linux-uapi"
  "mbedtls:mbedtls:"
  "lwip:lwip:"
  "e2fsprogs:e2fsprogs:linux-uapi"
)

log() { printf '[thirdparty] %s\n' "$*"; }
die() { printf '[thirdparty] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- apt sources
# Make sure apt knows source packages: generate a deb-src twin of the machine's
# own debian.sources (same URIs/Suites/Components/Signed-By), never a
# hard-coded mirror.
DEBSRC_FILE=/etc/apt/sources.list.d/cubeos-src.sources
APT_UPDATED=0

have_other_debsrc() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f && $f != "$DEBSRC_FILE" ]] || continue
    if grep -Eq '^[[:space:]]*deb-src[[:space:]]' "$f" 2>/dev/null \
       || grep -Eq '^Types:.*deb-src' "$f" 2>/dev/null; then
      return 0
    fi
  done
  return 1
}

gen_debsrc() {
  local src=/etc/apt/sources.list.d/debian.sources f
  if [[ ! -f $src ]]; then   # e.g. 0000debian.sources from mmdebstrap
    for f in /etc/apt/sources.list.d/*debian*.sources; do
      [[ -f $f && $f != "$DEBSRC_FILE" ]] && { src=$f; break; }
    done
  fi
  if [[ -f $src ]]; then
    # deb822 stanzas: copy every field except comments, force Types: deb-src.
    awk 'BEGIN { RS = ""; FS = "\n" }
         { for (i = 1; i <= NF; i++) {
             if ($i ~ /^#/) continue
             if ($i ~ /^Types:/) $i = "Types: deb-src"
             print $i }
           print "" }' "$src"
  elif [[ -f /etc/apt/sources.list ]]; then
    # one-line format: "deb [opts] URI suite comp..." -> deb822 stanza
    awk '$1 == "deb" {
           opts = ""; i = 2
           if ($2 ~ /^\[/) { while ($i !~ /\]$/) { opts = opts " " $i; i++ } opts = opts " " $i; i++ }
           printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents:", $i, $(i + 1)
           for (j = i + 2; j <= NF; j++) printf " %s", $j
           printf "\n"
           if (match(opts, /signed-by=[^] ]+/)) printf "Signed-By: %s\n", substr(opts, RSTART + 10, RLENGTH - 10)
           printf "\n" }' /etc/apt/sources.list
  fi
}

ensure_debsrc() {
  have_other_debsrc && return 0
  local want
  want=$(gen_debsrc)
  [[ -n $want ]] || die "no debian.sources / sources.list to derive a deb-src entry from"
  if [[ -f $DEBSRC_FILE ]] && [[ "$(cat "$DEBSRC_FILE")" == "$want" ]]; then
    return 0
  fi
  [[ $(id -u) == 0 ]] || die "need root to write $DEBSRC_FILE"
  log "apt: writing $DEBSRC_FILE (deb-src twin of the machine's sources)"
  printf '%s\n' "$want" > "$DEBSRC_FILE"
  apt_update
}

apt_update() {
  [[ $APT_UPDATED == 1 ]] && return 0
  [[ $(id -u) == 0 ]] || die "need root for apt-get update"
  log "apt: apt-get update"
  apt-get update -qq >/dev/null || die "apt-get update failed"
  APT_UPDATED=1
}

# SRCVER = newest version of a source package apt knows about (dpkg ordering).
# Sets a global rather than printing, so apt_update's state survives.
src_version() {
  local pkg=$1 v best=""
  for v in $(apt-cache showsrc --only-source "$pkg" 2>/dev/null | sed -n 's/^Version: //p'); do
    if [[ -z $best ]] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
  done
  if [[ -z $best && $APT_UPDATED == 0 ]]; then
    apt_update
    src_version "$pkg"
    return
  fi
  [[ -n $best ]] || die "source package '$pkg' not found by apt-cache showsrc"
  SRCVER=$best
}

# ---------------------------------------------------------------- helpers
# Text of one function of this file, exactly as written (for the cache key).
fn_text() { sed -n "/^$1() {/,/^}/p" "$SELF"; }

compiler_id() {
  printf '%s %s musl-dev %s\n' "$CC" "$($CC -dumpfullversion)" \
    "$(dpkg-query -W -f='${Version}' musl-dev 2>/dev/null || echo unknown)"
}

# run_logged <log> cmd... : run quietly, show the log tail on failure
run_logged() {
  local lf=$1; shift
  if ! "$@" >>"$lf" 2>&1; then
    tail -n 40 "$lf" >&2
    die "$CUR: command failed: $* (full log: $lf)"
  fi
}

# build_progress <objdir> <total> cmd... : run a build, printing "NN%" lines
# from the number of object files appearing under <objdir>.
BGPID=""
trap '[[ -n $BGPID ]] && kill "$BGPID" 2>/dev/null; true' EXIT
build_progress() {
  local dir=$1 total=$2; shift 2
  local lf="$WORK/build.log" rc=0 n pct last=-1
  "$@" >>"$lf" 2>&1 &
  BGPID=$!
  while kill -0 "$BGPID" 2>/dev/null; do
    sleep 0.5
    n=$(find "$dir" -name '*.o' 2>/dev/null | wc -l)
    pct=$(( n * 100 / (total > 0 ? total : 1) )); (( pct > 99 )) && pct=99
    # one line per 10% step
    if (( pct / 10 != last / 10 )); then log "$CUR: build (3/4) ${pct}%"; last=$pct; fi
  done
  wait "$BGPID" || rc=$?
  BGPID=""
  if (( rc != 0 )); then
    tail -n 40 "$lf" >&2
    die "$CUR: build failed (full log: $lf)"
  fi
  log "$CUR: build (3/4) 100%"
}

phase() { log "$CUR: $1"; }
nfiles() { echo $#; }

# fetch_source <srcpkg> <version> : download (once) and unpack into $WORK/src.
# Returns 1 if apt could not download it (e.g. a stale source index).
fetch_source() {
  local pkg=$1 ver=$2 dsc
  mkdir -p "$SRCDIR"
  dsc="$SRCDIR/${pkg}_${ver#*:}.dsc"
  if [[ ! -f $dsc ]]; then
    # files are downloaded as root into a root-only dir: skip apt's _apt sandbox
    if ! (cd "$SRCDIR" && apt-get source -qq --download-only -o APT::Sandbox::User=root \
            "$pkg=$ver" >>"$WORK/fetch.log" 2>&1) || [[ ! -f $dsc ]]; then
      tail -n 20 "$WORK/fetch.log" >&2
      return 1
    fi
  fi
  run_logged "$WORK/fetch.log" dpkg-source -q -x "$dsc" "$WORK/src"
}

# ---------------------------------------------------------------- libraries
# Each build_<lib> runs in $WORK/src (the unpacked Debian source, patches
# applied) and installs into $PREFIX/{include,lib}. Changing one of these
# functions changes only that library's cache key.

# Kernel UAPI headers (linux/, asm/, asm-generic/...) for musl builds, copied
# from the installed linux-libc-dev with the multiarch asm/ dir flattened. Not
# a library; consumers add it with -idirafter so musl's own headers win.
build_linux_uapi() {
  phase "configure (2/4)"
  local ma n
  ma=$(gcc -print-multiarch)
  dpkg -L linux-libc-dev | sed -n 's|^/usr/include/\(.*\.h\)$|\1|p' > "$WORK/headers.txt"
  n=$(wc -l < "$WORK/headers.txt")
  phase "build (3/4)"
  tar -C /usr/include -cf - -T "$WORK/headers.txt" --transform "s|^$ma/||" \
    | tar -C "$PREFIX/include" -xf -
  phase "install (4/4) $n headers"
}

build_zlib() {
  phase "configure (2/4)"
  CC=$CC CFLAGS="$OPT_CFLAGS" run_logged "$WORK/build.log" \
    ./configure --static --prefix="$PREFIX"
  build_progress . "$(nfiles ./*.c)" make -j"$JOBS" libz.a
  phase "install (4/4)"
  run_logged "$WORK/build.log" make install-libs
  install -m644 zlib.h zconf.h "$PREFIX/include/"
  rm -rf "$PREFIX/share" "$PREFIX/lib/pkgconfig"
}

# elfutils: only libelf is built. configure insists on argp/fts/obstack, which
# musl lacks but which only the eu-* tools use, so those checks are answered
# "none required" and just lib/ (partly) and libelf/ are compiled.
build_libelf() {
  phase "configure (2/4)"
  local z="$TP/zlib"
  CC=$CC CFLAGS="$OPT_CFLAGS" CPPFLAGS="-I$z/include" LDFLAGS="-L$z/lib" \
  ac_cv_search_argp_parse="none required" ac_cv_search_fts_close="none required" \
  ac_cv_search__obstack_free="none required" \
    run_logged "$WORK/build.log" ./configure --disable-nls --disable-debuginfod \
      --disable-libdebuginfod --without-bzlib --without-lzma --without-zstd \
      --disable-symbol-versioning --disable-textrelcheck
  build_progress libelf "$(nfiles libelf/*.c)" make -j"$JOBS" -C libelf libelf.a
  phase "install (4/4)"
  install -m644 libelf/libelf.a "$PREFIX/lib/"
  install -m644 libelf/libelf.h libelf/gelf.h libelf/nlist.h "$PREFIX/include/"
  mkdir -p "$PREFIX/include/elfutils"
  install -m644 version.h libelf/elf-knowledge.h "$PREFIX/include/elfutils/"
}

build_libbpf() {
  phase "configure (2/4)"
  local obj="$WORK/obj"
  mkdir -p "$obj"
  local mk=(make -C src BUILD_STATIC_ONLY=y NO_PKG_CONFIG=1 CC="$CC" CFLAGS="$OPT_CFLAGS"
            EXTRA_CFLAGS="-I$TP/libelf/include -I$TP/zlib/include -idirafter $TP/linux-uapi/include"
            OBJDIR="$obj" PREFIX="$PREFIX" LIBDIR="$PREFIX/lib" INCLUDEDIR="$PREFIX/include")
  build_progress "$obj" "$(nfiles src/*.c)" "${mk[@]}" -j"$JOBS" "$obj/libbpf.a"
  phase "install (4/4)"
  run_logged "$WORK/build.log" "${mk[@]}" install install_uapi_headers
  rm -rf "$PREFIX/lib/pkgconfig"
}

# mbedtls: upstream default config plus thread safety (as Debian enables it);
# only the three libraries, no programs/tests.
build_mbedtls() {
  phase "configure (2/4)"
  sed -i -e 's|^//#define MBEDTLS_THREADING_C$|#define MBEDTLS_THREADING_C|' \
         -e 's|^//#define MBEDTLS_THREADING_PTHREAD$|#define MBEDTLS_THREADING_PTHREAD|' \
      include/mbedtls/config.h
  grep -q '^#define MBEDTLS_THREADING_PTHREAD' include/mbedtls/config.h \
    || die "$CUR: could not enable MBEDTLS_THREADING_PTHREAD"
  build_progress library "$(nfiles library/*.c)" \
    make -C library -j"$JOBS" CC="$CC" CFLAGS="$OPT_CFLAGS" static
  phase "install (4/4)"
  install -m644 library/libmbedtls.a library/libmbedx509.a library/libmbedcrypto.a "$PREFIX/lib/"
  cp -r include/mbedtls include/psa "$PREFIX/include/"
}

# lwIP: Debian ships no static build, so the core is compiled here with our own
# options (thirdparty/lwip/: lwipopts.h, arch/cc.h, port.c), NO_SYS=1.
LWIP_EXTRA_FILES=(lwip/lwipopts.h lwip/arch/cc.h lwip/port.c)
build_lwip() {
  phase "configure (2/4)"
  local obj="$WORK/obj" cfg="$HERE/lwip" f o objs=()
  mkdir -p "$obj"
  {
    for f in src/core/*.c src/core/ipv4/*.c src/core/ipv6/*.c src/netif/ethernet.c \
             src/api/err.c "$cfg/port.c"; do
      o=${f#src/}; o=${o##*/lwip/}; o="$obj/${o//\//_}"; o=${o%.c}.o; objs+=("$o")
      printf '%s: %s\n\t%s %s -Wall -I%s -Isrc/include -c $< -o $@\n' "$o" "$f" "$CC" "$OPT_CFLAGS" "$cfg"
    done
    printf 'liblwip.a: %s\n\tar rcs $@ $^\n' "${objs[*]}"
  } > "$WORK/lwip.mk"
  build_progress "$obj" "${#objs[@]}" make -j"$JOBS" -f "$WORK/lwip.mk" liblwip.a
  phase "install (4/4)"
  install -m644 liblwip.a "$PREFIX/lib/"
  cp -r src/include/lwip src/include/netif "$PREFIX/include/"
  mkdir -p "$PREFIX/include/arch"
  install -m644 "$cfg/lwipopts.h" "$PREFIX/include/"
  install -m644 "$cfg/arch/cc.h" "$PREFIX/include/arch/"
}

# e2fsprogs: not a library but two programs for the appliance initramfs,
# mke2fs (formats the data disk at first boot) and e2fsck (checks it at every
# boot), static, with the bundled libext2fs/libuuid/libblkid/libcom_err (no
# system util-linux libraries). Without /etc/mke2fs.conf, mke2fs falls back
# to its compiled-in profile, which knows ext4. Installs bin/{mke2fs,e2fsck}
# (stripped) and nothing else.
build_e2fsprogs() {
  phase "configure (2/4)"
  local obj="$WORK/obj"
  mkdir -p "$obj"
  (cd "$obj" && CC=$CC CFLAGS="$OPT_CFLAGS -idirafter $TP/linux-uapi/include" LDFLAGS="-static" \
    run_logged "$WORK/build.log" "$WORK/src/configure" --disable-nls --disable-elf-shlibs \
      --enable-libuuid --enable-libblkid --disable-fuse2fs --disable-defrag --disable-debugfs \
      --disable-imager --disable-resizer --disable-uuidd --disable-fsck --disable-e2initrd-helper \
      --disable-backtrace --disable-testio-debug --with-udev-rules-dir=no --with-crond-dir=no \
      --with-systemd-unit-dir=no)
  build_progress "$obj" 161 make -C "$obj" -j"$JOBS" libs
  run_logged "$WORK/build.log" make -C "$obj/misc" -j"$JOBS" mke2fs
  run_logged "$WORK/build.log" make -C "$obj/e2fsck" -j"$JOBS" e2fsck
  phase "install (4/4)"
  mkdir -p "$PREFIX/bin"
  install -m755 -s "$obj/misc/mke2fs" "$obj/e2fsck/e2fsck" "$PREFIX/bin/"
  if file -b "$PREFIX"/bin/* | grep -q 'dynamically linked'; then
    die "$CUR: mke2fs/e2fsck came out dynamically linked"
  fi
}

# ---------------------------------------------------------------- driver
declare -A KEY=()

lib_key() {  # lib_key <name> <srcver> <deps...>
  local name=$1 ver=$2 d f; shift 2
  {
    printf 'source %s\n' "$ver"
    printf 'cflags %s jobs-independent\n' "$OPT_CFLAGS"
    compiler_id
    fn_text "build_${name//-/_}"
    if [[ $name == lwip ]]; then
      for f in "${LWIP_EXTRA_FILES[@]}"; do printf '== %s\n' "$f"; cat "$HERE/$f"; done
    fi
    for d in "$@"; do printf 'dep %s %s\n' "$d" "${KEY[$d]}"; done
  } | sha256sum | cut -c1-12
}

build_one() {
  local name=$1 pkg=$2 deps=$3 ver key dir t0
  CUR=$name
  if [[ $pkg == - ]]; then
    ver=$(dpkg-query -W -f='${Version}' linux-libc-dev 2>/dev/null) \
      || die "linux-libc-dev is not installed (see thirdparty/deps.txt)"
  else
    src_version "$pkg"
    ver=$SRCVER
  fi
  # shellcheck disable=SC2086
  key=$(lib_key "$name" "$ver" $deps)
  KEY[$name]=$key
  dir="$TP/$name-$key"
  if [[ -f $dir/.done ]]; then
    ln -sfn "$name-$key" "$TP/$name"
    log "$name: cached ($name-$key, ${pkg/#-/linux-libc-dev} $ver)"
    return 0
  fi
  t0=$EPOCHREALTIME
  WORK="$BUILDROOT/$name-$key"
  PREFIX="$dir.tmp"
  rm -rf "$WORK" "$PREFIX" "$dir"
  mkdir -p "$WORK" "$PREFIX/include" "$PREFIX/lib"
  if [[ $pkg == - ]]; then
    phase "fetch source (1/4) linux-libc-dev $ver (installed)"
    mkdir -p "$WORK/src"
  else
    phase "fetch source (1/4) $pkg $ver"
    if ! fetch_source "$pkg" "$ver"; then
      [[ $APT_UPDATED == 0 ]] || die "$name: apt-get source $pkg=$ver failed"
      log "$name: download failed, refreshing the apt index and retrying"
      apt_update
      build_one "$@"
      return
    fi
  fi
  (cd "$WORK/src" && "build_${name//-/_}")
  printf 'name=%s\nsource=%s %s\nkey=%s\ncompiler=%s\nbuilt=%s\n' \
    "$name" "$pkg" "$ver" "$key" "$(compiler_id)" "$(date -u +%FT%TZ)" > "$PREFIX/.done"
  mv "$PREFIX" "$dir"
  ln -sfn "$name-$key" "$TP/$name"
  rm -rf "$WORK"
  log "$name: done in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')s ($name-$key)"
}

# wanted <names...> : the requested libraries plus everything they depend on
wanted() {
  local -A need=() ; local n ent name pkg deps changed=1
  for n in "$@"; do need[$n]=1; done
  while (( changed )); do
    changed=0
    for ent in "${LIBS[@]}"; do
      IFS=: read -r name pkg deps <<<"$ent"
      [[ -n ${need[$name]:-} ]] || continue
      for n in $deps; do [[ -n ${need[$n]:-} ]] || { need[$n]=1; changed=1; }; done
    done
  done
  for n in "${!need[@]}"; do printf '%s\n' "$n"; done
}

main() {
  command -v "$CC" >/dev/null || die "$CC not found (apt-get install musl-tools; see thirdparty/deps.txt)"
  local ent name pkg deps sel all=() t0=$EPOCHREALTIME
  for ent in "${LIBS[@]}"; do all+=("${ent%%:*}"); done
  for name in "$@"; do
    [[ " ${all[*]} " == *" $name "* ]] || die "unknown library '$name' (known: ${all[*]})"
  done
  sel=" $(if (( $# )); then wanted "$@"; else printf '%s\n' "${all[@]}"; fi | tr '\n' ' ') "
  mkdir -p "$TP"
  exec 9>"$TP/.lock"
  flock 9
  ensure_debsrc
  export JOBS
  for ent in "${LIBS[@]}"; do
    IFS=: read -r name pkg deps <<<"$ent"
    [[ $sel == *" $name "* ]] || continue
    build_one "$name" "$pkg" "$deps"
  done
  log "all done in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')s -> $TP"
}

main "$@"
