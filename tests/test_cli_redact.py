"""``python -m keyguard redact`` as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.fakes import github_classic, google_api_key, rand

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], stdin: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "keyguard", "redact", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=60,
    )


def test_env_file_secret_env_and_rules(tmp_path: Path) -> None:
    g, other, gh = google_api_key(), rand(24), github_classic()
    envf = tmp_path / ".env"
    envf.write_text(f"GEMINI_API_KEY={g}\nPORT=9090\n")
    text = f"a {g}\nb {other}\nc {gh}\nclean line\n"
    p = run(["--env-file", str(envf), "--secret-env", "OTHER"], text, {"OTHER": other})
    assert p.returncode == 1, p.stderr
    assert p.stdout == (
        "a [REDACTED:GEMINI_API_KEY]\nb [REDACTED:OTHER]\nc [REDACTED:github-pat]\nclean line\n"
    )
    assert "PORT" in p.stderr and "9090" not in p.stderr and g not in p.stderr

    p = run(["--env-file", str(envf), "--no-rules"], f"{gh} {g}\n")
    assert p.stdout == f"{gh} [REDACTED:GEMINI_API_KEY]\n"

    p = run([], "nothing to see\n")
    assert p.returncode == 0 and p.stdout == "nothing to see\n"


def test_json_findings_never_carry_values() -> None:
    other = rand(24)
    text = f"é first\nsecond {other} and {other}\n"
    p = run(["--secret-env", "OTHER", "--json"], text, {"OTHER": other})
    assert p.returncode == 1
    assert other not in p.stdout
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [(r["line"], r["column"]) for r in rows] == [(2, 7), (2, 7 + len(other) + 5)]
    assert all(text[r["start"] : r["end"]] == other for r in rows)
    assert {r["name"] for r in rows} == {"OTHER"} and all(r["fingerprint"] for r in rows)


def test_pem_block_across_lines() -> None:
    body = "\n".join(rand(64) for _ in range(4))
    text = f"key:\n-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\nafter\n"
    p = run([], text)
    assert p.stdout == "key:\n[REDACTED:private-key]\nafter\n"


def test_policy_option(tmp_path: Path) -> None:
    g = google_api_key()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "default.yaml").write_text(
        "version: 1\nsecrets:\n  GEMINI_API_KEY:\n    from: env://KG_TEST_GEMINI\n"
    )
    p = run(
        ["--policy", str(tmp_path / "policies" / "default.yaml"), "--no-rules"],
        f"x {g}\n",
        {"KG_TEST_GEMINI": g},
        cwd=tmp_path,
    )
    assert p.stdout == "x [REDACTED:GEMINI_API_KEY]\n", p.stderr


def test_usage_error_exit_2(tmp_path: Path) -> None:
    p = run(["--env-file", str(tmp_path / "missing.env")], "")
    assert p.returncode == 2 and "missing.env" in p.stderr


def test_streams_line_by_line() -> None:
    other = rand(24)
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyguard", "redact", "--secret-env", "OTHER"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OTHER": other},
        cwd=ROOT,
        bufsize=1,
    )
    assert proc.stdin and proc.stdout
    try:
        for i in range(3):
            proc.stdin.write(f"line {i} {other}\n")
            proc.stdin.flush()
            t = time.monotonic()
            line = proc.stdout.readline()  # arrives before stdin is closed
            assert line == f"line {i} [REDACTED:OTHER]\n"
            assert time.monotonic() - t < 20
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 1


def test_invalid_utf8_passes_through() -> None:
    other = rand(24)
    data = b"bad \xff\xfe bytes " + other.encode() + b"\n\xc3\x28 end\n"
    p = subprocess.run(
        [sys.executable, "-m", "keyguard", "redact", "--secret-env", "OTHER"],
        input=data,
        capture_output=True,
        env={**os.environ, "OTHER": other},
        cwd=ROOT,
        timeout=60,
    )
    assert p.stdout == b"bad \xff\xfe bytes [REDACTED:OTHER]\n\xc3\x28 end\n", p.stderr
