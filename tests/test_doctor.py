"""keyguard doctor on a bad and a clean project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyguard.cli import cli
from keyguard.hygiene.doctor import rotation_for, run_doctor
from tests.fakes import e2b_api_key, github_classic, github_fine_grained, google_api_key
from tests.test_scan import commit_all, git, make_repo

POLICY = """\
version: 1
secrets:
  GEMINI_API_KEY:
    format: google-api-key
    description: Gemini (Google AI Studio)
  E2B_API_KEY:
    format: e2b-api-key
tools:
  code_interpreter:
    secrets: [E2B_API_KEY]
"""
WORKFLOW = """\
name: secret-scan
on: [push]
jobs:
  scan:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: pip install keyguard && keyguard scan --format sarif -o keyguard.sarif
"""


@pytest.fixture
def bad(tmp_path: Path) -> dict:
    repo = make_repo(tmp_path / "bad")
    keys = {"GEMINI_API_KEY": google_api_key(), "E2B_API_KEY": e2b_api_key()}
    (repo / ".env").write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    token = github_classic()
    (repo / "client.py").write_text(f'TOKEN = "{token}"\n')
    commit_all(repo, "everything")
    return {"repo": repo, "keys": keys, "token": token}


@pytest.fixture
def clean(tmp_path: Path) -> dict:
    repo = make_repo(tmp_path / "clean")
    (repo / ".gitignore").write_text(".env\n.env.local\n.env.*.local\n")
    (repo / "policies").mkdir()
    (repo / "policies" / "keyguard.yaml").write_text(POLICY)
    (repo / ".env.template").write_text(
        "# copy to .env\nGEMINI_API_KEY=your_gemini_api_key_here\nE2B_API_KEY=your_e2b_key_here\n"
    )
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "scan.yml").write_text(WORKFLOW)
    (repo / "app.py").write_text('from keyguard import SecretStore\nstore.get("GEMINI_API_KEY")\n')
    commit_all(repo, "clean start")
    keys = {"GEMINI_API_KEY": google_api_key(), "E2B_API_KEY": e2b_api_key()}
    (repo / ".env").write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    return {"repo": repo, "keys": keys}


def statuses(report) -> dict[str, str]:
    return {c.id: c.status for c in report.checks}


def test_bad_project_fails_each_item(bad):
    report = run_doctor(bad["repo"], environ={})
    st = statuses(report)
    assert st["env-ignored"] == "fail"
    assert st["env-history"] == "fail"
    assert st["policy"] == "fail"
    assert st["template"] == "fail"
    assert st["scan"] == "fail"
    assert st["history"] == "fail"
    assert st["ci"] == "fail"
    assert st["debug"] == "skip" and st["secrets"] == "skip"
    assert not report.ok
    for c in report.checks:
        if c.status == "fail":
            assert c.fix, c.id
    # Every exposed key is listed once, with its provider's rotation steps.
    by_rule = {e.rule: e for e in report.exposures}
    assert "aistudio.google.com" in by_rule["google-api-key"].url
    assert "e2b.dev" in by_rule["e2b-api-key"].url
    assert by_rule["github-pat"].steps[0].startswith("Open GitHub Settings")
    assert len(report.exposures) == 3
    text = json.dumps(report.to_dict())
    for value in [*bad["keys"].values(), bad["token"]]:
        assert value not in text


def test_bad_project_cli_output(bad, monkeypatch):
    monkeypatch.chdir(bad["repo"])
    result = CliRunner().invoke(cli, ["doctor"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "✘ .env is ignored by git" in result.output
    assert "exposed key(s): rotate them now" in result.output
    assert "Google AI Studio" in result.output
    for value in [*bad["keys"].values(), bad["token"]]:
        assert value not in result.output


def test_clean_project_passes(clean, monkeypatch):
    report = run_doctor(clean["repo"], environ={})
    st = statuses(report)
    assert st == {
        "env-ignored": "pass",
        "env-history": "pass",
        "policy": "pass",
        "template": "pass",
        "scan": "pass",
        "history": "pass",
        "ci": "pass",
        "debug": "pass",
        "secrets": "pass",
    }, [c.to_dict() for c in report.checks]
    assert report.ok and report.exposures == []

    monkeypatch.chdir(clean["repo"])
    result = CliRunner().invoke(cli, ["doctor", "--json"], catch_exceptions=False)
    doc = json.loads(result.output)
    assert result.exit_code == (0 if doc["ok"] else 1)
    for value in clean["keys"].values():
        assert value not in result.output


def test_debug_in_production_and_bad_secret(clean):
    env = clean["repo"] / ".env"
    env.write_text(f"GEMINI_API_KEY=not-a-google-key-{'x' * 10}\nE2B_API_KEY=short\n")
    report = run_doctor(clean["repo"], environ={"ENVIRONMENT": "production", "DEBUG": "true"})
    st = statuses(report)
    assert st["debug"] == "fail"
    assert st["secrets"] == "fail"
    secrets = next(c for c in report.checks if c.id == "secrets")
    assert any("GEMINI_API_KEY" in d for d in secrets.details)
    assert any("E2B_API_KEY" in d for d in secrets.details)


@pytest.mark.parametrize(
    ("make", "status"),
    [(github_classic, "pass"), (github_fine_grained, "pass"), (google_api_key, "fail")],
)
def test_github_token_format_list_in_the_secrets_check(clean, make, status):
    repo = clean["repo"]
    github = "  GITHUB_PERSONAL_ACCESS_TOKEN:\n    format: [github-pat, github-fine-grained-pat]\n"
    (repo / "policies" / "keyguard.yaml").write_text(
        POLICY.replace("tools:\n", github + "tools:\n")
    )
    token = make()
    with (repo / ".env").open("a") as env:
        env.write(f"GITHUB_PERSONAL_ACCESS_TOKEN={token}\n")
    report = run_doctor(repo, environ={}, history=False)
    secrets = next(c for c in report.checks if c.id == "secrets")
    assert secrets.status == status, secrets.details
    if status == "fail":
        assert any("github-pat or github-fine-grained-pat" in d for d in secrets.details)
    assert token not in json.dumps(report.to_dict())


def test_template_out_of_step_and_leaking(clean):
    repo = clean["repo"]
    (repo / ".env.template").write_text(f"GEMINI_API_KEY={google_api_key()}\n")
    report = run_doctor(repo, environ={}, history=False)
    template = next(c for c in report.checks if c.id == "template")
    assert template.status == "fail"
    joined = "\n".join(template.details)
    assert "E2B_API_KEY is in the policy but not in .env.template" in joined
    assert "looks like a real key (google-api-key" in joined


def test_env_tracked_now_and_untracked_later(clean):
    repo = clean["repo"]
    git(repo, "add", "-f", ".env")
    git(repo, "commit", "-q", "-m", "oops")
    report = run_doctor(repo, environ={}, history=False)
    check = next(c for c in report.checks if c.id == "env-history")
    assert check.status == "fail"
    assert "tracked now: .env" in check.details
    assert "git rm --cached .env" in check.fix
    git(repo, "rm", "-q", "--cached", ".env")
    git(repo, "commit", "-q", "-m", "untrack")
    check = next(
        c for c in run_doctor(repo, environ={}, history=False).checks if c.id == "env-history"
    )
    assert check.status == "fail"
    assert not any(d.startswith("tracked now") for d in check.details)
    assert any("in history: commit" in d for d in check.details)


def test_rotation_lookup():
    assert rotation_for("google-api-key")[0] == "google-api-key"
    assert rotation_for("MY_GEMINI_KEY")[0] == "google-api-key"
    assert rotation_for("WHATEVER", fmt="e2b-api-key")[0] == "e2b-api-key"
    # A list of formats: the first listed id that has rotation steps.
    fmts = ["nope", "github-fine-grained-pat", "github-pat"]
    assert rotation_for("WHATEVER", fmt=fmts)[0] == "github-fine-grained-pat"
    rule, entry = rotation_for("SOMETHING_ELSE")
    assert rule == "generic-secret"
    assert entry["steps"][-1].startswith("If the key was ever committed")


def test_every_rule_has_rotation_steps():
    from keyguard.redact.rules import load_rules

    missing = [r.id for r in load_rules() if rotation_for(r.id)[0] != r.id]
    assert missing == []
