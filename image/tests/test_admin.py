"""Admin features on the real appliance: a killed service comes back, the
selftest boots a sandbox VM through cube-vmm inside, and the ACPI power
button powers off cleanly."""
import re
import time

from imagetest import Fail, Vm, boot, command, first_boot_password, login, poweroff

SERVICES_UP = rb'"event":"services.up"'
# A selftest boots a guest nested under TCG: give it minutes.
SELFTEST_TIMEOUT = 900


def boot_and_login(name):
    vm = Vm(name, "bios")
    secs = boot(vm)
    password = first_boot_password(vm)
    vm.pos = 0
    notes = login(vm, password, wrong_first=False)
    return vm, secs, notes


def service_row(vm, name):
    """(state, pid, restarts) of a service, from status."""
    out = command(vm, "status")
    m = re.search(r"\n +%s +(\S+) +(\S+) +(\d+) " % re.escape(name), out)
    if not m:
        raise Fail("status: no row for %s in %r" % (name, out))
    return m.group(1), m.group(2), int(m.group(3))


def wait_row(vm, name, want, timeout=60):
    """Polls status until want(state, pid, restarts) holds; returns the row."""
    deadline = time.monotonic() + timeout
    while True:
        row = service_row(vm, name)
        if want(*row):
            return row
        if time.monotonic() > deadline:
            raise Fail("%s: still %s after %d s" % (name, row, timeout))
        time.sleep(1)


def test_service_restart():
    vm, secs, notes = boot_and_login("service_restart")
    try:
        vm.expect(SERVICES_UP, timeout=120)
        _, pid, restarts = wait_row(vm, "proxy", lambda st, pid, r: pid != "-")
        if restarts != 0:
            raise Fail("proxy restarted %d times before the test" % restarts)
        out = command(vm, "service kill proxy")
        if "sent signal 9 (Killed) to proxy, pid %s" % pid not in out:
            raise Fail("service kill proxy: %r" % out)
        t_kill = vm.elapsed()
        st, new_pid, restarts = wait_row(vm, "proxy", lambda st, p, r: p not in ("-", pid) and r == 1)
        back = vm.elapsed() - t_kill
        out = command(vm, "status")
        if "signal 9 (Killed)" not in out:
            raise Fail("status does not show the last exit as signal 9: %r" % out)
        # restart: a clean stop (SIGTERM: cube-proxy exits 0) and a new pid.
        out = command(vm, "service restart proxy")
        if "proxy: stopping pid %s, then starting it again" % new_pid not in out:
            raise Fail("service restart proxy: %r" % out)
        _, third_pid, _ = wait_row(vm, "proxy", lambda st, p, r: p not in ("-", new_pid) and r == 2)
        out = command(vm, "service list")
        if not re.search(r"\nproxy +(starting|running) +%s +2 " % third_pid, out):
            raise Fail("service list: %r" % out)
        if "exit 0" not in command(vm, "status"):
            raise Fail("the restart was not a clean stop (no exit 0 in status)")
        poweroff(vm)
        notes.insert(0, "boot.done %.1f s; proxy pid %s killed -> pid %s (restarts 1) after %.1f s; "
                        "service restart -> pid %s (restarts 2, clean exit 0)" % (secs, pid, new_pid, back, third_pid))
        return "; ".join(notes)
    finally:
        vm.stop()


