"""CubeOS code-interpreter kernel.

One instance of this script serves one code context of cube-agent's
code-interpreter endpoint (:49999).  cube-agent starts it as

    python3 -u -c <this script> --lang python|bash [--cwd DIR]

(the script itself travels in $CUBE_KERNEL_PY and a one-line -c bootstrap
pops and runs it, so `ps` stays short),

with two extra inherited pipe ends:

  fd 3  (read)   requests, one JSON object per line:
                 {"code": "...", "env_vars": {"K": "V"}}
  fd 4  (write)  events, one compact JSON object per line, flushed per line:
                 number_of_executions, stdout, stderr, result, error,
                 and finally end_of_execution for every request.

fds 1 and 2 are pipes the agent reads on its own (output of child processes
and C code); stdin is /dev/null.  Requests are handled strictly one after the
other.  EOF on fd 3 makes the kernel exit with status 0.  See README.md.

Only the standard library is required (python3 >= 3.9).  matplotlib / pandas
are used when the user code imports them.
"""

import sys

# With "-c", sys.path[0] is "" (the current directory).  Keep it out of the
# way while the kernel imports its own modules, so that a user file such as
# ./json.py cannot break the kernel; user code gets it back afterwards.
_CWD_PATH_ENTRY = sys.path.pop(0) if sys.path and sys.path[0] == "" else None

import argparse  # noqa: E402
import ast  # noqa: E402
import base64  # noqa: E402
import builtins  # noqa: E402
import codecs  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import linecache  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import types  # noqa: E402
import __future__  # noqa: E402

if _CWD_PATH_ENTRY is not None:
    sys.path.insert(0, _CWD_PATH_ENTRY)

REQUEST_FD = 3
EVENT_FD = 4
# Python files a template runs in every python kernel before its first
# request (see run_startup_files).
STARTUP_DIR = "/etc/cubeos/interpreter/startup"

# Code flag of a compiled cell that contains top-level await (inspect.CO_COROUTINE).
CO_COROUTINE = 0x0080
TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
# All "from __future__ import x" compiler flags; they stay on for later cells.
FUTURE_FLAGS_MASK = 0
for _feature in __future__.all_feature_names:
    FUTURE_FLAGS_MASK |= getattr(__future__, _feature).compiler_flag

# Stream text produced while no execution is running (background threads or
# processes) is held back and sent with the next execution; capped here.
IDLE_OUTPUT_LIMIT = 1 << 20
# Longer stdout/stderr texts are split into several events (the agent drops
# event lines above 64 MiB; 1 Mi characters stay far below that).
STREAM_CHUNK_CHARS = 1 << 20
# Frames running with these globals belong to the kernel, not to user code.
KERNEL_GLOBALS = globals()
# How much of bash's stderr is kept for the traceback of a failed execution.
STDERR_TAIL_CHARS = 4000
# bash mode: a partial output line is sent after waiting this long (seconds).
PARTIAL_LINE_DELAY = 0.05


def utc_timestamp():
    """ISO-8601 UTC time with microseconds and a Z suffix."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def safe_str(value):
    """str(value) that cannot fail (user objects may have a broken __str__)."""
    try:
        return str(value)
    except BaseException:
        return "<unprintable %s object>" % type(value).__name__


def _write_all(fd, data):
    """os.write until every byte is written."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# --------------------------------------------------------------------------
# Event channel (fd 4)
# --------------------------------------------------------------------------

