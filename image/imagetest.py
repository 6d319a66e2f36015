"""The image boot-test framework (`make image-test`, run by image/test.sh).

A test boots the real appliance in QEMU and talks to its serial console, the
way an operator would. This module holds what every test needs: Vm (one QEMU
with its console on a pipe, a log file and expect()), Lan (a private test
LAN in a network namespace: TAP, DHCP, the appliance as DNS), login and
command helpers, and the runner. The tests live in image/tests/test_*.py; each module
lists its tests in TESTS = [(name, function), ...] and a test returns a
one-line summary or raises Fail.

Environment (set by image/test.sh): IMAGE, LOGDIR, TMP, ACCEL, MEM, SMP,
BOOT_TIMEOUT, IMAGE_TESTS_ONLY, CONSOLE_FIRMWARE, and ISO / PXE_DIR where
those outputs were built.
"""
import glob
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

IMAGE = os.environ.get("IMAGE", "")
LOGDIR = os.environ.get("LOGDIR", ".")
TMP = os.environ.get("TMP", "/tmp")
ACCEL = os.environ.get("ACCEL", "-accel tcg").split()
MEM = os.environ.get("MEM", "4096")
SMP = os.environ.get("SMP", "2")
BOOT_TIMEOUT = float(os.environ.get("BOOT_TIMEOUT", "300"))
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
# Under TCG a byte written while the guest's UART is busy can be lost: type slowly.
TYPE_DELAY = 0.03

BOOT_DONE = rb'"event":"boot.done"'
PASSWORD = rb"admin console password: (\S+)"
PROMPT = rb"cubeos> "


class Fail(Exception):
    pass


# Names of the Vms whose appliance kernel panicked, for the runner's reruns
# (see main()).
PANICS = []
PANIC_ATTEMPTS = 3  # runs of a test whose appliance kernel panicked under TCG
PANIC = b"Kernel panic - not syncing"


def new_overlay(name, base=None):
    """A throwaway qcow2 overlay of the image (or of BASE); returns its path."""
    overlay = os.path.join(TMP, name + ".qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base or IMAGE, "-F", "qcow2", overlay],
                   check=True)
    return overlay


