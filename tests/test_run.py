"""keyguard run: granted secrets only, live redaction (plain, base64, split writes, both
streams), exit codes and signals passing through, placeholders, and a pseudo-terminal."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes import e2b_api_key, github_classic, google_api_key

POLICY = """\
version: 1
secrets:
  GEMINI_API_KEY:
    format: google-api-key
  E2B_API_KEY:
    format: e2b-api-key
tools:
  code_interpreter:
    secrets: [E2B_API_KEY]
    sandbox_env: [E2B_API_KEY]
"""

# A minimal environment for keyguard itself (PYTHONPATH kept for unusual installs).
BASE_ENV = {k: v for k, v in os.environ.items() if k in {"PATH", "PYTHONPATH", "LANG"}}

CHILD = """\
import base64, hashlib, os, sys, time
key = os.environ.get("E2B_API_KEY", "")
print("tty=%s" % sys.stdout.isatty(), flush=True)
print("granted-sha=" + hashlib.sha256(key.encode()).hexdigest(), flush=True)
print("names=" + ",".join(sorted(os.environ)), flush=True)
print("plain " + key, flush=True)
print("b64 " + base64.b64encode(key.encode()).decode(), flush=True)
half = len(key) // 2
sys.stdout.write("split " + key[:half]); sys.stdout.flush(); time.sleep(0.05)
sys.stdout.write(key[half:] + " end\\n"); sys.stdout.flush()
sys.stderr.write("err " + key[:half]); sys.stderr.flush(); time.sleep(0.05)
sys.stderr.write(key[half:] + "\\n"); sys.stderr.flush()
other = os.environ.get("GEMINI_FILE")
if other:
    print("not granted, read from a file: " + open(other).read().strip(), flush=True)
