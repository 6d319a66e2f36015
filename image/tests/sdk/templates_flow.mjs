// The default templates through the official E2B JS SDKs, against a booted
// appliance in header mode (run by image/tests/test_templates.py with node;
// environment as for flow.mjs).
//
//   node templates_flow.mjs NODE_MODULES_PARENT
//     NODE_MODULES_PARENT: the directory whose node_modules holds `e2b` and
//       `@e2b/code-interpreter` (agent/tests/sdk-js)
//
// base (e2b's Sandbox): the user is `user` in /home/user, python3 and git are
// there, passwordless sudo works. code-interpreter-v1 (@e2b/code-interpreter,
// the SDK's default template): runCode keeps state between calls, the last
// expression is the main result, envVars reach the interpreter, pandas and
// numpy import, a matplotlib figure comes back as a PNG result, an exception
// comes back as an error.
//
// Prints one "ok STEP detail" line per step and "flow: PASS" at the end; a
// failure prints "flow: FAIL ..." and exits 1.
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'

const [base] = process.argv.slice(2)
if (!base) {
  console.error('usage: node templates_flow.mjs NODE_MODULES_PARENT')
  process.exit(2)
}
const require = createRequire(path.join(path.resolve(base), 'package.json'))
const { Sandbox } = require('e2b')
const { Sandbox: CodeSandbox } = require('@e2b/code-interpreter')
const versionOf = (pkg) =>
  JSON.parse(fs.readFileSync(path.join(path.resolve(base), 'node_modules', pkg, 'package.json'))).version

const REQ = { requestTimeoutMs: 120_000 }
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

function ok(step, detail = '') {
  console.log(`ok ${step} ${detail}`)
}

function check(cond, what) {
  if (!cond) throw new Error(what)
}

async function run(sbx, cmd) {
  const r = await sbx.commands.run(cmd, { timeoutMs: 120_000 })
  check(r.exitCode === 0, `${cmd} exited ${r.exitCode}: ${r.stderr}`)
  return r.stdout.trim()
}

async function baseTemplate() {
  const sbx = await Sandbox.create('base', { timeoutMs: 300_000, ...REQ })
  try {
    const who = (await run(sbx, 'id -un; id -u; pwd; echo $HOME')).split(/\s+/)
    check(who.join(' ') === 'user 1000 /home/user /home/user', `user, uid, cwd, home: ${who}`)
    const py = await run(sbx, "python3 -c 'import sys; print(sys.version_info[0])'")
    check(py === '3', `python3: ${py}`)
    const git = await run(sbx, 'git --version')
    check(git.startsWith('git version '), `git: ${git}`)
    const root = await run(sbx, 'sudo -n id -u')
    check(root === '0', `sudo -n id -u: ${root}`)
    ok('base', `user uid 1000 in /home/user, python3, ${git}, sudo`)
  } finally {
    await sbx.kill()
  }
}

async function codeInterpreter() {
  const t0 = performance.now()
  const sbx = await CodeSandbox.create({ timeoutMs: 300_000, envs: { CUBE_FLAVOUR: 'vanilla' }, ...REQ })
  const created = performance.now()
  try {
    let ex = await sbx.runCode("import pandas\nx = 21\nprint('set', x)", { timeoutMs: 300_000 })
    const first = performance.now()
    check(!ex.error, `first cell: ${JSON.stringify(ex.error)}`)
    check(ex.logs.stdout.join('').trim() === 'set 21', `stdout: ${JSON.stringify(ex.logs.stdout)}`)
    ex = await sbx.runCode('x * 2')
    check(ex.text === '42', `state between cells: ${ex.text}`)
    ex = await sbx.runCode("import os\nos.environ['CUBE_FLAVOUR']")
    check(ex.text === "'vanilla'", `envVars in the interpreter: ${ex.text}`)
    ex = await sbx.runCode(
      "import numpy as np, pandas as pd\ndf = pd.DataFrame({'n': np.arange(4)})\nint(df['n'].sum())",
      { timeoutMs: 300_000 },
    )
    check(!ex.error && ex.text === '6', `pandas/numpy: ${ex.text} ${JSON.stringify(ex.error)}`)
    ex = await sbx.runCode(
      "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')\nplt.show()",
      { timeoutMs: 300_000 },
    )
    const pngs = ex.results.filter((r) => r.png).map((r) => r.png)
    check(!ex.error && pngs.length === 1, `matplotlib: ${pngs.length} png results, error ${JSON.stringify(ex.error)}`)
    const raw = Buffer.from(pngs[0], 'base64')
    check(raw.subarray(0, 8).equals(PNG_MAGIC) && raw.length > 1000, `not a PNG: ${raw.subarray(0, 16).toString('hex')}`)
    ex = await sbx.runCode('1 / 0')
    check(ex.error && ex.error.name === 'ZeroDivisionError', `error: ${JSON.stringify(ex.error)}`)
    ok(
      'code-interpreter',
      `state, envVars, pandas, a ${raw.length}-byte png, ZeroDivisionError; create ${Math.round(created - t0)} ms, ` +
        `then the first cell (import pandas) ${Math.round(first - created)} ms`,
    )
  } finally {
    await sbx.kill()
  }
}

try {
  ok('sdk', `e2b ${versionOf('e2b')}, @e2b/code-interpreter ${versionOf('@e2b/code-interpreter')}, node ${process.version}`)
  await baseTemplate()
  await codeInterpreter()
  console.log('flow: PASS')
} catch (e) {
  console.log(`flow: FAIL ${e.stack || e}`)
  process.exit(1)
}
