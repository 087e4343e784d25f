"""Environment edges: sandbox env per policy grants, child env without secrets."""

from __future__ import annotations

from typing import Any

import pytest

from keyguard.audit import Auditor
from keyguard.context import tool_context
from keyguard.edge import child_env, sandbox_env
from keyguard.errors import PolicyViolation
from keyguard.policy import Policy
from keyguard.sources import EnvSource
from keyguard.store import SecretStore
from tests import fakes

POLICY = """
version: 1
secrets:
  E2B_API_KEY: {}
  GEMINI_API_KEY: {}
tools:
  code_interpreter:
    secrets: [E2B_API_KEY]
    sandbox_env: [E2B_API_KEY]
  agent:
    secrets: [GEMINI_API_KEY]
"""

KEYS = {"E2B_API_KEY": fakes.e2b_api_key(), "GEMINI_API_KEY": fakes.google_api_key()}


@pytest.fixture(scope="module")
def shared() -> tuple[Policy, SecretStore]:
    # module scope: the store's redactor compiles its matcher once
    policy = Policy.loads(POLICY, "env.yaml")
    return policy, SecretStore(sources=[EnvSource(KEYS)], policy=policy)


@pytest.fixture
def events() -> list[Any]:
    return []


@pytest.fixture
def ctx(
    shared: tuple[Policy, SecretStore], events: list[Any]
) -> tuple[Policy, SecretStore, Auditor]:
    return (*shared, Auditor([events.append]))


@pytest.mark.parametrize("how", ["none", "placeholder", "secret", "embedded"])
def test_granted_secret_enters_sandbox(ctx, events, how) -> None:
    policy, store, auditor = ctx
    secret = store.get("E2B_API_KEY")
    value: Any = {
        "none": None,
        "placeholder": secret.placeholder,
        "secret": secret,
        "embedded": f"key={secret.placeholder};",
    }[how]
    requested = {"E2B_API_KEY": value, "HOME": "/h"}
    env = sandbox_env(policy, "code_interpreter", store, requested, auditor=auditor)
    expected = f"key={KEYS['E2B_API_KEY']};" if how == "embedded" else KEYS["E2B_API_KEY"]
    assert env == {"E2B_API_KEY": expected, "HOME": "/h"}
    assert [e.event for e in events] == ["injected"]
    assert KEYS["E2B_API_KEY"] not in events[0].to_json()


@pytest.mark.parametrize(
    ("tool", "requested"),
    [
        ("code_interpreter", {"GEMINI_API_KEY": None}),  # not in sandbox_env
        ("agent", {"E2B_API_KEY": None}),  # agent has no sandbox_env at all
        ("code_interpreter", {"MY_VAR": "x " + KEYS["GEMINI_API_KEY"]}),  # pasted raw value
        ("unknown_tool", {"E2B_API_KEY": None}),
        (None, {"E2B_API_KEY": None}),  # outside a tool, no default tool
    ],
)
def test_refused_secret_raises_and_names_it(ctx, events, tool, requested) -> None:
    policy, store, auditor = ctx
    store.get("GEMINI_API_KEY")  # loaded: the redactor knows the raw value
    with pytest.raises(PolicyViolation) as info:
        sandbox_env(policy, tool, store, requested, auditor=auditor)
    message = str(info.value)
    assert any(name in message for name in KEYS)
    assert all(value not in message for value in KEYS.values())
    assert events and events[-1].event == "denied"


def test_sandbox_env_uses_current_tool(ctx) -> None:
    policy, store, auditor = ctx
    with tool_context("code_interpreter"):
        env = sandbox_env(policy, None, store, {"E2B_API_KEY": None}, auditor=auditor)
    assert env == {"E2B_API_KEY": KEYS["E2B_API_KEY"]}


def test_child_env_strips_secrets(ctx) -> None:
    policy, store, _ = ctx
    store.get("E2B_API_KEY")
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "PWD": "/work",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
        "E2B_API_KEY": KEYS["E2B_API_KEY"],
        "GEMINI_API_KEY": "not loaded but declared",
        "GH_TOKEN": fakes.github_classic(),
        "DB_PASSWORD": "hunter2-but-longer",  # keyguard:allow (fake)
        "OPENAI_API_KEY_FILE": "/run/secrets/openai",
        "INNOCENT": f"prefix {KEYS['E2B_API_KEY']} suffix",
        "KEEP_TOKEN": "kept on purpose",
    }
    env = child_env(base, store=store, policy=policy, keep=["KEEP_TOKEN"])
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "PWD": "/work",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
        "KEEP_TOKEN": "kept on purpose",
    }
    assert base["E2B_API_KEY"] == KEYS["E2B_API_KEY"]  # the input is not touched