def blank_disk(name, size="4G"):
    """An empty qcow2 disk (for install targets); returns its path."""
    path = os.path.join(TMP, name + ".qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size], check=True)
    return path


class Vm:
    """One QEMU; its serial console on a pipe and in build/image/test-<log>.log.

    disk: a qcow2 path for the first virtio disk, True for a fresh overlay of
    IMAGE, or None for no disk. extra: more QEMU arguments (a CD-ROM, a
    second disk, PXE options). A monitor socket is always there (monitor()).
    net: the -netdev of the NIC (id n0); netns: a network namespace QEMU runs
    in, so that a TAP there is its NIC (Lan.netdev()).
    """

    def __init__(self, name, firmware="bios", disk=True, extra=(), log=None, net="user,id=n0", netns=None):
        self.name = name
        if disk is True:
            disk = new_overlay(name)
        self.disk = disk
        fw = []
        if firmware == "uefi":
            vars_copy = os.path.join(TMP, name + "-efivars.fd")
            if not os.path.exists(vars_copy):
                with open(OVMF_VARS, "rb") as src, open(vars_copy, "wb") as dst:
                    dst.write(src.read())
            fw = ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMF_CODE,
                  "-drive", "if=pflash,format=raw,unit=1,file=" + vars_copy]
        self.monitor_path = os.path.join(TMP, name + ".monitor")
        if os.path.exists(self.monitor_path):
            os.unlink(self.monitor_path)
        cmd = (["qemu-system-x86_64", "-M", "q35"] + ACCEL +
               ["-smp", SMP, "-m", MEM, "-nographic", "-no-user-config"] + fw +
               ["-monitor", "unix:%s,server,nowait" % self.monitor_path])
        if disk:
            cmd += ["-drive", "file=%s,if=virtio,format=qcow2" % disk]
        cmd += ["-netdev", net, "-device", "virtio-net-pci,netdev=n0" + ("" if "bootfile" in net else ",romfile="),
                "-device", "virtio-rng-pci"] + list(extra)
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        self.cmd = cmd
        # A test that boots again (log= the first boot's name) appends to the same log.
        self.log = open(os.path.join(LOGDIR, "test-%s.log" % (log or name)), "ab" if log else "wb")
        self.out = b""
        self.pos = 0  # expect() searches from here on
        self.eof = False
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
                if PANIC in self.out[-len(PANIC):] + chunk and self.name not in PANICS:
                    PANICS.append(self.name)
                self.out += chunk
                self.log.write(chunk)
                self.log.flush()
                self.cond.notify_all()

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

    def text(self):
        with self.cond:
            return self.out.decode(errors="replace")

    def type(self, text):
        for b in text.encode():
            self.proc.stdin.write(bytes([b]))
            self.proc.stdin.flush()
            time.sleep(TYPE_DELAY)

    def monitor(self, line):
        """Sends one human-monitor command (e.g. system_powerdown); returns its reply text."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.monitor_path)
        reply = b""
        try:
            s.sendall(line.encode() + b"\n")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and reply.count(b"(qemu)") < 2:
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    break
                if not chunk:
                    break
                reply += chunk
        finally:
            s.close()
        return reply.decode(errors="replace")

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


class Lan:
    """A private test LAN in a network namespace of its own (cubeos-lan-<pid>),
    created and torn down by the test; nothing of it touches the host's
    network:

        netns cubeos-lan-<pid>
          br0   10.213.7.1/24   the LAN host's address (the SDK clients run here)
          tap0  on br0          the appliance's NIC: QEMU runs in the namespace
                                (Vm(..., net=lan.netdev(), netns=lan.name))
          busybox udhcpd on br0 leases the appliance 10.213.7.2, its only address
          /etc/netns/<name>/resolv.conf: nameserver 10.213.7.2 (the appliance's
                                cube-dns); `ip netns exec` bind-mounts it on
                                /etc/resolv.conf for what run() starts

    The subnet is the same for every Lan: each lives in its own namespace.
    close() (also after a failure) stops udhcpd and anything else left in the
    namespace, deletes it (with its links) and the resolv.conf directory.
    """

    PREFIX = "10.213.7."
    CLIENT = PREFIX + "1"
    APPLIANCE = PREFIX + "2"
    BUSYBOX = "/bin/busybox"  # busybox-static (image/deps.txt): its udhcpd applet
    CLONE_NEWNET = 0x40000000

    def __init__(self, tag):
        if os.geteuid() != 0:
            raise Fail("the LAN test needs root (ip netns, a TAP device)")
        if not os.access(self.BUSYBOX, os.X_OK):
            raise Fail("%s missing (run: make deps; busybox-static gives udhcpd)" % self.BUSYBOX)
        self._remove_stale()
        self.name = "cubeos-lan-%d" % os.getpid()
        self.etc = os.path.join("/etc/netns", self.name)
        self.dhcp = None
        self.made = False
        try:
            self._create(tag)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _remove_stale():
        """Deletes the LAN of an earlier run that was killed before its
        close() (its pid is gone): its namespace and resolv.conf directory."""
        p = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for m in re.finditer(rb"^(cubeos-lan-(\d+))\b", p.stdout, re.M):
            if os.path.exists("/proc/%d" % int(m.group(2))):
                continue
            name = m.group(1).decode()
            subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
            shutil.rmtree(os.path.join("/etc/netns", name), ignore_errors=True)

    def _ip(self, *args):
        p = subprocess.run(["ip", "-n", self.name] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise Fail("ip -n %s %s: %s" % (self.name, " ".join(args), p.stdout.decode(errors="replace").strip()))

    def _create(self, tag):
        p = subprocess.run(["ip", "netns", "add", self.name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise Fail("ip netns add %s: %s" % (self.name, p.stdout.decode(errors="replace").strip()))
        self.made = True
        self._ip("link", "set", "lo", "up")
        # No STP and no forwarding delay: the appliance's first DHCP
        # discover must not be dropped by a port still in "learning".
        self._ip("link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        # A persistent TAP made here, so QEMU (started in the namespace)
        # attaches to it and it is already on the bridge: -netdev tap,script=no.
        self._ip("tuntap", "add", "dev", "tap0", "mode", "tap")
        self._ip("link", "set", "tap0", "master", "br0")
        self._ip("addr", "add", self.CLIENT + "/24", "dev", "br0")
        self._ip("link", "set", "tap0", "up")
        self._ip("link", "set", "br0", "up")
        os.makedirs(self.etc, exist_ok=True)
        with open(os.path.join(self.etc, "resolv.conf"), "w") as f:
            f.write("nameserver %s\n" % self.APPLIANCE)
        conf = os.path.join(TMP, self.name + "-udhcpd.conf")
        with open(conf, "w") as f:
            f.write("start %s\nend %s\ninterface br0\nmax_leases 1\n"
                    "lease_file %s\npidfile %s\noption subnet 255.255.255.0\noption lease 3600\n" % (
                        self.APPLIANCE, self.APPLIANCE, os.path.join(TMP, self.name + "-udhcpd.leases"),
                        os.path.join(TMP, self.name + "-udhcpd.pid")))
        self.dhcp_log = open(os.path.join(LOGDIR, "test-%s-udhcpd.log" % tag), "wb")
        self.dhcp = subprocess.Popen(self.run_argv([self.BUSYBOX, "udhcpd", "-f", conf]),
                                     stdout=self.dhcp_log, stderr=subprocess.STDOUT)
        time.sleep(0.3)
        if self.dhcp.poll() is not None:
            raise Fail("udhcpd exited with status %d (log: %s)" % (self.dhcp.returncode, self.dhcp_log.name))

    def netdev(self):
        """The QEMU -netdev for the appliance's NIC on this LAN."""
        return "tap,id=n0,ifname=tap0,script=no,downscript=no"

    def run_argv(self, argv):
        """argv to run as a host on the LAN (its DNS is the appliance)."""
        # The full path: test_sdk.run_flow checks that argv[0] exists.
        return [shutil.which("ip") or "/usr/sbin/ip", "netns", "exec", self.name] + list(argv)

    def call(self, fn, *args):
        """fn(*args) in a thread that has joined the namespace (setns is per
        thread), for in-process clients such as urllib. Names resolve with the
        host's resolv.conf there: use addresses."""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        out = {}

        def run():
            try:
                fd = os.open(os.path.join("/run/netns", self.name), os.O_RDONLY)
                try:
                    if libc.setns(fd, self.CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns into " + self.name)
                finally:
                    os.close(fd)
                out["value"] = fn(*args)
            except BaseException as e:  # handed to the caller's thread
                out["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out["value"]

    def close(self):
        if self.dhcp and self.dhcp.poll() is None:
            self.dhcp.terminate()
            try:
                self.dhcp.wait(5)
            except subprocess.TimeoutExpired:
                self.dhcp.kill()
                self.dhcp.wait()
        if self.dhcp:
            self.dhcp_log.close()
        if self.made:
            # Whatever a test started in the namespace and left running (a
            # flow's child) would keep the namespace's links alive.
            p = subprocess.run(["ip", "netns", "pids", self.name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            for pid in p.stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (OSError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL)
            self.made = False
        if os.path.isdir(self.etc):
            for f in os.listdir(self.etc):
                os.unlink(os.path.join(self.etc, f))
            os.rmdir(self.etc)
        try:
            os.rmdir(os.path.dirname(self.etc))  # /etc/netns, when nothing else uses it
        except OSError:
            pass


def boot(vm, timeout=None):
    """Waits for boot.done; returns the seconds since QEMU started."""
    vm.expect(BOOT_DONE, timeout=timeout or BOOT_TIMEOUT)
    return vm.elapsed()


def first_boot_password(vm):
    m = re.search(PASSWORD, vm.out)
    if not m:
        raise Fail("no first-boot password banner")
    return m.group(1).decode()


def command(vm, line, timeout=60):
    """Types a command line; returns its output (up to the next prompt)."""
    start = vm.pos
    vm.type(line + "\r")
    vm.expect(PROMPT, timeout=timeout)
    return vm.since(start).decode(errors="replace")


def login(vm, password, wrong_first=True):
    """Logs in on the console (a wrong password first if asked; the right one
    retried once if input was lost). Returns notes for the summary line."""
    notes = []
    vm.expect(rb"Password: ", timeout=60)
    if wrong_first:
        vm.type("not-the-password\r")
        vm.expect(rb"wrong password\r*\n", timeout=60)
        vm.expect(rb"Password: ", timeout=10)
    for _ in (1, 2):
        vm.type(password + "\r")
        i, _ = vm.expect(rb"logged in; type help", rb"wrong password\r*\n", timeout=60)
        if i == 0:
            vm.expect(PROMPT, timeout=10)
            return notes
        notes.append("right password refused once (input lost?), retried")
        vm.expect(rb"Password: ", timeout=10)
    raise Fail("the right password was refused twice")


def poweroff(vm, timeout=60):
    """Types poweroff; QEMU must then exit by itself with status 0. Returns the seconds it took."""
    t_off = vm.elapsed()
    vm.type("poweroff\r")
    vm.expect(rb"poweroff: stopping services", timeout=30)
    rc = vm.wait_exit(timeout - (vm.elapsed() - t_off))
    if rc is None:
        raise Fail("QEMU still running %d s after poweroff" % timeout)
    if rc != 0:
        raise Fail("QEMU exited with status %d after poweroff" % rc)
    vm.reader.join(5)
    return vm.elapsed() - t_off


def load_tests():
    tests = []
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    sys.path.insert(0, os.path.join(here, "tests"))  # test modules may import each other
    for path in sorted(glob.glob(os.path.join(here, "tests", "test_*.py"))):
        spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        tests += mod.TESTS
    return tests


def main():
    tests = load_tests()
    only = [t for t in os.environ.get("IMAGE_TESTS_ONLY", "").split(",") if t]
    unknown = set(only) - {name for name, _ in tests}
    if unknown:
        sys.exit("image-test: no test named %s" % ", ".join(sorted(unknown)))
    passed = failed = 0
    for name, fn in tests:
        if only and name not in only:
            continue
        for attempt in range(1, PANIC_ATTEMPTS + 1):
            del PANICS[:]
            try:
                print("PASS %s %s" % (name, fn()), flush=True)
                passed += 1
                break
            except Exception as e:
                why = str(e) if isinstance(e, Fail) else "%s: %s" % (type(e).__name__, e)
            # Nested under emulation (TCG with an emulated SVM CPU) the
            # appliance's kernel can die in KVM_RUN from an emulator fault no
            # real CPU has (an interrupt taken between VMRUN's exit and the
            # host's VMLOAD, where GIF=0 forbids it; with QEMU 7.2 and 10.0
            # alike, about once per 10 minutes of many guests starting); such
            # a run says nothing about the product. It is reported and run
            # again, up to PANIC_ATTEMPTS runs; any other failure counts.
            if attempt < PANIC_ATTEMPTS and PANICS and "tcg" in " ".join(ACCEL):
                print("RERUN %s: the appliance kernel panicked under TCG (%s); first failure: %s" %
                      (name, ", ".join(PANICS), why), flush=True)
                try:
                    os.rename(os.path.join(LOGDIR, "test-%s.log" % name),
                              os.path.join(LOGDIR, "test-%s.panic%d.log" % (name, attempt)))
                except OSError:
                    pass
                continue
            print("FAIL %s %s (log: build/image/test-%s.log)" % (name, why, name), flush=True)
            failed += 1
            break
    print("image-test: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    # Run the copy of this module the tests import (`from imagetest import
    # Vm`), not __main__: their Vms record panics in imagetest.PANICS, which
    # is the list main() must see to rerun a test the emulator broke.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import imagetest

    imagetest.main()
