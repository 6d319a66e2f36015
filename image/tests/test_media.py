"""The live media and the installer: the ISO under SeaBIOS and OVMF, PXE through
QEMU's TFTP server and iPXE ROM, and `install DISK` from the ISO onto a blank
disk that then boots by itself.

ISO and PXE_DIR (exported by image/test.sh) say where the outputs are."""
import os
import re

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


def boot_iso(firmware):
    need(ISO, "the ISO")
    vm = Vm("boot_iso_" + firmware, firmware, disk=None, extra=["-cdrom", ISO])
    try:
        secs = boot(vm)
        first_boot_password(vm)
        return "boot.done after %.1f s, %s" % (secs, check_live(vm))
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
        return "boot.done after %.1f s (TFTP, iPXE), %s" % (secs, check_live(vm))
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
                     r"install: 100%", r"install: done: /dev/vda"):
            if not re.search(want, out):
                raise Fail("install /dev/vda: no line matching %r in: %r" % (want, out))
        out = command(vm, "install /dev/sr0")
        if "refusing /dev/sr0" not in out and "cannot open /dev/sr0" not in out:
            raise Fail("install /dev/sr0 (the install medium) was not refused: %r" % out)
        poweroff(vm)
    finally:
        vm.stop()

    # The disk alone: SeaBIOS (gptmbr.bin -> SYSLINUX's boot sector), the
    # first boot from it, then OVMF (the removable-media path on the ESP).
    secs, where, text = boot_installed(disk, "bios", "install_from_iso")
    if not re.search(r"admin console password: \S+", text):
        raise Fail("no first-boot banner from the installed disk")
    if where == "RAM":
        raise Fail("the installed disk keeps its state in RAM (cubeos.live leaked into its command line?)")
    if where == "disk" and '"event":"datadisk.format"' not in text:
        raise Fail("the installed disk's data partition was not formatted at its first boot")
    notes.insert(0, "installed; disk boot.done under SeaBIOS after %.1f s, %s" %
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
        for want in (r"install: source: /cubeos/esp.img \(network boot\)", r"install: done: /dev/vda"):
            if not re.search(want, out):
                raise Fail("install /dev/vda: no line matching %r in: %r" % (want, out))
        poweroff(vm)
        notes.insert(0, "PXE boot.done after %.1f s, installed from /cubeos/esp.img" % secs)
        return "; ".join(notes)
    finally:
        vm.stop()


TESTS = [("boot_iso_bios", test_boot_iso_bios), ("boot_iso_uefi", test_boot_iso_uefi), ("boot_pxe", test_boot_pxe),
         ("install_from_iso", test_install_from_iso), ("install_from_pxe", test_install_from_pxe)]
