"""keyguard.integrations.e2b: the real e2b-code-interpreter SDK against loopback stand-ins."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("e2b_code_interpreter")

from keyguard.errors import PolicyViolation
from keyguard.integrations import e2b
from keyguard.policy import Policy
from keyguard.sources import EnvSource
from keyguard.store import SecretStore
from tests.fake_e2b import FakeE2B
from tests.fake_gemini import strings_in
from tests.fakes import e2b_api_key, github_classic, google_api_key


@pytest.fixture
def keys() -> dict[str, str]:
    return {
        "E2B_API_KEY": e2b_api_key(),
        "GITHUB_TOKEN": github_classic(),
        "GEMINI_API_KEY": google_api_key(),
    }


@pytest.fixture
def fake(keys: dict[str, str]) -> Iterator[FakeE2B]:
    with FakeE2B(api_key=keys["E2B_API_KEY"]) as f:
        yield f


@pytest.fixture
def guard(fake: FakeE2B, keys: dict[str, str]) -> tuple[SecretStore, Policy]:
    policy = Policy.from_dict(
        {
            "version": 1,
            "secrets": {
                "E2B_API_KEY": {"inject": {"hosts": [fake.api.host], "header": "X-API-KEY"}},
                "GITHUB_TOKEN": {"inject": {"hosts": ["api.github.com"]}},
                "GEMINI_API_KEY": {"inject": {"hosts": ["generativelanguage.googleapis.com"]}},
            },
            "tools": {
                "code_interpreter": {
                    "secrets": ["E2B_API_KEY", "GITHUB_TOKEN"],
                    "sandbox_env": ["GITHUB_TOKEN"],
                },
            },
        }
    )
    store = SecretStore(sources=[EnvSource(environ=keys)], policy=policy)
    for name in keys:
        store.get(name)  # all loaded: the redactor knows every value
    return store, policy


def create(fake: FakeE2B, guard: tuple[SecretStore, Policy], **kwargs: Any) -> e2b.Sandbox:
    store, policy = guard
    return e2b.Sandbox.create(
        store, policy, api_url=fake.api_url, sandbox_url=fake.sandbox_url, **kwargs
    )


def test_key_reaches_only_the_control_plane(
    fake: FakeE2B, guard: Any, keys: dict[str, str]
) -> None:
    key = keys["E2B_API_KEY"]
    sbx = create(fake, guard)
    execution = sbx.run_code("x = 20\nx + 22")
    assert execution.results[0].text == "42"
    assert not [s for s in strings_in(sbx.inner) if key in s]
    sbx.kill()

    assert [r.method + " " + r.path for r in fake.api.requests] == [
        "POST /v2/sandboxes",
        f"DELETE /sandboxes/{sbx.sandbox_id}",
    ]
    assert all(r.headers["x-api-key"] == key for r in fake.api.requests)
    assert fake.sandbox.requests and not fake.sandbox.seen(key)
    assert fake.killed == [sbx.sandbox_id]


def test_printed_secret_and_its_base64_come_back_redacted(
    fake: FakeE2B, guard: Any, keys: dict[str, str]
) -> None:
    gh = keys["GITHUB_TOKEN"]
    code = (
        "import base64, os\n"
        "t = os.environ['GITHUB_TOKEN']\n"
        "print('token:', t)\n"
        "print('b64:', base64.b64encode(t.encode()).decode())\n"
        "import sys; print('err', t, file=sys.stderr)\n"
        "t"
    )
    seen: list[str] = []
    with create(fake, guard) as sbx:
        execution = sbx.run_code(
            code,
            envs={"GITHUB_TOKEN": None},
            on_stdout=lambda m: seen.append(m.line),
            on_result=lambda r: seen.append(r.text),
        )
    # the sandbox really had the value: the granted env reached it
    assert fake.sandbox.seen(gh)
    out = "".join(execution.logs.stdout)
    b64 = base64.b64encode(gh.encode()).decode()
    assert gh not in out and b64 not in out
    assert "token: [REDACTED:GITHUB_TOKEN]" in out
    assert "b64: [REDACTED:GITHUB_TOKEN]" in out
    assert gh not in "".join(execution.logs.stderr)
    assert execution.results[0].text == "'[REDACTED:GITHUB_TOKEN]'"
    assert seen and not any(gh in s or b64 in s for s in seen)


def test_callbacks_catch_a_value_split_across_output_chunks(
    fake: FakeE2B, guard: Any, keys: dict[str, str]
) -> None:
    gh = keys["GITHUB_TOKEN"]
    fake.events = lambda code, envs: [
        {"type": "stdout", "text": "tok=" + gh[:9], "timestamp": 1},
        {"type": "stdout", "text": gh[9:] + "\n", "timestamp": 2},
        {
            "type": "result",
            "text": "r",
            "html": f"<b>{gh}</b>",
            "json": {"k": gh},
            "is_main_result": True,
        },
        {"type": "error", "name": "ValueError", "value": f"bad {gh}", "traceback": f"line 1 {gh}"},
    ]
    lines: list[str] = []
    errors: list[Any] = []
    with create(fake, guard) as sbx:
        execution = sbx.run_code(
            "pass", on_stdout=lambda m: lines.append(m.line), on_error=errors.append
        )
    assert "".join(lines) == "tok=[REDACTED:GITHUB_TOKEN]\n"
    assert "".join(execution.logs.stdout) == "tok=[REDACTED:GITHUB_TOKEN]\n"
    result = execution.results[0]
    assert result.html == "<b>[REDACTED:GITHUB_TOKEN]</b>" and result.json == {
        "k": "[REDACTED:GITHUB_TOKEN]"
    }
    assert execution.error.value == "bad [REDACTED:GITHUB_TOKEN]"
    assert gh not in execution.error.traceback
    assert errors and errors[0].value == "bad [REDACTED:GITHUB_TOKEN]"


def test_an_image_is_kept_unless_it_holds_a_secret(
    fake: FakeE2B, guard: Any, keys: dict[str, str]
) -> None:
    clean = base64.b64encode(b"\x89PNG fake image bytes").decode()
    dirty = base64.b64encode(b"\x89PNG " + keys["GITHUB_TOKEN"].encode()).decode()
    fake.events = lambda code, envs: [
        {"type": "result", "png": clean, "is_main_result": True},
        {"type": "result", "png": dirty},
    ]
    with create(fake, guard) as sbx:
        execution = sbx.run_code("plot()")
    assert execution.results[0].png == clean
    assert execution.results[1].png is None


def test_disallowed_env_is_refused_and_nothing_is_sent(
    fake: FakeE2B, guard: Any, keys: dict[str, str]
) -> None:
    gemini_key = keys["GEMINI_API_KEY"]
    with create(fake, guard) as sbx:
        before = len(fake.sandbox.requests)
        with pytest.raises(PolicyViolation) as err:
            sbx.run_code("print(1)", envs={"GEMINI_API_KEY": None})
        assert "GEMINI_API_KEY" in str(err.value) and gemini_key not in str(err.value)
        with pytest.raises(PolicyViolation) as err:
            sbx.run_code("print(1)", envs={"SOME_VAR": f"prefix-{gemini_key}"})
        assert "SOME_VAR" in str(err.value) and gemini_key not in str(err.value)
        with pytest.raises(PolicyViolation):
            sbx.commands.run("env", envs={"GEMINI_API_KEY": None})
        assert len(fake.sandbox.requests) == before
    store, policy = guard
    with pytest.raises(PolicyViolation):
        e2b.Sandbox.create(
            store,
            policy,
            api_url=fake.api_url,
            sandbox_url=fake.sandbox_url,
            envs={"GEMINI_API_KEY": None},
        )
    assert not fake.api.seen(gemini_key) and not fake.sandbox.seen(gemini_key)


def test_granted_env_at_create_skips_the_control_plane(
    fake: FakeE2B, guard: Any, keys: dict[str, str]
) -> None:
    gh = keys["GITHUB_TOKEN"]
    with create(fake, guard, envs={"GITHUB_TOKEN": None, "MODE": "test"}) as sbx:
        execution = sbx.run_code(
            "import os\nprint(len(os.environ['GITHUB_TOKEN']), os.environ['MODE'])"
        )
    assert execution.logs.stdout == [f"{len(gh)} test\n"]
    assert not fake.api.seen(gh)
    assert fake.api.requests[0].json()["envVars"] == {"MODE": "test"}


def test_code_holding_a_secret_value_is_refused(
    fake: FakeE2B, guard: Any, keys: dict[str, str]
) -> None:
    with create(fake, guard) as sbx:
        with pytest.raises(PolicyViolation) as err:
            sbx.run_code(f"print('{keys['GEMINI_API_KEY']}')")
    assert "GEMINI_API_KEY" in str(err.value) and keys["GEMINI_API_KEY"] not in str(err.value)
    assert not fake.sandbox.seen(keys["GEMINI_API_KEY"])


def test_async_sandbox(fake: FakeE2B, guard: Any, keys: dict[str, str]) -> None:
    store, policy = guard
    lines: list[str] = []

    async def run() -> Any:
        sbx = await e2b.AsyncSandbox.create(
            store, policy, api_url=fake.api_url, sandbox_url=fake.sandbox_url
        )
        async with sbx:
            return await sbx.run_code(
                "import os\nprint(os.environ['GITHUB_TOKEN'])",
                envs={"GITHUB_TOKEN": None},
                on_stdout=lambda m: lines.append(m.line),
            )

    execution = asyncio.run(run())
    assert execution.logs.stdout == ["[REDACTED:GITHUB_TOKEN]\n"] and lines == execution.logs.stdout
    assert all(r.headers["x-api-key"] == keys["E2B_API_KEY"] for r in fake.api.requests)
    assert [r.method for r in fake.api.requests] == ["POST", "DELETE"]


def test_hook_is_scoped_and_reversible(fake: FakeE2B, guard: Any, keys: dict[str, str]) -> None:
    import e2b.api.client_sync as client_sync
    from e2b_code_interpreter import Sandbox as PlainSandbox

    from keyguard.edge import GuardedTransport

    create(fake, guard).kill()  # installs the hook
    config = type("C", (), {"proxy": None, "http_version": "2"})()
    assert not isinstance(client_sync.get_transport(config), GuardedTransport)  # outside a sandbox
    # plain e2b use elsewhere in the process is untouched: its own key goes as given
    plain = PlainSandbox.create(
        api_key=keys["E2B_API_KEY"], api_url=fake.api_url, sandbox_url=fake.sandbox_url
    )
    plain.kill()
    hooked = client_sync.get_transport
    e2b.uninstall_hook()
    try:
        assert client_sync.get_transport is not hooked
        assert "keyguard" not in getattr(client_sync.get_transport, "__module__", "")
    finally:
        e2b.install_hook()
