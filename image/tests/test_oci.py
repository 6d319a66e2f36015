"""Templates from OCI images on the booted appliance, end to end.

On the host, Debian's docker-registry serves plain HTTP on 127.0.0.1:<port>;
QEMU's user networking forwards the guest's connections to 10.0.2.2 to the
host's loopback, so the appliance pulls from 10.0.2.2:<port>. The image is
made here: one gzipped layer with the host's static busybox (/bin/sh, and a
/bin/bash wrapper since the SDK runs commands with bash), /app/hello.sh and
/app/data.txt; a config with Env, WorkingDir /app and an ENTRYPOINT that
serves /app over HTTP on port 8080 (busybox httpd). It is pushed with the
distribution API (POST + PUT per blob, PUT of the manifest).

Through the api (header mode, as test_sdk.py): POST /templates fromImage
"10.0.2.2:<port>/demo:1" insecureRegistry with a build envVar and probePort
8080; the build status is followed to ready (the phases seen are reported,
and its log must say the probe port answered); the Python SDK creates a
sandbox from it and runs a command proving the image's files, the image's
ENV, the build's envVar, the create's envVar, WORKDIR as the default cwd,
and the ENTRYPOINT still serving in the sandbox (restored from the
snapshot); DELETE of the template is refused (409) while the sandbox lives,
then the sandbox is killed. Then the same image as a `docker save` tarball
through POST /templates/upload with startCmd="" (nothing started: port 8080
is closed), the same checks, and both templates are deleted (204, then 404).
"""
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

from imagetest import LOGDIR, Fail, boot
from test_sdk import FLOW_TIMEOUT, TEMPLATE_TIMEOUT, admin_key, api, forwarded_vm, free_port, sdk_env, venv_for

BUSYBOX = "/bin/busybox"
GREETING = "hello-from-the-image"