sys.exit(int(os.environ.get("EXIT_WITH", "0")))
"""


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "keyguard.yaml").write_text(POLICY)
    (tmp_path / "child.py").write_text(CHILD)
    keys = {"GEMINI_API_KEY": google_api_key(), "E2B_API_KEY": e2b_api_key()}
    gemini_file = tmp_path / "gemini.txt"
    gemini_file.write_text(keys["GEMINI_API_KEY"] + "\n")
    env = {
        **BASE_ENV,
        "HOME": str(tmp_path),
        "HARMLESS": "hello",
        "OTHER_SERVICE_TOKEN": github_classic(),
        "GEMINI_FILE": str(gemini_file),
        **keys,
    }
    return {"dir": tmp_path, "keys": keys, "env": env}


def keyguard_run(setup: dict, *args: str, extra_env: dict | None = None, **kw):
    cmd = [sys.executable, "-m", "keyguard", "run", "--policy", "policies", *args]
    return subprocess.run(
        cmd,
        cwd=setup["dir"],
        env={**setup["env"], **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def assert_no_key_forms(text: str, key: str) -> None:
    assert key not in text
    assert base64.b64encode(key.encode()).decode() not in text
    half = len(key) // 2
    assert key[:half] + key[half:] not in text


def test_granted_secret_only_and_output_redacted(setup):
    key = setup["keys"]["E2B_API_KEY"]
    result = keyguard_run(setup, "--tool", "code_interpreter", "--", sys.executable, "child.py")
    assert result.returncode == 0, result.stderr
    out, err = result.stdout, result.stderr
    for k in [*setup["keys"].values(), setup["env"]["OTHER_SERVICE_TOKEN"]]:
        assert_no_key_forms(out + err, k)
    # The child did get the real granted value ...
    assert f"granted-sha={hashlib.sha256(key.encode()).hexdigest()}" in out
    names = next(line for line in out.splitlines() if line.startswith("names="))[6:].split(",")
    # ... and no other secret-looking variable, while ordinary ones pass.
    assert "E2B_API_KEY" in names and "HARMLESS" in names and "PATH" in names
    assert "GEMINI_API_KEY" not in names and "OTHER_SERVICE_TOKEN" not in names
    lines = out.splitlines()
    for prefix in ("plain ", "b64 ", "split ", "not granted, read from a file: "):
        line = next(line for line in lines if line.startswith(prefix))
        assert "REDACTED" in line, line
    assert "end" in next(line for line in lines if line.startswith("split "))
    err_line = next(line for line in err.splitlines() if line.startswith("err "))
    assert "REDACTED" in err_line


def test_no_tool_gets_no_secret(setup):
    result = keyguard_run(setup, "--", sys.executable, "child.py")
    assert result.returncode == 0, result.stderr
    empty_sha = hashlib.sha256(b"").hexdigest()
    assert f"granted-sha={empty_sha}" in result.stdout


def test_placeholders_instead_of_values(setup):
    key = setup["keys"]["E2B_API_KEY"]
    script = "import os; print(os.environ['E2B_API_KEY'][:18])"
    result = keyguard_run(
        setup,
        "--tool",
        "code_interpreter",
        "--placeholders",
        "--",
        sys.executable,
        "-c",
        script,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "kg_ph_E2B_API_KEY_"
    assert key not in result.stdout


def test_exit_code_passes_through(setup):
    result = keyguard_run(setup, "--", sys.executable, "child.py", extra_env={"EXIT_WITH": "3"})
    assert result.returncode == 3


def test_child_killed_by_signal_kills_us_the_same_way(setup):
    script = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    result = keyguard_run(setup, "--", sys.executable, "-c", script)
    assert result.returncode == -signal.SIGTERM


def test_signals_are_forwarded_to_the_child(setup):
    script = (
        "import signal, sys, time\n"
        "def h(n, f):\n    print('got', signal.Signals(n).name, flush=True); sys.exit(7)\n"
        "signal.signal(signal.SIGTERM, h)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keyguard",
            "run",
            "--policy",
            "policies",
            "--",
            sys.executable,
            "-c",
            script,
        ],
        cwd=setup["dir"],
        env=setup["env"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=20) == 7
    assert "got SIGTERM" in rest


def test_command_not_found(setup):
    result = keyguard_run(setup, "--", "no-such-command-keyguard-test")
    assert result.returncode == 127
    assert "command not found" in result.stderr


def test_without_policy_pattern_rules_still_redact(tmp_path):
    leaked = google_api_key()
    script = "import os; print('value:', os.environ['SOME_TEXT'])"
    result = subprocess.run(
        [sys.executable, "-m", "keyguard", "run", "--", sys.executable, "-c", script],
        cwd=tmp_path,
        env={**BASE_ENV, "SOME_TEXT": f"x {leaked} y"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert leaked not in result.stdout
    assert "REDACTED" in result.stdout


def test_pty_child_sees_a_terminal_and_output_is_redacted(setup):
    key = setup["keys"]["E2B_API_KEY"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keyguard",
            "run",
            "--policy",
            "policies",
            "--tool",
            "code_interpreter",
            "--",
            sys.executable,
            "child.py",
        ],
        cwd=setup["dir"],
        env=setup["env"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError as exc:
            assert exc.errno == errno.EIO
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=20) == 0
    out = b"".join(chunks).decode("utf-8", "replace")
    assert "tty=True" in out
    assert_no_key_forms(out, key)
    assert f"granted-sha={hashlib.sha256(key.encode()).hexdigest()}" in out
    assert out.count("REDACTED") >= 4


def test_pipe_split_with_a_pause_mid_line_is_still_caught(setup):
    key = setup["keys"]["E2B_API_KEY"]
    script = (
        "import os, sys, time\n"
        "k = os.environ['E2B_API_KEY']\n"
        "sys.stdout.write('first line\\nkey=' + k[:10]); sys.stdout.flush()\n"
        "time.sleep(0.4)\n"
        "sys.stdout.write(k[10:] + '\\n'); sys.stdout.flush()\n"
    )
    result = keyguard_run(setup, "--tool", "code_interpreter", "--", sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    assert key not in result.stdout and key[:10] not in result.stdout
    assert result.stdout.startswith("first line\nkey=[REDACTED:E2B_API_KEY]")


def test_reader_going_away_stops_the_child(setup):
    # `keyguard run -- cmd | head -1`: the child must see a broken pipe, not run forever.
    script = "import time\nwhile True:\n    print('x' * 100, flush=True)\n    time.sleep(0.001)\n"
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyguard", "run", "--", sys.executable, "-c", script],
        cwd=setup["dir"],
        env=setup["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.read(50) == b"x" * 50
    proc.stdout.close()
    proc.wait(timeout=20)
    assert proc.returncode != 0


# ------------------------------------------ a child that goes quiet (idle release)


def timed_run(setup: dict, *args: str) -> list[tuple[float, bytes]]:
    """Run keyguard with its stdout on a pipe; (seconds since start, bytes) per read."""
    cmd = [sys.executable, "-m", "keyguard", "run", "--policy", "policies", *args]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=setup["dir"],
        env=setup["env"],
        stdin=subprocess.PIPE,  # open, nothing typed (a user reading the prompt)
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    reads = []
    while data := os.read(proc.stdout.fileno(), 65536):
        reads.append((time.monotonic() - start, data))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return reads


def text_of(reads: list[tuple[float, bytes]]) -> str:
    return b"".join(data for _, data in reads).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("mode", ["--pty", "--no-pty"])
def test_key_written_in_halves_with_a_long_pause(setup, mode):
    key = setup["keys"]["E2B_API_KEY"]
    script = (
        "import os, sys, time\n"
        "k = os.environ['E2B_API_KEY']; h = len(k) // 2\n"
        "sys.stdout.write('key=' + k[:h]); sys.stdout.flush()\n"
        "time.sleep(1.0)\n"
        "sys.stdout.write(k[h:] + '\\n'); sys.stdout.flush()\n"
    )
    reads = timed_run(setup, mode, "--tool", "code_interpreter", "--", sys.executable, "-c", script)
    out = text_of(reads)
    assert "key=[REDACTED:E2B_API_KEY]\n" in out
    # Not even a few characters of either half went out during the pause.
    assert not [key[i : i + 4] for i in range(len(key) - 3) if key[i : i + 4] in out]


@pytest.mark.parametrize("mode", ["--pty", "--no-pty"])
def test_prompt_without_newline_shows_while_the_child_waits(setup, mode):
    script = (
        "import sys, time\n"
        "print('ready', flush=True)\n"
        "sys.stdout.write('name: '); sys.stdout.flush()\n"
        "time.sleep(1.5)\n"
        "print('bye', flush=True)\n"
    )
    reads = timed_run(setup, mode, "--", sys.executable, "-c", script)
    seen = ""
    at: dict[str, float] = {}
    for t, data in reads:
        seen += data.decode().replace("\r\n", "\n")
        for mark in ("ready\n", "ready\nname: ", "bye"):
            if mark in seen:
                at.setdefault(mark, t)
    assert text_of(reads) == "ready\nname: bye\n"
    # The prompt shows about TTY_IDLE_FLUSH after it was written, long before "bye".
    assert at["ready\nname: "] - at["ready\n"] < 1.0
    assert at["bye"] - at["ready\nname: "] > 0.4


@pytest.mark.parametrize("source", ["devnull", "file"])
def test_pty_with_stdin_that_cannot_be_watched(setup, source):
    # epoll refuses /dev/null and regular files; `keyguard run --pty < file` must still work.
    script = "import sys; print('got', repr(sys.stdin.readline()))"
    if source == "file":
        path = setup["dir"] / "input.txt"
        path.write_text("hello\n")
        expected = "got 'hello\\n'"
    else:
        path = Path(os.devnull)
        expected = "got ''"
    with open(path, "rb") as stdin:
        result = keyguard_run(setup, "--pty", "--", sys.executable, "-c", script, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
