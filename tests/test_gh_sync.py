"""keyguard gh-sync with a fake `gh` that records argv and stdin."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyguard.cli import cli
from tests.fakes import e2b_api_key, google_api_key, n8n_api_key

POLICY = """\
version: 1
secrets:
  GEMINI_API_KEY:
    format: google-api-key
    github: true
  E2B_API_KEY:
    github: true
  N8N_API_KEY:
    github: false
  OPTIONAL_TOKEN:
    required: false
    github: true
"""

FAKE_GH = """\
#!{python}
import json, os, sys
data = sys.stdin.buffer.read().decode()
with open(os.environ["FAKE_GH_LOG"], "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "stdin": data}}) + "\\n")
if sys.argv[3] == os.environ.get("FAKE_GH_FAIL"):
    sys.stderr.write("HTTP 403: refused secret " + data + "\\n")
    sys.exit(1)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "keyguard.yaml").write_text(POLICY)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    gh = bindir / "gh"
    gh.write_text(FAKE_GH.format(python=sys.executable))
    gh.chmod(gh.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "gh.log"
    keys = {
        "GEMINI_API_KEY": google_api_key(),
        "E2B_API_KEY": e2b_api_key(),
        "N8N_API_KEY": n8n_api_key(),
    }
    for k, v in keys.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("OPTIONAL_TOKEN", raising=False)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GH_LOG", str(log))
    monkeypatch.chdir(tmp_path)
    return {"keys": keys, "log": log}


def calls(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_values_go_on_stdin_never_argv(project):
    result = CliRunner().invoke(cli, ["gh-sync", "--repo", "octo/demo"], catch_exceptions=False)
    recorded = calls(project["log"])
    assert [c["argv"] for c in recorded] == [
        ["secret", "set", "GEMINI_API_KEY", "--repo", "octo/demo"],
        ["secret", "set", "E2B_API_KEY", "--repo", "octo/demo"],
    ]
    keys = project["keys"]
    assert recorded[0]["stdin"] == keys["GEMINI_API_KEY"]
    assert recorded[1]["stdin"] == keys["E2B_API_KEY"]
    for c in recorded:
        for value in keys.values():
            assert all(value not in arg for arg in c["argv"])
    # N8N is not marked github: true; the optional one is absent and reported.
    assert "OPTIONAL_TOKEN: not found" in result.output
    assert result.exit_code == 1
    assert "✔ set GEMINI_API_KEY on octo/demo" in result.output
    for value in keys.values():
        assert value not in result.output


def test_dry_run_calls_nothing(project):
    result = CliRunner().invoke(
        cli, ["gh-sync", "--repo", "octo/demo", "--dry-run"], catch_exceptions=False
    )
    assert calls(project["log"]) == []
    assert "would set GEMINI_API_KEY on octo/demo" in result.output
    assert "would set E2B_API_KEY" in result.output
    assert "N8N_API_KEY" not in result.output
    for value in project["keys"].values():
        assert value not in result.output


def test_gh_failure_is_reported_without_the_value(project, monkeypatch):
    monkeypatch.setenv("FAKE_GH_FAIL", "E2B_API_KEY")
    result = CliRunner().invoke(cli, ["gh-sync", "--repo", "octo/demo"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "E2B_API_KEY: gh secret set failed (1): HTTP 403" in result.output
    assert project["keys"]["E2B_API_KEY"] not in result.output


def test_usage_errors(project, monkeypatch):
    result = CliRunner().invoke(cli, ["gh-sync", "--repo", "not a repo"])
    assert result.exit_code == 2
    monkeypatch.setenv("PATH", "/nonexistent")
    result = CliRunner().invoke(cli, ["gh-sync", "--repo", "octo/demo"])
    assert result.exit_code == 2
    assert "GitHub CLI" in result.output
