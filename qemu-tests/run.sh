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
	# The control plane's VMM driver (api/vm.c) as a command-line tool: api_vm.
	[ -x "$BUILD/api-vmtool" ] && cp "$BUILD/api-vmtool" "$p/cubetest/bin/"
	[ -f "$VMLINUX" ] && cp "$VMLINUX" "$p/cubetest/guest/vmlinux"
	stage_qemu "$p"
	(cd "$p" && find . | sort | cpio -o -H newc --quiet -R 0:0) >"$OUT/payload.cpio"
	cat "$BASE" "$OUT/payload.cpio" >"$OUT/initrd.img"
}

# --- accelerator (shared with image/run.sh) -------------------------------------------
. "$HERE/accel.sh"

# --- run and parse -------------------------------------------------------------------
# Every test announces itself with its timeout ("CUBETEST-RUN name
# timeout=Ns") and L1 kills a test that overruns. If L1 itself stops
# answering (seen rarely with TCG's emulated SVM: both L1 CPUs spinning, no
# console output, no test timeout firing), the watchdog here kills it
# WATCHDOG_GRACE seconds after the running test's own deadline, and the
# tests that did not report are run once more in a fresh L1. A test that
# reported FAIL is never rerun: only a dead L1 is retried, and the hang is
# reported either way.
WATCHDOG_GRACE=${WATCHDOG_GRACE:-90}
mkdir -p "$OUT"
t_build=$SECONDS
build_payload
BUILD_SECS=$((SECONDS - t_build))
select_accel
LOG=$OUT/serial-$SUITE.log
RESULTS=$OUT/results-$SUITE.txt
SHARE=$OUT/share-$SUITE
: >"$RESULTS"
rm -rf "$SHARE"
hangs=""

