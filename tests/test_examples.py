"""Each example in examples/ runs, against the loopback stand-ins (and a real n8n)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fake_e2b import FakeE2B
from tests.fake_gemini import FakeGemini
from tests.fakes import e2b_api_key, github_classic, google_api_key, rand
from tests.n8n_server import N8nServer, n8n, webhook_workflow  # noqa: F401

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def policy_file(tmp_path: Path, secrets: dict[str, list[str]], tools: dict[str, Any]) -> Path:
    doc = {
        "version": 1,
        "secrets": {name: {"inject": {"hosts": hosts}} for name, hosts in secrets.items()},
        "tools": tools,
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(example: str, tmp_path: Path, env: dict[str, str], *args: str) -> str:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / example), *args],
        cwd=tmp_path,  # no stray .env from the repository
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def test_gemini_chat(tmp_path: Path) -> None:
    pytest.importorskip("google.genai")
    key = google_api_key()
    with FakeGemini(reply="Hi! Your key is {api_key}.", chunk_size=2) as srv:
        policy = policy_file(
            tmp_path,
            {"GEMINI_API_KEY": [srv.host]},
            {"gemini_chat": {"secrets": ["GEMINI_API_KEY"]}},
        )
        out = run(
            "gemini_chat.py",
            tmp_path,
            {
                "GEMINI_API_KEY": key,
                "KEYGUARD_POLICY": str(policy),
                "GEMINI_BASE_URL": srv.base_url,
            },
            "hello?",
        )
        assert srv.requests and srv.requests[0].headers["x-goog-api-key"] == key
    assert "Hi! Your key is [REDACTED:GEMINI_API_KEY]." in out
    assert key not in out


def test_e2b_code_tool(tmp_path: Path) -> None:
    pytest.importorskip("e2b_code_interpreter")
    key = e2b_api_key()
    with FakeE2B(api_key=key) as fake:
        policy = policy_file(
            tmp_path,
            {
                "E2B_API_KEY": [fake.api.host],
                "GEMINI_API_KEY": ["generativelanguage.googleapis.com"],
            },
            {"code_interpreter": {"secrets": ["E2B_API_KEY"], "sandbox_env": []}},
        )
        env = {
            "E2B_API_KEY": key,
            "GEMINI_API_KEY": google_api_key(),
            "KEYGUARD_POLICY": str(policy),
            "E2B_API_URL": fake.api_url,
            "E2B_SANDBOX_URL": fake.sandbox_url,
        }
        out = run("e2b_code_tool.py", tmp_path, env)
        assert fake.api.requests[0].headers["x-api-key"] == key
        assert not fake.sandbox.seen(key) and fake.killed
    assert "secrets visible here: []" in out
    assert "result: 42" in out and key not in out


def test_langchain_agent(tmp_path: Path) -> None:
    pytest.importorskip("langchain_core")
    token = github_classic()
    policy = policy_file(
        tmp_path,
        {"GITHUB_PERSONAL_ACCESS_TOKEN": ["api.github.com"]},
        {"github": {"secrets": ["GITHUB_PERSONAL_ACCESS_TOKEN"]}},
    )
    out = run(
        "langchain_agent.py",
        tmp_path,
        {"GITHUB_PERSONAL_ACCESS_TOKEN": token, "KEYGUARD_POLICY": str(policy)},
    )
    assert "answer: The tool said: octocat/hello-world has 42 stars" in out
    assert "[REDACTED:GITHUB_PERSONAL_ACCESS_TOKEN]" in out and token not in out
    assert "('tool_run', 'github', 'end')" in out


def test_logging_setup(tmp_path: Path) -> None:
    key = google_api_key()
    policy = policy_file(tmp_path, {"GEMINI_API_KEY": ["generativelanguage.googleapis.com"]}, {})
    out = run("logging_setup.py", tmp_path, {"GEMINI_API_KEY": key, "KEYGUARD_POLICY": str(policy)})
    assert "calling Gemini with key=[REDACTED:GEMINI_API_KEY]" in out
    assert "request failed" in out and "RuntimeError" in out
    assert key not in out


@pytest.mark.n8n
def test_n8n_webhook(tmp_path: Path, n8n: N8nServer) -> None:  # noqa: F811
    token = "whk_" + rand(32)
    cred = n8n.create_header_auth_credential("X-Webhook-Token", token)
    path = f"kg-example-{uuid.uuid4().hex}"
    name = f"kg-example-{uuid.uuid4().hex[:6]}"
    with n8n.public() as api:
        wid = api.post("/workflows", json=webhook_workflow(name, path, cred)).json()["id"]
        assert api.post(f"/workflows/{wid}/activate").status_code == 200
    host = n8n.base_url.removeprefix("http://")
    policy = policy_file(
        tmp_path,
        {"N8N_API_KEY": [host], "N8N_WEBHOOK_TOKEN": [host]},
        {"n8n_workflows": {"secrets": ["N8N_API_KEY", "N8N_WEBHOOK_TOKEN"]}},
    )
    env = {
        "N8N_API_KEY": n8n.api_key,
        "N8N_WEBHOOK_TOKEN": token,
        "KEYGUARD_POLICY": str(policy),
        "N8N_BASE_URL": n8n.base_url,
    }
    out = run("n8n_webhook.py", tmp_path, env, path)
    assert name in out
    assert '"x-webhook-token": "[REDACTED:N8N_WEBHOOK_TOKEN]"' in out
    assert token not in out and n8n.api_key not in out


def test_keyguard_demo_runs_offline(tmp_path: Path) -> None:
    for sdk in ("google.genai", "e2b_code_interpreter", "langchain_core"):
        pytest.importorskip(sdk)
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    proc = subprocess.run(
        [sys.executable, "-m", "keyguard", "demo"],
        cwd=tmp_path,
        env={**base, "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "No key value appeared in any output." in out
    for outcome in ("injected", "refused", "redacted"):
        assert outcome in out
    # the table wraps long cells: check short, unbreakable pieces
    assert "[REDACTED:GEMINI_API_KEY]" in out and "[REDACTED:DEMO_DB_PASSWORD]" in out
    assert "not granted" in out
    assert "AIza" not in out and "e2b_" not in out
