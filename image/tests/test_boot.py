"""Boots of the qcow2 under SeaBIOS and OVMF."""

from imagetest import Fail, Vm, boot, first_boot_password


def test_boot_bios():
    vm = Vm("boot_bios", "bios")
    try:
        secs = boot(vm)
        first_boot_password(vm)
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


TESTS = [("boot_bios", test_boot_bios), ("boot_uefi", test_boot_uefi)]
