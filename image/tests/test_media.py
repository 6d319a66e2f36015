"""The live media and the installer: the ISO under SeaBIOS and OVMF, PXE through
QEMU's TFTP server and iPXE ROM, and `install DISK` from the ISO onto a blank
disk that then boots by itself.

The default templates: a live ISO boot loop-mounts the ISO's
boot/templates.img; `install` from the ISO copies it onto partition 3
`cubeos-templates` (checked on the host with sgdisk and debugfs: it holds
code-interpreter-v1/rootfs.ext4), which the installed disk mounts at boot; a
PXE boot and an install from it have no templates.

ISO and PXE_DIR (exported by image/test.sh) say where the outputs are."""
import os
import re
import subprocess

from imagetest import Fail, Vm, blank_disk, boot, command, first_boot_password, login, poweroff

ISO = os.environ.get("ISO", "")
PXE_DIR = os.environ.get("PXE_DIR", "")
INSTALL_TIMEOUT = 300


def need(path, what):
    if not path or not os.path.exists(path):
        raise Fail("%s missing: %r (run: make image)" % (what, path))


def state_where(vm):
    """'RAM' or 'disk' from cubeos's data-disk log lines, or a note if this build has none."""
    text = vm.text()
    if '"event":"datadisk.ram"' in text:
        return "RAM"
    if '"event":"datadisk.mounted"' in text:
        return "disk"
    return None


def check_live(vm):
    """A live boot keeps its state in RAM (cubeos.live): never on a disk."""
    where = state_where(vm)
    if where == "disk":
        raise Fail("a live boot mounted a data disk")
    if where == "RAM" and "cubeos.live" not in vm.text():
        raise Fail("state in RAM, but not because of cubeos.live")
    return "state in RAM (cubeos.live)" if where else "no data-disk log line in this build"


TEMPLATES_DIR = "/usr/lib/cubeos/templates"


def templates_mounted(vm, source):
    """cubeos's log line saying the templates (from source, a regex) are mounted; Fail if not."""
    want = r'"event":"templates"[^\n]*%s[^\n]* mounted read-only on %s' % (source, TEMPLATES_DIR)
    m = re.search(want, vm.text())
    if not m:
        lines = [l for l in vm.text().splitlines() if '"event":"templates"' in l]
        raise Fail("no log line matching %r; the templates lines: %r" % (want, lines))
    return m.group(0)


def host_tool(name):
    for d in os.environ.get("PATH", "").split(":") + ["/sbin", "/usr/sbin"]:
        if d and os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    raise Fail("%s not found on the host (make deps)" % name)


def templates_partition_files(disk, template):
    """Host side: the names in <template>/ of the cubeos-templates partition of a
    qcow2 disk (qemu-img to raw, sgdisk for the partition, debugfs to list it)."""
    raw = disk + ".raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", disk, raw], check=True)
    try:
        table = subprocess.run([host_tool("sgdisk"), "--print", raw], capture_output=True, text=True).stdout
        m = re.search(r"^\s*3\s+(\d+)\s+(\d+)\s.*cubeos-templates\s*$", table, re.M)
        if not m:
            raise Fail("the installed disk has no partition 3 cubeos-templates: %r" % table)
        out = subprocess.run([host_tool("debugfs"), "-R", "ls -p /" + template,
                              "%s?offset=%d" % (raw, int(m.group(1)) * 512)],
                             capture_output=True, text=True)
        # ls -p: /inode/mode/uid/gid/name/size/ per entry
        return [f.split("/")[5] for f in out.stdout.splitlines() if f.count("/") >= 6]
    finally:
        os.remove(raw)


def boot_iso(firmware):
    need(ISO, "the ISO")
    vm = Vm("boot_iso_" + firmware, firmware, disk=None, extra=["-cdrom", ISO])
    try:
        secs = boot(vm)
        first_boot_password(vm)
        templates_mounted(vm, r"boot/templates\.img on /dev/sr\d")
        return "boot.done after %.1f s, %s, templates loop-mounted from the ISO" % (secs, check_live(vm))
    finally:
        vm.stop()


