"""The default templates through the official E2B Python SDKs, against a
booted appliance in header mode (run by image/tests/test_templates.py with
the SDK's venv; environment as for flow.py).

base (e2b.Sandbox): the user is `user` in /home/user, python3 and git are
there, passwordless sudo works. code-interpreter-v1 (e2b_code_interpreter,
the SDK's default template): run_code keeps state between calls, the last
expression is the main result, envVars reach the interpreter, pandas and
numpy import, a matplotlib figure comes back as a PNG result, an exception
comes back as an error.

Prints one "ok STEP detail" line per step and "flow: PASS" at the end; any
failure raises (non-zero exit, traceback on stderr).
"""
import base64
import importlib.metadata
import sys
import time

from e2b import Sandbox
from e2b_code_interpreter import Sandbox as CodeSandbox

REQ = {"request_timeout": 120}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ok(step, detail=""):
    print("ok %s %s" % (step, detail), flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run(sbx, cmd, **kw):
    r = sbx.commands.run(cmd, timeout=120, **kw)
    check(r.exit_code == 0, "%r exited %d: %r" % (cmd, r.exit_code, r.stderr))
    return r.stdout.strip()


def base_template():
    sbx = Sandbox.create("base", timeout=300, **REQ)
    try:
        who = run(sbx, "id -un; id -u; pwd; echo $HOME").split()
        check(who == ["user", "1000", "/home/user", "/home/user"], "user, uid, cwd, home: %r" % who)
        py = run(sbx, "python3 -c 'import sys; print(sys.version_info[0])'")
        check(py == "3", "python3: %r" % py)
        git = run(sbx, "git --version")
        check(git.startswith("git version "), "git: %r" % git)
        root = run(sbx, "sudo -n id -u")
        check(root == "0", "sudo -n id -u: %r" % root)
        run(sbx, "cd /tmp && git init -q repo && cd repo && git -c user.email=u@x -c user.name=u commit -q --allow-empty -m first")
        ok("base", "user uid 1000 in /home/user, python3, %s, sudo" % git)
    finally:
        sbx.kill()


def code_interpreter():
    t0 = time.monotonic()
    sbx = CodeSandbox.create(timeout=300, envs={"CUBE_FLAVOUR": "vanilla"}, **REQ)
    created = time.monotonic()
    try:
        check(sbx.sandbox_id, "no sandbox id")
        ex = sbx.run_code("import pandas\nx = 21\nprint('set', x)", timeout=300)
        first = time.monotonic()
        check(ex.error is None, "first cell: %r" % ex.error)
        check("".join(ex.logs.stdout).strip() == "set 21", "stdout: %r" % ex.logs.stdout)
        ex = sbx.run_code("x * 2")
        check(ex.text == "42", "state between cells: %r" % ex.text)
        ex = sbx.run_code("import os\nos.environ['CUBE_FLAVOUR']")
        check(ex.text == "'vanilla'", "envVars in the interpreter: %r" % ex.text)
        ex = sbx.run_code("import numpy as np, pandas as pd\n"
                          "df = pd.DataFrame({'n': np.arange(4)})\nint(df['n'].sum())", timeout=300)
        check(ex.error is None and ex.text == "6", "pandas/numpy: %r %r" % (ex.text, ex.error))
        ex = sbx.run_code("import matplotlib.pyplot as plt\n"
                          "plt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')\nplt.show()", timeout=300)
        pngs = [r.png for r in ex.results if r.png]
        check(ex.error is None and len(pngs) == 1, "matplotlib: %d png results, error %r" % (len(pngs), ex.error))
        raw = base64.b64decode(pngs[0])
        check(raw.startswith(PNG_MAGIC) and len(raw) > 1000, "not a PNG: %r" % raw[:16])
        ex = sbx.run_code("1 / 0")
        check(ex.error is not None and ex.error.name == "ZeroDivisionError", "error: %r" % ex.error)
        ok("code-interpreter", "state, envVars, pandas, a %d-byte png, ZeroDivisionError; create %.0f ms, "
           "then the first cell (import pandas) %.0f ms" % (len(raw), (created - t0) * 1000, (first - created) * 1000))
    finally:
        sbx.kill()


def main():
    ok("sdk", "e2b %s, e2b-code-interpreter %s, python %s" % (
        importlib.metadata.version("e2b"), importlib.metadata.version("e2b-code-interpreter"),
        sys.version.split()[0]))
    base_template()
    code_interpreter()
    print("flow: PASS", flush=True)


if __name__ == "__main__":
    main()