# The tests of this suite, in order (names from ct_register lines), limited
# to $ONLY when given.
suite_tests() {
	[ "$SUITE" = test ] || return 0
	local t
	for t in $(awk '$1 == "ct_register" {print $2}' "$HERE"/l1/tests/*.sh); do
		if [ -z "$ONLY" ] || [[ ",$ONLY," == *",$t,"* ]]; then echo "$t"; fi
	done
}

# run_l1 ATTEMPT ONLY_LIST: one L1 boot; appends results to $RESULTS.
# Returns 0 when L1 reported its end, 1 when it died or timed out, 2 when
# the watchdog killed a hung L1.
run_l1() {
	local attempt=$1 only=$2 log=$LOG share=$SHARE/attempt$1
	[ "$attempt" -gt 1 ] && log=$LOG.$attempt
	mkdir -p "$share"
	local append="console=ttyS0 quiet loglevel=4 panic=-1 cubetest.suite=$SUITE"
	[ -n "$only" ] && append="$append cubetest.only=$only"
	# Benchmark sizes (bench.sh's defaults: 3 cold boots, 10 clones).
	[ -n "${N_BOOT:-}" ] && append="$append cubetest.n_boot=$N_BOOT"
	[ -n "${N_CLONES:-}" ] && append="$append cubetest.n_clones=$N_CLONES"
	[ -n "${QEMU_STRESS_ROUNDS:-}" ] && append="$append cubetest.stress=$QEMU_STRESS_ROUNDS"
	[ -n "${QEMU_STRESS_CLONES:-}" ] && append="$append cubetest.stress_clones=$QEMU_STRESS_CLONES"
	[ -n "${QEMU_STRESS_HOGS:-}" ] && append="$append cubetest.stress_hogs=$QEMU_STRESS_HOGS"
	[ -n "${QEMU_STRESS_STOP:-}" ] && append="$append cubetest.stress_stop=1"
	local disk=()
	[ -f "$ROOTFS" ] && disk=(-drive "file=$ROOTFS,if=virtio,format=raw,readonly=on")
	local pidfile=$OUT/qemu-$SUITE.pid
	rm -f "$pidfile" "$OUT/.ended" "$OUT/.hung"
	local cmd=(qemu-system-x86_64 $ACCEL -smp 2 -m "$L1_MEM" -nodefaults -no-user-config -display none -monitor none
		-no-reboot -serial stdio -pidfile "$pidfile" -kernel "$KDIR/boot/vmlinuz-$RELEASE" -initrd "$OUT/initrd.img"
		-append "$append" "${disk[@]}" -virtfs "local,path=$share,mount_tag=out,security_model=none,id=out")
	echo "qemu-$SUITE: L1 $RELEASE, accelerator $ACCEL_NAME, payload $(du -h "$OUT/payload.cpio" | cut -f1)" \
		"(built in ${BUILD_SECS} s), timeout ${TIMEOUT}s, log $log$([ "$attempt" -gt 1 ] && echo ", attempt $attempt")"
	echo "qemu-$SUITE: ${cmd[*]}" >"$log.cmd"
	local t0=$SECONDS line r deadline=""
	: >"$log"
	timeout -k 10 "$TIMEOUT" "${cmd[@]}" </dev/null 2>&1 | {
		while :; do
			IFS= read -r -t 10 line
			r=$?
			if [ "$r" -ne 0 ]; then
				[ "$r" -gt 128 ] || break # not a timeout: EOF, QEMU is gone
				if [ -n "$deadline" ] && [ "$SECONDS" -gt "$deadline" ] && [ -s "$pidfile" ]; then
					echo "$current" >"$OUT/.hung"
					echo "qemu-$SUITE: L1 stopped responding during $current (no output ${WATCHDOG_GRACE}s past" \
						"its timeout): killing it"
					kill "$(cat "$pidfile")" 2>/dev/null
					deadline=""
				fi
				continue
			fi
			line=${line//$'\r'/}
			printf '[%6.1f] %s\n' "$((SECONDS - t0))" "$line" >>"$log"
			# Console noise (escape sequences) may precede a marker on its line.
			case $line in
			*CUBETEST-L1\ *) echo "  L1: ${line#*CUBETEST-L1 }" ;;
			*CUBETEST-RUN\ *)
				r=${line#*CUBETEST-RUN }
				echo "  ... $r"
				current=${r%% *}
				r=${r#*timeout=}
				deadline=$((SECONDS + ${r%%s*} + WATCHDOG_GRACE))
				;;
			*CUBETEST-LOG\ *) echo "      ${line#*CUBETEST-LOG }" ;;
			*CUBETEST-END*) echo "${line#*CUBETEST-END}" >"$OUT/.ended" ;;
			*"CUBETEST "*)
				r=${line#*CUBETEST }
				echo "$r" >>"$RESULTS"
				set -- $r
				printf '%-4s %s %s\n' "$2" "$1" "${r#* * }"
				deadline=""
				;;
			*"CUBEBENCH| "*) echo "${line#*CUBEBENCH| }" | tee -a "$OUT/bench.txt" ;;
			esac
		done
	}
	local rc=${PIPESTATUS[0]}
	echo "qemu-$SUITE: L1 ran $((SECONDS - t0))s; log $log; artifacts $share"
	if [ -f "$OUT/.ended" ]; then
		rm -f "$OUT/.ended"
		return 0
	fi
	local last
	last=$(grep -o 'CUBETEST-RUN [^ ]*' "$log" | tail -n 1 | cut -d' ' -f2)
	if [ -f "$OUT/.hung" ]; then
		hangs="$hangs $(cat "$OUT/.hung")"
		rm -f "$OUT/.hung"
		return 2
	fi
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		problem="L1 timed out after ${TIMEOUT}s"
	else
		problem="L1 stopped (QEMU exit $rc) before reporting the end"
	fi
	[ -n "$last" ] && ! grep -q "^$last " "$RESULTS" && problem="$problem, during test $last"
	return 1
}

problem=""
run_l1 1 "$ONLY"
status=$?
if [ "$status" -eq 2 ]; then
	remaining=$(for t in $(suite_tests); do grep -q "^$t " "$RESULTS" || echo "$t"; done | paste -sd, -)
	if [ "$SUITE" = test ] && [ -n "$remaining" ]; then
		echo "qemu-$SUITE: running the tests that did not report ($remaining) in a fresh L1"
		run_l1 2 "$remaining"
		status=$?
	fi
	[ "$status" -eq 2 ] && problem="L1 stopped responding twice (during:$hangs)"
fi
# Under TCG a nested guest now and then stops making progress after a
# restore (the emulator's fault: see docs/benchmarks.md, "Emulator faults");
# a test that failed is run once more in a fresh L1 there, and both results
# are reported. On hardware KVM a failure stands.
reran=""
if [ "$SUITE" = test ] && [ "$status" -eq 0 ] && [[ $ACCEL_NAME == tcg* ]]; then
	failed_tests=$(awk '$2 == "FAIL" {print $1}' "$RESULTS" | paste -sd, -)
	if [ -n "$failed_tests" ]; then
		echo "qemu-$SUITE: under TCG, running what failed ($failed_tests) once more in a fresh L1"
		awk '$2 == "FAIL"' "$RESULTS" >"$RESULTS.first"
		awk '$2 != "FAIL"' "$RESULTS" >"$RESULTS.kept" && mv "$RESULTS.kept" "$RESULTS"
		run_l1 3 "$failed_tests"
		status=$?
		for t in ${failed_tests//,/ }; do
			if grep -q "^$t PASS" "$RESULTS"; then
				reran="$reran $t"
				echo "qemu-$SUITE: $t passed on its second run; the first: $(grep "^$t " "$RESULTS.first" | cut -d' ' -f3- | head -c 300)"
			fi
		done
	fi
fi
[ "$SUITE" = bench ] && [ -f "$OUT/bench.txt" ] && mv "$OUT/bench.txt" "$OUT/bench-$(date +%Y%m%d-%H%M%S).txt"

passed=$(awk '$2 == "PASS"' "$RESULTS" | wc -l)
failed=$(awk '$2 == "FAIL"' "$RESULTS" | wc -l)
skipped=$(awk '$2 == "SKIP"' "$RESULTS" | wc -l)
[ "$status" -ne 0 ] && failed=$((failed + 1))
[ -n "$hangs" ] && echo "qemu-$SUITE: L1 hung during:$hangs (see the serial logs)"
[ -n "$problem" ] && echo "qemu-$SUITE: $problem"
if [ "$SUITE" = test ]; then
	echo "qemu-test: $passed passed, $failed failed$([ "$skipped" -gt 0 ] && echo ", $skipped skipped")$([ -n "$reran" ] && echo " (passed on a second run under TCG:$reran)")"
fi
[ "$failed" -eq 0 ]
