"""sandbox.commands.* with the sync Python SDK."""

import random
import time

import httpx
import pytest
from e2b import CommandExitException, NotFoundException, Sandbox, TimeoutException

from conftest import ENVD_URL, SBX_ENV, Collector, rand, sandbox_info, wait_for


def test_stdout_and_exit_code(sbx):
    r = sbx.commands.run("echo hello-stdout")
    assert r.exit_code == 0
    assert r.stdout == "hello-stdout\n", "stdout of `echo hello-stdout`"
    assert r.stderr == "", "stderr of `echo hello-stdout`"


def test_stderr_separate(sbx):
    r = sbx.commands.run("echo to-out; echo to-err >&2")
    assert (r.stdout, r.stderr) == ("to-out\n", "to-err\n")


def test_utf8_output(sbx):
    r = sbx.commands.run(r"printf 'h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93\n'")
    assert r.stdout == "héllo wörld ✓\n"


def test_large_output(sbx):
    r = sbx.commands.run("seq 1 200000")
    expected = "".join(f"{i}\n" for i in range(1, 200001))
    assert len(r.stdout) == len(expected), "length of `seq 1 200000` output"
    assert r.stdout == expected, "content of `seq 1 200000` output differs"


def test_callbacks_are_streamed(sbx):
    events = []
    t0 = time.monotonic()
    r = sbx.commands.run(
        "echo first; echo first-err >&2; sleep 2; echo second",
        on_stdout=lambda d: events.append((time.monotonic() - t0, "out", d)),
        on_stderr=lambda d: events.append((time.monotonic() - t0, "err", d)),
    )
    total = time.monotonic() - t0
    assert "".join(d for _, k, d in events if k == "out") == "first\nsecond\n"
    assert "".join(d for _, k, d in events if k == "err") == "first-err\n"
    assert r.stdout == "first\nsecond\n"
    first = next(t for t, _, d in events if "first" in d)
    assert first < total - 1.0, f'"first" arrived at {first:.2f}s of {total:.2f}s: output is not streamed per message'


def test_nonzero_exit_raises(sbx):
    with pytest.raises(CommandExitException) as ei:
        sbx.commands.run("echo partial; echo bad-thing >&2; exit 3")
    e = ei.value
    assert e.exit_code == 3, "CommandExitException.exit_code"
    assert e.stdout == "partial\n", "CommandExitException.stdout"
    assert e.stderr == "bad-thing\n", "CommandExitException.stderr"


def test_command_not_found_127(sbx):
    with pytest.raises(CommandExitException) as ei:
        sbx.commands.run("cube-no-such-command-xyz")
    assert ei.value.exit_code == 127
    assert "not found" in ei.value.stderr


def test_per_command_envs(sbx):
    r = sbx.commands.run("printf '%s|%s' \"$CUBE_T_A\" \"$CUBE_T_B\"", envs={"CUBE_T_A": "alpha beta", "CUBE_T_B": 'x=y;"q"'})
    assert r.stdout == 'alpha beta|x=y;"q"'


def test_sandbox_envs(sbx):
    assert sbx.commands.run('printf %s "$CUBE_SBX_ENV"').stdout == SBX_ENV, "envs given to Sandbox.create"


def test_command_envs_override_sandbox_envs(sbx):
    r = sbx.commands.run('printf %s "$CUBE_SBX_SHARED"', envs={"CUBE_SBX_SHARED": "from-command"})
    assert r.stdout == "from-command"


def test_cwd(sbx):
    assert sbx.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"


def test_default_workdir_from_init(sbx):
    """A template sets /init's defaultWorkdir (its image's WORKDIR): commands
    without a cwd start there; an explicit cwd still wins; "" restores the
    user's home. A directory that does not exist is refused."""
    token = sandbox_info(sbx.sandbox_id).get("envdAccessToken")
    headers = {"X-Access-Token": token} if token else {}

    def init(body):
        return httpx.post(ENVD_URL + "/init", json=body, headers=headers, timeout=30)

    try:
        assert init({"defaultWorkdir": "/tmp"}).status_code == 204
        assert sbx.commands.run("pwd").stdout == "/tmp\n"
        assert sbx.commands.run("pwd", cwd="/home/user").stdout == "/home/user\n"
        r = init({"defaultWorkdir": "/no/such/dir"})
        assert r.status_code == 400 and "defaultWorkdir" in r.text, r.text
        assert sbx.commands.run("pwd").stdout == "/tmp\n", "a refused /init changed the workdir"
    finally:
        assert init({"defaultWorkdir": ""}).status_code == 204
    assert sbx.commands.run("pwd").stdout == "/home/user\n"


def test_default_user(sbx):
    r = sbx.commands.run('whoami; id -u; printf "%s\\n" "$HOME"; pwd')
    assert r.stdout == "user\n1000\n/home/user\n/home/user\n", "whoami / id -u / $HOME / pwd"


