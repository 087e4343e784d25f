"""keyguard scan: trees, .gitignore, binaries, size limit, pragma, baseline, git history,
JSON and SARIF output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyguard.cli import cli
from keyguard.hygiene.scan import Scanner, _added_lines, stable_fingerprint
from tests.fakes import github_classic, google_api_key, rand


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.invalid")
    git(path, "config", "commit.gpgsign", "false")
    return path


def commit_all(repo: Path, msg: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", msg)
    return git(repo, "rev-parse", "HEAD")


def run_scan(cwd: Path, *args: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(cli, ["scan", *args], catch_exceptions=False)


@pytest.fixture
def project(tmp_path: Path) -> dict:
    """A repo whose .env with a Gemini key was committed, then untracked and ignored."""
    repo = make_repo(tmp_path / "proj")
    gemini = google_api_key()
    (repo / ".env").write_text(f"GEMINI_API_KEY={gemini}\nDEBUG=false\n")
    (repo / "README.md").write_text("# demo\n")
    leak_commit = commit_all(repo, "initial")
    git(repo, "rm", "-q", "--cached", ".env")
    (repo / ".gitignore").write_text(".env\n")
    commit_all(repo, "untrack .env")
    return {"repo": repo, "gemini": gemini, "leak_commit": leak_commit}


def test_clean_tree_exits_0(project, monkeypatch):
    result = run_scan(project["repo"], monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert "0 finding(s)" in result.output


def test_ignored_env_is_not_scanned_but_history_finds_it(project, monkeypatch):
    result = run_scan(project["repo"], "--format", "json", monkeypatch=monkeypatch)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["findings"] == []

    result = run_scan(project["repo"], "--git-history", "--format", "json", monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert project["gemini"] not in result.output
    doc = json.loads(result.stdout)
    (finding,) = doc["findings"]
    assert finding["path"] == ".env"
    assert finding["commit"] == project["leak_commit"]
    assert finding["line"] == 1
    assert finding["column"] == len("GEMINI_API_KEY=") + 1
    assert finding["rule"] == "google-api-key"
    assert finding["masked"] == project["gemini"][:4] + "…" + project["gemini"][-4:]
    assert finding["fingerprint"] == stable_fingerprint(project["gemini"])
    assert doc["commits_scanned"] == 2


def test_findings_pragma_binary_and_size_limit(project, monkeypatch):
    repo = project["repo"]
    key = github_classic()
    (repo / "app.py").write_text(
        f'import os\nTEST_TOKEN = "{key}"  # keyguard:allow\nhéllo = "ü"; token = "{key}"\n'
    )
    (repo / "blob.bin").write_bytes(b"\x00\x01" + key.encode() + b"\x00")
    (repo / "big.txt").write_text(("x" * 100 + "\n") * 200 + key + "\n")
    result = run_scan(repo, "--max-bytes", "10000", "--show-skipped", monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    assert key not in result.output
    # The pragma line is not reported; the third line is, with a character column.
    column = len('héllo = "ü"; token = "') + 1
    assert f"app.py:3:{column}:" in result.output
    assert "app.py:2:" not in result.output
    assert "skipped blob.bin: binary" in result.output
    assert "skipped big.txt: too large" in result.output
    assert "1 finding(s)" in result.output


def test_gitignore_honoured_outside_git(tmp_path, monkeypatch):
    root = tmp_path / "plain"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / ".gitignore").write_text("secrets.txt\nbuild/\n")
    (root / "sub" / ".gitignore").write_text("*.log\n")
    (root / "build").mkdir()
    for rel in ["secrets.txt", "build/out.py", "sub/run.log", "sub/deep/secrets.txt"]:
        (root / rel).write_text(f"k = {google_api_key()}\n")
    (root / "sub" / "deep" / "kept.py").write_text(f"k = {google_api_key()}\n")
    (root / "sub" / "deep" / "kept.log").write_text(f"k = {google_api_key()}\n")
    result = run_scan(root, "--format", "json", monkeypatch=monkeypatch)
    paths = sorted(f["path"] for f in json.loads(result.stdout)["findings"])
    assert paths == ["sub/deep/kept.py"]


def test_explicit_file_and_missing_path(tmp_path, monkeypatch):
    f = tmp_path / "one.txt"
    f.write_text(f"x {google_api_key()}\n")
    assert run_scan(tmp_path, "one.txt", monkeypatch=monkeypatch).exit_code == 1
    result = run_scan(tmp_path, "nope", monkeypatch=monkeypatch)
    assert result.exit_code == 2
    assert "nope" in result.output


def test_baseline_suppresses_known_findings(project, monkeypatch):
    repo = project["repo"]
    old = google_api_key()
    (repo / "fixtures.py").write_text(f'OLD = "{old}"\n')
    baseline = repo / ".keyguard-baseline.json"
    result = run_scan(
        repo, "--baseline", str(baseline), "--write-baseline", monkeypatch=monkeypatch
    )
    assert result.exit_code == 0, result.output
    text = baseline.read_text()
    assert old not in text
    assert stable_fingerprint(old) in text

    assert run_scan(repo, "--baseline", str(baseline), monkeypatch=monkeypatch).exit_code == 0
    # Moving the same value elsewhere keeps it baselined; a new value is reported.
    new = google_api_key()
    (repo / "fixtures.py").write_text(f'\n\nOLD = "{old}"\nNEW = "{new}"\n')
    result = run_scan(
        repo, "--baseline", str(baseline), "--format", "json", monkeypatch=monkeypatch
    )
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [f["line"] for f in doc["findings"]] == [4]
    assert doc["suppressed_by_baseline"] == 1


def test_bad_baseline_is_a_clear_error(project, monkeypatch):
    bad = project["repo"] / "bl.json"
    bad.write_text("{not json")
    result = run_scan(project["repo"], "--baseline", str(bad), monkeypatch=monkeypatch)
    assert result.exit_code == 2
    assert "bl.json" in result.output and "not readable JSON" in result.output
    result = run_scan(
        project["repo"],
        "--baseline",
        str(project["repo"] / "missing.json"),
        monkeypatch=monkeypatch,
    )
    assert result.exit_code == 2
    assert "--write-baseline" in result.output


def test_env_file_values_found_as_known(tmp_path, monkeypatch):
    # A value with no provider shape: only the known-value match can find it.
    password = rand(24)
    env = tmp_path / "local.env"
    env.write_text(f"DB_PASSWORD={password}\nENVIRONMENT=production\n")
    repo = make_repo(tmp_path / "r")
    (repo / "settings.txt").write_text(f"db password is {password}\nmode production\n")
    commit_all(repo, "settings")
    result = run_scan(repo, "--env-file", str(env), "--format", "json", monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert password not in result.output
    (finding,) = json.loads(result.stdout)["findings"]
    assert (finding["rule"], finding["kind"], finding["line"]) == ("DB_PASSWORD", "known", 1)


def test_sarif_has_required_fields(project, monkeypatch):
    repo = project["repo"]
    (repo / "cfg.py").write_text(f'A = "{google_api_key()}"\nB = "{github_classic()}"\n')
    out = repo / "results.sarif"
    result = run_scan(
        repo, "--git-history", "--format", "sarif", "-o", str(out), monkeypatch=monkeypatch
    )
    assert result.exit_code == 1
    doc = json.loads(out.read_text())
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-2.1.0.json")
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "keyguard"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids)) >= 2
    for r in driver["rules"]:
        assert r["shortDescription"]["text"]
    assert len(run["results"]) == 3  # two in cfg.py, one in history
    for res in run["results"]:
        assert res["ruleId"] in rule_ids
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["message"]["text"]
        (loc,) = res["locations"]
        phys = loc["physicalLocation"]
        assert phys["artifactLocation"]["uri"] in {"cfg.py", ".env"}
        assert phys["region"]["startLine"] >= 1
        assert phys["region"]["startColumn"] >= 1
    assert project["gemini"] not in out.read_text()


def test_history_parser_numbers_added_lines():
    diff = (
        b"commit " + b"a" * 40 + b"\n\n"
        b"diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n"
        b"@@ -4,0 +5,2 @@ def f():\n+line five\n++++ not a header\n"
        b"@@ -9 +11 @@\n-old\n+line eleven\n"
        b"diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n--- a/gone.txt\n"
        b"+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
        b"diff --git a/img.png b/img.png\nnew file mode 100644\n"
        b"Binary files /dev/null and b/img.png differ\n"
    )
    chunks = list(_added_lines(diff.splitlines(keepends=True)))
    assert chunks[0] == ("a" * 40, None, [], [], False)
    assert chunks[1] == (
        "a" * 40,
        "x.py",
        ["line five", "+++ not a header", "line eleven"],
        [5, 6, 11],
        False,
    )
    assert chunks[2] == ("a" * 40, "img.png", [], [], True)
    assert len(chunks) == 3


def test_history_line_numbers_in_real_repo(tmp_path):
    repo = make_repo(tmp_path / "h")
    (repo / "conf.py").write_text("a = 1\nb = 2\nc = 3\n")
    commit_all(repo, "one")
    key = google_api_key()
    (repo / "conf.py").write_text(f"a = 1\nb = 2\nkey = '{key}'\nc = 3\n")
    second = commit_all(repo, "two")
    (repo / "conf.py").write_text("a = 1\nb = 2\nc = 3\n")
    commit_all(repo, "three")
    report = Scanner().scan_git_history(repo)
    assert report.errors == []
    (f,) = report.findings
    assert (f.path, f.line, f.column, f.commit) == ("conf.py", 3, 8, second)
    assert report.commits_scanned == 3


def test_history_of_empty_repo_is_clean(tmp_path):
    repo = make_repo(tmp_path / "empty")
    report = Scanner().scan_git_history(repo)
    assert report.errors == [] and report.findings == []


def test_policy_values_found_as_known(tmp_path, monkeypatch):
    password = rand(28)
    monkeypatch.setenv("DB_PASSWORD", password)
    repo = make_repo(tmp_path / "p")
    (repo / "policies").mkdir()
    (repo / "policies" / "keyguard.yaml").write_text(
        "version: 1\nsecrets:\n  DB_PASSWORD: {}\n  ABSENT_TOKEN: {required: false}\n"
    )
    (repo / "notes.md").write_text(f"# ops\n\nthe db password: `{password}`\n")
    commit_all(repo, "notes")
    result = run_scan(repo, "--policy", "policies", "--format", "json", monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    assert password not in result.output
    (finding,) = json.loads(result.stdout)["findings"]
    assert (finding["rule"], finding["path"], finding["line"]) == ("DB_PASSWORD", "notes.md", 3)


ROOT = Path(__file__).resolve().parents[1]


def test_pre_commit_hook_runs_keyguard_scan_on_files(tmp_path, monkeypatch):
    import yaml

    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    hook = hooks["keyguard-scan"]
    assert hook["entry"] == "keyguard scan" and hook["pass_filenames"] is True
    assert hook["language"] == "python"
    (tmp_path / "ok.py").write_text("x = 1\n")
    (tmp_path / "leak.py").write_text(f"k = '{google_api_key()}'\n")
    args = hook["entry"].split()[2:]  # run_scan supplies "keyguard scan"
    assert run_scan(tmp_path, *args, "ok.py", monkeypatch=monkeypatch).exit_code == 0
    assert run_scan(tmp_path, *args, "ok.py", "leak.py", monkeypatch=monkeypatch).exit_code == 1


def test_secret_scan_workflow_command_produces_sarif(project, monkeypatch):
    import shlex

    import yaml

    wf = yaml.safe_load((ROOT / "examples" / "github" / "secret-scan.yml").read_text())
    assert wf["permissions"]["security-events"] == "write"
    steps = wf["jobs"]["keyguard"]["steps"]
    scan = next(s for s in steps if "keyguard scan" in s.get("run", ""))
    upload = next(s for s in steps if "upload-sarif" in s.get("uses", ""))
    argv = shlex.split(scan["run"])
    assert argv[:2] == ["keyguard", "scan"] and "sarif" in argv
    out = argv[argv.index("--output") + 1]
    assert upload["with"]["sarif_file"] == out
    result = run_scan(project["repo"], *argv[2:], monkeypatch=monkeypatch)
    assert result.exit_code == 1  # the committed .env in history
    doc = json.loads((project["repo"] / out).read_text())
    assert doc["version"] == "2.1.0" and doc["runs"][0]["results"]


def test_tests_workflow_takes_keys_from_repository_secrets():
    import yaml

    wf = yaml.safe_load((ROOT / "examples" / "github" / "tests.yml").read_text())
    env = wf["jobs"]["test"]["env"]
    for name in ("GEMINI_API_KEY", "GITHUB_PERSONAL_ACCESS_TOKEN", "E2B_API_KEY", "N8N_API_KEY"):
        assert env[name] == "${{ secrets." + name + " }}"
    runs = [s.get("run", "") for s in wf["jobs"]["test"]["steps"]]
    assert any("pytest" in r for r in runs)


def test_custom_rule_file_and_bad_rule_file(tmp_path, monkeypatch):
    rules = tmp_path / "acme.toml"
    rules.write_text(
        "[[rules]]\n"
        'id = "acme-token"\n'
        'description = "ACME internal token"\n'
        "regex = '''acme_[a-z0-9]{24}'''\n"
        'keywords = ["acme_"]\n'
    )
    token = "acme_" + rand(24, "abcdefghijklmnopqrstuvwxyz0123456789")
    (tmp_path / "conf.ini").write_text(f"[svc]\n# ask ops for {token} if lost\n")
    result = run_scan(
        tmp_path,
        "conf.ini",
        "--rules",
        str(rules),
        "--format",
        "sarif",
        monkeypatch=monkeypatch,
    )
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    (rule,) = doc["runs"][0]["tool"]["driver"]["rules"]
    assert rule["id"] == "acme-token"
    assert rule["shortDescription"]["text"] == "ACME internal token"
    assert token not in result.output

    bad = tmp_path / "bad.toml"
    bad.write_text("[[rules]]\nid = 'x'\n")
    result = run_scan(tmp_path, "conf.ini", "--rules", str(bad), monkeypatch=monkeypatch)
    assert result.exit_code == 2
    assert "bad.toml" in result.output and "regex" in result.output
