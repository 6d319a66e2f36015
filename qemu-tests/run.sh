#!/usr/bin/env bash
# run.sh - the host side of the nested test harness.
#
#   qemu-tests/run.sh test  [--only a,b] [--timeout S]    (make qemu-test)
#   qemu-tests/run.sh bench [--timeout S]                 (make qemu-bench)
#
# Environment: QEMU_TESTS_ONLY, QEMU_TESTS_TIMEOUT, L1_MEM (MiB, default
# 4096), N_BOOT / N_CLONES (benchmark sizes).
#
# Boots L1 (Debian's kernel, a busybox initramfs with KVM modules, and the
# test payload appended as a second cpio) in QEMU, KVM when the host's KVM
# is VMX/SVM with nesting, else TCG with an SVM CPU. L1's /init runs the
# suite and reports on the serial console; this script streams progress,
# keeps the full log in build/qemu-tests/ and exits non-zero when a test
# failed, or L1 died or timed out before reporting the end.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$REPO/qemu-tests
BUILD=${BUILD:-$REPO/build}
OUT=$BUILD/qemu-tests
SUITE=${1:-test}
shift || true
ONLY=${QEMU_TESTS_ONLY:-}
TIMEOUT=${QEMU_TESTS_TIMEOUT:-}
while [ $# -gt 0 ]; do
	case $1 in
	--only) ONLY=$2; shift 2 ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	*) echo "usage: run.sh test|bench [--only a,b] [--timeout S]" >&2; exit 2 ;;
	esac
done
case $SUITE in
test) TIMEOUT=${TIMEOUT:-2400} ;;
bench) TIMEOUT=${TIMEOUT:-2400} ;;
*) echo "run.sh: unknown suite '$SUITE' (test or bench)" >&2; exit 2 ;;
esac
L1_MEM=${L1_MEM:-4096}
VMLINUX=$BUILD/guest/vmlinux
ROOTFS=$BUILD/guest/rootfs.ext4
die() {
	echo "qemu-$SUITE: $*" >&2
	exit 1
}

# --- L1 kernel, base initramfs (both cached) and the payload ------------------------
KDIR=$(bash "$HERE/l1-kernel.sh") || die "no L1 kernel"
RELEASE=$(cat "$KDIR/release")
BASE=$(bash "$HERE/l1-initramfs.sh" "$KDIR") || die "no L1 base initramfs"

# QEMU for the peer comparison: the binary, the libraries it links (run
# through their own loader, so L1 needs no libc) and its firmware.
stage_qemu() {
	local q=$1/cubetest/qemu bin
	bin=$(command -v qemu-system-x86_64) || return 0
	mkdir -p "$q/lib" "$q/data"
	cp "$bin" "$q/"
	ldd "$bin" | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}' | while read -r l; do cp -L "$l" "$q/lib/"; done
	for f in qboot.rom bios-microvm.bin linuxboot_dma.bin pvh.bin kvmvapic.bin; do
		[ -e "/usr/share/qemu/$f" ] && cp -L "/usr/share/qemu/$f" "$q/data/"
	done
}

