"""The official E2B SDKs against the booted appliance (header mode: no DNS, no TLS).

QEMU forwards two host ports to the appliance's api (:3000) and proxy (:80).
The admin API key comes from the first-boot banner; once the api has built
the base template (GET /templates says ready), image/tests/sdk/flow.py runs
in the Python SDK venvs (latest and old) and image/tests/sdk/flow.mjs with the
JS SDKs (e2b 2.51.0, e2b-prev 2.50.0, e2b-old 2.46.1) of agent/tests/sdk-js: create with metadata and
envVars, a command that sees the envVar and the guest kernel, a file written
and read back, list filtered by metadata, setTimeout, getMetrics (the VMM's
figures), getHost to an HTTP server in the sandbox (through the proxy and the
agent's port bridge by Host name; 502 for a port with nothing listening), access tokens (secure by default; no or a wrong X-Access-Token
gets 401 from the agent), pause (proxy 502, listed paused) then connect (the
file still there, commands work), kill (isRunning false, the proxy answers
502), a wrong key (auth error), an unknown template (not found). The
many-sandbox steps (expiry after a 3 s setTimeout; 20 concurrent creates, each
running a command) run on the LAN path of test_sdk_https, and here only with
CUBE_SDK_FULL=1 (see FULL below). Then the console: `sandbox list` shows a sandbox made over HTTP,
`template list` shows base ready, and the appliance powers off cleanly.

The SDKs come from `make sdk` / agent/tests/sdk-deps.sh (venvs under
$CUBEOS_CACHE/venv/<sha256 of the requirements file>, node_modules in
agent/tests/sdk-js); the latest Python and the JS e2b are required, the old
ones run when present. Each flow's output is in build/image/test-sdk-<flow>.out.
"""
import hashlib
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

from imagetest import IMAGE, LOGDIR, Fail, Vm, boot, command, first_boot_password, login, poweroff

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(REPO, "image", "tests", "sdk")
SDK_JS = os.path.join(REPO, "agent", "tests", "sdk-js")
SDK_PY = os.path.join(REPO, "agent", "tests", "sdk-py")
CACHE = os.environ.get("CUBEOS_CACHE", "/var/cache/cubeos")
API_KEY = rb"admin API key: +(e2b_[0-9a-f]{40})"
# The base template is built at the api's first start: a guest boot nested under TCG.
TEMPLATE_TIMEOUT = 900
FLOW_TIMEOUT = 600


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def forwarded_vm(name):
    """A Vm of the qcow2 whose api (:3000) and proxy (:80) QEMU forwards to two
    free host ports: (vm, api_port, proxy_port)."""
    api_port, proxy_port = free_port(), free_port()
    net = "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:3000,hostfwd=tcp:127.0.0.1:%d-:80" % (api_port, proxy_port)
    return Vm(name, "bios", net=net), api_port, proxy_port


def admin_key(vm):
    """The admin API key the first-boot banner printed."""
    m = re.search(API_KEY, vm.out)
    if not m:
        raise Fail("no admin API key in the first-boot banner")
    return m.group(1).decode()


def api(url, key, path, method="GET", body=None, timeout=30):
    """(status, parsed JSON or text) of one call to the appliance's api."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"X-API-Key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode(errors="replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def wait_templates_ready(url, key, names=("base",)):
    """Polls GET /templates until every template in names is ready; the seconds it took.
    A failed build ends the wait at once."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < TEMPLATE_TIMEOUT:
        try:
            status, body = api(url, key, "/templates")
            last = (status, body)
            states = {t.get("templateID"): t for t in body} if status == 200 and isinstance(body, list) else {}
            for name in names:
                if states.get(name, {}).get("buildStatus") == "error":
                    raise Fail("the %s template build failed: %r" % (name, states[name]))
            if all(states.get(n, {}).get("buildStatus") == "ready" for n in names):
                return time.monotonic() - t0
        except (OSError, urllib.error.URLError) as e:
            last = e  # the api (or QEMU's forward) is not up yet
        time.sleep(2)
    raise Fail("%s not ready after %d s (last answer %r)" % (", ".join(names), TEMPLATE_TIMEOUT, last))


def guest_release():
    """The guest kernel's release, from the build's vmlinux next to the image (or None)."""
    path = os.path.join(os.path.dirname(os.path.dirname(IMAGE)), "guest", "vmlinux")
    try:
        with open(path, "rb") as f:
            m = re.search(rb"Linux version (\S+) ", f.read())
    except OSError:
        return None
    return m.group(1).decode() if m else None


