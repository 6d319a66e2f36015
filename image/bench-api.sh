#!/usr/bin/env bash
# Sandbox create-latency benchmark of the booted appliance (`make api-bench`):
# create (POST /sandboxes to 201) and create to first command (then
# process.Process/Start through the proxy, header mode) at concurrency 1 and
# 10, P50/P95/P99/avg, and memory per idle sandbox; see image/bench-api.py.
#
#   image/bench-api.sh [IMAGE]    IMAGE defaults to build/image/cubeos.qcow2
#
# Environment: ACCEL (as for run.sh), MEM (4096), SMP (2), BOOT_TIMEOUT (300),
# BENCH_SERIAL (20), BENCH_CONCURRENCY (10), BENCH_ROUNDS (3), BENCH_IDLE (10,50,100).
# Serial log: build/image/test-bench-api.log.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=$(realpath -m "${1:-$REPO/build/image/cubeos.qcow2}")

die() {
	echo "api-bench: error: $*" >&2
	exit 1
}

[ -f "$IMAGE" ] || die "$IMAGE missing (run: make image)"
for tool in qemu-system-x86_64 qemu-img python3; do
	command -v $tool >/dev/null || die "$tool not found (run: make deps)"
done

# The same accelerator choice as image/test.sh and image/run.sh.
# shellcheck source=qemu-tests/accel.sh
. "$REPO/qemu-tests/accel.sh"
accel_from_env_or_select

TMP=$(mktemp -d /tmp/cubeos-api-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
LOGDIR=$REPO/build/image
mkdir -p "$LOGDIR"
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no git")

export IMAGE LOGDIR TMP ACCEL ACCEL_NAME GIT_REV MEM=${MEM:-4096} SMP=${SMP:-2} BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
echo "api-bench: $IMAGE, $ACCEL_NAME" >&2
python3 "$REPO/image/bench-api.py"
