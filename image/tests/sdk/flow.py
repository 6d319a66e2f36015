"""One sandbox's life through the official E2B Python SDK, against a booted
appliance in header mode (run by image/tests/test_sdk.py with the SDK's venv).

Environment: E2B_API_URL (the appliance's :3000), E2B_SANDBOX_URL (its proxy
on :80), E2B_API_KEY (the first-boot admin key), E2B_DOMAIN, and
CUBE_PROXY_URL (the proxy again, for a raw request after the kill),
CUBE_GUEST_RELEASE (the guest kernel's `uname -r`, when known).

Steps: create (metadata, envVars), commands, files, list by metadata,
set_timeout, metrics, get_host to an HTTP server in the sandbox (through the
agent's port bridge; a port with nothing listening answers 502), access
tokens (secure by default; a wrong X-Access-Token is refused), pause then
connect (the file still there, commands still working), create_snapshot, a
sandbox from it, list_snapshots, fork and delete_snapshot, kill, expiry after a
short set_timeout, N concurrent creates (CUBE_SDK_CONCURRENT), a wrong API key, an unknown
template.

Prints one "ok STEP detail" line per step and "flow: PASS" at the end; any
failure raises (non-zero exit, traceback on stderr).
"""
import importlib.metadata
import concurrent.futures
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request

from e2b import AuthenticationException, NotFoundException, Sandbox, SandboxException, SandboxQuery, SandboxState

# Under TCG with nested KVM every call is slow-ish: generous request timeouts.
REQ = {"request_timeout": 120}


