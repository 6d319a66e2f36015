"""One sandbox's life through the official E2B Python SDK, against a booted
appliance in header mode (run by image/tests/test_sdk.py with the SDK's venv).

Environment: E2B_API_URL (the appliance's :3000), E2B_SANDBOX_URL (its proxy
on :80), E2B_API_KEY (the first-boot admin key), E2B_DOMAIN, and
CUBE_PROXY_URL (the proxy again, for a raw request after the kill),
CUBE_GUEST_RELEASE (the guest kernel's `uname -r`, when known).

Prints one "ok STEP detail" line per step and "flow: PASS" at the end; any
failure raises (non-zero exit, traceback on stderr).
"""
import importlib.metadata
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request

from e2b import AuthenticationException, NotFoundException, Sandbox, SandboxException, SandboxQuery

# Under TCG with nested KVM every call is slow-ish: generous request timeouts.
REQ = {"request_timeout": 120}


def ok(step, detail=""):
    print("ok %s %s" % (step, detail), flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def proxy_status(sandbox_id):
    """Status and body of a raw GET /health through the proxy, in header mode."""
    req = urllib.request.Request(os.environ["CUBE_PROXY_URL"] + "/health",
                                 headers={"E2b-Sandbox-Id": sandbox_id, "E2b-Sandbox-Port": "49983"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def main():
    version = importlib.metadata.version("e2b")
    tag = secrets.token_hex(4)
    value = "py-" + secrets.token_hex(6)
    t0 = time.monotonic()
    sbx = Sandbox.create(template="base", timeout=120, metadata={"suite": "image-sdk", "run": tag},
                         envs={"CUBE_VAR": value}, **REQ)
    ok("create", "e2b %s: sandbox %s in %.2f s" % (version, sbx.sandbox_id, time.monotonic() - t0))
    try:
        r = sbx.commands.run("echo $CUBE_VAR; uname -r; cat /proc/cmdline", timeout=120, request_timeout=120)
        lines = r.stdout.splitlines()
        check(r.exit_code == 0 and len(lines) >= 3, "commands.run: %r" % (r,))
        check(lines[0] == value, "envVar: got %r, want %r" % (lines[0], value))
        want = os.environ.get("CUBE_GUEST_RELEASE")
        check(not want or lines[1] == want, "uname -r: %r, want %r" % (lines[1], want))
        # The microVM's kernel has its virtio devices on the command line (no PCI).
        check("virtio_mmio.device=" in lines[2], "not the sandbox's kernel: /proc/cmdline %r" % lines[2])
        ok("commands", "CUBE_VAR=%s, uname -r %s, virtio-mmio guest" % (lines[0], lines[1]))

        payload = "hello from python %s\n" % tag
        sbx.files.write("/tmp/cube-sdk/hello.txt", payload, request_timeout=120)
        back = sbx.files.read("/tmp/cube-sdk/hello.txt", request_timeout=120)
        check(back == payload, "files.read: %r, want %r" % (back, payload))
        ok("files", "%d bytes written and read back" % len(payload))

        found = Sandbox.list(query=SandboxQuery(metadata={"run": tag}), **REQ).next_items()
        ids = [s.sandbox_id for s in found]
        check(ids == [sbx.sandbox_id], "list by metadata run=%s: %r" % (tag, ids))
        check(found[0].metadata.get("suite") == "image-sdk", "list metadata: %r" % found[0].metadata)
        others = Sandbox.list(query=SandboxQuery(metadata={"run": "no-such-" + tag}), **REQ).next_items()
        check(not others, "list with an unknown metadata value: %r" % others)
        ok("list", "metadata filter finds exactly %s" % sbx.sandbox_id)

        before = sbx.get_info(**REQ).end_at
        sbx.set_timeout(600, **REQ)
        after = sbx.get_info(**REQ).end_at
        check((after - before).total_seconds() > 300, "set_timeout: end %s -> %s" % (before, after))
        ok("set_timeout", "end moved by %.0f s" % (after - before).total_seconds())
    except BaseException:
        sbx.kill(**REQ)
        raise

    check(sbx.kill(**REQ) is True, "kill did not return True")
    check(not sbx.is_running(request_timeout=60), "is_running() after kill")
    status, body = proxy_status(sbx.sandbox_id)
    check(status == 502 and json.loads(body).get("sandboxId") == sbx.sandbox_id,
          "proxy after kill: %d %s" % (status, body))
    check(Sandbox.kill(sbx.sandbox_id, **REQ) is False, "a second kill should find nothing")
    ok("kill", "is_running() false, proxy 502, second kill false")

    try:
        Sandbox.create(template="base", api_key="e2b_" + "0" * 40, **REQ)
        raise AssertionError("a wrong API key created a sandbox")
    except AuthenticationException as e:
        ok("auth", "wrong key: %s" % type(e).__name__)

    try:
        Sandbox.create(template="no-such-template-" + tag, **REQ)
        raise AssertionError("an unknown template created a sandbox")
    except (NotFoundException, SandboxException) as e:
        check(isinstance(e, NotFoundException) or "not found" in str(e).lower(), "unknown template: %r" % e)
        ok("not_found", "unknown template: %s: %s" % (type(e).__name__, e))

    print("flow: PASS", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        print("flow: FAIL %s: %s" % (type(e).__name__, e), flush=True)
        raise
    sys.exit(0)
