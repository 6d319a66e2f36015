// One sandbox's life through the official E2B JS SDK, against a booted
// appliance in header mode (run by image/tests/test_sdk.py with node).
//
//   node flow.mjs NODE_MODULES_PARENT PACKAGE
//     NODE_MODULES_PARENT: the directory whose node_modules holds the SDK
//       (agent/tests/sdk-js, set up by agent/tests/sdk-deps.sh)
//     PACKAGE: "e2b" (2.51) or "e2b-old" (the pinned 2.4x, an npm alias)
//
// Environment: E2B_API_URL (the appliance's :3000), E2B_SANDBOX_URL (its proxy
// on :80), E2B_API_KEY (the first-boot admin key), E2B_DOMAIN, CUBE_PROXY_URL
// (the proxy again, for a raw request after the kill), CUBE_GUEST_RELEASE (the
// guest kernel's `uname -r`, when known).
//
// Prints one "ok STEP detail" line per step and "flow: PASS" at the end; a
// failure prints "flow: FAIL ..." and exits 1.
import crypto from 'node:crypto'
import fs from 'node:fs'
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

async function lifecycle(tag) {
  const value = 'js-' + crypto.randomBytes(6).toString('hex')
  const t0 = Date.now()
  const sbx = await Sandbox.create('base', {
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
  await errors(tag)
  console.log('flow: PASS')
} catch (e) {
  console.log(`flow: FAIL ${e && e.stack ? e.stack : e}`)
  process.exit(1)
}
