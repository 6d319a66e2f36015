// One sandbox's life through the official E2B JS SDK, against a booted
// appliance in header mode (run by image/tests/test_sdk.py with node).
//
//   node flow.mjs NODE_MODULES_PARENT PACKAGE
//     NODE_MODULES_PARENT: the directory whose node_modules holds the SDK
//       (agent/tests/sdk-js, set up by agent/tests/sdk-deps.sh)
//     PACKAGE: "e2b" (2.51.0), "e2b-prev" (2.50.0) or "e2b-old" (2.46.1): npm aliases
//
// Environment: E2B_API_URL (the appliance's :3000), E2B_SANDBOX_URL (its proxy
// on :80), E2B_API_KEY (the first-boot admin key), E2B_DOMAIN, CUBE_PROXY_URL
// (the proxy again, for a raw request after the kill), CUBE_GUEST_RELEASE (the
// guest kernel's `uname -r`, when known).
//
// Steps: create (metadata, envVars), commands, files, list by metadata,
// setTimeout, getMetrics, getHost to an HTTP server in the sandbox (through
// the agent's port bridge; a port with nothing listening answers 502), access
// tokens (secure by default; a wrong X-Access-Token is refused), pause then
// connect (the file still there, commands still working), createSnapshot, a
// sandbox from it, listSnapshots, fork and deleteSnapshot, kill, expiry after
// a short setTimeout, N concurrent creates (CUBE_SDK_CONCURRENT), a wrong API key, an unknown
// template.
//
// Prints one "ok STEP detail" line per step and "flow: PASS" at the end; a
// failure prints "flow: FAIL ..." and exits 1.
import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { createRequire } from 'node:module'

const [base, pkg] = process.argv.slice(2)
if (!base || !pkg) {
  console.error('usage: node flow.mjs NODE_MODULES_PARENT PACKAGE')
  process.exit(2)
}
const require = createRequire(path.join(path.resolve(base), 'package.json'))
const { Sandbox, AuthenticationError, NotFoundError, SandboxError } = require(pkg)
const version = JSON.parse(fs.readFileSync(path.join(path.resolve(base), 'node_modules', pkg, 'package.json'))).version

// Under TCG with nested KVM every call is slow-ish: generous request timeouts.
const REQ = { requestTimeoutMs: 120_000 }

function ok(step, detail = '') {
  console.log(`ok ${step} ${detail}`)
}

function check(cond, what) {
  if (!cond) throw new Error(what)
}

