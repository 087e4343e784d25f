"""keyguard migrate on sample code."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from keyguard.cli import cli
from keyguard.hygiene.migrate import find_in_source
from tests.fakes import google_api_key

SAMPLE = """\
import os
from os import getenv as ge, environ
from dotenv import load_dotenv

load_dotenv()
GEMINI = os.getenv("GEMINI_API_KEY")
token = os.environ["GITHUB_PERSONAL_ACCESS_TOKEN"]
e2b = os.environ.get("E2B_API_KEY", "")
n8n = ge("N8N_API_KEY")
other = environ.get("DB_PASSWORD")
debug = os.getenv("DEBUG", "false")
port = os.environ["CACHE_METRICS_PORT"]
os.environ["OPENAI_API_KEY"] = "set, not read"
dynamic = os.getenv(NAME)
"""


def test_finds_each_form_with_replacement():
    found = find_in_source(SAMPLE, "app.py")
    got = [(s.line, s.kind, s.name) for s in found]
    assert got == [
        (5, "load_dotenv", "load_dotenv"),
        (6, "getenv", "GEMINI_API_KEY"),
        (7, "environ", "GITHUB_PERSONAL_ACCESS_TOKEN"),
        (8, "environ.get", "E2B_API_KEY"),
        (9, "getenv", "N8N_API_KEY"),
        (10, "environ.get", "DB_PASSWORD"),
    ]
    by_name = {s.name: s for s in found}
    assert by_name["GEMINI_API_KEY"].replacement.startswith('store.get("GEMINI_API_KEY")')
    assert "integrations.gemini.client" in by_name["GEMINI_API_KEY"].client
    assert "integrations.e2b.Sandbox" in by_name["E2B_API_KEY"].client
    assert "N8nClient" in by_name["N8N_API_KEY"].client
    assert "guarded_client" in by_name["DB_PASSWORD"].client
    assert "SecretStore.from_policy" in by_name["load_dotenv"].replacement
    assert by_name["GITHUB_PERSONAL_ACCESS_TOKEN"].column == len("token = ") + 1


def test_load_dotenv_alone_is_not_reported():
    assert find_in_source("from dotenv import load_dotenv\nload_dotenv()\n", "x.py") == []


def test_hard_coded_literal_is_masked():
    key = google_api_key()
    src = f'import genai\nGEMINI_KEY = "{key}"\nclient = genai.Client(api_key=GEMINI_KEY)\n'
    (s,) = find_in_source(src, "cfg.py")
    assert (s.line, s.kind, s.name) == (2, "literal", "google-api-key")
    assert key not in json.dumps(s.to_dict())
    assert key[:4] + "…" + key[-4:] in s.found
    assert "GEMINI_KEY=" in s.replacement and "integrations.gemini" in s.client


def test_cli_on_a_tree(tmp_path: Path, monkeypatch):
    key = google_api_key()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "app.py").write_text(SAMPLE)
    (tmp_path / "pkg" / "old.py").write_text("print 'python 2'\n")
    (tmp_path / "pkg" / "keys.py").write_text(f'KEY = "{key}"\n')
    (tmp_path / "clean.py").write_text('store.get("GEMINI_API_KEY")\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["migrate", "--json"], catch_exceptions=False)
    assert result.exit_code == 1
    assert key not in result.output
    doc = json.loads(result.stdout)
    assert {s["path"] for s in doc["suggestions"]} == {"pkg/app.py", "pkg/keys.py"}
    assert doc["skipped"][0]["path"] == "pkg/old.py"
    assert doc["skipped"][0]["reason"] == "not valid Python"
    assert doc["files_scanned"] == 4

    result = CliRunner().invoke(cli, ["migrate", "pkg/app.py"], catch_exceptions=False)
    assert result.exit_code == 1
    assert 'pkg/app.py:6:10: os.getenv("GEMINI_API_KEY")' in result.output
    assert '-> store.get("GEMINI_API_KEY")' in result.output

    result = CliRunner().invoke(cli, ["migrate", "clean.py"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "nothing to migrate" in result.output
