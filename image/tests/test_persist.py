"""The data disk: config, API keys and service logs survive a reboot.

First boot of a fresh overlay: cubeos finds the blank cubeos-data partition,
formats it, mounts it and keeps its state there; an API key is made, then a
clean poweroff (which unmounts the disk). Second boot of the same overlay: no
first-boot banner and no format, the disk passes e2fsck and is mounted as it
was; the same password logs in, the key is listed, the hostname is the same,
and `logs proxy` still shows the first boot's lines.

data_refused: a data partition that holds something cubeos does not know is
never formatted: the state stays in RAM, `status` says so, and the bytes are
still there afterwards.
"""
import os
import re
import struct
import subprocess

from imagetest import TMP, Fail, Vm, boot, command, first_boot_password, login, new_overlay, poweroff

DATA_LINE = r"\ndata +(/dev/\S+) on /var/lib/cubeos, ([^\r\n]*)\r*\n"


def event(vm, name):
    """The msg fields of every log line with this event, in order."""
    return [m.group(1).decode(errors="replace")
            for m in re.finditer(rb'"event":"%s","msg":"([^"]*)"' % re.escape(name.encode()), vm.out)]


def hostname(out):
    m = re.search(r"\nhostname +(\S+)\r*\n", out)
    if not m:
        raise Fail("status: no hostname line in %r" % out)
    return m.group(1)


def data_line(out, boot_name):
    m = re.search(DATA_LINE, out)
    if not m:
        raise Fail("%s: status shows no data disk on /var/lib/cubeos: %r" % (boot_name, out))
    return m.group(1), m.group(2)


def first_boot():
    vm = Vm("persist", "bios")
    try:
        secs = boot(vm)
        fmt, mounted = event(vm, "datadisk.format"), event(vm, "datadisk.mounted")
        if not fmt or not any("formatted in" in m for m in fmt):
            raise Fail("first boot: no datadisk.format event (%r)" % event(vm, "datadisk.ram"))
        if not mounted or "formatted this boot" not in mounted[0]:
            raise Fail("first boot: datadisk.mounted says %r" % mounted)
        password = first_boot_password(vm)
        vm.pos = 0
        login(vm, password, wrong_first=False)
        out = command(vm, "status")
        name = hostname(out)
        dev, use = data_line(out, "first boot")
        out = command(vm, "apikey create persist")
        if not re.search(r"\nkey +e2b_[0-9a-f]{40}\r*\n", out):
            raise Fail("apikey create persist: no key in %r" % out)
        poweroff(vm)
        if not event(vm, "datadisk.unmounted"):
            raise Fail("poweroff: no datadisk.unmounted event (%r)" % event(vm, "datadisk.unmount"))
        took = [m for m in fmt if "formatted in" in m][0].split("formatted in ")[-1]
        return vm.disk, password, name, "first boot %.1f s (format %s, %s %s)" % (secs, took, dev, use)
    finally:
        vm.stop()


def second_boot(disk, password, name):
    vm = Vm("persist-again", "bios", disk=disk, log="persist")
    try:
        secs = boot(vm)
        if re.search(rb"CubeOS first boot", vm.out):
            raise Fail("second boot: the first-boot banner came again (state lost)")
        if event(vm, "datadisk.format"):
            raise Fail("second boot: the data disk was formatted again: %r" % event(vm, "datadisk.format"))
        mounted = event(vm, "datadisk.mounted")
        if not mounted or "not formatted" not in mounted[0]:
            raise Fail("second boot: datadisk.mounted says %r" % mounted)
        fsck = [m for m in event(vm, "datadisk.fsck") if "clean" in m or "fixed" in m]
        if not fsck:
            raise Fail("second boot: no e2fsck result logged: %r" % event(vm, "datadisk.fsck"))
        vm.pos = 0
        notes = login(vm, password, wrong_first=False)
        out = command(vm, "apikey list")
        if not re.search(r"\S +persist\r*\n", out):
            raise Fail("second boot: apikey list has no key named persist: %r" % out)
        out = command(vm, "status")
        if hostname(out) != name:
            raise Fail("second boot: hostname %s, was %s" % (hostname(out), name))
        data_line(out, "second boot")
        # The first boot's proxy stopped at poweroff; only a persistent log still has that line.
        out = command(vm, "logs proxy 50")
        starts = out.count('"event":"proxy.start"')
        if '"event":"proxy.stop"' not in out or starts < 2:
            raise Fail("second boot: logs proxy lacks the first boot's lines (%d starts): %r" % (starts, out))
        poweroff(vm)
        notes.insert(0, "second boot %.1f s, %s; key, password, hostname %s and %d boots of proxy logs kept"
                     % (secs, fsck[0].split(": ")[1] if ": " in fsck[0] else fsck[0], name, starts))
        return "; ".join(notes)
    finally:
        vm.stop()


def test_persist():
    disk, password, name, first = first_boot()
    return first + "; " + second_boot(disk, password, name)


def data_partition_offset(disk):
    """Byte offset of the GPT partition named cubeos-data, read from the disk's first sectors."""
    head = os.path.join(TMP, "gpt-head.raw")
    subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=34", "if=" + disk,
                    "of=" + head], check=True, capture_output=True)
    with open(head, "rb") as f:
        gpt = f.read()
    entries, count, size = struct.unpack_from("<QII", gpt, 512 + 72)
    for i in range(count):
        e = gpt[entries * 512 + i * size:entries * 512 + (i + 1) * size]
        if len(e) < 128:
            break
        if e[56:128].decode("utf-16-le").rstrip("\0") == "cubeos-data":
            return struct.unpack_from("<Q", e, 32)[0] * 512
    raise Fail("no cubeos-data partition in the image's GPT")


def qemu_io(disk, cmd):
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", cmd, disk], capture_output=True, text=True)


def test_data_refused():
    disk = new_overlay("data_refused")
    off = data_partition_offset(disk)
    # Not blank, not a filesystem cubeos knows: it must be left alone.
    w = qemu_io(disk, "write -P 0x41 %d 4096" % off)
    if w.returncode != 0:
        raise Fail("qemu-io write: %s" % w.stderr)
    vm = Vm("data_refused", "bios", disk=disk)
    try:
        secs = boot(vm)
        refused, ram = event(vm, "datadisk.refused"), event(vm, "datadisk.ram")
        if not refused or "unknown data at offset 0" not in refused[0]:
            raise Fail("no datadisk.refused event naming the data: %r" % refused)
        if not ram or "/run/cubeos" not in ram[0] or event(vm, "datadisk.format") or event(vm, "datadisk.mounted"):
            raise Fail("state not in RAM, or the disk was formatted/mounted: %r" % ram)
        password = first_boot_password(vm)
        vm.pos = 0
        login(vm, password, wrong_first=False)
        out = command(vm, "status")
        if not re.search(r"\ndata +RAM \(not persistent\): [^\r\n]*unknown data", out):
            raise Fail("status: no RAM data line: %r" % out)
        poweroff(vm)
    finally:
        vm.stop()
    r = qemu_io(disk, "read -P 0x41 %d 4096" % off)
    if r.returncode != 0 or "Pattern verification failed" in r.stdout + r.stderr:
        raise Fail("the refused partition's bytes changed: %s %s" % (r.stdout, r.stderr))
    return "boot %.1f s; refused %r, state in RAM, bytes untouched" % (secs, refused[0].split(": ")[0])


TESTS = [("persist", test_persist), ("data_refused", test_data_refused)]
