#!/usr/bin/env bash
# Appliance benchmark (`make image-bench`): image sizes, and boot time from
# QEMU start to cubeos's "boot.done" and "services.up" log events under
# SeaBIOS and OVMF, with the accelerator image/test.sh would use.
#
#   image/bench.sh [IMAGE]        IMAGE defaults to build/image/cubeos.qcow2;
#                                 cubeos.iso and pxe/ next to it are measured too
#
# Per firmware: one first boot on a fresh overlay (data partition formatted,
# config and CA made), powered off with the ACPI power button, then RUNS (3)
# boots of overlays of that disk (the everyday boot); median and min.
# Environment: RUNS (3), ACCEL (as for run.sh), MEM (4096), SMP (2),
# BOOT_TIMEOUT (300), FIRMWARES ("bios uefi"). Serial logs: build/image/test-bench-*.log.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=$(realpath -m "${1:-$REPO/build/image/cubeos.qcow2}")
DIR=$(dirname "$IMAGE")

die() {
	echo "image-bench: error: $*" >&2
	exit 1
}

[ -f "$IMAGE" ] || die "$IMAGE missing (run: make image)"
for tool in qemu-system-x86_64 qemu-img sgdisk minfo mdu python3; do
	command -v $tool >/dev/null || die "$tool not found (run: make deps)"
done

# shellcheck source=qemu-tests/accel.sh
. "$REPO/qemu-tests/accel.sh"
accel_from_env_or_select

TMP=$(mktemp -d /tmp/cubeos-image-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
LOGDIR=$REPO/build/image
mkdir -p "$LOGDIR"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# --- sizes ------------------------------------------------------------------------
echo "image-bench: measuring sizes" >&2
qcow_bytes=$(stat -c %s "$IMAGE")
virt_bytes=$(qemu-img info --output=json "$IMAGE" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
# The ESP as shipped: the qcow2 as a sparse raw file, then mtools at the partition's offset.
qemu-img convert -q -f qcow2 -O raw "$IMAGE" "$TMP/disk.raw" || die "qemu-img convert failed"
esp_first=$(sgdisk -i 1 "$TMP/disk.raw" | sed -n 's/^First sector: \([0-9]*\).*/\1/p')
esp_last=$(sgdisk -i 1 "$TMP/disk.raw" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
if [ -z "$esp_first" ] || [ -z "$esp_last" ]; then
	die "no partition 1 (ESP) in $IMAGE"
fi
esp_img="$TMP/disk.raw@@$((esp_first * 512))"
cluster_sectors=$(minfo -i "$esp_img" :: | sed -n 's/^cluster size: \([0-9]*\) sectors.*/\1/p')
esp_used_clusters=$(mdu -s -i "$esp_img" :: | awk '{ print $2 }')
esp_size=$(((esp_last - esp_first + 1) * 512))
esp_used=$((esp_used_clusters * ${cluster_sectors:-1} * 512))
rm -f "$TMP/disk.raw"

sizes="  cubeos.qcow2   $(mib "$qcow_bytes") file, $(mib "$virt_bytes") virtual; ESP $(mib "$esp_used") used of $(mib "$esp_size")"
if [ -f "$DIR/cubeos.iso" ]; then
	sizes+=$'\n'"  cubeos.iso     $(mib "$(stat -c %s "$DIR/cubeos.iso")")"
fi
if [ -d "$DIR/pxe" ]; then
	pxe_bytes=$(du -sb "$DIR/pxe" | cut -f1)
	files=$(cd "$DIR/pxe" && find . -maxdepth 1 -type f -size +1M -printf '%f %s\n' | sort |
		awk '{ printf "%s%s %.1f MiB", sep, $1, $2 / 1048576; sep = ", " }')
	sizes+=$'\n'"  pxe/           $(mib "$pxe_bytes") ($files)"
fi

# --- boot times ---------------------------------------------------------------------
export IMAGE LOGDIR TMP ACCEL MEM=${MEM:-4096} SMP=${SMP:-2} BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
export RUNS=${RUNS:-3} FIRMWARES=${FIRMWARES:-bios uefi}
echo "image-bench: $ACCEL_NAME; boot runs: 1 first boot + $RUNS per firmware ($FIRMWARES)" >&2
boots=$(cd "$REPO/image" && python3 - <<'PY'
import os
import statistics
import sys

import imagetest
from imagetest import Fail, Vm, boot, new_overlay

SERVICES_UP = rb'"event":"services.up"'
NAMES = {"bios": "SeaBIOS", "uefi": "OVMF"}


def timed_boot(name, firmware, disk, log):
    vm = Vm(name, firmware, disk=disk, log=log)
    try:
        done = boot(vm)
        vm.expect(SERVICES_UP, timeout=120)
        up = vm.elapsed()
        return vm, done, up
    except Exception:
        vm.stop()
        raise


def first_boot(firmware):
    """Boots a fresh overlay, powers it off with the power button; returns (disk, done, up)."""
    disk = new_overlay("bench-%s-first" % firmware)
    vm, done, up = timed_boot("bench-%s-first" % firmware, firmware, disk, None)
    try:
        vm.monitor("system_powerdown")
        if vm.wait_exit(120) is None:
            print("image-bench: %s first boot did not power off in 120 s; using its disk anyway" % firmware,
                  file=sys.stderr)
    finally:
        vm.stop()
    return disk, done, up


def row(label, runs):
    done = [r[0] for r in runs]
    up = [r[1] for r in runs]
    return "  %-20s %4d   %6.1f / %-6.1f       %6.1f / %.1f" % (
        label, len(runs), statistics.median(done), min(done), statistics.median(up), min(up))


rows = []
for fw in os.environ["FIRMWARES"].split():
    print("image-bench: %s first boot" % NAMES[fw], file=sys.stderr)
    disk, done, up = first_boot(fw)
    rows.append(row(NAMES[fw] + " first boot", [(done, up)]))
    runs = []
    for k in range(int(os.environ["RUNS"])):
        name = "bench-%s-%d" % (fw, k + 1)
        vm, done, up = timed_boot(name, fw, new_overlay(name, disk), None)
        vm.stop()
        print("image-bench: %s run %d: boot.done %.1f s, services.up %.1f s" % (NAMES[fw], k + 1, done, up),
              file=sys.stderr)
        runs.append((done, up))
    rows.append(row(NAMES[fw], runs))
print("\n".join(rows))
PY
) || die "a boot failed (serial logs: $LOGDIR/test-bench-*.log)"

cat <<EOF2
CubeOS appliance benchmark ($(date -u +%F), $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no git"))
accelerator: $ACCEL_NAME; guest: $SMP vCPUs, $MEM MiB; host: $(nproc) CPUs

image sizes
$sizes

boot time, seconds from QEMU start (median / min)
  firmware             runs   to boot.done        to services.up
$boots
EOF2
