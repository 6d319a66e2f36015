"""The official E2B SDKs in default mode: https to api.<domain> and <port>-<id>.<domain> from a LAN host.

The appliance boots on a private LAN (imagetest.Lan: a network namespace with
a bridge, the TAP that is the appliance's NIC, and udhcpd leasing it
10.213.7.2); it gets that address by DHCP like on a real network. The SDK
flows of test_sdk.py (image/tests/sdk/flow.py in the Python venvs, flow.mjs
with the JS SDKs; the latest Python and JS e2b 2.51.0 required, the old ones
when installed) then run as a host on that LAN: `ip netns exec`, the
appliance's cube-dns as the only resolver (so cubeos.local and
*.cubeos.local resolve to it), the appliance CA taken from the admin
console's `ca` command (checked against the first-boot banner's fingerprint)
as the trust anchor, E2B_DOMAIN=cubeos.local, and neither E2B_SANDBOX_URL
nor E2B_API_URL: every API call goes to the SDK's own https://api.cubeos.local
and every call to a sandbox to https://49983-<id>.cubeos.local, both through
cube-proxy's TLS listener on 443 (it relays api.<domain> to cube-api's :3000).
Before the flows a plain LAN-host check (LAN_CHECK, the system python3):
cubeos.local, api.cubeos.local and <port>-<id>.cubeos.local resolve to the
appliance, https to the proxy verifies with the CA and is refused without it,
and https://api.cubeos.local answers as cube-api (/health; /sandboxes 401
without a key, 200 with it).

Default mode proper (DEFAULT_PY, DEFAULT_JS, each SDK the flows use): with no
E2B_API_URL at all, the SDK's computed API URL must be
https://api.cubeos.local (all four SDKs build it from E2B_DOMAIN), and a
create, a command and a kill must work. The flows themselves read
E2B_API_URL for one raw API request (their access-token step), so for them
E2B_API_URL is set: for flow.py to the SDKs' own default,
https://api.cubeos.local (the SDK calls go where they would without it); for
flow.mjs, whose raw requests speak only plain HTTP, to
http://api.cubeos.local (the proxy's port 80 relays api.<domain> too).

Environment per language (sdk_https_env):
  both     E2B_API_KEY, E2B_DOMAIN=cubeos.local, no E2B_API_URL (the flows: see above)
  Node     NODE_EXTRA_CA_CERTS=<ca.pem>     (undici's fetch)
  Python   SSL_CERT_FILE=<ca.pem>           (e2b >= 2.5x: pyqwest/rustls with
           tls_include_system_certs reads it; older e2b: httpx reads it)
           REQUESTS_CA_BUNDLE=<ca.pem>      (for requests-based code; the flows do not use it)
The flows' raw checks (header-mode access tokens, getHost's page) go to
CUBE_PROXY_URL=http://cubeos.local (port 80, resolved by cube-dns).

With the latest SDK of each language (py-latest, js-e2b) the flows also run
the many-sandbox steps here: expiry after a 3 s setTimeout, and 20 creates
at once that each run a command (see FULL in test_sdk.py for why not over
QEMU's user-mode forwards).

After the flows, the proxy's log (`logs proxy` on the console) must show
requests from the LAN host routed by host name to sandboxes and to the api:
the SDKs' own https calls.
Outputs: build/image/test-sdk-https-<flow>.out, the udhcpd log in
build/image/test-sdk_https-udhcpd.log.
"""
import hashlib
import os
import re
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # test_sdk, next to this file

from imagetest import LOGDIR, TMP, Fail, Lan, Vm, boot, command, first_boot_password, login, poweroff
from test_sdk import SDK_JS, admin_key, flows, run_flow, sdk_env, wait_templates_ready

DOMAIN = "cubeos.local"
CA_BANNER = rb"appliance CA SHA-256: +([0-9A-F:]{95})"
DHCP_BOUND = rb'"net\.dhcp\.bound"[^\n]*' + re.escape(Lan.APPLIANCE.encode())
DHCP_TIMEOUT = 120
PEM = r"-----BEGIN CERTIFICATE-----\r*\n(?:[A-Za-z0-9+/=]+\r*\n)+-----END CERTIFICATE-----"


def wait_dhcp(vm):
    """Waits for the appliance's DHCP lease of the LAN's address (logged on the console)."""
    if re.search(DHCP_BOUND, vm.out):
        return
    vm.expect(DHCP_BOUND, timeout=DHCP_TIMEOUT)


def console_ca(vm, banner_fp):
    """The appliance CA (PEM) printed by the console's `ca`, checked against
    its own fingerprint line and the first-boot banner's."""
    out = command(vm, "ca")
    m = re.search(PEM, out)
    fp = re.search(r"SHA-256 fingerprint: ([0-9A-F:]{95})", out)
    if not m or not fp:
        raise Fail("ca printed no certificate and fingerprint: %r" % out)
    pem = m.group(0).replace("\r", "") + "\n"
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    mine = ":".join(digest[i:i + 2] for i in range(0, 64, 2))
    if mine != fp.group(1):
        raise Fail("ca: the certificate's SHA-256 %s is not the printed %s" % (mine, fp.group(1)))
    if banner_fp != mine:
        raise Fail("ca: fingerprint %s differs from the first-boot banner's %s" % (mine, banner_fp))
    return pem, mine