class EventChannel:
    """Writes NDJSON events to the agent.  Thread-safe.

    Stream events (stdout/stderr) that arrive while no execution is active
    are queued and sent right after the next number_of_executions event, so
    that every event the agent sees belongs to an execution.
    """

    def __init__(self, fd):
        self.fd = fd
        self.pid = os.getpid()
        self._lock = threading.RLock()
        self._active = False
        self._idle = []          # queued stream events
        self._idle_chars = 0
        self.on_broken = None    # called before exiting when fd 4 is gone
        # While the main thread writes a line, Ctrl-C is deferred (see
        # PythonKernel.interrupt) so that no half line is ever sent.
        self.main_writing = False
        self.interrupt_pending = False

    def send(self, event):
        if os.getpid() != self.pid:            # forked child: not ours to send
            return
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":"),
                          default=str) + "\n"
        # "replace" turns lone surrogates into "?" so the line is valid UTF-8.
        data = line.encode("utf-8", "replace")
        in_main = threading.current_thread() is threading.main_thread()
        with self._lock:
            outer = self.main_writing
            if in_main:
                self.main_writing = True
            try:
                _write_all(self.fd, data)
            except OSError:
                self._agent_gone()
            finally:
                if in_main:
                    self.main_writing = outer
        if in_main and not outer and self.interrupt_pending:
            self.interrupt_pending = False
            raise KeyboardInterrupt

    def _agent_gone(self):
        """The agent closed its end of fd 4: nobody is listening, exit."""
        if self.on_broken is not None:
            try:
                self.on_broken()
            except BaseException:
                pass
        os._exit(0)

    def stream(self, name, text):
        """Send stdout/stderr text (queued while idle)."""
        for start in range(0, len(text), STREAM_CHUNK_CHARS):
            self._stream_chunk(name, text[start:start + STREAM_CHUNK_CHARS])

    def _stream_chunk(self, name, text):
        event = {"type": name, "text": text, "timestamp": utc_timestamp()}
        with self._lock:
            if self._active:
                self.send(event)
            elif self._idle_chars + len(text) <= IDLE_OUTPUT_LIMIT:
                self._idle.append(event)
                self._idle_chars += len(text)

    def begin(self, count):
        """Start an execution: number_of_executions, then queued output."""
        with self._lock:
            self._active = True
            self.send({"type": "number_of_executions", "execution_count": count})
            idle, self._idle, self._idle_chars = self._idle, [], 0
            for event in idle:
                self.send(event)

    def end(self):
        with self._lock:
            self.send({"type": "end_of_execution"})
            self._active = False

    def error(self, name, value, tb):
        self.send({"type": "error", "name": name, "value": safe_str(value),
                   "traceback": tb})


# --------------------------------------------------------------------------
# sys.stdout / sys.stderr replacements (python mode)
# --------------------------------------------------------------------------

class _BinaryStream:
    """Minimal `sys.stdout.buffer`: bytes are decoded and passed on."""

    def __init__(self, text_stream):
        self._text = text_stream
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data):
        self._text.write(self._decoder.decode(bytes(data)))
        return len(data)

    def flush(self):
        self._text.flush()

    def writable(self):
        return True

    def fileno(self):
        return self._text.fileno()


class StreamWriter(io.TextIOBase):
    """Text stream that turns writes into stdout/stderr events.

    Complete lines are sent by the write() call that completes them; a
    partial line is sent on flush() (print(..., flush=True), end of cell).
    In a forked child (multiprocessing) the text goes to the real fd 1/2.
    """

    def __init__(self, channel, name, fd):
        super().__init__()
        self._channel = channel
        self._name = name
        self._fd = fd
        self._parts = []
        self._lock = threading.RLock()
        self.buffer = _BinaryStream(self)

    # --- attributes code commonly looks at
    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "replace"

    @property
    def closed(self):
        return False

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._fd

    def reconfigure(self, **_kwargs):
        pass

    def close(self):
        # Never really close: the next cell still needs the stream.
        self.flush()

    # --- output
    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not "
                            + type(text).__name__)
        if os.getpid() != self._channel.pid:
            _write_all(self._fd, text.encode("utf-8", "replace"))
            return len(text)
        with self._lock:
            self._parts.append(text)
            if "\n" in text:
                pending = "".join(self._parts)
                cut = pending.rfind("\n") + 1
                self._parts = [pending[cut:]] if cut < len(pending) else []
                self._channel.stream(self._name, pending[:cut])
        return len(text)

    def flush(self):
        if os.getpid() != self._channel.pid:
            return
        with self._lock:
            pending = "".join(self._parts)
            self._parts = []
            self._channel.stream(self._name, pending)


# --------------------------------------------------------------------------
# Rich results
# --------------------------------------------------------------------------