def test_boot_iso_bios():
    return boot_iso("bios")


def test_boot_iso_uefi():
    return boot_iso("uefi")


def test_boot_pxe():
    need(os.path.join(PXE_DIR, "boot.ipxe"), "the PXE tree")
    # QEMU's user network answers DHCP with the boot file and serves PXE_DIR
    # over TFTP; virtio-net-pci's default option ROM is iPXE.
    vm = Vm("boot_pxe", "bios", disk=None, net="user,id=n0,tftp=%s,bootfile=boot.ipxe" % PXE_DIR,
            extra=["-boot", "n"])
    try:
        secs = boot(vm)
        first_boot_password(vm)
        if not re.search(r'"event":"templates"[^\n]*network boot', vm.text()):
            raise Fail("no log line saying the network boot has no templates")
        return "boot.done after %.1f s (TFTP, iPXE), %s, no templates" % (secs, check_live(vm))
    finally:
        vm.stop()


def boot_installed(disk, firmware, log):
    """Boots the installed disk alone; returns (seconds to boot.done, data-disk note, vm text)."""
    vm = Vm("install_from_iso_" + firmware, firmware, disk=disk, log=log)
    try:
        secs = boot(vm)
        # A clean power-off (ACPI button): the data partition is unmounted,
        # not cut off mid-write.
        vm.monitor("system_powerdown")
        vm.wait_exit(60)
        return secs, state_where(vm), vm.text()
    finally:
        vm.stop()


def test_install_from_iso():
    need(ISO, "the ISO")
    disk = blank_disk("install_from_iso-target", "4G")
    vm = Vm("install_from_iso", "bios", disk=disk, extra=["-cdrom", ISO])
    try:
        boot(vm)
        password = first_boot_password(vm)
        vm.pos = 0
        notes = login(vm, password, wrong_first=False)
        out = command(vm, "install /dev/vda", timeout=INSTALL_TIMEOUT)
        for want in (r"install: ERASING everything on /dev/vda", r"install: source: the CubeOS ISO on /dev/sr\d",
                     r"install: templates: the CubeOS ISO on /dev/sr\d \(boot/templates\.img\), \d+ MiB",
                     r"install: 100%", r"install: done: /dev/vda: .*, 3 cubeos-templates \d+ MiB"):
            if not re.search(want, out):
                raise Fail("install /dev/vda: no line matching %r in: %r" % (want, out))
        out = command(vm, "install /dev/sr0")
        if "refusing /dev/sr0" not in out and "cannot open /dev/sr0" not in out:
            raise Fail("install /dev/sr0 (the install medium) was not refused: %r" % out)
        poweroff(vm)
    finally:
        vm.stop()
    files = templates_partition_files(disk, "code-interpreter-v1")
    if "rootfs.ext4" not in files:
        raise Fail("partition 3 of the installed disk has no code-interpreter-v1/rootfs.ext4: %r" % files)

    # The disk alone: SeaBIOS (gptmbr.bin -> SYSLINUX's boot sector), the
    # first boot from it, then OVMF (the removable-media path on the ESP).
    secs, where, text = boot_installed(disk, "bios", "install_from_iso")
    if not re.search(r"admin console password: \S+", text):
        raise Fail("no first-boot banner from the installed disk")
    if where == "RAM":
        raise Fail("the installed disk keeps its state in RAM (cubeos.live leaked into its command line?)")
    if where == "disk" and '"event":"datadisk.format"' not in text:
        raise Fail("the installed disk's data partition was not formatted at its first boot")
    if not re.search(r'"event":"templates"[^\n]*/dev/vda3 \(cubeos-templates\) mounted read-only on ' +
                     TEMPLATES_DIR, text):
        raise Fail("the installed disk did not mount its cubeos-templates partition (vda3)")
    notes.insert(0, "installed with cubeos-templates (code-interpreter-v1/rootfs.ext4 on it, mounted at boot); "
                 "disk boot.done under SeaBIOS after %.1f s, %s" %
                 (secs, "data partition formatted and mounted" if where else
                  "no data-disk log line in this build (data partition not checked)"))
    secs, where2, text = boot_installed(disk, "uefi", "install_from_iso")
    if where and '"event":"datadisk.format"' in text:
        raise Fail("the data partition was formatted again at the second boot")
    notes.append("under OVMF after %.1f s%s" % (secs, ", same data partition" if where2 == "disk" else ""))
    return "; ".join(notes)