def venv_for(requirements):
    with open(os.path.join(SDK_PY, requirements), "rb") as f:
        venv = os.path.join(CACHE, "venv", hashlib.sha256(f.read()).hexdigest())
    return venv if os.path.exists(os.path.join(venv, ".cubeos-complete")) else None


def flows():
    """(name, argv) of every SDK flow to run: the required ones always (run_flow
    fails clearly when their SDK is missing), the old SDKs when installed."""
    out = []
    for req, name, required in (("requirements-e2b-latest.txt", "py-latest", True),
                                ("requirements-e2b-old.txt", "py-old", False)):
        venv = venv_for(req)
        if venv or required:
            out.append((name, [os.path.join(venv or "/nonexistent", "bin", "python"),
                               os.path.join(HERE, "flow.py")]))
    js_ready = os.path.exists(os.path.join(SDK_JS, "node_modules", ".cubeos-lock-sha256"))
    for pkg, required in (("e2b", True), ("e2b-prev", False), ("e2b-old", False)):
        if js_ready or required:
            out.append(("js-" + pkg, ["node", os.path.join(HERE, "flow.mjs"), SDK_JS, pkg]))
    return out


def run_flow(name, argv, env, many=False):
    """Runs one flow; returns its "ok create ..." detail. Its output goes to
    LOGDIR. many: the flow is on a path where the many-sandbox steps run with
    the latest SDK of each language (see FULL)."""
    need = os.path.join(SDK_JS, "node_modules", argv[3]) if argv[0] == "node" else argv[0]
    if not os.path.exists(need):
        raise Fail("%s: %s missing (run: make sdk, or bash agent/tests/sdk-deps.sh)" % (name, need))
    log = os.path.join(LOGDIR, "test-sdk-%s.out" % name)
    # getHost to a server in the sandbox runs with the latest SDK of each
    # language only: the URL is computed the same way by all of them, and the
    # proxy path behind it is one and the same.
    latest = name.endswith(("py-latest", "js-e2b"))
    env = dict(env, CUBE_SDK_GETHOST="1" if latest else "0")
    if many:
        env["CUBE_SDK_FULL"] = "1" if latest else FULL
    rerun = ""
    for attempt in (1, 2):
        rc, text = run_once(argv, env, log)
        if rc == 0 and "flow: PASS" in text:
            break
        stalls = re.findall(r"^guest_stall (\S+)", text, re.M)
        # A flow without the console check (templates_flow) sees the same
        # stall as the agent's port never answering: the VMM gives up on the
        # vsock connection after 20 s and the proxy says the port is not open.
        mute = "The sandbox is running but port is not open" in text
        # Nested under emulation a restored sandbox's vCPU now and then spins
        # without progress (its kernel reports an RCU stall; one host vCPU
        # stays busy) while its peers run on: an emulator fault like the
        # appliance panics imagetest reruns for, seen under TCG only. Such a
        # flow is reported and run once more; a second failure counts.
        if attempt == 1 and (stalls or mute) and "tcg" in os.environ.get("ACCEL", ""):
            os.replace(log, log[:-len(".out")] + ".stall.out")
            why = ", ".join(stalls) if stalls else "the agent's port did not answer"
            rerun = "; rerun after a guest vCPU stall under TCG (%s)" % why
            continue
        last = [ln for ln in text.splitlines() if ln.strip()][-3:]
        raise Fail("%s failed (exit %d): %s (full output: %s)%s" % (name, rc, " | ".join(last), log, rerun))
    m = re.search(r"^ok create (.*)$", text, re.M)
    gaps = re.findall(r"^gap (\S+)", text, re.M)
    skips = re.findall(r"^skip (.*?) \(", text, re.M)
    return ((m.group(1) if m else "ok") + ("; known gaps: " + ", ".join(gaps) if gaps else "") +
            ("; skipped: " + ", ".join(skips) if skips else "") + rerun)


def run_once(argv, env, log):
    """(exit code, output) of one run of a flow; the output is also in log."""
    try:
        p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=FLOW_TIMEOUT)
        text = p.stdout.decode(errors="replace")
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode(errors="replace") + "\n(timed out after %d s)\n" % FLOW_TIMEOUT
        rc = -1
    with open(log, "w") as f:
        f.write(text)
    return rc, text


