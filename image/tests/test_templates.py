"""The default templates built from Debian packages, through the official SDKs.

`make image` puts the root filesystems of `base` and `code-interpreter-v1`
(initramfs/template-rootfs.sh) on the qcow2's read-only templates partition;
at its first start the api boots each with the guest kernel and snapshots
it. This test boots the qcow2 (header mode, as test_sdk.py), waits for both
templates, then runs image/tests/sdk/templates_flow.py with the latest and
old Python SDKs (e2b + e2b-code-interpreter) and templates_flow.mjs with the
JS SDKs (e2b 2.51.0 + @e2b/code-interpreter 2.8.0): base has user, python3,
git and sudo; run_code/runCode keeps state, sees envVars, imports pandas and
numpy, returns a matplotlib PNG and errors. The console's `template list`
shows both templates ready.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # test_sdk, next to this file
from imagetest import Fail, boot, command, first_boot_password, login, poweroff
from test_sdk import HERE, SDK_JS, admin_key, forwarded_vm, run_flow, sdk_env, venv_for, wait_templates_ready

TEMPLATES = ("base", "code-interpreter-v1")


def template_flows():
    out = []
    for req, name, required in (("requirements-e2b-latest.txt", "tpl-py-latest", True),
                                ("requirements-e2b-old.txt", "tpl-py-old", False)):
        venv = venv_for(req)
        if venv or required:
            out.append((name, [os.path.join(venv or "/nonexistent", "bin", "python"),
                               os.path.join(HERE, "templates_flow.py")]))
    # The 4th argument is only what run_flow checks is installed.
    out.append(("tpl-js", ["node", os.path.join(HERE, "templates_flow.mjs"), SDK_JS, "@e2b/code-interpreter"]))
    return out


def test_templates():
    vm, api_port, proxy_port = forwarded_vm("templates")
    try:
        secs = boot(vm)
        key = admin_key(vm)
        url = "http://127.0.0.1:%d" % api_port
        build = wait_templates_ready(url, key, TEMPLATES)
        env = sdk_env(api_port, proxy_port, key)
        results = ["%s (%s)" % (name, run_flow(name, argv, env)) for name, argv in template_flows()]
        vm.pos = 0
        notes = login(vm, first_boot_password(vm), wrong_first=False)
        out = command(vm, "template list")
        for name in TEMPLATES:
            if not re.search(r"\n%s +ready +" % re.escape(name), out):
                raise Fail("template list does not show %s ready: %r" % (name, out))
        poweroff(vm)
        notes.insert(0, "boot.done %.1f s, templates ready %.0f s later; %s" % (secs, build, "; ".join(results)))
        return "; ".join(notes)
    finally:
        vm.stop()


TESTS = [("templates", test_templates)]