def ok(step, detail=""):
    print("ok %s %s" % (step, detail), flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def http(url, headers, method="GET", body=None):
    """(status, body text) of one raw HTTP request."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def proxy_status(sandbox_id):
    """Status and body of a raw GET /health through the proxy, in header mode."""
    return http(os.environ["CUBE_PROXY_URL"] + "/health",
                {"E2b-Sandbox-Id": sandbox_id, "E2b-Sandbox-Port": "49983"})


def metrics(sbx):
    """get_metrics(): one sample with the VMM's figures."""
    got = sbx.get_metrics(**REQ)
    check(len(got) == 1, "get_metrics: %r" % (got,))
    m = got[0]
    check(m.cpu_count >= 1 and 0 <= m.cpu_used_pct <= 100, "metrics cpu: %r" % (m,))
    check(m.mem_total >= 64 << 20 and 0 < m.mem_used <= m.mem_total, "metrics memory: %r" % (m,))
    check(m.disk_total > 0 and m.disk_used >= 0, "metrics disk: %r" % (m,))
    ok("metrics", "cpu %d x %.1f%%, memory %d of %d MiB, disk layer %d KiB of %d MiB" % (
        m.cpu_count, m.cpu_used_pct, m.mem_used >> 20, m.mem_total >> 20, m.disk_used >> 10, m.disk_total >> 20))


# The base template has python3 (Debian); the minimal rootfs has busybox.
SERVE = ("cd /tmp/www && if command -v python3 >/dev/null; then exec python3 -m http.server 8080 --bind 127.0.0.1; "
         "else exec busybox httpd -f -p 8080 -h /tmp/www; fi")


def sandbox_state(sbx):
    """For a failure message: the sandbox's listening sockets and servers, or,
    when it no longer answers, the last lines of its console (GET
    /sandboxes/{id}/logs)."""
    try:
        seen = sbx.commands.run("(ss -ltn || netstat -ltn) 2>&1; ps 2>&1 | grep -e [h]ttp; true", request_timeout=60)
        return repr(seen.stdout)
    except Exception as e:  # the sandbox is gone: what did its console say?
        return "%s: %s; %s" % (type(e).__name__, e, console_tail(sbx.sandbox_id))


# What the guest kernel prints when one of its vCPUs stopped making progress.
GUEST_STALL = "rcu_sched detected stalls"


def log_lines(sandbox_id, query, n):
    """(status, last n lines) of GET /sandboxes/{id}/logs<query>; never raises:
    it only serves failure messages."""
    try:
        status, text = http(os.environ["E2B_API_URL"] + "/sandboxes/%s/logs%s" % (sandbox_id, query),
                            {"X-API-Key": os.environ["E2B_API_KEY"]})
    except OSError as e:
        return 0, ["(%s)" % e]
    try:
        return status, [entry["line"] for entry in json.loads(text)["logs"]][-n:]
    except (ValueError, KeyError, TypeError):
        return status, [text[-2000:]]


def console_tail(sandbox_id, wait_for_stall=0):
    """The last lines of a sandbox's console and of its VMM log, for a
    failure message. wait_for_stall: seconds to keep reading while the
    console shows no vCPU stall report (the guest prints one ~21 s into a
    stall); a line "guest_stall <id>" goes to stdout when it does."""
    deadline = time.monotonic() + wait_for_stall
    while True:
        status, lines = log_lines(sandbox_id, "", 40)
        stalled = any(GUEST_STALL in line for line in lines)
        if stalled or time.monotonic() >= deadline:
            break
        time.sleep(3)
    if stalled:
        print("guest_stall %s" % sandbox_id, flush=True)
    vstatus, vmm = log_lines(sandbox_id, "?source=vmm", 20)
    return "console of %s (logs %d):\n  %s\nits VMM log (logs?source=vmm %d):\n  %s" % (
        sandbox_id, status, "\n  ".join(lines), vstatus, "\n  ".join(vmm))


def get_host(sbx, tag):
    """An HTTP server started in the sandbox (python3's on 127.0.0.1 only, or
    busybox httpd), reached through the proxy (and the agent's port bridge) by
    the host name get_host() gives (Host header: no DNS in header mode); a
    port with nothing listening is a 502."""
    page = "served from %s %s\n" % (sbx.sandbox_id, tag)
    sbx.files.write("/tmp/www/index.html", page, request_timeout=120)
    sbx.commands.run(SERVE, background=True, request_timeout=120)
    host = sbx.get_host(8080)
    check(host == "8080-%s.%s" % (sbx.sandbox_id, os.environ["E2B_DOMAIN"]), "get_host(8080): %r" % host)
    status, body = None, None
    for _ in range(40):  # the server needs a moment to listen
        status, body = http(os.environ["CUBE_PROXY_URL"] + "/index.html", {"Host": host})
        if status == 200:
            break
        time.sleep(0.5)
    if status != 200 or body != page:
        raise AssertionError("GET http://%s/index.html: %s %r; in the sandbox: %s" % (host, status, body,
                                                                                 sandbox_state(sbx)))
    closed = sbx.get_host(8081)
    status, text = http(os.environ["CUBE_PROXY_URL"] + "/", {"Host": closed})
    err = json.loads(text) if status == 502 else {}
    check(status == 502 and err.get("code") == 502 and err.get("sandboxId") == sbx.sandbox_id
          and "port is not open" in err.get("message", ""), "GET http://%s/: %s %r" % (closed, status, text))
    ok("get_host", "%s served %d bytes through the proxy; %s (nothing listening): 502 %r" % (
        host, len(body), closed, err["message"]))


def access_token(sbx):
    """secure is the default: the record has an envd token, the agent
    refuses a request without it or with a wrong one."""
    status, body = http(os.environ["E2B_API_URL"] + "/sandboxes/" + sbx.sandbox_id,
                        {"X-API-Key": os.environ["E2B_API_KEY"]})
    check(status == 200, "GET /sandboxes/%s: %s %s" % (sbx.sandbox_id, status, body))
    token = json.loads(body).get("envdAccessToken")
    check(token, "no envdAccessToken: the sandbox is not secured: %s" % body)
    url = os.environ["CUBE_PROXY_URL"] + "/process.Process/List"
    base = {"E2b-Sandbox-Id": sbx.sandbox_id, "E2b-Sandbox-Port": "49983", "Content-Type": "application/json"}
    results = {}
    for name, tok in (("none", None), ("wrong", "0" * len(token)), ("right", token)):
        headers = dict(base, **({"X-Access-Token": tok} if tok else {}))
        results[name] = http(url, headers, "POST", b"{}")
    check(results["none"][0] == 401 and results["wrong"][0] == 401, "without/wrong token: %r" % results)
    check(results["right"][0] == 200, "with the token: %r" % (results["right"],))
    ok("access_token", "secure by default; no token 401, wrong token 401, right token 200")


def pause_connect(sbx, path, payload):
    """pause (the proxy then answers 502), connect: the file written before is
    still there and commands work. Returns the connected Sandbox."""
    t0 = time.monotonic()
    check(sbx.pause(**REQ) is not False, "pause returned False (already paused?)")
    paused = time.monotonic() - t0
    status, body = proxy_status(sbx.sandbox_id)
    check(status == 502, "proxy while paused: %d %s" % (status, body))
    info = [s for s in Sandbox.list(query=SandboxQuery(state=[SandboxState.PAUSED]), **REQ).next_items()
            if s.sandbox_id == sbx.sandbox_id]
    check(info and str(getattr(info[0].state, "value", info[0].state)).lower() == "paused",
          "list state=paused: %r" % info)
    t0 = time.monotonic()
    again = Sandbox.connect(sbx.sandbox_id, **REQ)
    resumed = time.monotonic() - t0
    check(again.sandbox_id == sbx.sandbox_id, "connect gave %s" % again.sandbox_id)
    back = again.files.read(path, request_timeout=120)
    check(back == payload, "after resume files.read: %r, want %r" % (back, payload))
    r = again.commands.run("cat %s; echo resumed" % path, timeout=120, request_timeout=120)
    check(r.exit_code == 0 and r.stdout == payload + "resumed\n", "after resume commands.run: %r" % (r,))
    ok("pause_connect", "paused in %.2f s (proxy 502, listed paused), connected in %.2f s, file and commands intact" % (
        paused, resumed))
    return again


def snapshot_fork(sbx, path, payload):
    """create_snapshot of the running sandbox (it goes on), a sandbox from the
    snapshot with the file and a background process the source had,
    list_snapshots by sandbox, fork(count=2) with the file in each fork,
    delete_snapshot. Skipped by an SDK without them."""
    if not hasattr(sbx, "create_snapshot") or not hasattr(sbx, "fork"):
        print("skip snapshot_fork (e2b %s has no create_snapshot/fork)" % importlib.metadata.version("e2b"),
              flush=True)
        return
    sbx.commands.run("sleep 4242", background=True, request_timeout=120)
    t0 = time.monotonic()
    snap = sbx.create_snapshot(**REQ)
    took = time.monotonic() - t0
    r = sbx.commands.run("cat %s" % path, timeout=120, request_timeout=120)
    check(r.stdout == payload, "the source after its snapshot: %r" % (r,))
    listed = [s.snapshot_id for s in Sandbox.list_snapshots(sandbox_id=sbx.sandbox_id, **REQ).next_items()]
    check(snap.snapshot_id in listed, "list_snapshots(sandbox_id): %r lacks %s" % (listed, snap.snapshot_id))
    made = []
    try:
        clone = Sandbox.create(template=snap.snapshot_id, timeout=300, **REQ)
        made.append(clone)
        back = clone.files.read(path, request_timeout=120)
        check(back == payload, "the snapshot's sandbox: files.read %r, want %r" % (back, payload))
        r = clone.commands.run("grep -l '^sleep$' /proc/[0-9]*/comm | wc -l", timeout=120, request_timeout=120)
        check(r.stdout.strip() not in ("", "0"), "the snapshot's sandbox has no `sleep 4242`: %r" % (r,))
        forks = sbx.fork(count=2, **REQ)
        made += [f for f in forks if not isinstance(f, Exception)]
        check(len(forks) == 2 and all(not isinstance(f, Exception) for f in forks), "fork(count=2): %r" % forks)
        for f in forks:
            check(f.files.read(path, request_timeout=120) == payload, "fork %s lacks the file" % f.sandbox_id)
    finally:
        for s in made:
            s.kill(**REQ)
    check(Sandbox.delete_snapshot(snap.snapshot_id, **REQ) is True, "delete_snapshot did not return True")
    check(Sandbox.delete_snapshot(snap.snapshot_id, **REQ) is False, "a second delete_snapshot found it")
    ok("snapshot_fork", "snapshot %s in %.2f s (source runs on), its sandbox has the file and the process, "
       "listed by sandbox, fork(count=2) both with the file, deleted" % (snap.snapshot_id, took))


def expiry(tag):
    """set_timeout(short): the TTL ends the sandbox (is_running false, not listed)."""
    sbx = Sandbox.create(template="base", timeout=120, metadata={"suite": "image-sdk", "run": tag + "-ttl"}, **REQ)
    try:
        check(sbx.commands.run("true", request_timeout=120).exit_code == 0, "command in the TTL sandbox")
        t0 = time.monotonic()
        sbx.set_timeout(3, **REQ)
        while sbx.is_running(request_timeout=60):
            check(time.monotonic() - t0 < 60, "still running 60 s after set_timeout(3)")
            time.sleep(0.5)
        gone = time.monotonic() - t0
    except Exception as e:
        detail = console_tail(sbx.sandbox_id, wait_for_stall=30)
        sbx.kill(**REQ)
        raise AssertionError("sandbox %s: %r; %s" % (sbx.sandbox_id, e, detail)) from e
    found = Sandbox.list(query=SandboxQuery(metadata={"run": tag + "-ttl"}), **REQ).next_items()
    check(not found, "list after expiry: %r" % found)
    ok("expiry", "set_timeout(3): gone after %.1f s, not listed" % gone)


def concurrent_creates(tag, n):
    """n creates at once, each sandbox runs a command, then all are killed."""
    def one(i):
        s = Sandbox.create(template="base", timeout=300, metadata={"suite": "image-sdk", "run": tag + "-many"},
                           envs={"CUBE_N": str(i)}, **REQ)
        try:
            r = s.commands.run("echo $CUBE_N", timeout=120, request_timeout=120)
        except Exception as e:
            detail = console_tail(s.sandbox_id, wait_for_stall=30)
            s.kill(**REQ)
            raise AssertionError("sandbox %s: %r; %s" % (s.sandbox_id, e, detail)) from e
        return s, r.stdout.strip()

    t0 = time.monotonic()
    made, errors = [], []
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        for f in [ex.submit(one, i) for i in range(n)]:
            try:
                made.append(f.result())
            except Exception as e:  # every sandbox is still killed below
                errors.append(e)
    took = time.monotonic() - t0
    listed = len(Sandbox.list(query=SandboxQuery(metadata={"run": tag + "-many"}), **REQ).next_items())
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        killed = list(ex.map(lambda sr: sr[0].kill(**REQ), made))
    left = Sandbox.list(query=SandboxQuery(metadata={"run": tag + "-many"}), **REQ).next_items()
    check(not left, "after killing all: %r" % left)
    check(all(killed), "killed %r" % killed)
    outs = [out for _, out in made]
    check(all(o.isdigit() and int(o) < n for o in outs) and len(set(outs)) == len(outs), "outputs: %r" % outs)
    check(not errors, "%d of %d concurrent creates failed: %r" % (len(errors), n, errors[:3]))
    check(listed == len(made), "listed %d of %d made" % (listed, len(made)))
    ok("concurrent", "%d creates + a command each in %.1f s, all listed, all killed" % (n, took))


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

        metrics(sbx)
        if os.environ.get("CUBE_SDK_GETHOST", "1") == "1":
            get_host(sbx, tag)
        else:
            print("skip get_host (run with one SDK of each language: the URL is the same in all)", flush=True)
        access_token(sbx)
        sbx = pause_connect(sbx, "/tmp/cube-sdk/hello.txt", payload)
        snapshot_fork(sbx, "/tmp/cube-sdk/hello.txt", payload)
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

    # The many-restore steps: see FULL in image/tests/test_sdk.py.
    if os.environ.get("CUBE_SDK_FULL") == "1":
        expiry(tag)
        concurrent_creates(tag, int(os.environ.get("CUBE_SDK_CONCURRENT", "20")))
    else:
        print("skip expiry, concurrent (CUBE_SDK_FULL=1 runs them)", flush=True)

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
