"""Create-latency benchmark of the booted appliance (`make api-bench`, run by image/bench-api.sh).

Boots a fresh overlay of the qcow2 in QEMU with the api (:3000) and the proxy
(:80) forwarded to host ports, waits for the base template, then measures over
plain HTTP, as a client on the host would see it:

- create: POST /sandboxes {"templateID":"base"} until its 201 answer;
- create to first command: the same POST, then the first process.Process/Start
  through the proxy in header mode (E2b-Sandbox-Id / E2b-Sandbox-Port, the
  Connect envelope), running `echo ready` under `/bin/bash -l -c` as the SDK
  does, until the stream's end event (exit code 0, "ready" on stdout);
- create to first runCode: POST /sandboxes {"templateID":"code-interpreter-v1"},
  then POST /execute {"code":"1 + 1"} on the interpreter port (49999) through the
  proxy, as the code-interpreter SDKs' runCode does, until end_of_execution (a
  main result "2");

at concurrency 1 (BENCH_SERIAL creates in a row) and at BENCH_CONCURRENCY
(BENCH_ROUNDS rounds started together), first with the warm pool (cube-api's
default, 2 per template), then without one (PUT /admin/pool {"*":0}; then back
to 2). One unmeasured create comes first (the first restore reads the template
snapshot from the data disk). Memory: the console's `status` line "memory N MiB
used" with no sandbox and with each count of BENCH_IDLE idle sandboxes, and
each idle sandbox's memPss / memPrivate from GET /sandboxes/{id}/metrics.
Whether creates took a warm-pool VMM is read from the api's log (`logs api`,
its pool.take events).

Environment (image/bench-api.sh sets it): IMAGE, LOGDIR, TMP, ACCEL, ACCEL_NAME,
MEM, SMP, BOOT_TIMEOUT, BENCH_SERIAL (20), BENCH_CONCURRENCY (10),
BENCH_ROUNDS (3), BENCH_IDLE (10,50,100: counts of idle sandboxes). The serial log is build/image/test-bench-api.log.
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

from imagetest import PANIC, PANIC_ATTEMPTS, Fail, boot, command, first_boot_password, login, poweroff  # noqa: E402
from test_sdk import admin_key, forwarded_vm, wait_templates_ready  # noqa: E402
from test_templates import TEMPLATES  # noqa: E402

SERIAL = int(os.environ.get("BENCH_SERIAL", "20"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
IDLE_LEVELS = sorted(int(n) for n in os.environ.get("BENCH_IDLE", "10,50,100").split(",") if n.strip())
TIMEOUT = 180  # seconds for one HTTP exchange: nested KVM under TCG is slow
ENVD_PORT = 49983
INTERP_PORT = 49999
CODE_TEMPLATE = "code-interpreter-v1"
POOL_SIZE = 2  # cube-api's default --pool-size, restored after the cold phase
MEMORY = re.compile(r"memory +(\d+) MiB used of (\d+) MiB")


def progress(msg):
    print("api-bench: " + msg, file=sys.stderr, flush=True)


class Appliance:
    """The api and proxy of one booted appliance, reached through QEMU's forwards."""

    def __init__(self, api_port, proxy_port, key):
        self.api_port, self.proxy_port, self.key = api_port, proxy_port, key

    # QEMU's user-mode network resets a forwarded connection now and then
    # when the emulated appliance is slow to take it (seen under 10-way load,
    # with nothing in the api's log: the request never reached it). A reset
    # before any answer is retried once and counted, and the count is printed
    # with the results. Had a reset create reached the api after all, its
    # sandbox would end with its 600 s timeout: the TTL reaper removes it.
    resets = 0

    def call(self, method, path, body=None):
        """(status, parsed JSON or None) of one api call on a fresh connection."""
        for attempt in (1, 2):
            conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=TIMEOUT)
            try:
                data = json.dumps(body).encode() if body is not None else None
                conn.request(method, path, body=data,
                             headers={"X-API-Key": self.key, "Content-Type": "application/json"})
                r = conn.getresponse()
                text = r.read()
                return r.status, json.loads(text) if text else None
            except (ConnectionResetError, http.client.RemoteDisconnected):
                if attempt == 2:
                    raise
                Appliance.resets += 1
                progress("%s %s: connection reset before an answer, retried" % (method, path))
            finally:
                conn.close()

    def create(self, template="base"):
        """Creates a sandbox; returns (record, seconds to the 201)."""
        t0 = time.monotonic()
        status, body = self.call("POST", "/sandboxes", {"templateID": template, "timeout": 600})
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


    def first_run_code(self, rec):
        """POST /execute {"code": "1 + 1"} through the proxy; returns when it ended with the result 2."""
        headers = {"E2b-Sandbox-Id": rec["sandboxID"], "E2b-Sandbox-Port": str(INTERP_PORT),
                   "Content-Type": "application/json"}
        if rec.get("envdAccessToken"):
            headers["X-Access-Token"] = rec["envdAccessToken"]
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=TIMEOUT)
        try:
            conn.request("POST", "/execute", body=json.dumps({"code": "1 + 1"}).encode(), headers=headers)
            r = conn.getresponse()
            if r.status != 200:
                raise Fail("POST /execute in %s: %d %r" % (rec["sandboxID"], r.status, r.read()[:300]))
            results = []
            for line in r:
                event = json.loads(line) if line.strip() else {}
                if event.get("type") == "result":
                    results.append(event.get("text"))
                if event.get("type") == "error":
                    raise Fail("%s: 1 + 1 raised %r" % (rec["sandboxID"], event))
                if event.get("type") == "end_of_execution":
                    if results != ["2"]:
                        raise Fail("%s: 1 + 1 gave %r" % (rec["sandboxID"], results))
                    return
            raise Fail("%s: the execute stream ended before end_of_execution" % rec["sandboxID"])
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


