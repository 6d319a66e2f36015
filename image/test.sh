#!/usr/bin/env bash
# Boot tests of the real disk image (`make image-test`): each test boots a
# throwaway qcow2 overlay of IMAGE in QEMU and watches the serial console.
#
#   image/test.sh [IMAGE]        IMAGE defaults to build/image/cubeos.qcow2
#
#   boot_bios      SeaBIOS: boot.done, the first-boot password banner, a DHCP lease (10.0.2.15)
#   boot_uefi      OVMF: boot.done
#   admin_console  SeaBIOS: a scripted console session: a wrong password is refused, the
#                  right one logs in, status, an unknown command, apikey create/list, then
#                  poweroff, after which QEMU must exit by itself with status 0
#
# One line per test ("PASS name detail" or "FAIL name detail"), then
# "image-test: N passed, M failed"; the exit status is non-zero if any failed.
# The full serial log of each test stays in build/image/test-<name>.log.
#
# Environment: IMAGE_TESTS_ONLY=a,b (run only these), ACCEL (as for run.sh),
# MEM (MiB, 4096), SMP (2), BOOT_TIMEOUT (seconds to boot.done, 300),
# CONSOLE_FIRMWARE=uefi (the console test under OVMF, to trace the known issue).
#
# The console test runs under SeaBIOS by default: under OVMF + TCG scripted logins
# were sometimes refused (see the known issue in image/README.md).
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=$(realpath -m "${1:-$REPO/build/image/cubeos.qcow2}")
LOGDIR=$REPO/build/image

die() {
	echo "image-test: $*" >&2
	exit 1
}

[ -f "$IMAGE" ] || die "$IMAGE missing (run: make image)"
for tool in qemu-system-x86_64 qemu-img; do
	command -v $tool >/dev/null || die "$tool not found (run: make deps)"
done
PYTHON=/usr/bin/python3
[ -x $PYTHON ] || PYTHON=python3

# The same accelerator choice as image/run.sh and the nested tests.
# shellcheck source=qemu-tests/accel.sh
. "$REPO/qemu-tests/accel.sh"
if [ -n "${ACCEL:-}" ]; then
	ACCEL_NAME="$ACCEL (from the environment)"
else
	select_accel
fi

