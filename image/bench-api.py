"""Create-latency benchmark of the booted appliance (`make api-bench`, run by image/bench-api.sh).

Boots a fresh overlay of the qcow2 in QEMU with the api (:3000) and the proxy
(:80) forwarded to host ports, waits for the base template, then measures over
plain HTTP, as a client on the host would see it:

- create: POST /sandboxes {"templateID":"base"} until its 201 answer;
- create to first command: the same POST, then the first process.Process/Start
  through the proxy in header mode (E2b-Sandbox-Id / E2b-Sandbox-Port, the
  Connect envelope), running `echo ready` under `/bin/bash -l -c` as the SDK
  does, until the stream's end event (exit code 0, "ready" on stdout);

at concurrency 1 (BENCH_SERIAL creates in a row) and at BENCH_CONCURRENCY
(BENCH_ROUNDS rounds started together). One unmeasured create comes first (the
first restore reads the template snapshot from the data disk). Memory: the
console's `status` line "memory N MiB used" with no sandbox and with
BENCH_IDLE idle sandboxes, and each idle sandbox's memPss / memPrivate from
GET /sandboxes/{id}/metrics where the api reports them (older builds answer []).
Whether creates took a warm-pool VMM is read from the api's log (`logs api`,
its pool.take events).

Environment (image/bench-api.sh sets it): IMAGE, LOGDIR, TMP, ACCEL, ACCEL_NAME,
MEM, SMP, BOOT_TIMEOUT, BENCH_SERIAL (20), BENCH_CONCURRENCY (10),
BENCH_ROUNDS (3), BENCH_IDLE (10). The serial log is build/image/test-bench-api.log.
"""
import base64
import http.client
import json
import math
import os
import re
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "tests"))

from imagetest import Fail, Vm, boot, command, first_boot_password, login, poweroff  # noqa: E402
from test_sdk import API_KEY, free_port, wait_base_ready  # noqa: E402