def create_then_command(app, code=False):
    """One create + first command (code: a code-interpreter sandbox and its
    first runCode); returns (sandbox id, create s, create-to-first-answer s)."""
    t0 = time.monotonic()
    sid = None
    try:
        rec, took = app.create(CODE_TEMPLATE if code else "base")
        sid = rec["sandboxID"]
        if code:
            app.first_run_code(rec)
        else:
            app.first_command(rec)
    except (OSError, http.client.HTTPException, ValueError, Fail) as e:
        # A connection cut or a garbled answer is a result too: it is counted
        # (FAILED) and printed under the table, and the sandbox goes.
        if sid:
            try:
                app.kill(sid)
            except (OSError, http.client.HTTPException, Fail):
                pass
        why = e if isinstance(e, Fail) else "%s: %s" % (type(e).__name__, e)
        raise Fail("%s: %s" % ("sandbox " + sid if sid else "POST /sandboxes", why))
    return sid, took, time.monotonic() - t0


FAILED = []  # failed samples: (what, message); left out of the table's figures


def measured(app, code=False):
    """create_then_command, with a failure counted in FAILED instead of
    ending the run: (create s, to first answer s), or None."""
    try:
        sid, took, to_answer = create_then_command(app, code)
    except Fail as e:
        FAILED.append(("1-way", str(e)))
        progress("a sample failed (counted, not in the figures): %s" % e)
        return None
    app.kill(sid)
    return took, to_answer


def run_concurrent(app, n, code=False):
    """n create + first command (or runCode) at once; returns the results of
    those that worked (a failure is counted in FAILED)."""
    results, errors = [None] * n, []
    gate = threading.Barrier(n)

    def one(i):
        try:
            gate.wait()
            results[i] = create_then_command(app, code)
        except Exception as e:  # reported after every thread ended
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kill_all(app, [r[0] for r in results if r])
    for e in errors:
        FAILED.append(("%d-way" % n, str(e)))
        progress("a sample failed (counted, not in the figures): %s" % e)
    return [r for r in results if r]


def set_pool(app, want):
    """PUT /admin/pool {"*": want}, then waits until every template's pool has that size."""
    config = {"*": want}
    status, body = app.call("PUT", "/admin/pool", config)
    if status != 200:
        raise Fail("PUT /admin/pool %r: %d %r" % (config, status, body))
    wait_pools(app, want)