# _repr_*_ method -> result field
REPR_METHODS = (
    ("_repr_html_", "html"),
    ("_repr_markdown_", "markdown"),
    ("_repr_svg_", "svg"),
    ("_repr_png_", "png"),
    ("_repr_jpeg_", "jpeg"),
    ("_repr_pdf_", "pdf"),
    ("_repr_latex_", "latex"),
    ("_repr_json_", "json"),
    ("_repr_javascript_", "javascript"),
)
# MIME type (from _repr_mimebundle_) -> result field
MIME_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
}
BINARY_FIELDS = ("png", "jpeg", "pdf")


def _field_value(field, value):
    """Normalise one rich representation; None means 'drop it'."""
    if value is None:
        return None
    if isinstance(value, tuple) and len(value) == 2:   # (data, metadata)
        value = value[0]
    if field in BINARY_FIELDS:
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(bytes(value)).decode("ascii")
        return str(value)        # assume already base64
    if field == "json":
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            return None
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _rich_method(obj, name):
    """obj.<name> if it is a callable, else None (lookup errors ignored)."""
    try:
        method = getattr(obj, name, None)
    except Exception:
        return None
    return method if callable(method) else None


def _is_proxy(obj):
    """Objects whose __getattr__ answers every name (mocks, RPC proxies)
    would "have" every _repr_*_ method; only their repr() is used."""
    return _rich_method(obj, "_cube_kernel_no_such_method_") is not None


def _mimebundle(obj):
    method = _rich_method(obj, "_repr_mimebundle_")
    if method is None:
        return {}
    try:
        try:
            bundle = method(include=None, exclude=None)
        except TypeError:
            bundle = method()
    except Exception:
        return {}
    if isinstance(bundle, tuple):
        bundle = bundle[0]
    return bundle if isinstance(bundle, dict) else {}


def is_mpl_figure(obj):
    cls = type(obj)
    return (cls.__module__ or "").startswith("matplotlib.figure") and \
        hasattr(obj, "savefig")


def figure_png(fig):
    out = io.BytesIO()
    fig.savefig(out, format="png", bbox_inches="tight")
    return base64.b64encode(out.getvalue()).decode("ascii")


def format_object(obj):
    """All representations of obj as result fields.

    repr() errors propagate; errors of the optional rich methods are ignored.
    """
    data = {"text": repr(obj)}
    if isinstance(obj, type) or _is_proxy(obj):   # class: unbound _repr_*_
        return data
    if is_mpl_figure(obj):
        data["png"] = figure_png(obj)
    for mime, value in _mimebundle(obj).items():
        field = MIME_FIELDS.get(mime)
        if field is not None:
            value = _field_value(field, value)
            if value is not None:
                data[field] = value
    for method_name, field in REPR_METHODS:
        if field in data:
            continue
        method = _rich_method(obj, method_name)
        if method is None:
            continue
        try:
            value = _field_value(field, method())
        except Exception:
            continue
        if value is not None:
            data[field] = value
    return data


# --------------------------------------------------------------------------
# matplotlib: plt.show() and open figures become results
# --------------------------------------------------------------------------

class PyplotImportHook:
    """Meta-path finder that calls on_import(module) once matplotlib.pyplot
    has been executed, wherever it is imported from (user code, pandas)."""

    def __init__(self, on_import):
        self.on_import = on_import

    def find_spec(self, name, path=None, target=None):
        if name != "matplotlib.pyplot":
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module
        on_import = self.on_import

        def exec_module(module):
            original(module)
            on_import(module)

        try:
            loader.exec_module = exec_module
        except AttributeError:
            pass
        return spec


# --------------------------------------------------------------------------
# Environment variables of one request
# --------------------------------------------------------------------------

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def clean_env_vars(env_vars):
    """Keep the entries that can be environment variables, values as str."""
    result = {}
    if not isinstance(env_vars, dict):
        return result
    for key, value in env_vars.items():
        key = str(key)
        if not key or "=" in key or "\0" in key:
            continue
        value = "" if value is None else str(value)
        result[key] = value.replace("\0", "")
    return result


def apply_env(env_vars):
    """Set env_vars in os.environ; return what is needed to undo it."""
    saved = {}
    for key, value in env_vars.items():
        saved[key] = os.environ.get(key)
        os.environ[key] = value
    return saved


def restore_env(saved):
    for key, old in saved.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


# --------------------------------------------------------------------------
# Python mode
# --------------------------------------------------------------------------