SERIAL = int(os.environ.get("BENCH_SERIAL", "20"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
IDLE = int(os.environ.get("BENCH_IDLE", "10"))
TIMEOUT = 180  # seconds for one HTTP exchange: nested KVM under TCG is slow
ENVD_PORT = 49983
MEMORY = re.compile(r"memory +(\d+) MiB used of (\d+) MiB")


def progress(msg):
    print("api-bench: " + msg, file=sys.stderr, flush=True)


class Appliance:
    """The api and proxy of one booted appliance, reached through QEMU's forwards."""

    def __init__(self, api_port, proxy_port, key):
        self.api_port, self.proxy_port, self.key = api_port, proxy_port, key

    def call(self, method, path, body=None):
        """(status, parsed JSON or None) of one api call on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=TIMEOUT)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data,
                         headers={"X-API-Key": self.key, "Content-Type": "application/json"})
            r = conn.getresponse()
            text = r.read()
            return r.status, json.loads(text) if text else None
        finally:
            conn.close()

    def create(self):
        """Creates a base sandbox; returns (record, seconds to the 201)."""
        t0 = time.monotonic()
        status, body = self.call("POST", "/sandboxes", {"templateID": "base", "timeout": 600})
        took = time.monotonic() - t0
        if status != 201:
            raise Fail("POST /sandboxes: %d %r" % (status, body))
        return body, took

    def kill(self, sid):
        status, body = self.call("DELETE", "/sandboxes/" + sid)
        if status not in (204, 404):
            raise Fail("DELETE /sandboxes/%s: %d %r" % (sid, status, body))

    def first_command(self, rec):
        """Runs `echo ready` through the proxy (Connect server stream); returns when it ended."""
        msg = json.dumps({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", "echo ready"]}}).encode()
        headers = {
            "E2b-Sandbox-Id": rec["sandboxID"],
            "E2b-Sandbox-Port": str(ENVD_PORT),
            "Content-Type": "application/connect+json",
            "Connect-Protocol-Version": "1",
            "Authorization": "Basic " + base64.b64encode(b"user:").decode(),
        }
        if rec.get("envdAccessToken"):
            headers["X-Access-Token"] = rec["envdAccessToken"]
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=TIMEOUT)
        try:
            conn.request("POST", "/process.Process/Start", body=b"\0" + struct.pack(">I", len(msg)) + msg,
                         headers=headers)
            r = conn.getresponse()
            if r.status != 200:
                raise Fail("process.Process/Start in %s: %d %r" % (rec["sandboxID"], r.status, r.read()[:300]))
            return read_until_end(r, rec["sandboxID"])
        finally:
            conn.close()


def read_exact(r, n):
    out = b""
    while len(out) < n:
        chunk = r.read(n - len(out))
        if not chunk:
            raise Fail("the Start stream ended early")
        out += chunk
    return out


def read_until_end(r, sid):
    """Reads Connect envelopes up to the process's end event; checks its output."""
    stdout = b""
    while True:
        flags, length = struct.unpack(">BI", read_exact(r, 5))
        doc = json.loads(read_exact(r, length) or b"{}")
        if flags & 2:
            raise Fail("%s: the stream ended before the process did: %r" % (sid, doc))
        event = doc.get("event", {})
        if "data" in event and "stdout" in event["data"]:
            stdout += base64.b64decode(event["data"]["stdout"])
        if "end" in event:
            if event["end"].get("exitCode", 0) != 0 or stdout.strip() != b"ready":
                raise Fail("%s: echo ready ended %r with stdout %r" % (sid, event["end"], stdout))
            return


def create_then_command(app):
    """One create + first command; returns (sandbox id, create s, create-to-command s)."""
    t0 = time.monotonic()
    sid = None
    try:
        rec, took = app.create()
        sid = rec["sandboxID"]
        app.first_command(rec)
    except (OSError, http.client.HTTPException, ValueError) as e:
        # A connection cut or a garbled answer is a result too: report it as one.
        raise Fail("%s: %s: %s" % ("sandbox " + sid if sid else "POST /sandboxes", type(e).__name__, e))
    return sid, took, time.monotonic() - t0


def run_concurrent(app, n):
    """n create + first command at once; returns their results (raises the first failure)."""
    results, errors = [None] * n, []
    gate = threading.Barrier(n)

    def one(i):
        try:
            gate.wait()
            results[i] = create_then_command(app)
        except Exception as e:  # reported after every thread ended
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kill_all(app, [r[0] for r in results if r])
    if errors:
        raise errors[0]
    return results


def kill_all(app, ids):
    threads = [threading.Thread(target=app.kill, args=(sid,)) for sid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def percentile(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def row(label, secs):
    ms = [v * 1000 for v in secs]
    return "  %-34s %5d %8.0f %8.0f %8.0f %8.0f %8.0f" % (
        label, len(ms), percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), sum(ms) / len(ms), max(ms))


def memory_used(vm):
    out = command(vm, "status")
    m = MEMORY.search(out)
    if not m:
        raise Fail("no memory line in status: %r" % out)
    return int(m.group(1)), int(m.group(2)), out


def vmm_memory(app, sid):
    """(memPss, memPrivate) in MiB from the api's metrics, or None where it has none."""
    status, body = app.call("GET", "/sandboxes/%s/metrics" % sid)
    if status != 200 or not isinstance(body, list) or not body or "memPss" not in body[-1]:
        return None
    return body[-1]["memPss"] / 1048576, body[-1].get("memPrivate", 0) / 1048576


def idle_memory(vm, app):
    """(used MiB with none, used MiB with IDLE idle sandboxes, [(pss, private) MiB per sandbox])."""
    before, _total, _ = memory_used(vm)
    ids = []
    try:
        for _ in range(IDLE):
            sid, _took, _to_cmd = create_then_command(app)  # each one has run a command,
            ids.append(sid)  # then sits idle
        time.sleep(15)
        after, _, out = memory_used(vm)
        running = re.search(r"sandboxes +(\d+) running", out)
        if not running or int(running.group(1)) != IDLE:
            raise Fail("status does not show %d running sandboxes: %r" % (IDLE, out))
        per = [m for m in (vmm_memory(app, sid) for sid in ids) if m]
    finally:
        kill_all(app, ids)
    return before, after, per


def pool_takes(vm):
    """(creates served by a pooled VMM, creates restored cold), from the api's
    sandbox.create events (their from=pool|cold) in its last 1000 log lines;
    (0, 0) for a build without a pool."""
    out = command(vm, "logs api 1000", timeout=300).splitlines()
    creates = [ln for ln in out if '"event":"sandbox.create"' in ln]
    return sum("from=pool" in ln for ln in creates), sum("from=cold" in ln for ln in creates)


def memory_text(before, after, per):
    text = ('memory: appliance "used" (console status) %d MiB with no sandbox, %d MiB with %d idle\n'
            'sandboxes (each has run one command): %.1f MiB per idle sandbox (everything it costs the\n'
            'host: VMM process, guest pages it touched, KVM)\n' % (before, after, IDLE, (after - before) / IDLE))
    if per:
        pss = [p[0] for p in per]
        priv = [p[1] for p in per]
        text += ("per idle sandbox, GET /sandboxes/{id}/metrics (%d of %d answered): memPss avg %.1f MiB\n"
                 "(max %.1f), memPrivate avg %.1f MiB (max %.1f)\n" % (
                     len(per), IDLE, sum(pss) / len(pss), max(pss), sum(priv) / len(priv), max(priv)))
    else:
        text += "no PSS figure: GET /sandboxes/{id}/metrics of this build has no memPss\n"
    return text


def save_service_logs(vm, logged_in):
    """After a failure: the api's and the proxy's last log lines, from the console, into LOGDIR."""
    path = os.path.join(os.environ.get("LOGDIR", "."), "test-bench-api-services.log")
    try:
        if not logged_in:
            vm.pos = 0  # nothing was typed yet: the first prompt after boot
            login(vm, first_boot_password(vm), wrong_first=False)
        with open(path, "w") as f:
            for svc in ("api", "proxy"):
                f.write(command(vm, "logs %s 300" % svc, timeout=120))
        progress("the api's and the proxy's last log lines: " + path)
    except Exception as e:  # the original failure matters more
        progress("could not save the service logs: %s" % e)


def main():
    api_port, proxy_port = free_port(), free_port()
    net = "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:3000,hostfwd=tcp:127.0.0.1:%d-:80" % (api_port, proxy_port)
    vm = Vm("bench-api", "bios", net=net)
    logged_in = False
    try:
        secs = boot(vm)
        m = re.search(API_KEY, vm.out)
        if not m:
            raise Fail("no admin API key in the first-boot banner")
        app = Appliance(api_port, proxy_port, m.group(1).decode())
        progress("boot.done after %.1f s; waiting for the base template" % secs)
        build = wait_base_ready("http://127.0.0.1:%d" % api_port, app.key)
        progress("base template ready %.0f s later" % build)
        status, tpl = app.call("GET", "/templates/base")
        shape = "%s vCPU, %s MiB" % (tpl.get("cpuCount"), tpl.get("memoryMB")) if status == 200 else "?"

        sid, warm_create, warm_cmd = create_then_command(app)
        app.kill(sid)
        progress("first create %.0f ms, to first command %.0f ms (not in the table)" % (
            warm_create * 1000, warm_cmd * 1000))

        serial = []
        for _ in range(SERIAL):
            sid, took, to_cmd = create_then_command(app)
            app.kill(sid)
            serial.append((took, to_cmd))
        progress("concurrency 1: %d creates done" % SERIAL)
        parallel = []
        for k in range(ROUNDS):
            res = run_concurrent(app, CONCURRENCY)
            parallel += [(r[1], r[2]) for r in res]
            progress("concurrency %d: round %d of %d done" % (CONCURRENCY, k + 1, ROUNDS))

        vm.pos = 0
        login(vm, first_boot_password(vm), wrong_first=False)
        logged_in = True
        before, after, per = idle_memory(vm, app)
        progress("memory: %d MiB used with no sandbox, %d MiB with %d idle" % (before, after, IDLE))
        takes = pool_takes(vm)
        poweroff(vm)
    except Fail:
        if vm.proc.poll() is None and b"boot.done" in vm.out:
            save_service_logs(vm, logged_in)
        raise
    finally:
        vm.stop()

    creates = 1 + SERIAL + CONCURRENCY * ROUNDS + IDLE
    if takes[0] or takes[1]:
        pool = ("warm pool: of the %d creates, %d took a pooled VMM and %d restored cold"
                " (the api log's sandbox.create from=pool|cold)" % (creates, takes[0], takes[1]))
    else:
        pool = "warm pool: none in this build (no from=pool|cold in the api log): every create restored the snapshot"
    print("""CubeOS create latency (%s, %s)
accelerator: %s; appliance: %s vCPUs, %s MiB; template base: %s; host: %d CPUs, load average %.1f
%s
first create after boot (not below): %.0f ms to 201, %.0f ms to first command

  ms                                     n      P50      P95      P99      avg      max
%s
%s
%s
%s

%s
reference, CubeSandbox's published figures (other machine, bare-metal KVM, their own setup):
  create, 1-way: avg 51 ms, P95 58 ms; 50-way: avg 67 ms, P95 89 ms; memory overhead "<5 MB"
""" % (time.strftime("%Y-%m-%d", time.gmtime()), os.environ.get("GIT_REV", "?"),
       os.environ.get("ACCEL_NAME", " ".join(os.environ.get("ACCEL", "").split())) +
       ", sandboxes on the appliance's nested kvm_amd",
       os.environ.get("SMP", "2"), os.environ.get("MEM", "4096"), shape, os.cpu_count(), os.getloadavg()[0],
       pool, warm_create * 1000, warm_cmd * 1000,
       row("create (POST to 201), 1-way", [s[0] for s in serial]),
       row("create to first command, 1-way", [s[1] for s in serial]),
       row("create, %d-way" % CONCURRENCY, [p[0] for p in parallel]),
       row("create to first command, %d-way" % CONCURRENCY, [p[1] for p in parallel]),
       memory_text(before, after, per)))


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        sys.exit("api-bench: FAIL %s (serial log: %s/test-bench-api.log)" % (e, os.environ.get("LOGDIR", ".")))
