"""keyguard.integrations.gemini: the real google-genai SDK against the loopback stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("google.genai")

from google.genai import types

from keyguard.errors import PolicyViolation
from keyguard.integrations import gemini
from keyguard.policy import Policy
from keyguard.sources import EnvSource
from keyguard.store import SecretStore
from tests.fake_gemini import FakeGemini, strings_in
from tests.fakes import github_classic, google_api_key

MODEL = "gemini-2.0-flash"


@pytest.fixture
def server() -> Iterator[FakeGemini]:
    with FakeGemini() as srv:
        yield srv


@pytest.fixture
def other() -> Iterator[FakeGemini]:
    with FakeGemini() as srv:
        yield srv


@pytest.fixture
def keys() -> dict[str, str]:
    return {"GEMINI_API_KEY": google_api_key(), "GITHUB_TOKEN": github_classic()}


@pytest.fixture(params=["httpx2", "httpx"])
def stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GOOGLE_GENAI_HTTP_CLIENT", request.param)
    return request.param


def make(server: FakeGemini, keys: dict[str, str]) -> tuple[SecretStore, Policy]:
    policy = Policy.from_dict(
        {
            "version": 1,
            "secrets": {
                "GEMINI_API_KEY": {
                    "format": "google-api-key",
                    "inject": {"hosts": [server.host], "header": "x-goog-api-key"},
                },
                "GITHUB_TOKEN": {"inject": {"hosts": ["api.github.com"]}},
            },
            "tools": {"default": {"secrets": ["GEMINI_API_KEY"]}},
        }
    )
    store = SecretStore(sources=[EnvSource(environ=keys)], policy=policy)
    store.get("GITHUB_TOKEN")  # loaded, so the redactor knows it
    return store, policy


def guarded(server: FakeGemini, keys: dict[str, str]) -> Any:
    store, policy = make(server, keys)
    return gemini.client(store, policy, http_options={"base_url": server.base_url})


def test_server_sees_the_key_and_the_client_never_holds_it(
    stack: str, server: FakeGemini, keys: dict[str, str]
) -> None:
    server.reply = "hello"
    client = guarded(server, keys)
    api = client._api_client
    # our clients on the stack the SDK would pick, their transports guarded, no aiohttp
    for http_client in (api._httpx_client, api._async_httpx_client):
        assert type(http_client).__module__.split(".")[0] == stack
        assert "Guarded" in type(http_client._transport.inner).__name__
    assert api._use_aiohttp() is False
    assert client.models.generate_content(model=MODEL, contents="hi").text == "hello"

    [req] = server.requests
    assert req.headers["x-goog-api-key"] == keys["GEMINI_API_KEY"]
    assert req.path == f"/v1/models/{MODEL}:generateContent"
    key = keys["GEMINI_API_KEY"]
    assert not [s for s in strings_in(client) if key in s]


def test_echoed_key_comes_back_redacted_sync_and_streamed(
    stack: str, server: FakeGemini, keys: dict[str, str]
) -> None:
    key = keys["GEMINI_API_KEY"]
    server.reply = "your key is {api_key}, enjoy"
    server.chunk_size = 3  # the key is split across many SSE events
    client = guarded(server, keys)

    text = client.models.generate_content(model=MODEL, contents="hi").text
    assert key not in text and "[REDACTED:GEMINI_API_KEY]" in text

    chunks = [
        c.text or "" for c in client.models.generate_content_stream(model=MODEL, contents="x")
    ]
    joined = "".join(chunks)
    assert len(chunks) > 5
    assert key not in joined and not any(key[:12] in c for c in chunks)
    assert joined == "your key is [REDACTED:GEMINI_API_KEY], enjoy"
    assert all(r.headers["x-goog-api-key"] == key for r in server.requests)


def test_async_and_async_stream_are_redacted(
    stack: str, server: FakeGemini, keys: dict[str, str]
) -> None:
    key = keys["GEMINI_API_KEY"]
    server.reply = "{api_key}"
    server.chunk_size = 2
    client = guarded(server, keys)

    async def run() -> tuple[str, str]:
        one = await client.aio.models.generate_content(model=MODEL, contents="a")
        parts = []
        async for chunk in await client.aio.models.generate_content_stream(
            model=MODEL, contents="b"
        ):
            parts.append(chunk.text or "")
        return one.text, "".join(parts)

    single, streamed = asyncio.run(run())
    assert single == streamed == "[REDACTED:GEMINI_API_KEY]"
    assert len(server.requests) == 2
    assert all(r.headers["x-goog-api-key"] == key for r in server.requests)


def test_chat_stream_is_redacted(server: FakeGemini, keys: dict[str, str]) -> None:
    server.reply = "k={api_key}"
    client = guarded(server, keys)
    chat = client.chats.create(model=MODEL)
    text = "".join(c.text or "" for c in chat.send_message_stream("hello"))
    assert text == "k=[REDACTED:GEMINI_API_KEY]"


def test_prompt_system_instruction_and_tool_result_go_out_redacted(
    stack: str, server: FakeGemini, keys: dict[str, str]
) -> None:
    key, gh = keys["GEMINI_API_KEY"], keys["GITHUB_TOKEN"]
    server.reply = "ok"
    store, policy = make(server, keys)
    client = gemini.client(store, policy, http_options={"base_url": server.base_url})
    placeholder = store.get("GEMINI_API_KEY").placeholder
    contents = [
        types.Content(role="user", parts=[types.Part(text=f"my key is {key} and {placeholder}")]),
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(
                    name="lookup", response={"token": gh, "note": "from a tool"}
                )
            ],
        ),
    ]
    config = types.GenerateContentConfig(system_instruction=f"never say {gh}")
    client.models.generate_content(model=MODEL, contents=contents, config=config)

    [req] = server.requests
    body = req.body.decode()
    assert key not in body and gh not in body and placeholder not in body
    assert "[REDACTED:GEMINI_API_KEY]" in body and "[REDACTED:GITHUB_TOKEN]" in body
    assert (
        req.json()["systemInstruction"]["parts"][0]["text"] == "never say [REDACTED:GITHUB_TOKEN]"
    )
    assert req.headers["x-goog-api-key"] == key  # the header is the edge's business


def test_per_call_base_url_elsewhere_gets_no_key(
    stack: str, server: FakeGemini, other: FakeGemini, keys: dict[str, str]
) -> None:
    client = guarded(server, keys)
    config = types.GenerateContentConfig(http_options=types.HttpOptions(base_url=other.base_url))
    with pytest.raises(PolicyViolation) as err:
        client.models.generate_content(model=MODEL, contents="hi", config=config)
    assert other.requests == []
    assert "GEMINI_API_KEY" in str(err.value)
    assert keys["GEMINI_API_KEY"] not in str(err.value)


def test_a_tool_without_the_grant_cannot_call(server: FakeGemini, keys: dict[str, str]) -> None:
    store, policy = make(server, keys)
    client = gemini.client(
        store, policy, tool="web_search", http_options={"base_url": server.base_url}
    )
    with pytest.raises(PolicyViolation) as err:
        client.models.generate_content(model=MODEL, contents="hi")
    assert server.requests == []
    assert "web_search" in str(err.value) and keys["GEMINI_API_KEY"] not in str(err.value)


def test_refuses_options_it_cannot_guard(server: FakeGemini, keys: dict[str, str]) -> None:
    import httpx

    store, policy = make(server, keys)
    with pytest.raises(ValueError, match="httpx_client"):
        gemini.client(store, policy, http_options=types.HttpOptions(httpx_client=httpx.Client()))
    with pytest.raises(ValueError, match="api_key"):
        gemini.client(store, policy, api_key="x" * 20)
