"""Tests for kernel.py, driving it exactly like cube-agent does.

The kernel is started as `python3 -u -c <kernel.py source> --lang L --cwd DIR`
with requests on fd 3, events on fd 4, fds 1/2 as pipes and stdin /dev/null.

The interpreter used for the kernel is $KERNEL_PYTHON (default: the one
running pytest), so the kernel can be checked against e.g. python3.9 too.
"""

import base64
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_SOURCE = open(os.path.join(HERE, "kernel.py"), encoding="utf-8").read()
KERNEL_PYTHON = os.environ.get("KERNEL_PYTHON", sys.executable)


def _python_has(module):
    probe = subprocess.run([KERNEL_PYTHON, "-c", "import " + module],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return probe.returncode == 0


class Kernel:
    """A running kernel process plus helpers to talk to it."""

    def __init__(self, lang, cwd, env=None, request_socket=False):
        if request_socket:          # cube-agent uses a socketpair for fd 3
            parent, child = socket.socketpair()
            self.req_w, req_r = parent.detach(), child.detach()
        else:
            req_r, self.req_w = os.pipe()
        self.ev_r, ev_w = os.pipe()
        # Move the child's ends above 10 so that dup2 onto 3/4 cannot clash.
        req_child = os.dup(req_r) if req_r >= 10 else _dup_high(req_r)
        ev_child = os.dup(ev_w) if ev_w >= 10 else _dup_high(ev_w)
        os.close(req_r)
        os.close(ev_w)

        def place_protocol_fds():
            # What the agent does between fork and exec: request pipe on
            # fd 3, event pipe on fd 4 (dup2 clears close-on-exec).
            os.dup2(req_child, 3)
            os.dup2(ev_child, 4)

        self.proc = subprocess.Popen(
            [KERNEL_PYTHON, "-u", "-c", KERNEL_SOURCE,
             "--lang", lang, "--cwd", str(cwd)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env,
            close_fds=False, preexec_fn=place_protocol_fds)
        os.close(req_child)
        os.close(ev_child)
        self.events = queue.Queue()
        self.raw = {"stdout": b"", "stderr": b""}
        # The reader thread owns ev_r and closes it at EOF (closing it here
        # while the thread reads could hand its fd number to the next kernel).
        self.reader = threading.Thread(target=self._read_events, daemon=True)
        self.reader.start()
        for name in ("stdout", "stderr"):
            threading.Thread(target=self._read_raw, args=(name,),
                             daemon=True).start()

    def _read_events(self):
        buf = b""
        while True:
            data = os.read(self.ev_r, 65536)
            if not data:
                os.close(self.ev_r)
                self.events.put((time.monotonic(), None))
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                assert line, "blank line on fd 4"
                self.events.put((time.monotonic(), json.loads(line)))

    def _read_raw(self, name):
        pipe = getattr(self.proc, name)
        for chunk in iter(lambda: pipe.read1(65536), b""):
            self.raw[name] += chunk

    def send(self, code, env_vars=None):
        request = {"code": code}
        if env_vars is not None:
            request["env_vars"] = env_vars
        os.write(self.req_w, (json.dumps(request) + "\n").encode())

    def collect(self, timeout=30):
        """(arrival time, event) pairs up to and including end_of_execution."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            arrived, event = self.events.get(
                timeout=max(0.1, deadline - time.monotonic()))
            assert event is not None, "kernel closed fd 4: %r" % (out,)
            out.append((arrived, event))
            if event["type"] == "end_of_execution":
                return out

    def run(self, code, env_vars=None, timeout=30):
        self.send(code, env_vars)
        return [event for _, event in self.collect(timeout)]

    def close_requests(self):
        """EOF on the kernel's fd 3."""
        if self.req_w is not None:
            os.close(self.req_w)
            self.req_w = None

    def close(self):
        self.close_requests()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=10)


def _dup_high(fd):
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


# --- helpers on event lists

def of_type(events, kind):
    return [e for e in events if e["type"] == kind]


def text_of(events, kind):
    return "".join(e["text"] for e in of_type(events, kind))


def main_results(events):
    return [e for e in of_type(events, "result") if e["is_main_result"]]


def check_framing(events, count):
    assert events[0] == {"type": "number_of_executions",
                         "execution_count": count}
    assert events[-1] == {"type": "end_of_execution"}
    assert all(e["type"] not in ("number_of_executions", "end_of_execution")
               for e in events[1:-1])


@pytest.fixture
def spawn(tmp_path):
    kernels = []

    def start(lang="python", env=None, request_socket=False):
        kernel = Kernel(lang, tmp_path, env, request_socket)
        kernels.append(kernel)
        return kernel

    yield start
    for kernel in kernels:
        kernel.close()


@pytest.fixture
def py(spawn):
    return spawn("python")


@pytest.fixture
def sh(spawn):
    return spawn("bash")


# ==========================================================================
# Python mode
# ==========================================================================

def test_execution_count_and_framing(py):
    for count in (1, 2, 3):
        events = py.run("pass")
        check_framing(events, count)
        assert len(events) == 2


def test_last_expression_is_main_result(py):
    events = py.run("1 + 1")
    check_framing(events, 1)
    assert main_results(events) == [
        {"type": "result", "is_main_result": True, "text": "2"}]
    events = py.run("x = 'a'\nx * 3")
    assert main_results(events)[0]["text"] == "'aaa'"


def test_no_result_for_assignment_none_or_semicolon(py):
    for code in ("x = 1", "None", "print('hi')", "x;", "def f():\n    return 3"):
        events = py.run(code)
        assert of_type(events, "result") == [], code
        assert of_type(events, "error") == [], code


def test_state_persists(py):
    py.run("import math\nclass C:\n    v = 5\ndef f(a):\n    return a * 2\n"
           "counter = 10")
    events = py.run("counter += 1\n(f(counter), C.v, math.floor(2.5))")
    assert main_results(events)[0]["text"] == "(22, 5, 2)"
    events = py.run("__name__")
    assert main_results(events)[0]["text"] == "'__main__'"


def test_pickle_of_cell_class(py):
    py.run("import pickle\nclass Point:\n    def __init__(self, x):\n"
           "        self.x = x")
    events = py.run("pickle.loads(pickle.dumps(Point(4))).x")
    assert main_results(events)[0]["text"] == "4"


def test_stdout_streams_while_running(py):
    start = time.monotonic()
    py.send("import time\nprint('first')\ntime.sleep(1)\nprint('second')")
    timed = py.collect()
    finished = timed[-1][0]
    streams = [(t, e) for t, e in timed if e["type"] == "stdout"]
    assert [e["text"] for _, e in streams] == ["first\n", "second\n"]
    first_at, second_at = streams[0][0], streams[1][0]
    assert first_at - start < 0.8                 # before the sleep ended
    assert finished - first_at >= 0.8             # ... and before the end
    assert 0.8 <= second_at - first_at <= 3
    for _, event in streams:
        stamp = event["timestamp"]
        assert stamp.endswith("Z") and len(stamp) == 27, stamp


def test_partial_line_and_stderr(py):
    events = py.run("import sys\nprint('no newline', end='')\n"
                    "sys.stderr.write('oops\\n')\nprint('x', end='')")
    assert text_of(events, "stdout") == "no newlinex"
    assert text_of(events, "stderr") == "oops\n"
    # The partial line comes before end_of_execution.
    assert events[-2]["type"] == "stdout"


def test_print_flush_sends_partial_line(py):
    py.send("import time\nprint('tick', end='', flush=True)\ntime.sleep(1)")
    timed = py.collect()
    stdout = [(t, e) for t, e in timed if e["type"] == "stdout"]
    assert stdout[0][1]["text"] == "tick"
    assert timed[-1][0] - stdout[0][0] >= 0.8


def test_exception_error_event(py):
    events = py.run("x = 1\n\ndef bad(v):\n    raise ValueError('bad ' + v)\n"
                    "\nbad('thing')")
    check_framing(events, 1)
    errors = of_type(events, "error")
    assert len(errors) == 1
    error = errors[0]
    assert error["name"] == "ValueError"
    assert error["value"] == "bad thing"
    tb = error["traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert "<cell-1>" in tb and "bad('thing')" in tb
    assert "raise ValueError('bad ' + v)" in tb
    assert tb.rstrip().endswith("ValueError: bad thing")
    # No kernel frames.
    assert '"<string>"' not in tb
    assert "_run_code" not in tb and "kernel" not in tb.lower()


def test_error_in_function_defined_in_earlier_cell(py):
    py.run("def f():\n    return 1 / 0")
    events = py.run("f()")
    tb = of_type(events, "error")[0]["traceback"]
    assert "<cell-1>" in tb and "return 1 / 0" in tb and "<cell-2>" in tb
    assert of_type(events, "error")[0]["name"] == "ZeroDivisionError"


def test_output_before_error_is_kept(py):
    events = py.run("print('before')\nraise KeyError('k')")
    kinds = [e["type"] for e in events]
    assert kinds == ["number_of_executions", "stdout", "error",
                     "end_of_execution"]
    assert events[2]["value"] == "'k'"


def test_syntax_error(py):
    events = py.run("x = (1,\nprint('never')")
    check_framing(events, 1)
    error = of_type(events, "error")[0]
    assert error["name"] == "SyntaxError"
    assert "<cell-1>" in error["traceback"]
    assert "SyntaxError" in error["traceback"]
    assert of_type(events, "stdout") == []
    # The kernel still works and the count went on.
    events = py.run("2 * 21")
    check_framing(events, 2)
    assert main_results(events)[0]["text"] == "42"


def test_indentation_error(py):
    events = py.run("if True:\nprint(1)")
    assert of_type(events, "error")[0]["name"] == "IndentationError"


def test_repr_failure_is_an_error(py):
    events = py.run("class R:\n    def __repr__(self):\n"
                    "        raise RuntimeError('no repr')\nR()")
    error = of_type(events, "error")[0]
    assert error["name"] == "RuntimeError"
    assert "__repr__" in error["traceback"]
    assert "_run_cell" not in error["traceback"]


def test_env_vars_applied_and_restored(py):
    py.run("import os\nos.environ['KEEP'] = 'old'")
    events = py.run("(os.environ.get('NEW_VAR'), os.environ['KEEP'])",
                    env_vars={"NEW_VAR": "v1", "KEEP": "new"})
    assert main_results(events)[0]["text"] == "('v1', 'new')"
    events = py.run("(os.environ.get('NEW_VAR'), os.environ['KEEP'])")
    assert main_results(events)[0]["text"] == "(None, 'old')"


def test_env_vars_reach_child_processes(py):
    events = py.run("import subprocess\n"
                    "subprocess.check_output(['sh', '-c', 'echo $CHILD_V'])"
                    ".decode().strip()", env_vars={"CHILD_V": "seen"})
    assert main_results(events)[0]["text"] == "'seen'"


def test_sandbox_environment_and_cwd(spawn, tmp_path):
    env = dict(os.environ, SANDBOX_VAR="from-sandbox")
    kernel = spawn("python", env=env)
    events = kernel.run("import os\n(os.environ['SANDBOX_VAR'], os.getcwd())")
    assert main_results(events)[0]["text"] == repr(
        ("from-sandbox", str(tmp_path)))


def test_display_builtin(py):
    events = py.run("display('shown', 5)\n'main'")
    results = of_type(events, "result")
    assert [(r["is_main_result"], r["text"]) for r in results] == [
        (False, "'shown'"), (False, "5"), (True, "'main'")]


def test_rich_reprs(py):
    code = (
        "class Rich:\n"
        "    def __repr__(self): return 'Rich()'\n"
        "    def _repr_html_(self): return '<b>rich</b>'\n"
        "    def _repr_markdown_(self): return '**rich**'\n"
        "    def _repr_png_(self): return b'\\x89PNG'\n"
        "    def _repr_json_(self): return {'a': 1}\n"
        "    def _repr_latex_(self): return None\n"
        "Rich()")
    result = main_results(py.run(code))[0]
    assert result["text"] == "Rich()"
    assert result["html"] == "<b>rich</b>"
    assert result["markdown"] == "**rich**"
    assert base64.b64decode(result["png"]) == b"\x89PNG"
    assert result["json"] == {"a": 1}
    assert "latex" not in result
    events = py.run("display(Rich())")
    shown = of_type(events, "result")[0]
    assert shown["is_main_result"] is False and shown["html"] == "<b>rich</b>"


def test_mimebundle(py):
    code = ("class B:\n"
            "    def _repr_mimebundle_(self, include=None, exclude=None):\n"
            "        return {'text/html': '<i>b</i>', 'image/svg+xml': '<svg/>',"
            " 'application/x-unknown': 1}\n"
            "B()")
    result = main_results(py.run(code))[0]
    assert result["html"] == "<i>b</i>" and result["svg"] == "<svg/>"
    assert "application/x-unknown" not in result


def test_class_object_result_is_plain(py):
    events = py.run("class H:\n    def _repr_html_(self): return '<p/>'\nH")
    result = main_results(events)[0]
    assert set(result) == {"type", "is_main_result", "text"}


def test_proxy_object_gets_text_only(py):
    events = py.run("class P:\n    def __repr__(self): return 'P'\n"
                    "    def __getattr__(self, name): return lambda *a: 'x'\nP()")
    assert main_results(events)[0] == {
        "type": "result", "is_main_result": True, "text": "P"}


def test_exception_with_broken_str(py):
    events = py.run("class E(Exception):\n    def __str__(self): raise TypeError\n"
                    "raise E()")
    error = of_type(events, "error")[0]
    assert error["name"] == "E"
    assert "unprintable" in error["value"]
    check_framing(events, 1)


def test_top_level_await(py):
    events = py.run("import asyncio\nawait asyncio.sleep(0.01)\n"
                    "async def g():\n    return 7\nawait g()")
    assert of_type(events, "error") == []
    assert main_results(events)[0]["text"] == "7"


def test_future_import_persists(py):
    py.run("from __future__ import annotations")
    events = py.run("def f(x: Undefined) -> int:\n    return 1\n"
                    "f.__annotations__['x']")
    assert main_results(events)[0]["text"] == "'Undefined'"


def test_sys_exit_does_not_kill_kernel(py):
    events = py.run("import sys\nprint('a')\nsys.exit(0)\nprint('b')")
    check_framing(events, 1)
    assert text_of(events, "stdout") == "a\n"
    assert of_type(events, "error") == []
    events = py.run("sys.exit(3)")
    error = of_type(events, "error")[0]
    assert error["name"] == "SystemExit" and error["value"] == "3"
    events = py.run("exit()")
    assert of_type(events, "error") == []
    events = py.run("raise SystemExit('bye')")
    assert of_type(events, "error")[0]["value"] == "bye"
    events = py.run("'alive'")
    check_framing(events, 5)
    assert main_results(events)[0]["text"] == "'alive'"
    assert py.proc.poll() is None


def test_keyboard_interrupt(py):
    py.send("import time\nprint('start')\ntime.sleep(30)")
    deadline = time.monotonic() + 10
    first = py.events.get(timeout=10)[1]
    assert first["type"] == "number_of_executions"
    second = py.events.get(timeout=10)[1]
    assert second["type"] == "stdout"
    time.sleep(0.3)                  # let the kernel reach time.sleep()
    py.proc.send_signal(signal.SIGINT)
    rest = [e for _, e in py.collect()]
    assert time.monotonic() < deadline
    error = of_type(rest, "error")[0]
    assert error["name"] == "KeyboardInterrupt"
    assert "time.sleep(30)" in error["traceback"]
    # An idle SIGINT is harmless.
    py.proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    assert main_results(py.run("'ok'"))[0]["text"] == "'ok'"


def test_kernel_frames_hidden_between_user_frames(py):
    # cell -> display() -> (kernel formatting) -> __repr__ in the cell
    events = py.run("class R:\n    def __repr__(self):\n"
                    "        raise RuntimeError('no repr')\n"
                    "try:\n    display(R())\nexcept RuntimeError as e:\n"
                    "    raise ValueError('wrapped') from e")
    error = of_type(events, "error")[0]
    tb = error["traceback"]
    assert error["name"] == "ValueError"
    assert tb.count("Traceback (most recent call last):") == 2
    assert "display(R())" in tb and "raise RuntimeError('no repr')" in tb
    assert "direct cause" in tb
    assert '"<string>"' not in tb and "publish" not in tb, tb


def test_exception_from_library_code(py):
    events = py.run("import json\njson.loads('{bad')")
    error = of_type(events, "error")[0]
    assert error["name"] == "JSONDecodeError"
    tb = error["traceback"]
    assert "<cell-1>" in tb and "json" in tb and "decoder.py" in tb
    assert '"<string>"' not in tb


def test_raised_keyboard_interrupt(py):
    events = py.run("raise KeyboardInterrupt")
    assert of_type(events, "error")[0]["name"] == "KeyboardInterrupt"


def test_child_process_output_goes_to_fd1(py):
    events = py.run("import os\nos.system('echo from-child')")
    assert main_results(events)[0]["text"] == "0"
    deadline = time.monotonic() + 5
    while b"from-child" not in py.raw["stdout"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"from-child\n" == py.raw["stdout"]
    assert "from-child" not in text_of(events, "stdout")


def test_protocol_fds_not_inherited(py):
    # os.system-style children must not hold the protocol pipes.
    events = py.run("import subprocess\n"
                    "subprocess.run(['sh', '-c', 'ls /proc/$$/fd'],"
                    " close_fds=False, capture_output=True)"
                    ".stdout.decode().split()")
    fds = eval(main_results(events)[0]["text"])
    assert "3" not in fds and "4" not in fds, fds


def test_background_thread_output_between_executions(py):
    py.run("import threading, time\n"
           "threading.Timer(0.3, lambda: print('late')).start()")
    time.sleep(0.6)
    # Nothing arrives while idle ...
    assert py.events.empty()
    # ... it is delivered with the next execution, after its count event.
    events = py.run("1")
    check_framing(events, 2)
    assert text_of(events, "stdout") == "late\n"


def test_large_output_and_unicode(py):
    events = py.run("print('é' * 100000)\nprint('\\ud800')\n'日本'")
    out = text_of(events, "stdout")
    assert out.startswith("é" * 100000 + "\n")
    assert main_results(events)[0]["text"] == "'日本'"


def test_multiprocessing_fork_child_output(py):
    events = py.run(
        "import multiprocessing as mp\n"
        "def work(x):\n    print('in child', x)\n    return x * x\n"
        "ctx = mp.get_context('fork')\n"
        "with ctx.Pool(2) as pool:\n    r = pool.map(work, [1, 2, 3])\nr",
        timeout=60)
    assert main_results(events)[0]["text"] == "[1, 4, 9]"


def test_user_file_cannot_shadow_kernel_modules(spawn, tmp_path):
    (tmp_path / "json.py").write_text("raise ImportError('shadowed')\n")
    kernel = spawn("python")
    events = kernel.run("import sys\n'' in sys.path")
    check_framing(events, 1)
    assert main_results(events)[0]["text"] == "True"


@pytest.mark.parametrize("lang", ["python", "bash"])
def test_request_fd_may_be_a_socket(spawn, lang):
    kernel = spawn(lang, request_socket=True)
    code = "print('via socket')" if lang == "python" else "echo via socket"
    events = kernel.run(code)
    check_framing(events, 1)
    assert text_of(events, "stdout") == "via socket\n"
    kernel.close_requests()
    assert kernel.proc.wait(timeout=10) == 0


def test_huge_output_is_split(py):
    events = py.run("print('x' * 3000000)")
    chunks = [e["text"] for e in of_type(events, "stdout")]
    assert "".join(chunks) == "x" * 3000000 + "\n"
    assert len(chunks) == 3 and max(map(len, chunks)) <= 1 << 20


def test_invalid_request_line(py):
    os.write(py.req_w, b"this is not json\n")
    events = [e for _, e in py.collect()]
    assert [e["type"] for e in events] == ["error", "end_of_execution"]
    events = py.run("5")
    check_framing(events, 1)


def test_eof_exits_cleanly(py):
    py.run("x = 1")
    py.close_requests()
    assert py.proc.wait(timeout=10) == 0
    assert py.events.get(timeout=5)[1] is None   # fd 4 closed too


def test_eof_exits_even_with_running_user_thread(py):
    py.run("import threading, time\n"
           "threading.Thread(target=time.sleep, args=(60,)).start()")
    py.close_requests()
    assert py.proc.wait(timeout=10) == 0


HAS_MATPLOTLIB = _python_has("matplotlib")
HAS_PANDAS = _python_has("pandas")


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib not installed")
def test_matplotlib_open_figure_becomes_png(py):
    events = py.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\n"
                    "x = 1", timeout=180)
    assert of_type(events, "error") == [], events
    figures = of_type(events, "result")
    assert len(figures) == 1
    figure = figures[0]
    assert figure["is_main_result"] is False
    assert figure["text"] == "<Figure size 640x480 with 1 Axes>"
    assert base64.b64decode(figure["png"]).startswith(b"\x89PNG\r\n")
    # The figure was closed.
    events = py.run("plt.get_fignums()")
    assert main_results(events)[0]["text"] == "[]"
    assert len(of_type(events, "result")) == 1


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib not installed")
def test_matplotlib_show_emits_each_figure(py):
    py.run("import matplotlib.pyplot as plt", timeout=180)   # font cache
    events = py.run("import matplotlib.pyplot as plt\n"
                    "plt.plot([1, 2])\nplt.show()\nprint('between')\n"
                    "plt.plot([3, 1])\nplt.show()")
    assert of_type(events, "stderr") == [], events     # no Agg warning
    kinds = [e["type"] for e in events[1:-1]]
    assert kinds == ["result", "stdout", "result"]
    assert all("png" in e for e in of_type(events, "result"))


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib not installed")
def test_matplotlib_figure_as_main_result_not_duplicated(py):
    events = py.run("import matplotlib.pyplot as plt\n"
                    "fig, ax = plt.subplots()\nax.plot([1, 2])\nfig")
    results = of_type(events, "result")
    assert len(results) == 1
    assert results[0]["is_main_result"] is True and "png" in results[0]


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib not installed")
def test_matplotlib_backend_in_child_processes(py):
    events = py.run("import os\nos.environ['MPLBACKEND']")
    assert main_results(events)[0]["text"] == "'Agg'"


@pytest.mark.skipif(not HAS_PANDAS, reason="pandas not installed")
def test_pandas_dataframe_html(py):
    events = py.run("import pandas as pd\npd.DataFrame({'a': [1, 2]})",
                    timeout=180)
    result = main_results(events)[0]
    assert "<table" in result["html"]
    assert "a" in result["text"]


# ==========================================================================
# Bash mode
# ==========================================================================

def test_bash_stdout_stderr_and_count(sh):
    events = sh.run("echo hello\necho problem >&2")
    check_framing(events, 1)
    assert text_of(events, "stdout") == "hello\n"
    assert text_of(events, "stderr") == "problem\n"
    assert of_type(events, "error") == []
    check_framing(sh.run("true"), 2)


def test_bash_state_persists(sh, tmp_path):
    sh.run("X=42\ngreet() { echo \"hi $1\"; }\nmkdir -p sub && cd sub\n"
           "alias ll='echo aliased'")
    events = sh.run("echo $X\ngreet bob\npwd\nll")
    assert text_of(events, "stdout") == "42\nhi bob\n%s\naliased\n" % (
        tmp_path / "sub")


def test_bash_nonzero_status_is_error(sh):
    events = sh.run("echo out\necho 'it failed' >&2\nfalse")
    check_framing(events, 1)
    error = of_type(events, "error")[0]
    assert error["name"] == "Error"
    assert "1" in error["value"]
    assert "it failed" in error["traceback"]
    assert text_of(events, "stdout") == "out\n"
    events = sh.run("(exit 7)")
    assert "7" in of_type(events, "error")[0]["value"]


def test_bash_streaming(sh):
    start = time.monotonic()
    sh.send("echo one\nsleep 1\necho two")
    timed = sh.collect()
    stdout = [(t, e) for t, e in timed if e["type"] == "stdout"]
    assert "".join(e["text"] for _, e in stdout) == "one\ntwo\n"
    assert stdout[0][1]["text"] == "one\n"
    assert stdout[0][0] - start < 0.8
    assert timed[-1][0] - stdout[0][0] >= 0.8


def test_bash_output_without_newline(sh):
    events = sh.run("printf abc; printf def >&2")
    assert text_of(events, "stdout") == "abc"
    assert text_of(events, "stderr") == "def"


def test_bash_env_vars(sh):
    sh.run("export KEEP=old")
    events = sh.run("echo \"$NEW_VAR $KEEP\"; sh -c 'echo $NEW_VAR'",
                    env_vars={"NEW_VAR": "it's new", "KEEP": "changed"})
    assert text_of(events, "stdout") == "it's new changed\nit's new\n"
    events = sh.run("echo \"[${NEW_VAR-unset}] $KEEP\"")
    assert text_of(events, "stdout") == "[unset] old\n"


def test_bash_sandbox_env_inherited(spawn):
    kernel = spawn("bash", env=dict(os.environ, SANDBOX_VAR="sbx"))
    assert text_of(kernel.run("echo $SANDBOX_VAR"), "stdout") == "sbx\n"


def test_bash_exit_restarts_shell(sh):
    sh.run("X=1")
    events = sh.run("echo before\nexit 3\necho after")
    check_framing(events, 2)
    assert text_of(events, "stdout") == "before\n"
    error = of_type(events, "error")[0]
    assert "3" in error["value"]
    events = sh.run("echo \"alive ${X-gone}\"")
    check_framing(events, 3)
    assert text_of(events, "stdout") == "alive gone\n"
    assert of_type(events, "error") == []


def test_bash_syntax_error_does_not_hang(sh):
    events = sh.run("echo \"unclosed", timeout=10)
    assert of_type(events, "error")
    events = sh.run("if then fi", timeout=10)
    assert of_type(events, "error")
    assert text_of(sh.run("echo fine"), "stdout") == "fine\n"


def test_bash_stdin_is_devnull(sh):
    events = sh.run("cat\nread line || echo no-input\necho done", timeout=10)
    assert text_of(events, "stdout") == "no-input\ndone\n"


def test_bash_background_job_does_not_block(sh):
    events = sh.run("sleep 30 &\necho started", timeout=10)
    assert text_of(events, "stdout") == "started\n"
    assert text_of(sh.run("echo next", timeout=10), "stdout") == "next\n"


def test_bash_partial_line_streams(sh):
    start = time.monotonic()
    sh.send("printf 'progress '; sleep 1; echo done")
    timed = sh.collect()
    stdout = [(t, e) for t, e in timed if e["type"] == "stdout"]
    assert [e["text"] for _, e in stdout] == ["progress ", "done\n"]
    assert stdout[0][0] - start < 0.8


def test_bash_lines_are_not_fragmented(sh):
    events = sh.run("ls /nonexistent-dir")
    assert [e["text"] for e in of_type(events, "stderr")] == [
        "ls: cannot access '/nonexistent-dir': No such file or directory\n"]


def test_bash_redirected_stdout_does_not_hang(sh, tmp_path):
    events = sh.run("exec >out.txt\necho to-file", timeout=10)
    check_framing(events, 1)
    assert text_of(events, "stdout") == ""
    assert (tmp_path / "out.txt").read_text() == "to-file\n"
    events = sh.run("exec >&$__cube_out\necho back", timeout=10)
    assert text_of(events, "stdout") == "back\n"


def test_bash_sigterm_stops_jobs(sh):
    events = sh.run("sleep 100 &\necho $!")
    job = int(text_of(events, "stdout"))
    os.kill(job, 0)
    sh.proc.send_signal(signal.SIGTERM)
    sh.proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(job, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("background job survived the kernel")


def test_bash_marker_not_forgeable_and_set_x(sh):
    events = sh.run("set -x\necho __cube_done_\nset +x")
    assert "__cube_done_\n" in text_of(events, "stdout")
    assert text_of(sh.run("echo ok"), "stdout") == "ok\n"


def test_bash_interrupt_keeps_shell(sh):
    sh.run("KEPT=yes")
    sh.send("echo start\nsleep 30\necho not-reached")
    assert sh.events.get(timeout=10)[1]["type"] == "number_of_executions"
    assert sh.events.get(timeout=10)[1]["text"] == "start\n"
    time.sleep(0.3)                  # let bash start sleep
    sh.proc.send_signal(signal.SIGINT)
    events = [e for _, e in sh.collect(timeout=10)]
    assert of_type(events, "error")[0]["name"] == "KeyboardInterrupt"
    assert "not-reached" not in text_of(events, "stdout")
    assert text_of(sh.run("echo $KEPT"), "stdout") == "yes\n"


def test_bash_eof_exits_cleanly(sh):
    sh.run("sleep 60 &")
    sh.close_requests()
    assert sh.proc.wait(timeout=10) == 0


# ==========================================================================
# Start-up files and the agent's start-up barrier
# ==========================================================================

def test_startup_files_load_modules_without_touching_user_globals(spawn, tmp_path):
    startup = tmp_path / "startup"
    startup.mkdir()
    (startup / "10-preload.py").write_text(
        "import json\njson.cube_marker = 'loaded'\nhelper = 1\nprint('said at start-up')\n")
    (startup / "20-broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    (startup / "30-later.py").write_text("import json\njson.cube_order = 'after the broken one'\n")
    (startup / "notes.txt").write_text("raise SystemExit\n")
    env = dict(os.environ, CUBE_KERNEL_STARTUP_DIR=str(startup))
    k = spawn("python", env=env)
    # The barrier: only an end, not counted.
    os.write(k.req_w, b'{"startup":true}\n')
    assert [e["type"] for _, e in k.collect()] == ["end_of_execution"]
    events = k.run("import json\n(json.cube_marker, json.cube_order, 'helper' in globals())")
    check_framing(events, 1)
    assert main_results(events)[0]["text"] == "('loaded', 'after the broken one', False)"
    # What the files printed went to the raw fds, not to the first cell.
    assert not of_type(events, "stdout") and not of_type(events, "stderr")
    deadline = time.monotonic() + 10
    while b"broken on purpose" not in k.raw["stderr"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"said at start-up" in k.raw["stdout"]
    assert b"start-up file" in k.raw["stderr"] and b"broken on purpose" in k.raw["stderr"]


def test_no_startup_dir_is_fine(spawn, tmp_path):
    env = dict(os.environ, CUBE_KERNEL_STARTUP_DIR=str(tmp_path / "missing"))
    k = spawn("python", env=env)
    os.write(k.req_w, b'{"startup":true}\n')
    assert [e["type"] for _, e in k.collect()] == ["end_of_execution"]
    check_framing(k.run("1 + 1"), 1)