def _trim_stack(summary, exc):
    """Keep the user's frames of one exception's traceback (in place).

    Kernel frames (those running with the kernel's globals) are dropped
    wherever they are, and everything before the first cell frame (kernel,
    asyncio) is dropped when there is a cell frame.
    """
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    if len(frames) != len(summary.stack):      # e.g. sys.tracebacklimit set
        return
    keep = [i for i, frame in enumerate(frames)
            if frame.f_globals is not KERNEL_GLOBALS]
    for position, index in enumerate(keep):
        if frames[index].f_code.co_filename.startswith("<cell-"):
            keep = keep[position:]
            break
    summary.stack = traceback.StackSummary.from_list(
        [summary.stack[i] for i in keep])


def format_user_traceback(exc):
    """Python's usual traceback text, restricted to user code frames
    (also for chained exceptions and exception groups)."""
    root = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    todo, seen = [(root, exc)], set()
    while todo:
        summary, value = todo.pop()
        if id(summary) in seen:
            continue
        seen.add(id(summary))
        _trim_stack(summary, value)
        for attr in ("__cause__", "__context__"):
            if getattr(summary, attr, None) is not None and \
                    getattr(value, attr, None) is not None:
                todo.append((getattr(summary, attr), getattr(value, attr)))
        todo.extend(zip(getattr(summary, "exceptions", None) or (),
                        getattr(value, "exceptions", None) or ()))
    return "".join(root.format())