# The many-sandbox steps (expiry, 20 concurrent creates) run on the LAN path
# (test_sdk_https: a TAP on a bridge) with the latest SDK of each language,
# and with every SDK when CUBE_SDK_FULL=1. Not on QEMU's user-mode forwards
# of this test by default: with 20 clients at once the forward resets a
# connection now and then that never reached the appliance (seen in a
# capture of the appliance's NIC: no packet of it there).
FULL = os.environ.get("CUBE_SDK_FULL", "0")


def concurrent_creates():
    """How many sandboxes the concurrent step creates at once: 20, the
    issue's figure; CUBE_SDK_CONCURRENT overrides."""
    return int(os.environ.get("CUBE_SDK_CONCURRENT") or 20)


def sdk_env(api_port, proxy_port, key):
    # Nothing of this machine's own E2B setup or proxies may leak in.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("E2B_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({
        "E2B_API_URL": "http://127.0.0.1:%d" % api_port,
        "E2B_SANDBOX_URL": "http://127.0.0.1:%d" % proxy_port,
        "CUBE_PROXY_URL": "http://127.0.0.1:%d" % proxy_port,
        "E2B_API_KEY": key,
        "E2B_DOMAIN": "cubeos.local",
        "NO_PROXY": "*", "no_proxy": "*",
    })
    env["CUBE_SDK_CONCURRENT"] = str(concurrent_creates())
    env["CUBE_SDK_FULL"] = FULL
    release = guest_release()
    if release:
        env["CUBE_GUEST_RELEASE"] = release
    return env


def console_lists(vm, url, key):
    """sandbox list / template list / sandbox kill on the console, with one sandbox made over HTTP."""
    status, body = api(url, key, "/sandboxes", "POST",
                       {"templateID": "base", "timeout": 300, "metadata": {"made-by": "image-test"}}, timeout=120)
    if status != 201:
        raise Fail("POST /sandboxes: %d %r" % (status, body))
    sid = body["sandboxID"]
    try:
        out = command(vm, "sandbox list")
        if not re.search(r"\n%s +base +running +\S+ \S+ +\S+ \S+ +made-by=image-test\r*\n" % sid, out):
            raise Fail("sandbox list does not show %s: %r" % (sid, out))
        out = command(vm, "template list")
        if not re.search(r"\nbase +ready +\d+ +\d+ MiB +\d+ MiB ", out):
            raise Fail("template list does not show base ready: %r" % out)
        out = command(vm, "sandbox kill " + sid, timeout=120)
        if "sandbox %s stopped" % sid not in out:
            raise Fail("sandbox kill %s: %r" % (sid, out))
        out = command(vm, "sandbox kill " + sid, timeout=120)
        if "not found" not in out or "[exit 1]" not in out:
            raise Fail("a second sandbox kill %s: %r" % (sid, out))
    finally:
        api(url, key, "/sandboxes/" + sid, "DELETE", timeout=120)
    out = command(vm, "sandbox list")
    if sid in out:
        raise Fail("sandbox list still shows %s after sandbox kill: %r" % (sid, out))
    status, _ = api(url, key, "/sandboxes/" + sid, "GET", timeout=60)
    if status != 404:
        raise Fail("GET /sandboxes/%s after sandbox kill: %d, not 404" % (sid, status))
    return sid


def test_sdk():
    vm, api_port, proxy_port = forwarded_vm("sdk")
    try:
        secs = boot(vm)
        key = admin_key(vm)
        url = "http://127.0.0.1:%d" % api_port
        build = wait_templates_ready(url, key)
        env = sdk_env(api_port, proxy_port, key)
        results, skipped = [], []
        for name, argv in flows():
            results.append("%s (%s)" % (name, run_flow(name, argv, env, many=FULL == "1")))
        for name in ("py-old", "js-e2b-prev", "js-e2b-old"):
            if not any(r.startswith(name + " ") for r in results):
                skipped.append(name)
        vm.pos = 0
        notes = login(vm, first_boot_password(vm), wrong_first=False)
        sid = console_lists(vm, url, key)
        out = command(vm, "status")
        for svc in ("api", "proxy"):
            if not re.search(r"\n +%s +running +\d+ +0 " % svc, out):
                raise Fail("status: %s is not running without restarts: %r" % (svc, out))
        poweroff(vm)
        notes.insert(0, "boot.done %.1f s, base ready %.0f s later; %s%s; console listed %s" % (
            secs, build, "; ".join(results), "; skipped (not installed): " + ", ".join(skipped) if skipped else "",
            sid))
        return "; ".join(notes)
    finally:
        vm.stop()


TESTS = [("sdk", test_sdk)]