def wait_pools(app, want):
    """Until every template's pool has `want` paused VMMs waiting (a pooled
    measurement then times the pooled path, not a pool still refilling)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status, body = app.call("GET", "/admin/pool")
        pools = body.get("templates", []) if status == 200 and isinstance(body, dict) else []
        # Applied (every template at the new size, the two default ones
        # listed when it is not 0) and reached (filled or emptied).
        if (len(pools) >= (2 if want else 0) and
                all(t.get("size") == want and t.get("ready") == want and not t.get("filling") for t in pools)):
            return
        time.sleep(1)
    raise Fail("the pools did not reach %d each: %r" % (want, body))


def without_pool(app):
    """The same creates with every pool at 0 (each one restores the snapshot),
    then the pools back as they were: (1-way, N-way, runCode 1-way) results."""
    set_pool(app, 0)
    serial = [r for r in (measured(app) for _ in range(SERIAL)) if r]
    parallel = []
    for _ in range(ROUNDS):
        parallel += [(r[1], r[2]) for r in run_concurrent(app, CONCURRENCY)]
    code = [r for r in (measured(app, code=True) for _ in range(SERIAL)) if r]
    progress("without a pool: %d + %d x %d creates, %d runCode creates done" % (SERIAL, ROUNDS, CONCURRENCY, SERIAL))
    set_pool(app, POOL_SIZE)
    return serial, parallel, code


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
    """Memory with 0 and then each of IDLE_LEVELS idle sandboxes running (each
    has run one command): (used MiB with none, [(n, used MiB, [(pss, private)
    MiB per sandbox])])."""
    before, _total, _ = memory_used(vm)
    ids, levels = [], []
    try:
        for level in IDLE_LEVELS:
            while len(ids) < level:
                sid, _took, _to_cmd = create_then_command(app)
                ids.append(sid)
            time.sleep(10)
            used, _, out = memory_used(vm)
            running = re.search(r"sandboxes +(\d+) running", out)
            if not running or int(running.group(1)) != level:
                raise Fail("status does not show %d running sandboxes: %r" % (level, out))
            levels.append((level, used, [m for m in (vmm_memory(app, sid) for sid in ids) if m]))
            progress("memory: %d MiB used with %d idle sandboxes" % (used, level))
    finally:
        kill_all(app, ids)
    return before, levels


def pool_takes(vm):
    """(creates served by a pooled VMM, creates restored cold), from the api's
    sandbox.create events (their from=pool|cold) in its last 1000 log lines;
    (0, 0) for a build without a pool."""
    out = command(vm, "logs api 1000", timeout=300).splitlines()
    creates = [ln for ln in out if '"event":"sandbox.create"' in ln]
    return sum("from=pool" in ln for ln in creates), sum("from=cold" in ln for ln in creates)


def memory_text(before, levels):
    text = ('memory per idle sandbox (each has run one command); "used" is the console status line, %d MiB\n'
            'with no sandbox; PSS and private from GET /sandboxes/{id}/metrics (the VMM process: guest\n'
            'pages it touched, its own heap; the pages of the template snapshot are shared, so PSS splits them)\n\n'
            '  sandboxes  used MiB  MiB/sandbox   PSS avg   PSS max  private avg  private max\n' % before)
    for n, used, per in levels:
        pss = [p[0] for p in per] or [float("nan")]
        priv = [p[1] for p in per] or [float("nan")]
        text += "  %9d  %8d  %11.1f  %8.1f  %8.1f  %11.1f  %11.1f\n" % (
            n, used, (used - before) / n, sum(pss) / len(pss), max(pss), sum(priv) / len(priv), max(priv))
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


class Panicked(Fail):
    """The appliance's kernel panicked: under TCG's emulated SVM it does, now
    and then, in a VMM's KVM_RUN (a stack guard hit in recursive page faults
    at a %gs access; never seen with hardware virtualization)."""


def main():
    """One run; another (up to PANIC_ATTEMPTS in all) when the appliance
    kernel panicked under TCG (see imagetest's runner)."""
    for attempt in range(1, PANIC_ATTEMPTS + 1):
        try:
            run()
            return
        except Panicked as e:
            if attempt == PANIC_ATTEMPTS:
                raise Fail("the appliance kernel panicked under TCG in all %d runs (last: %s)" % (attempt, e))
            progress("RERUN: the appliance kernel panicked under TCG (%s): the benchmark starts again" % e)


def run():
    del FAILED[:]
    vm, api_port, proxy_port = forwarded_vm("bench-api")
    logged_in = False
    try:
        secs = boot(vm)
        app = Appliance(api_port, proxy_port, admin_key(vm))
        progress("boot.done after %.1f s; waiting for the templates" % secs)
        build = wait_templates_ready("http://127.0.0.1:%d" % api_port, app.key, TEMPLATES)
        progress("templates ready %.0f s later" % build)
        status, tpl = app.call("GET", "/templates/base")
        shape = "%s vCPU, %s MiB" % (tpl.get("cpuCount"), tpl.get("memoryMB")) if status == 200 else "?"

        sid, warm_create, warm_cmd = create_then_command(app)
        app.kill(sid)
        progress("first create %.0f ms, to first command %.0f ms (not in the table)" % (
            warm_create * 1000, warm_cmd * 1000))

        serial = []
        for _ in range(SERIAL):
            wait_pools(app, POOL_SIZE)
            serial += [r for r in [measured(app)] if r]
        progress("concurrency 1: %d creates done" % SERIAL)
        parallel = []
        for k in range(ROUNDS):
            wait_pools(app, POOL_SIZE)
            res = run_concurrent(app, CONCURRENCY)
            parallel += [(r[1], r[2]) for r in res]
            progress("concurrency %d: round %d of %d done" % (CONCURRENCY, k + 1, ROUNDS))
        sid, _, _ = create_then_command(app, code=True)  # the template's first restore, unmeasured
        app.kill(sid)
        code_serial = []
        for _ in range(SERIAL):
            wait_pools(app, POOL_SIZE)
            code_serial += [r for r in [measured(app, code=True)] if r]
        code_parallel = []
        for k in range(ROUNDS):
            wait_pools(app, POOL_SIZE)
            code_parallel += [(r[1], r[2]) for r in run_concurrent(app, CONCURRENCY, code=True)]
        progress("runCode: %d creates 1-way and %d rounds %d-way done" % (SERIAL, ROUNDS, CONCURRENCY))
        cold_serial, cold_parallel, cold_code = without_pool(app)

        vm.pos = 0
        login(vm, first_boot_password(vm), wrong_first=False)
        logged_in = True
        before, levels = idle_memory(vm, app)
        takes = pool_takes(vm)
        poweroff(vm)
    except Exception as e:  # a request that timed out counts too: the appliance may have died
        if PANIC in vm.out:
            raise Panicked("%s: %s" % (type(e).__name__, e)) from e
        if vm.proc.poll() is None and b"boot.done" in vm.out:
            save_service_logs(vm, logged_in)
        raise
    finally:
        vm.stop()

    creates = 2 * (1 + SERIAL + CONCURRENCY * ROUNDS) + SERIAL + CONCURRENCY * ROUNDS + SERIAL + max(IDLE_LEVELS)
    if takes[0] or takes[1]:
        pool = ("warm pool: of the %d creates, %d took a pooled VMM and %d restored cold"
                " (the api log's sandbox.create from=pool|cold)" % (creates, takes[0], takes[1]))
    else:
        pool = "warm pool: none in this build (no from=pool|cold in the api log): every create restored the snapshot"
    table = "\n".join([
        "  with the warm pool (%d paused VMMs per template, full before each create or round;"
        "\n  an N-way round takes %d and restores the rest)" % (POOL_SIZE, POOL_SIZE),
        row("create (POST to 201), 1-way", [s[0] for s in serial]),
        row("create to first command, 1-way", [s[1] for s in serial]),
        row("create, %d-way" % CONCURRENCY, [p[0] for p in parallel]),
        row("create to first command, %d-way" % CONCURRENCY, [p[1] for p in parallel]),
        row("create %s, 1-way" % CODE_TEMPLATE, [s[0] for s in code_serial]),
        row("create to first runCode, 1-way", [s[1] for s in code_serial]),
        row("create %s, %d-way" % (CODE_TEMPLATE, CONCURRENCY), [p[0] for p in code_parallel]),
        row("create to first runCode, %d-way" % CONCURRENCY, [p[1] for p in code_parallel]),
        "  without a pool (PUT /admin/pool {\"*\":0}: every create restores the snapshot)",
        row("create (POST to 201), 1-way", [s[0] for s in cold_serial]),
        row("create to first command, 1-way", [s[1] for s in cold_serial]),
        row("create, %d-way" % CONCURRENCY, [p[0] for p in cold_parallel]),
        row("create to first command, %d-way" % CONCURRENCY, [p[1] for p in cold_parallel]),
        row("create %s, 1-way" % CODE_TEMPLATE, [s[0] for s in cold_code]),
        row("create to first runCode, 1-way", [s[1] for s in cold_code]),
    ])
    print("""CubeOS create latency (%s, %s)
accelerator: %s; appliance: %s vCPUs, %s MiB; template base: %s; host: %d CPUs, load average %.1f
%s
first create after boot (not below): %.0f ms to 201, %.0f ms to first command; connections reset by
QEMU's user-mode forward before an answer and retried: %d
failed samples (not in the figures): %s

  ms                                     n      P50      P95      P99      avg      max
%s

%s
reference, CubeSandbox's published figures (other machine, bare-metal KVM, their own setup):
  create, 1-way: avg 51 ms, P95 58 ms; 50-way: avg 67 ms, P95 89 ms; memory overhead "<5 MB"
""" % (time.strftime("%Y-%m-%d", time.gmtime()), os.environ.get("GIT_REV", "?"),
       os.environ.get("ACCEL_NAME", " ".join(os.environ.get("ACCEL", "").split())) +
       ", sandboxes on the appliance's nested kvm_amd",
       os.environ.get("SMP", "2"), os.environ.get("MEM", "4096"), shape, os.cpu_count(), os.getloadavg()[0],
       pool, warm_create * 1000, warm_cmd * 1000, Appliance.resets, failed_text(), table,
       memory_text(before, levels)))


def failed_text():
    if not FAILED:
        return "none"
    return "%d (%s)\n%s" % (len(FAILED), ", ".join(sorted({k for k, _ in FAILED})),
                             "\n".join("  %s: %s" % (k, m[:200]) for k, m in FAILED))


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        sys.exit("api-bench: FAIL %s (serial log: %s/test-bench-api.log)" % (e, os.environ.get("LOGDIR", ".")))