class PythonKernel:
    """Runs cells in one persistent namespace, like a notebook."""

    def __init__(self, channel):
        self.channel = channel
        # User code gets its own __main__ module (so pickle finds classes
        # defined in cells); the kernel keeps its own globals.
        self.kernel_module = sys.modules.get("__main__")
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = self.module
        self.namespace = self.module.__dict__
        self.future_flags = 0
        self.loop = None
        self.shown_figures = set()
        self.running = False
        self.stdout = StreamWriter(channel, "stdout", 1)
        self.stderr = StreamWriter(channel, "stderr", 2)
        sys.stdout, sys.stderr = self.stdout, self.stderr
        builtins.display = self.display
        sys.meta_path.insert(0, PyplotImportHook(self._on_pyplot_import))

    # --- one request
    def execute(self, code, count, env_vars):
        saved = apply_env(env_vars)
        self.channel.interrupt_pending = False
        self.running = True
        try:
            self._run_cell(code, count)
        finally:
            self.running = False
            restore_env(saved)

    def interrupt(self):
        """SIGINT handler: KeyboardInterrupt in the running cell."""
        if not self.running:
            return
        if self.channel.main_writing:
            self.channel.interrupt_pending = True
            return
        raise KeyboardInterrupt

    def _run_cell(self, code, count):
        filename = "<cell-%d>" % count
        # Register the source so tracebacks and inspect can show cell lines.
        linecache.cache[filename] = (len(code), None,
                                     code.splitlines(True), filename)
        try:
            body, last = self._compile(code, filename)
        except Exception as exc:         # SyntaxError, ValueError (NUL), ...
            self._report_compile_error(exc)
            return
        try:
            self._run_code(body)
            if last is not None:
                value = self._run_code(last)
                if value is not None:
                    self.publish(value, main=True)
        except SystemExit as exc:
            if exc.code not in (None, 0):     # sys.exit(0) is silently ignored
                self._report_exception(exc)
        except BaseException as exc:          # noqa: B902 - includes Ctrl-C
            self._report_exception(exc)
        self.flush_figures()
        self.flush_streams()

    def _compile(self, code, filename):
        """Compile a cell into (statements, last expression or None)."""
        flags = self.future_flags | TOP_LEVEL_AWAIT
        tree = compile(code, filename, "exec", flags | ast.PyCF_ONLY_AST, True)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr) \
                and not self._ends_with_semicolon(code, tree.body[-1]):
            last = tree.body.pop()
        body = compile(tree, filename, "exec", flags, True)
        self.future_flags |= body.co_flags & FUTURE_FLAGS_MASK
        if last is not None:
            expression = ast.Expression(last.value)
            last = compile(expression, filename, "eval",
                           self.future_flags | TOP_LEVEL_AWAIT, True)
        return body, last

    @staticmethod
    def _ends_with_semicolon(code, node):
        """`expr;` suppresses the result, as in notebooks."""
        lineno = getattr(node, "end_lineno", None)
        col = getattr(node, "end_col_offset", None)
        lines = re.split(r"\r\n|\r|\n", code)
        if lineno is None or col is None or lineno > len(lines):
            return False
        rest = lines[lineno - 1].encode("utf-8")[col:].decode("utf-8", "replace")
        return rest.lstrip().startswith(";")

    def _run_code(self, code_obj):
        """Run a compiled cell part; await it if it uses top-level await."""
        if code_obj.co_flags & CO_COROUTINE:
            coroutine = eval(code_obj, self.namespace)
            return self._event_loop().run_until_complete(coroutine)
        return eval(code_obj, self.namespace)

    def _event_loop(self):
        import asyncio
        if self.loop is None or self.loop.is_closed():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
        return self.loop

    # --- output
    def flush_streams(self):
        for stream in (self.stdout, self.stderr):
            try:
                stream.flush()
            except Exception:
                pass

    def publish(self, obj, main):
        """Send obj as a result event (main result or display output)."""
        data = format_object(obj)
        if is_mpl_figure(obj):
            self.shown_figures.add(id(obj))
        self.flush_streams()
        event = {"type": "result", "is_main_result": bool(main)}
        event.update(data)
        self.channel.send(event)

    def display(self, *objs, **_kwargs):
        """display(obj, ...) builtin: each object becomes a non-main result."""
        for obj in objs:
            self.publish(obj, main=False)

    def _on_pyplot_import(self, pyplot):
        def show(*_args, **_kwargs):
            """Send all open figures as results and close them."""
            self.flush_figures()
        pyplot.show = show

    def flush_figures(self):
        """Send every open pyplot figure as a png result, then close it."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        try:
            numbers = list(pyplot.get_fignums())
        except Exception:
            return
        for number in numbers:
            try:
                figure = pyplot.figure(number)
                if id(figure) not in self.shown_figures:
                    self.publish(figure, main=False)
            except Exception as exc:
                self.stderr.write("Could not render figure %s: %s\n"
                                  % (number, exc))
            finally:
                try:
                    pyplot.close(number)
                except Exception:
                    pass
        self.shown_figures.clear()

    # --- errors
    def _report_compile_error(self, exc):
        self.flush_streams()
        text = "".join(traceback.format_exception_only(type(exc), exc))
        self.channel.error(type(exc).__name__, exc, text)

    def _report_exception(self, exc):
        self.flush_streams()
        self.channel.error(type(exc).__name__, exc, format_user_traceback(exc))

    def shutdown(self):
        pass


# --------------------------------------------------------------------------
# Bash mode
# --------------------------------------------------------------------------

def _pump(fd, name, sink):
    """Reader thread: copy a pipe into sink as (name, bytes); b"" = EOF."""
    try:
        while True:
            try:
                data = os.read(fd, 65536)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            sink.put((name, data))
            if not data:
                break
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def _partial_marker(data, marker):
    """Length of the longest suffix of data that starts the marker."""
    for size in range(min(len(data), len(marker) - 1), 0, -1):
        if data.endswith(marker[:size]):
            return size
    return 0


class BashKernel:
    """Runs each request in one persistent bash process.

    The code is written to a private file and run with `source FILE
    </dev/null`, so a syntax error cannot desynchronise the shell and user
    commands cannot read the command pipe.  After it, a random marker is
    printed to stdout (with the exit status) and to stderr; the execution is
    over once both markers have been read.
    """

    MARKER_PREFIX = "__cube_done_"

    def __init__(self, channel, cwd):
        self.channel = channel
        self.cwd = cwd or os.getcwd()
        self.tmpdir = tempfile.mkdtemp(prefix="cube-bash-")
        self.cell_path = os.path.join(self.tmpdir, "cell.sh")
        self.bash = shutil.which("bash") or "/bin/bash"
        self.proc = None
        self.output = None
        self.running = False
        self.interrupted = False
        self._start()

    # --- process management
    def _start(self):
        self.proc = subprocess.Popen(
            [self.bash, "--noprofile", "--norc"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=self.cwd, start_new_session=True)
        self.output = queue.Queue()
        for name, pipe in (("stdout", self.proc.stdout),
                           ("stderr", self.proc.stderr)):
            # The pump thread owns the descriptor from now on.
            fd = os.dup(pipe.fileno())
            pipe.close()
            threading.Thread(target=_pump, args=(fd, name, self.output),
                             daemon=True).start()
        # Markers go to copies of the original stdout/stderr, so that they
        # still arrive after `exec >file` in user code.
        self._send("shopt -s expand_aliases\n"
                   "exec {__cube_out}>&1 {__cube_err}>&2\n")

    def _send(self, text):
        try:
            self.proc.stdin.write(text.encode("utf-8", "replace"))
            self.proc.stdin.flush()
            return True
        except OSError:
            return False

    def _stop(self):
        """Terminate bash and everything it started (its process group)."""
        proc = self.proc
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except OSError:
                pass
            try:
                proc.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None

    def _restart(self):
        self._stop()
        self._start()

    def shutdown(self):
        self._stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    # --- one request
    def execute(self, code, count, env_vars):
        self._emit_idle_output()
        if self.proc.poll() is not None:
            self.channel.stream("stderr", "bash exited; started a new shell\n")
            self._restart()
        token = secrets.token_hex(16)
        os.makedirs(self.tmpdir, exist_ok=True)   # user code may delete /tmp
        with open(self.cell_path, "w", encoding="utf-8",
                  errors="replace") as cell:
            cell.write(code)
            if not code.endswith("\n"):
                cell.write("\n")
        self.interrupted = False
        self.running = True
        try:
            if not self._send(self._command(token, env_vars)):
                self._report_shell_exit(self.proc.poll(), "")
                return
            self._collect((self.MARKER_PREFIX + token).encode("ascii"))
        finally:
            self.running = False

    def interrupt(self):
        """SIGINT handler: pass Ctrl-C on to the running command.

        The cell runs under `trap 'return 130' INT`, so the sourced code
        stops while the shell and its state survive.
        """
        if not self.running or self.proc is None:
            return
        self.interrupted = True
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
        except OSError:
            pass

    def _command(self, token, env_vars):
        """Shell text that runs the cell and prints the two markers.

        The marker is printed as two printf arguments, so it never appears
        literally in the command (e.g. in `set -x` traces).
        """
        setup, restore = [], []
        for index, (key, value) in enumerate(env_vars.items()):
            if not ENV_NAME.match(key):
                continue
            save = "__cube_env_%d" % index
            setup.append('if [ -n "${%s+x}" ]; then %s="$%s"; else unset %s; fi; '
                         "export %s=%s" % (key, save, key, save,
                                           key, shlex.quote(value)))
            restore.append('if [ -n "${%s+x}" ]; then %s="$%s"; else unset %s; '
                           "fi; unset %s" % (save, key, save, key, save))
        lines = setup + [
            "trap 'return 130 2>/dev/null' INT; source %s </dev/null; "
            "__cube_rc=$?; trap - INT" % shlex.quote(self.cell_path)
        ] + restore + [
            "printf '%%s%%s %%s\\n' %s %s \"$__cube_rc\" >&$__cube_out; "
            "printf '%%s%%s\\n' %s %s >&$__cube_err; unset __cube_rc"
            % (self.MARKER_PREFIX, token, self.MARKER_PREFIX, token),
        ]
        return "\n".join(lines) + "\n"

    def _collect(self, marker):
        """Stream output until both markers are seen or bash dies."""
        state = {
            "pending": {"stdout": b"", "stderr": b""},  # not yet sent
            "since": {"stdout": None, "stderr": None},  # partial line age
            "decoders": {name: codecs.getincrementaldecoder("utf-8")("replace")
                         for name in ("stdout", "stderr")},
            "done": set(),
            "status": None,
            "tail": "",
        }
        died = False
        while len(state["done"]) < 2:
            try:
                name, data = self.output.get(timeout=PARTIAL_LINE_DELAY)
            except queue.Empty:
                self._flush_partial_lines(state, marker)
                if self.proc.poll() is not None:
                    died = True
                    break
                continue
            if not data:                       # EOF: bash has gone
                state["done"].add(name)
                died = True
                continue
            self._feed(state, name, data, marker)
            self._flush_partial_lines(state, marker)
        if died or state["status"] is None:
            self._drain_after_exit(state, marker)
        for name in ("stdout", "stderr"):
            self._emit(state, name, state["pending"][name], final=True)
        tail = state["tail"]
        if state["status"] is None:
            self._report_shell_exit(self.proc.poll(), tail)
        elif self.interrupted:
            self.channel.error("KeyboardInterrupt", "interrupted", tail)
        elif state["status"] != 0:
            self.channel.error("Error", "exit code %d" % state["status"], tail)

    def _feed(self, state, name, data, marker):
        """Process one chunk of one stream: send complete lines, keep a
        partial line for a moment, detect the end marker."""
        if name in state["done"]:
            self._emit(state, name, data)      # background output after end
            return
        buf = state["pending"][name] + data
        index = buf.find(marker)
        newline = buf.find(b"\n", index) if index >= 0 else -1
        if newline < 0:                        # no complete marker line yet
            cut = buf.rfind(b"\n") + 1
            if 0 <= index < cut:
                cut = index
            self._emit(state, name, buf[:cut])
            state["pending"][name] = buf[cut:]
            if not buf[cut:]:
                state["since"][name] = None
            elif state["since"][name] is None or cut:
                state["since"][name] = time.monotonic()
            return
        if name == "stdout":
            try:
                state["status"] = int(buf[index + len(marker):newline])
            except ValueError:
                state["status"] = 1
        state["pending"][name] = b""
        state["done"].add(name)
        self._emit(state, name, buf[:index])
        self._emit(state, name, buf[newline + 1:])

    def _flush_partial_lines(self, state, marker):
        """Send partial lines that have waited PARTIAL_LINE_DELAY (progress
        output without newline), except what may be the start of a marker."""
        now = time.monotonic()
        for name in ("stdout", "stderr"):
            since = state["since"][name]
            if name in state["done"] or since is None or \
                    now - since < PARTIAL_LINE_DELAY:
                continue
            buf = state["pending"][name]
            keep = _partial_marker(buf, marker)
            if marker in buf:
                keep = len(buf) - buf.find(marker)
            self._emit(state, name, buf[:len(buf) - keep])
            state["pending"][name] = buf[len(buf) - keep:]
            state["since"][name] = now if keep else None

    def _emit(self, state, name, data, final=False):
        text = state["decoders"][name].decode(data, final)
        if not text:
            return
        if name == "stderr":
            state["tail"] = (state["tail"] + text)[-STDERR_TAIL_CHARS:]
        self.channel.stream(name, text)

    def _drain_after_exit(self, state, marker):
        """bash is gone: pick up what it wrote last (briefly)."""
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return
        while True:
            try:
                name, data = self.output.get(timeout=0.05)
            except queue.Empty:
                return
            if data:
                self._feed(state, name, data, marker)

    def _report_shell_exit(self, code, tail):
        self.channel.error(
            "Error",
            "bash exited with code %s; a new shell was started (shell state "
            "was lost)" % ("unknown" if code is None else code),
            tail)
        self._restart()

    def _emit_idle_output(self):
        """Send output that background jobs wrote between executions."""
        decoders = {}
        while True:
            try:
                name, data = self.output.get_nowait()
            except queue.Empty:
                break
            if data:
                decoder = decoders.setdefault(
                    name, codecs.getincrementaldecoder("utf-8")("replace"))
                self.channel.stream(name, decoder.decode(data))


# --------------------------------------------------------------------------
# Main loop
# --------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(prog="cube-kernel", add_help=False)
    parser.add_argument("--lang", default="python",
                        choices=("python", "bash"))
    parser.add_argument("--cwd", default=None)
    args, _unknown = parser.parse_known_args(argv)
    return args


def _close_protocol_fds():
    """After os.fork() in user code: the child must not hold fds 3/4."""
    for fd in (REQUEST_FD, EVENT_FD):
        try:
            os.close(fd)
        except OSError:
            pass


def read_request(requests):
    """Next request line (bytes), or None at EOF."""
    while True:
        try:
            return requests.readline() or None
        except InterruptedError:
            continue


def parse_request(line):
    """(code, env_vars, startup) from one request line; raises ValueError."""
    request = json.loads(line.decode("utf-8", "replace"))
    if not isinstance(request, dict):
        raise ValueError("request is not a JSON object")
    code = request.get("code")
    code = "" if code is None else str(code)
    return code, clean_env_vars(request.get("env_vars")), request.get("startup") is True


def run_startup_files(directory=None):
    """Runs every *.py of STARTUP_DIR (sorted by name) once, before the first
    request, each in a namespace of its own: a template imports its heavy
    modules there (code-interpreter-v1: numpy, pandas, matplotlib), so they
    are loaded in the template's snapshot and every sandbox's first cell
    finds them in sys.modules, without names appearing in the user's
    globals. A failing file is reported on stderr and skipped."""
    directory = directory or os.environ.get("CUBE_KERNEL_STARTUP_DIR", STARTUP_DIR)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".py"))
    except OSError:
        return
    # What they print (matplotlib's "building the font cache" among it) goes
    # to the raw fds 1 and 2, which the agent logs as the start-up's output,
    # not to the event stream, which would hand it to the user's first cell.
    saved = sys.stdout, sys.stderr
    sys.stdout = open(1, "w", closefd=False, buffering=1, errors="replace")
    sys.stderr = open(2, "w", closefd=False, buffering=1, errors="replace")
    try:
        for name in names:
            path = os.path.join(directory, name)
            try:
                with open(path, "rb") as f:
                    source = f.read()
                exec(compile(source, path, "exec"), {"__name__": "__cube_startup__", "__file__": path})
            except BaseException:  # noqa: B902 - a broken file must not stop the kernel
                sys.stderr.write("kernel: start-up file %s failed:\n%s" % (path, traceback.format_exc()))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


def serve(kernel, channel, requests):
    """Handle requests until EOF on fd 3."""
    count = 0
    while True:
        line = read_request(requests)
        if line is None:
            return
        if not line.strip():
            continue
        try:
            code, env_vars, startup = parse_request(line)
        except ValueError as exc:
            channel.error("KernelError", "invalid request: %s" % exc, "")
            channel.end()
            continue
        if startup:
            # The agent's barrier: the start-up files ran before this line
            # was read. Not an execution: not counted, nothing but the end.
            channel.end()
            continue
        count += 1
        channel.begin(count)
        try:
            kernel.execute(code, count, env_vars)
        except BaseException as exc:           # a kernel bug or late Ctrl-C
            try:
                channel.error(type(exc).__name__, exc,
                              "".join(traceback.format_exception(
                                  type(exc), exc, exc.__traceback__)))
            except BaseException:
                pass
        finally:
            channel.end()


def _terminate(kernel):
    try:
        kernel.shutdown()
    finally:
        os._exit(143)


def main(argv):
    args = parse_args(argv)
    sys.argv = [""]                            # user code sees a plain argv
    for fd in (REQUEST_FD, EVENT_FD):
        os.set_inheritable(fd, False)          # not for user processes
    os.register_at_fork(after_in_child=_close_protocol_fds)
    # Headless plotting, also for child processes.
    os.environ["MPLBACKEND"] = "Agg"
    if args.cwd:
        try:
            os.chdir(args.cwd)
        except OSError as exc:
            os.write(2, ("kernel: cannot chdir to %s: %s\n"
                         % (args.cwd, exc)).encode("utf-8", "replace"))
    channel = EventChannel(EVENT_FD)
    requests = os.fdopen(REQUEST_FD, "rb")
    if args.lang == "bash":
        kernel = BashKernel(channel, os.getcwd())
    else:
        kernel = PythonKernel(channel)
        run_startup_files()
    channel.on_broken = kernel.shutdown
    # SIGINT to the kernel interrupts the running execution; ignored when idle.
    signal.signal(signal.SIGINT, lambda _sig, _frame: kernel.interrupt())
    # SIGTERM: stop bash (and its jobs) too, then exit.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: _terminate(kernel))
    serve(kernel, channel, requests)
    kernel.shutdown()
    # os._exit: do not wait for threads the user code left running.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