def test_user_root(sbx):
    r = sbx.commands.run('whoami; id -u; printf "%s\\n" "$HOME"; pwd', user="root")
    assert r.stdout == "root\n0\n/root\n/root\n"


def test_user_user(sbx):
    r = sbx.commands.run('whoami; id -u; printf "%s\\n" "$HOME"', user="user")
    assert r.stdout == "user\n1000\n/home/user\n"


def test_stdin_closed_by_default(sbx):
    assert sbx.commands.run("cat; echo after-cat", timeout=10).stdout == "after-cat\n"


def test_timeout_kills_command(sbx):
    marker = f"32.{random.randint(100, 999)}"
    t0 = time.monotonic()
    with pytest.raises(TimeoutException):
        sbx.commands.run(f"sleep {marker}", timeout=1.5)
    took = time.monotonic() - t0
    assert took < 10, f"timeout took {took:.1f} s"
    wait_for(
        lambda: not any(f"sleep {marker}" in " ".join(p.args) for p in sbx.commands.list()),
        "the timed-out command to leave commands.list()",
        timeout=5,
    )
    a, b = marker.split(".")
    ps = sbx.commands.run(
        f"for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c \"sleep {a}\"\"\\.{b}\" || true"
    )
    assert ps.stdout.strip() == "0", f'a "sleep {marker}" process still exists after the timeout'


def test_background_connect_kill(sbx):
    marker = f"cube-bg-{rand()}"
    cmd = f"echo started-{marker}; sleep 1; echo after-{marker}; sleep 60"
    h = sbx.commands.run(cmd, background=True)
    assert h.pid > 0
    seen = ""
    for out, _, _ in h:  # read until the first line, then leave the stream
        seen += out or ""
        if f"started-{marker}" in seen:
            break
    assert f"started-{marker}" in seen, f"output before the stream ended: {seen!r}"
    h.disconnect()

    procs = sbx.commands.list()
    entry = next((p for p in procs if p.pid == h.pid), None)
    assert entry is not None, f"pid {h.pid} missing from commands.list(): {procs}"
    assert entry.cmd == "/bin/bash"
    assert list(entry.args) == ["-l", "-c", cmd]

    h2 = sbx.commands.connect(h.pid)
    assert h2.pid == h.pid
    c2 = Collector(h2)
    wait_for(lambda: f"after-{marker}" in c2.stdout, lambda _: f"after-{marker} after reconnecting (got {c2.stdout!r})")

    assert sbx.commands.kill(h.pid) is True
    assert c2.done.wait(10), "the connected stream did not end within 10 s of kill"
    assert c2.error is None, f"stream error after kill: {c2.error!r}"
    with pytest.raises(CommandExitException) as ei:
        h2.wait()
    assert ei.value.exit_code != 0
    wait_for(lambda: all(p.pid != h.pid for p in sbx.commands.list()), f"pid {h.pid} to leave commands.list()", timeout=5)
    assert sbx.commands.kill(h.pid) is False, "kill of a pid that no longer exists"


def test_connect_unknown_pid(sbx):
    with pytest.raises(NotFoundException):
        sbx.commands.connect(999999)


def test_list_several(sbx):
    m = rand()
    a = sbx.commands.run(f"sleep 43 # list-a-{m}", background=True)
    b = sbx.commands.run(f"sleep 44 # list-b-{m}", background=True)
    try:
        procs = {p.pid: p for p in sbx.commands.list()}
        assert a.pid in procs and b.pid in procs, f"pids {a.pid}, {b.pid} in {list(procs)}"
        assert procs[a.pid].args[2] == f"sleep 43 # list-a-{m}"
        assert procs[b.pid].args[2] == f"sleep 44 # list-b-{m}"
        assert isinstance(procs[a.pid].envs, dict)
    finally:
        a.kill()
        b.kill()


def test_send_stdin_head(sbx):
    h = sbx.commands.run("head -n1", background=True, stdin=True)
    sbx.commands.send_stdin(h.pid, "line-from-stdin\nsecond-line\n")
    assert h.wait().stdout == "line-from-stdin\n"


def test_send_stdin_close(sbx):
    h = sbx.commands.run("cat; echo cat-done", background=True, stdin=True)
    c = Collector(h)
    sbx.commands.send_stdin(h.pid, "abc")
    sbx.commands.send_stdin(h.pid, "déf\n".encode())
    sbx.commands.close_stdin(h.pid)
    assert c.done.wait(10), "cat did not exit after close_stdin"
    assert c.error is None, f"stream error: {c.error!r}"
    assert c.stdout == "abcdéf\ncat-done\n"


def test_send_stdin_unknown_pid(sbx):
    with pytest.raises(NotFoundException):
        sbx.commands.send_stdin(999999, "x")


def test_connect_by_id(sbx):
    again = Sandbox.connect(sbx.sandbox_id)
    assert again.commands.run('printf %s "$CUBE_SBX_ENV"').stdout == SBX_ENV
    assert again.is_running() is True