def test_install_from_pxe():
    """The network boot brings the install source as /cubeos/esp.img (iPXE's
    named initrd); installing from it is enough here, the ISO test boots the result."""
    need(os.path.join(PXE_DIR, "boot.ipxe"), "the PXE tree")
    disk = blank_disk("install_from_pxe-target", "4G")
    vm = Vm("install_from_pxe", "bios", disk=disk, net="user,id=n0,tftp=%s,bootfile=boot.ipxe" % PXE_DIR,
            extra=["-boot", "n"])
    try:
        secs = boot(vm)
        password = first_boot_password(vm)
        vm.pos = 0
        notes = login(vm, password, wrong_first=False)
        out = command(vm, "install /dev/vda", timeout=INSTALL_TIMEOUT)
        for want in (r"install: source: /cubeos/esp.img \(network boot\)", r"install: templates: none",
                     r"install: done: /dev/vda"):
            if not re.search(want, out):
                raise Fail("install /dev/vda: no line matching %r in: %r" % (want, out))
        if "cubeos-templates" in out:
            raise Fail("an install from the network boot made a templates partition: %r" % out)
        poweroff(vm)
        notes.insert(0, "PXE boot.done after %.1f s, installed from /cubeos/esp.img (no templates)" % secs)
        return "; ".join(notes)
    finally:
        vm.stop()


def test_install_from_disk():
    """A node running from its disk clones itself onto a second one: the ESP
    and the templates come from the running disk's partitions 1 and 3."""
    target = blank_disk("install_from_disk-target", "4G")
    vm = Vm("install_from_disk", "bios", disk=True,
            extra=["-drive", "file=%s,if=virtio,format=qcow2" % target])
    try:
        boot(vm)
        password = first_boot_password(vm)
        vm.pos = 0
        notes = login(vm, password, wrong_first=False)
        out = command(vm, "install /dev/vdb", timeout=INSTALL_TIMEOUT)
        for want in (r"install: source: the cubeos-esp partition /dev/vda1",
                     r"install: templates: the cubeos-templates partition /dev/vda3, \d+ MiB",
                     r"install: done: /dev/vdb: .*, 3 cubeos-templates \d+ MiB"):
            if not re.search(want, out):
                raise Fail("install /dev/vdb: no line matching %r in: %r" % (want, out))
        out = command(vm, "install /dev/vda")
        if "refusing /dev/vda" not in out:
            raise Fail("install /dev/vda (the running disk) was not refused: %r" % out)
        poweroff(vm)
    finally:
        vm.stop()
    files = templates_partition_files(target, "code-interpreter-v1")
    if "rootfs.ext4" not in files:
        raise Fail("partition 3 of the cloned disk has no code-interpreter-v1/rootfs.ext4: %r" % files)
    notes.insert(0, "cloned the running disk onto /dev/vdb with its cubeos-templates partition "
                 "(code-interpreter-v1/rootfs.ext4 on it)")
    return "; ".join(notes)


TESTS = [("boot_iso_bios", test_boot_iso_bios), ("boot_iso_uefi", test_boot_iso_uefi), ("boot_pxe", test_boot_pxe),
         ("install_from_iso", test_install_from_iso), ("install_from_pxe", test_install_from_pxe),
         ("install_from_disk", test_install_from_disk)]