/** Status and body of a raw GET /health through the proxy, in header mode. */
async function proxyStatus(id) {
  const r = await fetch(process.env.CUBE_PROXY_URL + '/health', {
    headers: { 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': '49983' },
    signal: AbortSignal.timeout(30_000),
  })
  return [r.status, await r.text()]
}

/** [status, body] of one raw HTTP request (node:http: fetch cannot set Host). */
function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, timeout: 30_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (text += d))
      res.on('end', () => resolve([res.statusCode, text]))
    })
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out`)))
    req.on('error', reject)
    req.end(body)
  })
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// What the guest kernel prints when one of its vCPUs stopped making progress.
const GUEST_STALL = 'rcu_sched detected stalls'

/**
 * [status, last n lines] of GET /sandboxes/{id}/logs<query>; never throws:
 * it only serves failure messages.
 */
async function logLines(id, query, n) {
  try {
    const [status, text] = await request(`${process.env.E2B_API_URL}/sandboxes/${id}/logs${query}`, {
      headers: { 'X-API-Key': process.env.E2B_API_KEY },
    })
    try {
      return [status, JSON.parse(text).logs.map((e) => e.line).slice(-n)]
    } catch {
      return [status, [text.slice(-2000)]]
    }
  } catch (e) {
    return [0, [`(${e})`]]
  }
}

/**
 * The last lines of a sandbox's console and of its VMM log, for a failure
 * message. waitForStallMs: how long to keep reading while the console shows
 * no vCPU stall report (the guest prints one ~21 s into a stall); a line
 * "guest_stall <id>" goes to stdout when it does.
 */
async function consoleTail(id, waitForStallMs = 0) {
  const deadline = Date.now() + waitForStallMs
  let status, lines, stalled
  for (;;) {
    ;[status, lines] = await logLines(id, '', 40)
    stalled = lines.some((l) => l.includes(GUEST_STALL))
    if (stalled || Date.now() >= deadline) break
    await sleep(3000)
  }
  if (stalled) console.log(`guest_stall ${id}`)
  const [vstatus, vmm] = await logLines(id, '?source=vmm', 20)
  return `console of ${id} (logs ${status}):\n  ${lines.join('\n  ')}\nits VMM log (logs?source=vmm ${vstatus}):\n  ${vmm.join('\n  ')}`
}

/** getMetrics(): one sample with the VMM's figures. */
async function metrics(sbx) {
  const got = await sbx.getMetrics(REQ)
  check(got.length === 1, `getMetrics: ${JSON.stringify(got)}`)
  const m = got[0]
  const text = JSON.stringify(m)
  check(m.cpuCount >= 1 && m.cpuUsedPct >= 0 && m.cpuUsedPct <= 100, `metrics cpu: ${text}`)
  check(m.memTotal >= 64 << 20 && m.memUsed > 0 && m.memUsed <= m.memTotal, `metrics memory: ${text}`)
  check(m.diskTotal > 0 && m.diskUsed >= 0 && m.timestamp instanceof Date, `metrics disk/time: ${text}`)
  ok('metrics', `cpu ${m.cpuCount} x ${m.cpuUsedPct.toFixed(1)}%, memory ${m.memUsed >> 20} of ${m.memTotal >> 20} MiB, ` +
    `disk layer ${Math.round(m.diskUsed / 1024)} KiB of ${Math.round(m.diskTotal / 1048576)} MiB`)
}

// The base template has python3 (Debian); the minimal rootfs has busybox.
const SERVE = 'cd /tmp/www && if command -v python3 >/dev/null; then exec python3 -m http.server 8080 --bind 127.0.0.1; ' +
  'else exec busybox httpd -f -p 8080 -h /tmp/www; fi'

/** An HTTP server started in the sandbox (python3's on 127.0.0.1 only, or
 *  busybox httpd), reached through the proxy (and the agent's port bridge) by
 *  the host name getHost() gives (Host header: no DNS in header mode); a port
 *  with nothing listening is a 502. */
async function getHost(sbx, tag) {
  const page = `served from ${sbx.sandboxId} ${tag}\n`
  await sbx.files.write('/tmp/www/index.html', page, REQ)
  await sbx.commands.run(SERVE, { background: true, ...REQ })
  const host = sbx.getHost(8080)
  check(host === `8080-${sbx.sandboxId}.${process.env.E2B_DOMAIN}`, `getHost(8080): ${host}`)
  let status, body
  for (let i = 0; i < 40; i++) {
    ;[status, body] = await request(process.env.CUBE_PROXY_URL + '/index.html', { headers: { Host: host } })
    if (status === 200) break
    await sleep(500) // the server needs a moment to listen
  }
  if (status !== 200 || body !== page) {
    const seen = await sbx.commands.run('(ss -ltn || netstat -ltn) 2>&1; ps 2>&1 | grep -e [h]ttp; true', REQ)
    throw new Error(`GET http://${host}/index.html: ${status} ${JSON.stringify(body)}; in the sandbox: ` +
      JSON.stringify(seen.stdout))
  }
  const closed = sbx.getHost(8081)
  const [cstatus, ctext] = await request(process.env.CUBE_PROXY_URL + '/', { headers: { Host: closed } })
  const err = cstatus === 502 ? JSON.parse(ctext) : {}
  check(cstatus === 502 && err.code === 502 && err.sandboxId === sbx.sandboxId && /port is not open/.test(err.message),
    `GET http://${closed}/: ${cstatus} ${ctext}`)
  ok('getHost', `${host} served ${body.length} bytes through the proxy; ${closed} (nothing listening): ` +
    `502 ${JSON.stringify(err.message)}`)
}

/** secure is the default: the record has an envd token, the agent refuses a
 *  request without it or with a wrong one. */