def test_selftest():
    vm, secs, notes = boot_and_login("selftest")
    try:
        start = vm.pos
        t0 = vm.elapsed()
        vm.type("selftest\r")
        i, m = vm.expect(rb"selftest: PASS[^\r\n]*", rb"selftest: FAIL[^\r\n]*", timeout=SELFTEST_TIMEOUT)
        line = m.group(0).decode(errors="replace")
        if i != 0:
            raise Fail("%s; output: %r" % (line, vm.since(start).decode(errors="replace")[-1500:]))
        vm.expect(rb"cubeos> ", timeout=30)
        took = vm.elapsed() - t0
        out = vm.since(start).decode(errors="replace")
        for want in ("selftest: kvm: ", "selftest: agent: healthy", "selftest: run: uname -r -> ",
                     "selftest: shutdown: cube-vmm exited 0"):
            if want not in out:
                raise Fail("selftest output lacks %r: %r" % (want, out))
        if "[exit" in out:
            raise Fail("selftest passed but the shell reported a non-zero exit: %r" % out)
        # Ctrl-C while the guest boots: the VM is stopped and the prompt comes back.
        vm.type("selftest\r")
        vm.expect(rb"selftest: boot: cube-vmm pid", timeout=60)
        vm.type("\x03")
        vm.expect(rb"selftest: FAIL interrupted", timeout=60)
        vm.expect(rb"\[exit 1\]\r*\n", timeout=30)
        vm.expect(rb"cubeos> ", timeout=30)
        out = command(vm, "status")
        if "kvm " not in out:
            raise Fail("status after an interrupted selftest: %r" % out)
        poweroff(vm)
        notes.insert(0, "boot.done %.1f s; %s (%.0f s in the console); Ctrl-C interrupts a second one" %
                     (secs, line.strip(), took))
        return "; ".join(notes)
    finally:
        vm.stop()


def test_power_button():
    vm = Vm("power_button", "bios")
    try:
        secs = boot(vm)
        vm.pos = 0  # cubeos logs the devices it watches before boot.done
        i, _ = vm.expect(rb"watching /dev/input/\S+ \(Power Button\)", rb'"event":"powerkey"[^\n]*no input device',
                         timeout=30)
        if i != 0:
            raise Fail("cubeos found no power button input device")
        vm.expect(SERVICES_UP, timeout=120)
        t_press = vm.elapsed()
        vm.monitor("system_powerdown")
        vm.expect(rb"power button pressed", timeout=60)
        vm.expect(rb'"event":"shutdown.start"', timeout=30)
        vm.expect(rb'"event":"service.stopped","msg":"api: ', timeout=60)
        vm.expect(rb'"event":"shutdown.done"', timeout=60)
        rc = vm.wait_exit(120)
        if rc is None:
            raise Fail("QEMU still running 120 s after the power button")
        if rc != 0:
            raise Fail("QEMU exited with status %d after the power button" % rc)
        vm.reader.join(5)
        down = "reboot: Power down" in vm.text()
        return "boot.done %.1f s; system_powerdown -> services stopped, QEMU exit 0 after %.1f s%s" % (
            secs, vm.elapsed() - t_press, " (Power down)" if down else "")
    finally:
        vm.stop()


def test_ctrl_alt_del():
    """Ctrl-Alt-Del on the keyboard is a clean reboot: services stopped, then the machine boots again."""
    vm = Vm("ctrl_alt_del", "bios")
    try:
        secs = boot(vm)
        vm.expect(SERVICES_UP, timeout=120)
        t_press = vm.elapsed()
        vm.monitor("sendkey ctrl-alt-delete")
        vm.expect(rb'"event":"signal"[^\n]*Ctrl-Alt-Del', timeout=60)
        vm.expect(rb'"event":"service.stopped","msg":"api: ', timeout=60)
        vm.expect(rb'"event":"shutdown.done"', timeout=60)
        vm.expect(rb"reboot: Restarting system", timeout=60)
        t_down = vm.elapsed()
        boot(vm)
        return "boot.done %.1f s; Ctrl-Alt-Del -> services stopped, restarting after %.1f s, booted again in %.1f s" % (
            secs, t_down - t_press, vm.elapsed() - t_down)
    finally:
        vm.stop()


TESTS = [("service_restart", test_service_restart), ("selftest", test_selftest), ("power_button", test_power_button),
         ("ctrl_alt_del", test_ctrl_alt_del)]