TMP=$(mktemp -d /tmp/cubeos-image-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$LOGDIR"
echo "image-test: $IMAGE, $ACCEL_NAME" >&2

export IMAGE LOGDIR TMP ACCEL
export CONSOLE_FIRMWARE=${CONSOLE_FIRMWARE:-bios} MEM=${MEM:-4096} SMP=${SMP:-2} BOOT_TIMEOUT=${BOOT_TIMEOUT:-300} IMAGE_TESTS_ONLY=${IMAGE_TESTS_ONLY:-}
# The expect logic is Python: QEMU's serial console on a pipe, read by a thread.
$PYTHON - <<'PY'
import os, re, subprocess, sys, threading, time

IMAGE, LOGDIR, TMP = os.environ["IMAGE"], os.environ["LOGDIR"], os.environ["TMP"]
ACCEL = os.environ["ACCEL"].split()
BOOT_TIMEOUT = float(os.environ["BOOT_TIMEOUT"])
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
# Under TCG a byte written while the guest's UART is busy can be lost: type slowly.
TYPE_DELAY = 0.03

BOOT_DONE = rb'"event":"boot.done"'
PASSWORD = rb"admin console password: (\S+)"
PROMPT = rb"cubeos> "


class Fail(Exception):
    pass


class Vm:
    """One QEMU on a throwaway overlay; its serial console on a pipe and in a log file."""

    def __init__(self, name, firmware):
        self.name = name
        overlay = os.path.join(TMP, name + ".qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", IMAGE, "-F", "qcow2", overlay],
                       check=True)
        fw = []
        if firmware == "uefi":
            vars_copy = os.path.join(TMP, name + "-efivars.fd")
            with open(OVMF_VARS, "rb") as src, open(vars_copy, "wb") as dst:
                dst.write(src.read())
            fw = ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMF_CODE,
                  "-drive", "if=pflash,format=raw,unit=1,file=" + vars_copy]
        cmd = (["qemu-system-x86_64", "-M", "q35"] + ACCEL +
               ["-smp", os.environ["SMP"], "-m", os.environ["MEM"], "-nographic", "-no-user-config"] + fw +
               ["-drive", "file=%s,if=virtio,format=qcow2" % overlay,
                "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=",
                "-device", "virtio-rng-pci"])
        self.log = open(os.path.join(LOGDIR, "test-%s.log" % name), "wb")
        self.out = b""
        self.pos = 0  # expect() searches from here on
        self.cond = threading.Condition()
        self.start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            with self.cond:
                if not chunk:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.out += chunk
                self.log.write(chunk)
                self.log.flush()
                self.cond.notify_all()

    eof = False

    def elapsed(self):
        return time.monotonic() - self.start

    def expect(self, *patterns, timeout):
        """Waits for the first of the patterns after self.pos; returns (index, match), moves pos past it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [(m.start(), i, m) for i, p in enumerate(patterns)
                        for m in [re.compile(p).search(self.out, self.pos)] if m]
                if hits:
                    _, i, m = min(hits, key=lambda h: h[0])
                    self.pos = m.end()
                    return i, m
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    what = "QEMU exited" if self.eof else "timeout after %.0f s" % timeout
                    raise Fail("%s waiting for %s" % (what, " or ".join(p.decode() for p in patterns)))
                self.cond.wait(min(left, 0.5))

    def since(self, start):
        with self.cond:
            return self.out[start:self.pos]

    def type(self, text):
        for b in text.encode():
            self.proc.stdin.write(bytes([b]))
            self.proc.stdin.flush()
            time.sleep(TYPE_DELAY)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(5)
        self.log.close()


def boot(vm):
    """Waits for boot.done; returns the seconds since QEMU started."""
    vm.expect(BOOT_DONE, timeout=BOOT_TIMEOUT)
    return vm.elapsed()


def test_boot_bios():
    vm = Vm("boot_bios", "bios")
    try:
        secs = boot(vm)
        m = re.search(PASSWORD, vm.out)
        if not m:
            raise Fail("boot.done after %.1f s but no first-boot password banner" % secs)
        vm.pos = 0
        _, lease = vm.expect(rb'"event":"net.dhcp.bound"[^\n]*\n', timeout=60)
        if b"10.0.2.15/" not in lease.group(0):
            raise Fail("DHCP lease is not 10.0.2.15: %s" % lease.group(0).decode(errors="replace").strip())
        return "boot.done after %.1f s, password banner, DHCP 10.0.2.15" % secs
    finally:
        vm.stop()


def test_boot_uefi():
    vm = Vm("boot_uefi", "uefi")
    try:
        return "boot.done after %.1f s" % boot(vm)
    finally:
        vm.stop()


def command(vm, line, timeout=60):
    """Types a command line; returns its output (up to the next prompt)."""
    start = vm.pos
    vm.type(line + "\r")
    vm.expect(PROMPT, timeout=timeout)
    return vm.since(start).decode(errors="replace")


def login(vm, password):
    """A wrong password, then the right one (retried once if input was lost). Returns notes."""
    notes = []
    vm.pos = 0
    vm.expect(rb"Password: ", timeout=60)
    vm.type("not-the-password\r")
    vm.expect(rb"wrong password\r*\n", timeout=60)
    vm.expect(rb"Password: ", timeout=10)
    for attempt in (1, 2):
        vm.type(password + "\r")
        i, _ = vm.expect(rb"logged in; type help", rb"wrong password\r*\n", timeout=60)
        if i == 0:
            vm.expect(PROMPT, timeout=10)
            return notes
        notes.append("right password refused once (input lost?), retried")
        vm.expect(rb"Password: ", timeout=10)
    raise Fail("the right password was refused twice")


def test_admin_console():
    vm = Vm("admin_console", os.environ["CONSOLE_FIRMWARE"])
    try:
        secs = boot(vm)
        m = re.search(PASSWORD, vm.out)
        if not m:
            raise Fail("no first-boot password banner")
        notes = login(vm, m.group(1).decode())
        t_login = vm.elapsed()

        out = command(vm, "status")
        kvm = re.search(r"\nkvm +(.*?)\r*\n", out)
        for want in (r"\nuptime +\S", r"\nservices\r*\n", r"\n +vmm-pool +(running|starting) "):
            if not re.search(want, out):
                raise Fail("status: no line matching %r in: %r" % (want, out))
        if not kvm or kvm.group(1).startswith(("none", "unknown")):
            raise Fail("status: no usable KVM: %r" % out)

        out = command(vm, "frobnicate")
        if 'unknown command "frobnicate"' not in out:
            raise Fail("frobnicate: %r" % out)

        out = command(vm, "apikey create test")
        if not re.search(r"\nkey +e2b_[0-9a-f]{40}\r*\n", out):
            raise Fail("apikey create test: no e2b_ key in %r" % out)

        out = command(vm, "apikey list")
        if not re.search(r"\S +test\r*\n", out):
            raise Fail("apikey list: no key named test in %r" % out)

        t_off = vm.elapsed()
        vm.type("poweroff\r")
        vm.expect(rb"poweroff: stopping services", timeout=30)
        rc = vm.wait_exit(60 - (vm.elapsed() - t_off))
        if rc is None:
            raise Fail("QEMU still running 60 s after poweroff")
        if rc != 0:
            raise Fail("QEMU exited with status %d after poweroff" % rc)
        vm.reader.join(5)
        down = "reboot: Power down" in vm.out.decode(errors="replace")
        notes.insert(0, "boot.done %.1f s, logged in at %.1f s, kvm %s, powered off in %.1f s%s" %
                     (secs, t_login, kvm.group(1), vm.elapsed() - t_off, " (Power down)" if down else ""))
        return "; ".join(notes)
    finally:
        vm.stop()


TESTS = [("boot_bios", test_boot_bios), ("boot_uefi", test_boot_uefi), ("admin_console", test_admin_console)]
only = [t for t in os.environ["IMAGE_TESTS_ONLY"].split(",") if t]
unknown = set(only) - {name for name, _ in TESTS}
if unknown:
    sys.exit("image-test: no test named %s" % ", ".join(sorted(unknown)))
passed = failed = 0
for name, fn in TESTS:
    if only and name not in only:
        continue
    try:
        print("PASS %s %s" % (name, fn()), flush=True)
        passed += 1
    except Fail as e:
        print("FAIL %s %s (log: build/image/test-%s.log)" % (name, e, name), flush=True)
        failed += 1
    except Exception as e:
        print("FAIL %s %s: %s (log: build/image/test-%s.log)" % (name, type(e).__name__, e, name), flush=True)
        failed += 1
print("image-test: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PY
