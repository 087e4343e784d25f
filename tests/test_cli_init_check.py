"""``keyguard init/check/template/get/policy``: CliRunner and one real subprocess run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyguard.cli import cli
from keyguard.cli.init import GITIGNORE_LINES, starter_policy_text
from tests.fakes import (
    e2b_api_key,
    github_classic,
    github_fine_grained,
    google_api_key,
    n8n_api_key,
    rand,
    the_four,
)

REPO = Path(__file__).resolve().parent.parent
FOUR = ("GEMINI_API_KEY", "GITHUB_PERSONAL_ACCESS_TOKEN", "E2B_API_KEY", "N8N_API_KEY")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as cwd, with no secrets or keyguard settings inherited."""
    for name in (*FOUR, "DEBUG", "ENVIRONMENT", "KEYGUARD_POLICY", "VAULT_ADDR", "VAULT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def write_env(folder: Path, values: dict[str, str], name: str = ".env") -> None:
    text = "".join(f"{k}={v}\n" for k, v in values.items())
    (folder / name).write_text(text, encoding="utf-8")


def assert_absent(output: str, values) -> None:
    for value in values:
        assert value not in output


# --------------------------------------------------------------------------- init


def test_init_writes_policy_template_gitignore(project: Path) -> None:
    code, out = run("init")
    assert code == 0
    policy = project / "policies" / "keyguard.yaml"
    assert policy.read_text(encoding="utf-8") == starter_policy_text()
    template = (project / ".env.template").read_text(encoding="utf-8")
    for name in FOUR:
        assert f"\n{name}=\n" in template  # names, no values
    assert "sent only to generativelanguage.googleapis.com" in template
    assert (
        "# required; format github-pat or github-fine-grained-pat; sent only to api.github.com"
        in (template)
    )
    lines = (project / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line in GITIGNORE_LINES] == list(GITIGNORE_LINES)
    assert "policies/keyguard.yaml written" in out
    assert "Next steps" in out and "cp .env.template .env" in out and "keyguard check" in out


def test_repo_policy_is_exactly_what_init_writes() -> None:
    assert (REPO / "policies" / "keyguard.yaml").read_text(encoding="utf-8") == (
        starter_policy_text()
    )


def test_init_is_idempotent_and_never_overwrites_without_force(project: Path) -> None:
    (project / ".gitignore").write_text("node_modules/\n.env", encoding="utf-8")
    assert run("init")[0] == 0
    gitignore = (project / ".gitignore").read_text(encoding="utf-8")
    assert gitignore.splitlines()[:2] == ["node_modules/", ".env"]
    assert gitignore.count(".env\n") == 1 and ".env.local\n" in gitignore

    code, out = run("init")
    assert code == 0 and "exists, unchanged" in out and "already ignores" in out
    assert (project / ".gitignore").read_text(encoding="utf-8") == gitignore

    policy = project / "policies" / "keyguard.yaml"
    edited = starter_policy_text().replace("hosts: [localhost]", "hosts: [n8n.example.com]")
    policy.write_text(edited, encoding="utf-8")
    code, out = run("init")
    assert code == 0
    assert "policies/keyguard.yaml exists, kept; use --force" in out
    assert policy.read_text(encoding="utf-8") == edited

    code, out = run("init", "--force")
    assert code == 0 and "overwritten (--force)" in out
    assert policy.read_text(encoding="utf-8") == starter_policy_text()


def test_init_into_a_new_directory(project: Path) -> None:
    code, out = run("init", "sub/dir")
    assert code == 0
    assert (project / "sub" / "dir" / "policies" / "keyguard.yaml").is_file()
    assert "cd sub/dir" in out


def test_init_template_follows_a_kept_policy(project: Path) -> None:
    (project / "policies").mkdir()
    (project / "policies" / "keyguard.yaml").write_text(
        "version: 1\nsecrets:\n  MY_SERVICE_TOKEN:\n    description: mine\n", encoding="utf-8"
    )
    assert run("init")[0] == 0
    template = (project / ".env.template").read_text(encoding="utf-8")
    assert "MY_SERVICE_TOKEN=" in template and "GEMINI_API_KEY" not in template


# --------------------------------------------------------------------------- check


def test_check_without_policy_is_a_usage_error(project: Path) -> None:
    code, out = run("check")
    assert code == 2
    assert "keyguard init" in out and "policies/keyguard.yaml" in out


def test_check_after_init_lists_every_missing_secret(project: Path) -> None:
    run("init")
    code, out = run("check")
    assert code == 1
    for name in FOUR:
        assert name in out
    assert out.count("✗ missing") == 4 and "4 problem(s)" in out
    assert "copy .env.template to .env" in out


def test_check_clean_environment(project: Path) -> None:
    run("init")
    values = the_four()
    write_env(project, values)
    code, out = run("check")
    assert code == 0, out
    assert "environment OK" in out and out.count("✓ ok") == 4
    assert ".env:1" in out
    assert_absent(out, values.values())
    code, out = run("check", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True and [s["status"] for s in data["secrets"]] == ["ok"] * 4
    assert data["secrets"][0]["origin"] == ".env:1"
    assert_absent(out, values.values())


@pytest.mark.parametrize("make", [github_classic, github_fine_grained])
def test_check_accepts_either_kind_of_github_token(project: Path, make) -> None:
    run("init")
    values = {**the_four(), "GITHUB_PERSONAL_ACCESS_TOKEN": make()}
    write_env(project, values)
    code, out = run("check", "--json")
    assert code == 0, out
    assert [s["status"] for s in json.loads(out)["secrets"]] == ["ok"] * 4
    assert_absent(out, values.values())


def test_check_rejects_a_non_github_value_for_the_github_token(project: Path) -> None:
    run("init")
    wrong = google_api_key()
    values = {**the_four(), "GITHUB_PERSONAL_ACCESS_TOKEN": wrong}
    write_env(project, values)
    code, out = run("check")
    assert code == 1
    assert "does not match format github-pat or github-fine-grained-pat" in out
    assert_absent(out, values.values())


def test_check_reports_bad_values_without_showing_them(project: Path) -> None:
    run("init")
    values = {
        "GEMINI_API_KEY": e2b_api_key(),
        "GITHUB_PERSONAL_ACCESS_TOKEN": rand(5),
        "E2B_API_KEY": google_api_key(),
        "N8N_API_KEY": n8n_api_key(),
        "DEBUG": "true",
        "UNDECLARED_SERVICE_TOKEN": rand(30),
    }
    write_env(project, values)
    code, out = run("check", "--json")
    assert code == 1
    data = json.loads(out)
    rules = {(p["name"], p["rule"]) for s in data["secrets"] for p in s["problems"]}
    assert rules == {
        ("GEMINI_API_KEY", "google-api-key"),
        ("GITHUB_PERSONAL_ACCESS_TOKEN", "min_length"),
        ("GITHUB_PERSONAL_ACCESS_TOKEN", "github-pat|github-fine-grained-pat"),
        ("E2B_API_KEY", "e2b-api-key"),
    }
    assert [p["name"] for p in data["environment"]] == ["UNDECLARED_SERVICE_TOKEN"]
    secrets = [v for k, v in values.items() if k != "DEBUG"]
    assert_absent(out, secrets)
    code, human = run("check")
    assert code == 1
    assert "does not match format e2b-api-key" in human and "min_length" in human
    assert "does not match format github-pat or github-fine-grained-pat" in human
    assert "UNDECLARED_SERVICE_TOKEN looks like a secret" in human
    assert_absent(human, secrets)


def test_check_reports_a_malformed_env_once(project: Path) -> None:
    run("init")
    gemini = google_api_key()
    (project / ".env").write_text(
        f'GEMINI_API_KEY={gemini}\nBROKEN LINE "unterminated\n', encoding="utf-8"
    )
    code, out = run("check")
    assert code == 1
    assert out.count("cannot parse this line") == 1 and out.count("[env-file-syntax]") == 1
    assert ".env:2" in out and out.count("✗ unavailable") == 4 and "1 problem(s)" in out
    assert "✗ missing" not in out and "copy .env.template" not in out
    assert gemini not in out and "unterminated" not in out
    code, out = run("check", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["errors"] == 1 and [s["status"] for s in data["secrets"]] == ["unavailable"] * 4
    (problem,) = data["environment"]
    assert problem["rule"] == "env-file-syntax" and ".env:2:" in problem["message"]
    assert gemini not in out and "unterminated" not in out


def test_check_refuses_debug_in_production(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("init")
    write_env(project, {**the_four(), "DEBUG": "true"})
    assert run("check")[0] == 0
    monkeypatch.setenv("ENVIRONMENT", "production")
    code, out = run("check")
    assert code == 1 and "debug-in-production" in out


def test_check_env_file_and_strict(project: Path) -> None:
    run("init")
    values = the_four()
    write_env(project, {**values, "STRAY_TOKEN": rand(20)}, "other.env")
    assert run("check")[0] == 1  # .env does not exist
    code, out = run("check", "--env-file", "other.env")
    assert code == 0 and "other.env:1" in out
    assert "STRAY_TOKEN" in out
    assert run("check", "--env-file", "other.env", "--strict")[0] == 1
    assert run("check", "--env-file", "missing.env")[0] == 2
    assert_absent(out, values.values())


def test_check_environment_variables_win(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("init")
    values = the_four()
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    code, out = run("check", "--json")
    assert code == 0
    assert {s["origin"] for s in json.loads(out)["secrets"]} == {f"env://{n}" for n in FOUR}


def test_check_policy_option_env_and_invalid(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "custom.yaml").write_text("version: 1\nsecrets:\n  A: {required: false}\n")
    code, out = run("check", "--policy", "custom.yaml")
    assert code == 0 and "A" in out
    monkeypatch.setenv("KEYGUARD_POLICY", "custom.yaml")
    assert run("check")[0] == 0
    (project / "bad.yaml").write_text("version: 1\nsecrets:\n  A: {requird: false}\n")
    code, out = run("check", "--policy", "bad.yaml")
    assert code == 2
    assert "bad.yaml:3" in out and "did you mean 'required'?" in out


# --------------------------------------------------------------------------- template


def test_template_regenerates_with_names_from_env(project: Path) -> None:
    run("init")
    values = {**the_four(), "CACHE_METRICS_PORT": "9090"}
    write_env(project, values)
    (project / ".env.template").unlink()
    code, out = run("template")
    assert code == 0 and "wrote .env.template" in out
    text = (project / ".env.template").read_text(encoding="utf-8")
    assert "CACHE_METRICS_PORT=\n" in text and "GEMINI_API_KEY=\n" in text
    assert_absent(text, values.values())
    code, out = run("template", "--output", "-", "--from-env", ".env")
    assert code == 0 and out == text
    assert run("template", "--from-env", "nope.env")[0] == 2


def test_template_for_references(project: Path) -> None:
    (project / "p.yaml").write_text(
        "secrets:\n"
        "  A: {from: 'vault://secret/app#key'}\n"
        "  B: {from: 'env://LEGACY_B', required: false}\n",
        encoding="utf-8",
    )
    code, out = run("template", "--policy", "p.yaml", "-o", "-")
    assert code == 0
    assert "# A comes from vault://secret/app#key, not from this file" in out
    assert "LEGACY_B=\n" in out and "# optional" in out


# --------------------------------------------------------------------------- get


def test_get_shows_masked_origin_fingerprint_never_value(project: Path) -> None:
    run("init")
    values = the_four()
    write_env(project, values)
    code, out = run("get", "GEMINI_API_KEY")
    assert code == 0
    value = values["GEMINI_API_KEY"]
    assert f"{value[:4]}…{value[-4:]}" in out and "from         .env:1" in out
    assert "fingerprint" in out
    assert_absent(out, values.values())
    code, out = run("get", "E2B_API_KEY", "--json")
    data = json.loads(out)
    assert code == 0 and data["origin"] == ".env:3" and data["found"] is True
    assert len(data["fingerprint"]) == 16
    assert_absent(out, values.values())


def test_get_not_found_exits_1(project: Path) -> None:
    run("init")
    code, out = run("get", "GEMINI_API_KEY")
    assert code == 1 and "'GEMINI_API_KEY' not found" in out
    code, out = run("get", "NOPE", "--json")
    assert code == 1 and json.loads(out)["found"] is False


# --------------------------------------------------------------------------- policy


def test_policy_check_lists_what_each_tool_reaches(project: Path) -> None:
    run("init")
    code, out = run("policy", "check")
    assert code == 0
    assert "policy OK" in out
    assert "E2B_API_KEY -> api.e2b.app, api.e2b.dev" in out
    assert "code_interpreter  (sandbox env: none)" in out
    assert "no 'default' tool" in out
    code, out = run("policy", "check", "policies", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    assert data["tools"]["github"]["secrets"] == {
        "GITHUB_PERSONAL_ACCESS_TOKEN": ["api.github.com"]
    }
    assert data["unused_secrets"] == []
    # `format` as written: one id stays a string, a list stays a list.
    assert data["secrets"]["GEMINI_API_KEY"]["format"] == "google-api-key"
    assert data["secrets"]["GITHUB_PERSONAL_ACCESS_TOKEN"]["format"] == [
        "github-pat",
        "github-fine-grained-pat",
    ]


def test_policy_check_invalid(project: Path) -> None:
    bad = project / "bad.yaml"
    bad.write_text("version: 1\ntools:\n  t:\n    secrets: [MISSING]\n", encoding="utf-8")
    code, out = run("policy", "check", str(bad))
    assert code == 1
    assert f"{bad}:4: tools.t.secrets[0]: unknown secret 'MISSING'" in out
    code, out = run("policy", "check", str(bad), "--json")
    assert code == 1
    assert json.loads(out)["problems"][0]["line"] == 4


def test_policy_check_shows_warnings(project: Path) -> None:
    (project / "q.yaml").write_text(
        "secrets:\n  A: {inject: {hosts: [a.example.com], query: key}}\n", encoding="utf-8"
    )
    code, out = run("policy", "check", "q.yaml")
    assert code == 0 and "warning" in out and "URL query parameter" in out
    assert "A is granted to no tool" in out


def test_policy_explain(project: Path) -> None:
    run("init")
    code, out = run("policy", "explain", "--tool", "code_interpreter", "--host", "api.e2b.app")
    assert code == 0
    assert "✓ E2B_API_KEY: injected as header X-API-KEY" in out
    assert "✗ GEMINI_API_KEY: not sent" in out
    assert "is not granted GEMINI_API_KEY" in out
    code, out = run(
        "policy", "explain", "--tool", "n8n_workflows", "--host", "http://localhost:5678/api/v1"
    )
    assert code == 0 and "✓ N8N_API_KEY" in out and "over http" in out
    code, out = run("policy", "explain", "--host", "api.github.com", "--json")
    data = json.loads(out)
    assert code == 0 and data["tool"] is None
    assert not any(row["allowed"] for row in data["secrets"])
    assert "outside any tool context" in data["secrets"][0]["reason"]
    assert run("policy", "explain", "--host", "http://[bad")[0] == 2


# --------------------------------------------------------------------------- real process


def test_real_subprocess_init_then_check(tmp_path: Path) -> None:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONPATH"] = str(REPO / "src")

    def keyguard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keyguard", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
            check=False,
        )

    init = keyguard("init")
    assert init.returncode == 0, init.stderr
    assert "policies/keyguard.yaml written" in init.stdout
    first = keyguard("check")
    assert first.returncode == 1, first.stderr
    assert first.stdout.count("required") == 4

    values = {**the_four(), "GITHUB_PERSONAL_ACCESS_TOKEN": github_classic()}
    write_env(tmp_path, values)
    second = keyguard("check")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "environment OK" in second.stdout
    shown = keyguard("get", "N8N_API_KEY")
    assert shown.returncode == 0 and ".env:4" in shown.stdout
    for result in (init, first, second, shown):
        assert_absent(result.stdout + result.stderr, values.values())
