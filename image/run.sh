#!/usr/bin/env bash
# Boots the appliance disk image in QEMU: the dev-VM experience (`make run`).
#
#   image/run.sh [IMAGE]            interactive: the serial console on stdio
#                                   (Ctrl-A X quits QEMU, Ctrl-A C is its monitor)
#   image/run.sh --check [IMAGE]    boot a throwaway overlay (the image is not
#                                   written; no port forwards), wait until cubeos reports boot.done,
#                                   print the time from QEMU start, stop QEMU
#
# IMAGE defaults to build/image/cubeos.qcow2. Environment:
#   FIRMWARE=bios|uefi   SeaBIOS (default) or OVMF; UEFI variables persist in
#                        IMAGE's directory as <image>-efivars.fd
#   MEM=MiB (4096)  SMP=N (2)  CHECK_TIMEOUT=seconds (300)
#   ACCEL="..."          override the accelerator/CPU choice below
#
# Accelerator: KVM with the host CPU when /dev/kvm is usable and the host's KVM
# allows nesting (the appliance runs KVM guests itself), else TCG with an AMD
# CPU that has SVM, so the appliance still gets a working (emulated) /dev/kvm.
# Ports: host 13000 -> 3000, 11080 -> 80, 11443 -> 443 (the appliance API and
# proxy), on 127.0.0.1 only.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHECK=0
if [ "${1:-}" = --check ]; then
	CHECK=1
	shift
fi
IMAGE=${1:-$REPO/build/image/cubeos.qcow2}
FIRMWARE=${FIRMWARE:-bios}
MEM=${MEM:-4096}
SMP=${SMP:-2}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-300}
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd

die() {
	echo "run: $*" >&2
	exit 1
}

[ -f "$IMAGE" ] || die "$IMAGE missing (run: make image)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (run: make deps)"

# The accelerator choice is the test harness's (qemu-tests/accel.sh).
. "$(dirname "${BASH_SOURCE[0]}")/../qemu-tests/accel.sh"
accel_from_env_or_select

firmware=()
case $FIRMWARE in
bios) ;; # QEMU's default firmware is SeaBIOS
uefi)
	[ -f "$OVMF_CODE" ] && [ -f "$OVMF_VARS" ] || die "OVMF not found in /usr/share/OVMF (install ovmf)"
	vars=${IMAGE%.qcow2}-efivars.fd
	if [ $CHECK = 1 ]; then
		vars=$(mktemp /tmp/cubeos-efivars.XXXXXX)
		cp "$OVMF_VARS" "$vars"
	elif [ ! -f "$vars" ]; then
		cp "$OVMF_VARS" "$vars" || die "cannot create $vars"
	fi
	firmware=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
		-drive "if=pflash,format=raw,unit=1,file=$vars")
	;;
*) die "FIRMWARE must be bios or uefi, not '$FIRMWARE'" ;;
esac

# --check never writes the image: QEMU keeps the writes in a temporary overlay.
snapshot=off
[ $CHECK = 1 ] && snapshot=on
# The port forwards, except in check mode (where a running dev VM may hold them).
fwd=,hostfwd=tcp:127.0.0.1:13000-:3000,hostfwd=tcp:127.0.0.1:11080-:80,hostfwd=tcp:127.0.0.1:11443-:443
[ $CHECK = 1 ] && fwd=
# shellcheck disable=SC2206,SC2054 # ACCEL is a word list; commas are QEMU option syntax
cmd=(qemu-system-x86_64 -M q35 $ACCEL -smp "$SMP" -m "$MEM" -nographic -no-user-config
	"${firmware[@]}"
	-drive "file=$IMAGE,if=virtio,format=qcow2,snapshot=$snapshot"
	-netdev "user,id=n0$fwd"
	-device virtio-net-pci,netdev=n0,romfile=
	-device virtio-rng-pci)

if [ $CHECK = 0 ]; then
	echo "run: $IMAGE, firmware $FIRMWARE, $ACCEL_NAME; Ctrl-A X quits" >&2
	exec "${cmd[@]}"
fi

# --- check mode -------------------------------------------------------------------
log=$(mktemp /tmp/cubeos-boot.XXXXXX)
echo "run: checking $IMAGE, firmware $FIRMWARE, $ACCEL_NAME" >&2
now_ms() { echo $(($(date +%s%N) / 1000000)); }
start=$(now_ms)
"${cmd[@]}" </dev/null >"$log" 2>&1 &
qpid=$!
result="QEMU exited"
while kill -0 $qpid 2>/dev/null; do
	if grep -q '"event":"boot.done"' "$log"; then
		result=up
		break
	fi
	[ $(($(now_ms) - start)) -gt $((CHECK_TIMEOUT * 1000)) ] && break
	sleep 0.2
done
ms=$(($(now_ms) - start))
secs=$((ms / 1000)).$((ms % 1000 / 100))
kill -0 $qpid 2>/dev/null && [ "$result" != up ] && result=timeout
kill $qpid 2>/dev/null
wait $qpid 2>/dev/null
[ "$FIRMWARE" = uefi ] && rm -f "$vars"
# The boot, from the firmware banner on (terminal escapes and TCG feature warnings dropped).
grep -v "TCG doesn't support" "$log" | sed 's/\x1b\[[0-9;=?]*[A-Za-z]//g; s/\x1bc//g' | tr -d '\r'
rm -f "$log"
if [ $result = up ]; then
	printf 'run: cubeos up (boot.done) %s s after QEMU start (firmware %s, %s)\n' "$secs" "$FIRMWARE" "$ACCEL_NAME" >&2
	exit 0
fi
printf 'run: cubeos did not report boot.done (%s after %s s; firmware %s, %s)\n' "$result" "$secs" "$FIRMWARE" \
	"$ACCEL_NAME" >&2
exit 1