build_payload() {
	local p=$OUT/payload
	rm -rf "$p"
	mkdir -p "$p/cubetest/bin" "$p/cubetest/guest" "$p/cubetest/tests"
	cp "$HERE/l1/init" "$p/init"
	chmod 755 "$p/init"
	cp "$HERE/l1/lib.sh" "$HERE/l1/runone.sh" "$HERE/l1/bench.sh" "$p/cubetest/"
	cp "$HERE"/l1/tests/*.sh "$p/cubetest/tests/"
	cp "$BUILD/guestctl" "$BUILD/qemu-tests/l1util" "$p/cubetest/bin/" || die "guestctl/l1util not built"
	if [ -x "$BUILD/cube-vmm" ]; then
		cp "$BUILD/cube-vmm" "$p/cubetest/bin/"
	else
		echo "qemu-$SUITE: build/cube-vmm missing: the VMM tests will be skipped" >&2
	fi
	[ -f "$VMLINUX" ] && cp "$VMLINUX" "$p/cubetest/guest/vmlinux"
	stage_qemu "$p"
	(cd "$p" && find . | sort | cpio -o -H newc --quiet -R 0:0) >"$OUT/payload.cpio"
	cat "$BASE" "$OUT/payload.cpio" >"$OUT/initrd.img"
}

# --- accelerator ---------------------------------------------------------------------
# KVM only when it is real VMX/SVM with nesting (a PVM /dev/kvm cannot run a
# stock L1 kernel); otherwise TCG with an emulated SVM CPU.
select_accel() {
	local nested=""
	for m in kvm_intel kvm_amd; do
		[ -r /sys/module/$m/parameters/nested ] && nested=$(cat /sys/module/$m/parameters/nested)
		[ -n "$nested" ] && break
	done
	if [ -w /dev/kvm ] && { [ "$nested" = Y ] || [ "$nested" = 1 ]; }; then
		ACCEL="-enable-kvm -cpu host"
		ACCEL_NAME="kvm (nested=$nested)"
	else
		ACCEL="-accel tcg,thread=multi -cpu EPYC,+svm"
		ACCEL_NAME="tcg (host /dev/kvm: $([ -e /sys/module/kvm_pvm ] && echo PVM || ([ -e /dev/kvm ] && echo "no nesting" || echo none)))"
	fi
}

# --- run and parse -------------------------------------------------------------------
mkdir -p "$OUT"
t_build=$SECONDS
build_payload
select_accel
SHARE=$OUT/share-$SUITE
rm -rf "$SHARE"
mkdir -p "$SHARE"
LOG=$OUT/serial-$SUITE.log
RESULTS=$OUT/results-$SUITE.txt
: >"$RESULTS"
APPEND="console=ttyS0 quiet loglevel=1 panic=-1 cubetest.suite=$SUITE"
[ -n "$ONLY" ] && APPEND="$APPEND cubetest.only=$ONLY"
# Benchmark sizes (bench.sh's defaults: 3 cold boots, 10 clones).
[ -n "${N_BOOT:-}" ] && APPEND="$APPEND cubetest.n_boot=$N_BOOT"
[ -n "${N_CLONES:-}" ] && APPEND="$APPEND cubetest.n_clones=$N_CLONES"
DISK=()
[ -f "$ROOTFS" ] && DISK=(-drive "file=$ROOTFS,if=virtio,format=raw,readonly=on")
CMD=(qemu-system-x86_64 $ACCEL -smp 2 -m "$L1_MEM" -nodefaults -no-user-config -display none -monitor none
	-no-reboot -serial stdio -kernel "$KDIR/boot/vmlinuz-$RELEASE" -initrd "$OUT/initrd.img" -append "$APPEND"
	"${DISK[@]}" -virtfs "local,path=$SHARE,mount_tag=out,security_model=none,id=out")
echo "qemu-$SUITE: L1 $RELEASE, accelerator $ACCEL_NAME, payload $(du -h "$OUT/payload.cpio" | cut -f1)" \
	"(built in $((SECONDS - t_build)) s), timeout ${TIMEOUT}s, log $LOG"
echo "qemu-$SUITE: ${CMD[*]}" >"$LOG.cmd"

t0=$SECONDS
current=""
ended=""
: >"$LOG"
timeout -k 10 "$TIMEOUT" "${CMD[@]}" </dev/null 2>&1 | while IFS= read -r line; do
	line=${line//$'\r'/}
	printf '[%6.1f] %s\n' "$((SECONDS - t0))" "$line" >>"$LOG"
	# Console noise (escape sequences) may precede a marker on its line.
	case $line in
	*CUBETEST-L1\ *) echo "  L1: ${line#*CUBETEST-L1 }" ;;
	*CUBETEST-RUN\ *) echo "  ... ${line#*CUBETEST-RUN }" ;;
	*CUBETEST-LOG\ *) echo "      ${line#*CUBETEST-LOG }" ;;
	*CUBETEST-END*) echo "${line#*CUBETEST-END}" >"$OUT/.ended" ;;
	*"CUBETEST "*)
		r=${line#*CUBETEST }
		echo "$r" >>"$RESULTS"
		set -- $r
		printf '%-4s %s %s\n' "$2" "$1" "${r#* * }"
		;;
	*"CUBEBENCH| "*) echo "${line#*CUBEBENCH| }" | tee -a "$OUT/bench.txt" ;;
	esac
done
rc=${PIPESTATUS[0]}
elapsed=$((SECONDS - t0))
[ "$SUITE" = bench ] && [ -f "$OUT/bench.txt" ] && mv "$OUT/bench.txt" "$OUT/bench-$(date +%Y%m%d-%H%M%S).txt"

passed=$(awk '$2 == "PASS"' "$RESULTS" | wc -l)
failed=$(awk '$2 == "FAIL"' "$RESULTS" | wc -l)
skipped=$(awk '$2 == "SKIP"' "$RESULTS" | wc -l)
problem=""
if [ ! -f "$OUT/.ended" ]; then
	last=$(grep -o 'CUBETEST-RUN [^ ]*' "$LOG" | tail -n 1 | cut -d' ' -f2)
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		problem="L1 timed out after ${TIMEOUT}s"
	else
		problem="L1 stopped (QEMU exit $rc) before reporting the end"
	fi
	[ -n "$last" ] && ! grep -q "^$last " "$RESULTS" && problem="$problem, during test $last"
	failed=$((failed + 1))
fi
rm -f "$OUT/.ended"
echo "qemu-$SUITE: L1 ran ${elapsed}s; log $LOG; artifacts $SHARE"
[ -n "$problem" ] && echo "qemu-$SUITE: $problem"
if [ "$SUITE" = test ]; then
	echo "qemu-test: $passed passed, $failed failed$([ "$skipped" -gt 0 ] && echo ", $skipped skipped")"
fi
[ "$failed" -eq 0 ]