def sdk_https_env(key, ca_path):
    """test_sdk's environment, turned into default mode for a LAN host."""
    env = sdk_env(0, 0, key)
    del env["E2B_SANDBOX_URL"]
    del env["E2B_API_URL"]
    env.update({
        "E2B_DOMAIN": DOMAIN,
        "CUBE_PROXY_URL": "http://%s" % DOMAIN,
        "NODE_EXTRA_CA_CERTS": ca_path,
        "SSL_CERT_FILE": ca_path,
        "REQUESTS_CA_BUNDLE": ca_path,
    })
    return env


# Run by the system python3 as a host on the LAN: names through cube-dns, and
# the proxy's TLS listener trusted with the CA and refused without it.
LAN_CHECK = r"""
import socket, ssl, sys, urllib.error, urllib.request
ca, domain, want = sys.argv[1:4]
for name in (domain, "api." + domain, "49983-abcdefghij0123456789." + domain):
    got = socket.gethostbyname(name)
    assert got == want, "%s resolves to %s, not %s" % (name, got, want)
url = "https://49983-nosuchsandbox0000000.%s/health" % domain
def get(ctx):
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
status = get(ssl.create_default_context(cafile=ca))
assert status == 502, "%s with the CA: %s, not 502 (no such sandbox)" % (url, status)
try:
    get(ssl.create_default_context())
    sys.exit("%s verified without the appliance CA" % url)
except urllib.error.URLError as e:
    assert isinstance(e.reason, ssl.SSLCertVerificationError), e
api = "https://api." + domain
def api_get(path, key=None):
    req = urllib.request.Request(api + path, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca), timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
health = api_get("/health")
assert health == (200, b'{"status":"ok"}'), "%s/health: %r" % (api, health)
nokey = api_get("/sandboxes")
assert nokey[0] == 401, "%s/sandboxes without a key: %r" % (api, nokey)
listed = api_get("/sandboxes", sys.argv[4])
assert listed[0] == 200, "%s/sandboxes with the key: %r" % (api, listed)
print("lan: %s, api.%s, <port>-<id>.%s resolve to %s; %s: 502 with the CA, refused without; "
      "%s: /health 200, /sandboxes 401 without a key, 200 with it" % (domain, domain, domain, want, url, api))
"""


