"""The package surface: public names, lazy imports, the console entry points."""

from __future__ import annotations

import subprocess
import sys

import keyguard


def test_every_public_name_resolves() -> None:
    assert set(keyguard.__all__) - {"__version__"} == set(keyguard._EXPORTS)
    for name in keyguard._EXPORTS:
        assert getattr(keyguard, name) is not None


def test_import_keyguard_pulls_in_no_sdk_or_http_stack() -> None:
    code = (
        "import sys, keyguard\n"
        "heavy = [m for m in ('httpx', 'httpx2', 'hvac', 'google.genai', 'e2b', "
        "'langchain_core', 'presidio_analyzer', 'hyperscan', 'pydantic') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_python_dash_m_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "keyguard", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("init", "check", "redact", "scan", "policy", "doctor", "run"):
        assert command in out.stdout
    version = subprocess.run(
        [sys.executable, "-m", "keyguard", "--version"], capture_output=True, text=True, check=True
    )
    assert keyguard.__version__ in version.stdout


def test_unknown_command_is_a_usage_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "keyguard", "no-such-command"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "No such command" in out.stderr


def test_this_repository_scans_clean() -> None:
    """Our own tests generate their fake keys; nothing key-shaped is committed."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "keyguard",
            "scan",
            "--format",
            "json",
            str(root / "src"),
            str(root / "tests"),
            str(root / "examples"),
            str(root / "bench"),
        ],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