async function accessToken(sbx) {
  const [st, info] = await request(`${process.env.E2B_API_URL}/sandboxes/${sbx.sandboxId}`, {
    headers: { 'X-API-Key': process.env.E2B_API_KEY },
  })
  check(st === 200, `GET /sandboxes/${sbx.sandboxId}: ${st} ${info}`)
  const token = JSON.parse(info).envdAccessToken
  check(token, `no envdAccessToken: the sandbox is not secured: ${info}`)
  const base = { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49983', 'Content-Type': 'application/json' }
  const results = {}
  for (const [name, tok] of [['none', null], ['wrong', '0'.repeat(token.length)], ['right', token]]) {
    const headers = tok ? { ...base, 'X-Access-Token': tok } : base
    results[name] = await request(process.env.CUBE_PROXY_URL + '/process.Process/List', {
      method: 'POST',
      headers,
      body: '{}',
    })
  }
  check(results.none[0] === 401 && results.wrong[0] === 401, `without/wrong token: ${JSON.stringify(results)}`)
  check(results.right[0] === 200, `with the token: ${JSON.stringify(results.right)}`)
  ok('accessToken', 'secure by default; no token 401, wrong token 401, right token 200')
}

/** pause (the proxy then answers 502), connect: the file written before is
 *  still there and commands work. Returns the connected Sandbox. */
async function pauseConnect(sbx, file, payload) {
  let t0 = Date.now()
  check((await sbx.pause(REQ)) !== false, 'pause returned false (already paused?)')
  const paused = (Date.now() - t0) / 1000
  const [status, body] = await proxyStatus(sbx.sandboxId)
  check(status === 502, `proxy while paused: ${status} ${body}`)
  const listed = (await Sandbox.list({ query: { state: ['paused'] }, ...REQ }).nextItems()).filter(
    (s) => s.sandboxId === sbx.sandboxId,
  )
  check(listed.length === 1 && listed[0].state === 'paused', `list state=paused: ${JSON.stringify(listed)}`)
  t0 = Date.now()
  const again = await Sandbox.connect(sbx.sandboxId, REQ)
  const resumed = (Date.now() - t0) / 1000
  check(again.sandboxId === sbx.sandboxId, `connect gave ${again.sandboxId}`)
  const back = await again.files.read(file, REQ)
  check(back === payload, `after resume files.read: ${JSON.stringify(back)}, want ${JSON.stringify(payload)}`)
  const r = await again.commands.run(`cat ${file}; echo resumed`, { timeoutMs: 120_000, ...REQ })
  check(r.exitCode === 0 && r.stdout === payload + 'resumed\n', `after resume commands.run: ${JSON.stringify(r)}`)
  ok('pauseConnect', `paused in ${paused.toFixed(2)} s (proxy 502, listed paused), connected in ${resumed.toFixed(2)} s, ` +
    'file and commands intact')
  return again
}

/** createSnapshot of the running sandbox (it goes on), a sandbox from the
 *  snapshot with the file and a background process the source had,
 *  listSnapshots by sandbox, fork({count: 2}) with the file in each fork,
 *  deleteSnapshot. Skipped by an SDK without them. */
async function snapshotFork(sbx, file, payload) {
  if (typeof sbx.createSnapshot !== 'function' || typeof sbx.fork !== 'function') {
    console.log(`skip snapshotFork (${pkg} ${version} has no createSnapshot/fork)`)
    return
  }
  await sbx.commands.run('sleep 4242', { background: true, ...REQ })
  const t0 = Date.now()
  const snap = await sbx.createSnapshot(REQ)
  const took = (Date.now() - t0) / 1000
  const r = await sbx.commands.run(`cat ${file}`, { timeoutMs: 120_000, ...REQ })
  check(r.stdout === payload, `the source after its snapshot: ${JSON.stringify(r)}`)
  const listed = (await Sandbox.listSnapshots({ sandboxId: sbx.sandboxId, ...REQ }).nextItems()).map((s) => s.snapshotId)
  check(listed.includes(snap.snapshotId), `listSnapshots({sandboxId}): ${JSON.stringify(listed)} lacks ${snap.snapshotId}`)
  const made = []
  try {
    const clone = await Sandbox.create(snap.snapshotId, { timeoutMs: 300_000, ...REQ })
    made.push(clone)
    const back = await clone.files.read(file, REQ)
    check(back === payload, `the snapshot's sandbox: files.read ${JSON.stringify(back)}, want ${JSON.stringify(payload)}`)
    const p = await clone.commands.run("grep -l '^sleep$' /proc/[0-9]*/comm | wc -l", { timeoutMs: 120_000, ...REQ })
    check(!['', '0'].includes(p.stdout.trim()), `the snapshot's sandbox has no sleep 4242: ${JSON.stringify(p)}`)
    const forks = await sbx.fork({ count: 2, ...REQ })
    made.push(...forks.filter((f) => !(f instanceof Error)))
    check(forks.length === 2 && forks.every((f) => !(f instanceof Error)), `fork({count: 2}): ${forks.map(String)}`)
    for (const f of forks) check((await f.files.read(file, REQ)) === payload, `fork ${f.sandboxId} lacks the file`)
  } finally {
    await Promise.all(made.map((s) => s.kill(REQ).catch(() => {})))
  }
  check((await Sandbox.deleteSnapshot(snap.snapshotId, REQ)) === true, 'deleteSnapshot did not return true')
  check((await Sandbox.deleteSnapshot(snap.snapshotId, REQ)) === false, 'a second deleteSnapshot found it')
  ok('snapshotFork', `snapshot ${snap.snapshotId} in ${took.toFixed(2)} s (source runs on), its sandbox has the file ` +
    'and the process, listed by sandbox, fork({count: 2}) both with the file, deleted')
}

/** setTimeout(short): the TTL ends the sandbox (isRunning false, not listed). */
async function expiry(tag) {
  const sbx = await Sandbox.create('base', { metadata: { suite: 'image-sdk', run: tag + '-ttl' }, timeoutMs: 120_000, ...REQ })
  const t0 = Date.now()
  try {
    check((await sbx.commands.run('true', REQ)).exitCode === 0, 'command in the TTL sandbox')
    await sbx.setTimeout(3_000, REQ)
    while (await sbx.isRunning({ requestTimeoutMs: 60_000 })) {
      check(Date.now() - t0 < 60_000, 'still running 60 s after setTimeout(3 s)')
      await sleep(500)
    }
  } catch (e) {
    const detail = await consoleTail(sbx.sandboxId, 30_000)
    await sbx.kill(REQ).catch(() => {})
    throw new Error(`sandbox ${sbx.sandboxId}: ${e}; ${detail}`)
  }
  const gone = (Date.now() - t0) / 1000
  const found = await Sandbox.list({ query: { metadata: { run: tag + '-ttl' } }, ...REQ }).nextItems()
  check(found.length === 0, `list after expiry: ${JSON.stringify(found)}`)
  ok('expiry', `setTimeout(3 s): gone after ${gone.toFixed(1)} s, not listed`)
}

/** n creates at once (Promise.all), each runs a command, then all are killed. */
async function concurrent(tag, n) {
  const query = { query: { metadata: { run: tag + '-many' } }, ...REQ }
  const t0 = Date.now()
  const settled = await Promise.allSettled(
    Array.from({ length: n }, async (_, i) => {
      const s = await Sandbox.create('base', {
        metadata: { suite: 'image-sdk', run: tag + '-many' },
        envs: { CUBE_N: String(i) },
        timeoutMs: 300_000,
        ...REQ,
      })
      try {
        const r = await s.commands.run('echo $CUBE_N', { timeoutMs: 120_000, ...REQ })
        return [s, r.stdout.trim()]
      } catch (e) {
        const detail = await consoleTail(s.sandboxId, 30_000)
        await s.kill(REQ).catch(() => {})
        throw new Error(`sandbox ${s.sandboxId}: ${e}; ${detail}`)
      }
    }),
  )
  const took = (Date.now() - t0) / 1000
  const made = settled.filter((x) => x.status === 'fulfilled').map((x) => x.value)
  const failed = settled.filter((x) => x.status === 'rejected').map((x) => String(x.reason))
  const listed = (await Sandbox.list(query).nextItems()).length
  const killed = await Promise.all(made.map(([s]) => s.kill(REQ).then(() => true, () => false)))
  const left = await Sandbox.list(query).nextItems()
  check(left.length === 0, `after killing all: ${JSON.stringify(left)}`)
  check(killed.every(Boolean), `killed ${JSON.stringify(killed)}`)
  check(made.every(([, o]) => /^\d+$/.test(o) && Number(o) < n), `outputs: ${JSON.stringify(made.map(([, o]) => o))}`)
  check(new Set(made.map(([, o]) => o)).size === made.length, 'two sandboxes saw the same CUBE_N')
  check(failed.length === 0, `${failed.length} of ${n} concurrent creates failed: ${failed.slice(0, 3).join(' | ')}`)
  check(listed === made.length, `listed ${listed} of ${made.length} made`)
  ok('concurrent', `${n} creates + a command each in ${took.toFixed(1)} s, all listed, all killed`)
}

async function lifecycle(tag) {
  const value = 'js-' + crypto.randomBytes(6).toString('hex')
  const t0 = Date.now()
  let sbx = await Sandbox.create('base', {
    metadata: { suite: 'image-sdk', run: tag },
    envs: { CUBE_VAR: value },
    timeoutMs: 120_000,
    ...REQ,
  })
  ok('create', `${pkg} ${version}: sandbox ${sbx.sandboxId} in ${((Date.now() - t0) / 1000).toFixed(2)} s`)
  try {
    const r = await sbx.commands.run('echo $CUBE_VAR; uname -r; cat /proc/cmdline', { timeoutMs: 120_000, ...REQ })
    const lines = r.stdout.split('\n')
    check(r.exitCode === 0 && lines.length >= 3, `commands.run: ${JSON.stringify(r)}`)
    check(lines[0] === value, `envVar: got ${lines[0]}, want ${value}`)
    const want = process.env.CUBE_GUEST_RELEASE
    check(!want || lines[1] === want, `uname -r: ${lines[1]}, want ${want}`)
    // The microVM's kernel has its virtio devices on the command line (no PCI).
    check(lines[2].includes('virtio_mmio.device='), `not the sandbox's kernel: /proc/cmdline ${lines[2]}`)
    ok('commands', `CUBE_VAR=${lines[0]}, uname -r ${lines[1]}, virtio-mmio guest`)

    const payload = `hello from ${pkg} ${tag}\n`
    await sbx.files.write('/tmp/cube-sdk/hello.txt', payload, REQ)
    const back = await sbx.files.read('/tmp/cube-sdk/hello.txt', REQ)
    check(back === payload, `files.read: ${JSON.stringify(back)}, want ${JSON.stringify(payload)}`)
    ok('files', `${payload.length} bytes written and read back`)

    const found = await Sandbox.list({ query: { metadata: { run: tag } }, ...REQ }).nextItems()
    const ids = found.map((s) => s.sandboxId)
    check(ids.length === 1 && ids[0] === sbx.sandboxId, `list by metadata run=${tag}: ${JSON.stringify(ids)}`)
    check(found[0].metadata.suite === 'image-sdk', `list metadata: ${JSON.stringify(found[0].metadata)}`)
    const others = await Sandbox.list({ query: { metadata: { run: 'no-such-' + tag } }, ...REQ }).nextItems()
    check(others.length === 0, `list with an unknown metadata value: ${JSON.stringify(others)}`)
    ok('list', `metadata filter finds exactly ${sbx.sandboxId}`)

    const before = (await sbx.getInfo(REQ)).endAt
    await sbx.setTimeout(600_000, REQ)
    const after = (await sbx.getInfo(REQ)).endAt
    const moved = (after.getTime() - before.getTime()) / 1000
    check(moved > 300, `setTimeout: end ${before.toISOString()} -> ${after.toISOString()}`)
    ok('setTimeout', `end moved by ${moved.toFixed(0)} s`)

    await metrics(sbx)
    if ((process.env.CUBE_SDK_GETHOST ?? '1') === '1') await getHost(sbx, tag)
    else console.log('skip getHost (run with one SDK of each language: the URL is the same in all)')
    await accessToken(sbx)
    sbx = await pauseConnect(sbx, '/tmp/cube-sdk/hello.txt', payload)
    await snapshotFork(sbx, '/tmp/cube-sdk/hello.txt', payload)
  } catch (e) {
    await sbx.kill(REQ).catch(() => {})
    throw e
  }

  await sbx.kill(REQ)
  check((await sbx.isRunning({ requestTimeoutMs: 60_000 })) === false, 'isRunning() after kill')
  const [status, body] = await proxyStatus(sbx.sandboxId)
  check(status === 502 && JSON.parse(body).sandboxId === sbx.sandboxId, `proxy after kill: ${status} ${body}`)
  check((await Sandbox.kill(sbx.sandboxId, REQ)) === false, 'a second kill should find nothing')
  ok('kill', 'isRunning() false, proxy 502, second kill false')
}

async function errors(tag) {
  try {
    await Sandbox.create('base', { apiKey: 'e2b_' + '0'.repeat(40), ...REQ })
    throw new Error('a wrong API key created a sandbox')
  } catch (e) {
    check(e instanceof AuthenticationError, `wrong key: ${e}`)
    ok('auth', `wrong key: ${e.constructor.name}`)
  }
  try {
    await Sandbox.create('no-such-template-' + tag, REQ)
    throw new Error('an unknown template created a sandbox')
  } catch (e) {
    check(
      e instanceof NotFoundError || (e instanceof SandboxError && /not found/i.test(e.message)),
      `unknown template: ${e}`,
    )
    ok('not_found', `unknown template: ${e.constructor.name}: ${e.message}`)
  }
}

try {
  const tag = crypto.randomBytes(4).toString('hex')
  await lifecycle(tag)
  // The many-restore steps: see FULL in image/tests/test_sdk.py.
  if (process.env.CUBE_SDK_FULL === '1') {
    await expiry(tag)
    await concurrent(tag, Number(process.env.CUBE_SDK_CONCURRENT || 20))
  } else {
    console.log('skip expiry, concurrent (CUBE_SDK_FULL=1 runs them)')
  }
  await errors(tag)
  console.log('flow: PASS')
} catch (e) {
  console.log(`flow: FAIL ${e && e.stack ? e.stack : e}`)
  process.exit(1)
}