def lan_check(lan, ca_path, key):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    p = subprocess.run(lan.run_argv(["/usr/bin/python3", "-c", LAN_CHECK, ca_path, DOMAIN, Lan.APPLIANCE, key]),
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode != 0:
        raise Fail("LAN host check failed: %s" % out[-1500:])
    return out


# With no E2B_API_URL: the SDK's own API URL, then create, command, kill
# through it. argv: the expected API URL.
DEFAULT_PY = r"""
import importlib.metadata, os, sys
from e2b import Sandbox
from e2b.connection_config import ConnectionConfig
want = sys.argv[1]
assert "E2B_API_URL" not in os.environ and "E2B_SANDBOX_URL" not in os.environ
got = ConnectionConfig().api_url
assert got == want, "the SDK's API URL is %s, not %s" % (got, want)
sbx = Sandbox.create(template="base", timeout=120, request_timeout=120)
out = sbx.commands.run("echo default-mode", request_timeout=120).stdout.strip()
assert out == "default-mode", out
sbx.kill(request_timeout=120)
print("default: e2b %s to %s: create %s, command, kill" % (importlib.metadata.version("e2b"), got,
                                                          sbx.sandbox_id))
"""

# node -e DEFAULT_JS NODE_MODULES_PARENT PACKAGE WANT (as flow.mjs loads it)
DEFAULT_JS = r"""
const path = require('path')
const fs = require('fs')
const [base, pkg, want] = process.argv.slice(1)
const req = require('module').createRequire(path.join(path.resolve(base), 'package.json'))
const { Sandbox, ConnectionConfig } = req(pkg)
const version = JSON.parse(fs.readFileSync(path.join(path.resolve(base), 'node_modules', pkg, 'package.json'))).version
;(async () => {
  if (process.env.E2B_API_URL || process.env.E2B_SANDBOX_URL) throw new Error('E2B_API_URL or E2B_SANDBOX_URL set')
  const got = new ConnectionConfig().apiUrl
  if (got !== want) throw new Error(`the SDK's API URL is ${got}, not ${want}`)
  const opts = { requestTimeoutMs: 120000 }
  const sbx = await Sandbox.create('base', { timeoutMs: 120000, ...opts })
  const r = await sbx.commands.run('echo default-mode', opts)
  if (r.stdout.trim() !== 'default-mode') throw new Error(`command: ${JSON.stringify(r)}`)
  await sbx.kill(opts)
  console.log(`default: ${pkg} ${version} to ${got}: create ${sbx.sandboxId}, command, kill`)
})().catch((e) => { console.error(e); process.exit(1) })
"""


def default_mode(lan, name, argv, env):
    """DEFAULT_PY or DEFAULT_JS with the SDK of flow argv; its summary line."""
    want = "https://api.%s" % DOMAIN
    if argv[0] == "node":
        cmd = ["node", "-e", DEFAULT_JS, argv[2], argv[3], want]
    else:
        cmd = [argv[0], "-c", DEFAULT_PY, want]
    try:
        p = subprocess.run(lan.run_argv(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=600)
    except subprocess.TimeoutExpired:
        raise Fail("%s default mode: timed out" % name)
    out = p.stdout.decode(errors="replace").strip()
    with open(os.path.join(LOGDIR, "test-sdk-https-default-%s.out" % name), "w") as f:
        f.write(out + "\n")
    line = [ln for ln in out.splitlines() if ln.startswith("default: ")]
    if p.returncode != 0 or not line:
        raise Fail("%s default mode failed (exit %d): %s" % (name, p.returncode, out[-1500:]))
    return line[0][len("default: "):]


def run_flows(lan, env):
    """Every flow of test_sdk.flows() as a host on the LAN, after the same
    SDK's default-mode check; returns the summaries."""
    results = []
    for name, argv in flows():
        # The flows' one raw API request (access tokens) reads E2B_API_URL:
        # the SDKs' default for flow.py; flow.mjs's raw requests speak only
        # plain HTTP (node:http), so for it the proxy's port 80, which
        # relays api.<domain> the same way.
        api_url = "%s://api.%s" % ("http" if argv[0] == "node" else "https", DOMAIN)
        flow_env = dict(env, E2B_API_URL=api_url)
        # run_flow names what is missing by argv[0] (python) or argv[3] (the
        # JS package); with `ip netns exec` in front it cannot, so check here.
        need = os.path.join(SDK_JS, "node_modules", argv[3]) if argv[0] == "node" else argv[0]
        if not os.path.exists(need):
            raise Fail("%s: %s missing (run: make sdk, or bash agent/tests/sdk-deps.sh)" % (name, need))
        results.append(default_mode(lan, name, argv, env))
        results.append("%s (%s)" % (name, run_flow("https-" + name, lan.run_argv(argv), flow_env, many=True)))
    return results


def proxy_host_routed(vm):
    """How many requests the proxy's log shows from the LAN host routed by
    host name to sandboxes and to the api."""
    out = command(vm, "logs proxy 300", timeout=120)
    counts = {}
    for route in ("host", "api"):
        counts[route] = len([ln for ln in out.splitlines()
                             if "proxy.request" in ln and "route=%s " % route in ln and "peer=%s" % Lan.CLIENT in ln])
        if not counts[route]:
            raise Fail("the proxy's log shows no request from %s with route=%s: %r" % (Lan.CLIENT, route,
                                                                                     out[-2000:]))
    return counts["host"], counts["api"]


def test_sdk_https():
    lan = Lan("sdk_https")
    vm = None
    try:
        vm = Vm("sdk_https", "bios", net=lan.netdev(), netns=lan.name)
        secs = boot(vm)
        key = admin_key(vm)
        fp = re.search(CA_BANNER, vm.out)
        if not fp:
            raise Fail("no appliance CA fingerprint in the first-boot banner")
        wait_dhcp(vm)
        build = lan.call(wait_templates_ready, "http://%s:3000" % Lan.APPLIANCE, key)
        vm.pos = 0
        notes = login(vm, first_boot_password(vm), wrong_first=False)
        pem, fingerprint = console_ca(vm, fp.group(1).decode())
        ca_path = os.path.join(TMP, "cubeos-ca.pem")
        with open(ca_path, "w") as f:
            f.write(pem)
        checked = lan_check(lan, ca_path, key)
        results = run_flows(lan, sdk_https_env(key, ca_path))
        to_sandboxes, to_api = proxy_host_routed(vm)
        poweroff(vm)
        notes.insert(0, "boot.done %.1f s, DHCP %s, base ready %.0f s later; CA %s... from `ca` (= banner); "
                        "%s; %s; proxy log (last 300 lines): from %s %d requests to sandboxes by host name, "
                        "%d to api.%s" % (
                            secs, Lan.APPLIANCE, build, fingerprint[:11], checked, "; ".join(results),
                            Lan.CLIENT, to_sandboxes, to_api, DOMAIN))
        return "; ".join(notes)
    finally:
        if vm:
            vm.stop()
        lan.close()


TESTS = [("sdk_https", test_sdk_https)]