# Run in the SDK's venv: argv = template, expected output lines.
SDK_SCRIPT = r'''
import sys
from e2b import Sandbox
tpl = sys.argv[1]
sb = Sandbox.create(tpl, envs={"CREATE_VAR": "from-create"}, timeout=300, request_timeout=120)
try:
    r = sb.commands.run("cat /app/data.txt; /app/hello.sh; echo \"env:$DEMO_GREETING:$BUILD_VAR:$CREATE_VAR:$PATH\"; "
                        "echo \"pwd:$(pwd)\"; echo \"http:$(wget -qO- http://127.0.0.1:8080/data.txt)\"",
                        timeout=120, request_timeout=120)
    print(r.stdout, end="")
    print("sandbox:" + sb.sandbox_id, flush=True)
    sys.stdin.readline()  # the test checks DELETE /templates meanwhile
finally:
    sb.kill(request_timeout=120)
print("flow: PASS", flush=True)
'''


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_add(t, name, data=None, mode=0o644, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.mode, info.type, info.linkname, info.mtime = mode, kind, link, 1700000000
    if data is not None:
        info.size = len(data)
    t.addfile(info, io.BytesIO(data) if data is not None else None)


def make_image():
    """(layer.tar.gz bytes, config bytes): busybox, a bash wrapper, /app."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in ("bin", "app", "etc"):
            tar_add(t, d, mode=0o755, kind=tarfile.DIRTYPE)
        with open(BUSYBOX, "rb") as f:
            tar_add(t, "bin/busybox", f.read(), 0o755)
        for applet in ("sh", "cat", "ls", "echo", "env", "pwd", "wget"):
            tar_add(t, "bin/" + applet, kind=tarfile.SYMTYPE, link="busybox")
        tar_add(t, "bin/bash", b"#!/bin/sh\nexec /bin/sh \"$@\"\n", 0o755)
        tar_add(t, "app/hello.sh", b"#!/bin/sh\necho \"script:$DEMO_GREETING\"\n", 0o755)
        tar_add(t, "app/data.txt", b"data:from-the-layer\n")
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin:/usr/bin", "DEMO_GREETING=" + GREETING], "WorkingDir": "/app",
                   "ExposedPorts": {"8080/tcp": {}},
                   "Entrypoint": ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/app"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(raw.getvalue())]},
    }).encode()
    return layer, config


def docker_archive(layer, config):
    """The image as `docker save` writes it."""
    out = io.BytesIO()
    cname = sha(config)[7:] + ".json"
    manifest = json.dumps([{"Config": cname, "RepoTags": ["demo:1"], "Layers": ["l1/layer.tar"]}]).encode()
    with tarfile.open(fileobj=out, mode="w") as t:
        tar_add(t, "l1", mode=0o755, kind=tarfile.DIRTYPE)
        tar_add(t, "l1/layer.tar", layer)
        tar_add(t, cname, config)
        tar_add(t, "manifest.json", manifest)
    return out.getvalue()


class Registry:
    """docker-registry on 127.0.0.1:port, storage in a temporary directory."""

    def __init__(self):
        if not shutil.which("docker-registry"):
            raise Fail("docker-registry not found (run: make deps)")
        self.dir = tempfile.mkdtemp(prefix="oci-image-test.")
        self.port = free_port()
        cfg = os.path.join(self.dir, "registry.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s/storage\n"
                    "http:\n  addr: 127.0.0.1:%d\n" % (self.dir, self.port))
        self.log = open(os.path.join(LOGDIR, "test-oci-registry.log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = "http://127.0.0.1:%d" % self.port
        for _ in range(100):
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=2):
                    return
            except (OSError, urllib.error.URLError):
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise Fail("docker-registry did not start (see %s)" % self.log.name)

    def push_blob(self, repo, data):
        req = urllib.request.Request("%s/v2/%s/blobs/uploads/" % (self.url, repo), data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = self.url + loc
        loc += ("&" if "?" in loc else "?") + "digest=" + sha(data)
        req = urllib.request.Request(loc, data=data, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req, timeout=60).close()

    def push(self, repo, tag, layer, config):
        self.push_blob(repo, layer)
        self.push_blob(repo, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer),
                        "size": len(layer)}],
        }).encode()
        req = urllib.request.Request("%s/v2/%s/manifests/%s" % (self.url, repo, tag), data=manifest, method="PUT",
                                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        urllib.request.urlopen(req, timeout=30).close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def upload(url, key, query, body, timeout=300):
    req = urllib.request.Request(url + "/templates/upload?" + query, data=body, method="POST",
                                 headers={"X-API-Key": key, "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def follow_build(url, key, name, bid):
    """Polls the build status to its end; (phases seen in order, seconds, log messages)."""
    t0 = time.monotonic()
    phases, last = [], None
    while time.monotonic() - t0 < TEMPLATE_TIMEOUT:
        try:
            status, body = api(url, key, "/templates/%s/builds/%s/status" % (name, bid))
        except (OSError, urllib.error.URLError) as e:
            status, body = 0, e
        last = body
        if status == 200:
            for e in body.get("logEntries", []):
                if e.get("step") and (not phases or phases[-1] != e["step"]):
                    if e["step"] not in phases:
                        phases.append(e["step"])
            if body.get("status") == "ready":
                return phases, time.monotonic() - t0, [e.get("message", "") for e in body.get("logEntries", [])]
            if body.get("status") == "error":
                raise Fail("build of %s failed: %r; log: %r" % (name, body.get("reason"), body.get("logs")))
        time.sleep(2)
    raise Fail("build of %s not ready after %d s: %r" % (name, TEMPLATE_TIMEOUT, last))


def sandbox_checks(url, key, env, name, served):
    """Runs SDK_SCRIPT for template name; checks its output and the 409 of DELETE meanwhile.
    served: the image's ENTRYPOINT (busybox httpd on 8080) runs in the sandbox."""
    venv = venv_for("requirements-e2b-latest.txt")
    if not venv:
        raise Fail("the Python SDK venv is missing (run: make sdk)")
    log = open(os.path.join(LOGDIR, "test-oci-sdk-%s.out" % name), "w+")
    p = subprocess.Popen([os.path.join(venv, "bin", "python"), "-c", SDK_SCRIPT, name], env=env,
                         stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + FLOW_TIMEOUT
        text = ""
        while "sandbox:" not in text and p.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
            log.seek(0)
            text = log.read()
        if "sandbox:" not in text:
            raise Fail("%s: the SDK did not create a sandbox: %s" % (name, text[-600:]))
        want = ["data:from-the-layer", "script:" + GREETING,
                "env:%s:from-build:from-create:" % GREETING, "pwd:/app\n",
                "http:data:from-the-layer\n" if served else "http:\n"]
        for w in want:
            if w not in text:
                raise Fail("%s: %r missing from the command's output: %r" % (name, w, text[-600:]))
        status, body = api(url, key, "/templates/" + name, "DELETE")
        if status != 409:
            raise Fail("DELETE /templates/%s while a sandbox uses it: %d %r, not 409" % (name, status, body))
        p.stdin.write(b"\n")
        p.stdin.flush()
        p.wait(FLOW_TIMEOUT)
        log.seek(0)
        text = log.read()
        if p.returncode != 0 or "flow: PASS" not in text:
            raise Fail("%s: the SDK flow failed (exit %s): %s" % (name, p.returncode, text[-600:]))
        return re.search(r"sandbox:(\S+)", text).group(1)
    finally:
        if p.poll() is None:
            p.kill()
        log.close()


def delete_template(url, key, name):
    for _ in range(30):
        status, body = api(url, key, "/templates/" + name, "DELETE")
        if status == 204:
            break
        if status != 409:  # the kill may still be finishing
            raise Fail("DELETE /templates/%s: %d %r" % (name, status, body))
        time.sleep(2)
    else:
        raise Fail("DELETE /templates/%s still refused" % name)
    status, _ = api(url, key, "/templates/" + name)
    if status != 404:
        raise Fail("GET /templates/%s after DELETE: %d, not 404" % (name, status))


def test_oci():
    layer, config = make_image()
    reg = Registry()
    vm = None
    try:
        reg.push("demo", "1", layer, config)
        vm, api_port, proxy_port = forwarded_vm("oci")
        secs = boot(vm)
        key = admin_key(vm)
        url = "http://127.0.0.1:%d" % api_port
        env = sdk_env(api_port, proxy_port, key)
        notes = ["boot.done %.1f s" % secs]

        # From the registry.
        body = {"name": "demo", "fromImage": "10.0.2.2:%d/demo:1" % reg.port, "insecureRegistry": True,
                "envVars": {"BUILD_VAR": "from-build"}, "exposePorts": [8080], "probePort": 8080, "memoryMB": 512}
        status, ans = None, None
        for _ in range(60):  # the api may not be up yet
            try:
                status, ans = api(url, key, "/templates", "POST", body)
                break
            except (OSError, urllib.error.URLError):
                time.sleep(2)
        if status != 202:
            raise Fail("POST /templates fromImage: %s %r" % (status, ans))
        phases, took, messages = follow_build(url, key, "demo", ans["buildID"])
        for p in ("pulling", "unpacking", "rootfs", "booting", "snapshotting", "ready"):
            if p not in phases:
                raise Fail("phase %s not seen: %r" % (p, phases))
        probed = [m for m in messages if "port 8080 accepted after" in m]
        if not probed:
            raise Fail("the build log does not say the probe port answered: %r" % messages[-8:])
        sid = sandbox_checks(url, key, env, "demo", served=True)
        notes.append("registry image ready in %.0f s (%s; %s), sandbox %s ran it with its ENTRYPOINT serving "
                     "8080 in WORKDIR /app" % (took, ">".join(phases), probed[0], sid))

        # The same image uploaded as a docker-save tarball.
        tar = docker_archive(layer, config)
        # startCmd= (empty): the image's ENTRYPOINT is not started.
        status, ans = upload(url, key, "name=demo-archive&memoryMB=512&env=BUILD_VAR%3Dfrom-build&startCmd=", tar)
        if status != 202:
            raise Fail("POST /templates/upload: %s %r" % (status, ans))
        phases, took, _ = follow_build(url, key, "demo-archive", ans["buildID"])
        sid = sandbox_checks(url, key, env, "demo-archive", served=False)
        notes.append("uploaded archive (%d KiB) with startCmd=\"\" ready in %.0f s, sandbox %s ran it with nothing "
                     "on 8080" % (len(tar) // 1024, took, sid))

        delete_template(url, key, "demo")
        delete_template(url, key, "demo-archive")
        notes.append("both deleted (409 while used, 204 after)")
        vm.monitor("system_powerdown")
        return "; ".join(notes)
    finally:
        if vm:
            vm.stop()
        reg.stop()


TESTS = [("oci", test_oci)]
