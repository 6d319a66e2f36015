"""The admin console, driven by script."""
import os
import re

from imagetest import Fail, Vm, boot, command, first_boot_password, login, poweroff


def test_admin_console():
    vm = Vm("admin_console", os.environ.get("CONSOLE_FIRMWARE", "bios"))
    try:
        secs = boot(vm)
        password = first_boot_password(vm)
        vm.pos = 0
        notes = login(vm, password)
        t_login = vm.elapsed()

        out = command(vm, "status")
        kvm = re.search(r"\nkvm +(.*?)\r*\n", out)
        for want in (r"\nuptime +\S", r"\nservices\r*\n", r"\n +api +(running|starting) ", r"\n +proxy +(running|starting) "):
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

        off = poweroff(vm)
        down = "reboot: Power down" in vm.text()
        notes.insert(0, "boot.done %.1f s, logged in at %.1f s, kvm %s, powered off in %.1f s%s" %
                     (secs, t_login, kvm.group(1), off, " (Power down)" if down else ""))
        return "; ".join(notes)
    finally:
        vm.stop()


TESTS = [("admin_console", test_admin_console)]
