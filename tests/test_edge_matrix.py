"""The edge against real loopback servers: what each server actually received.

Matrix: secret x allowed/denied host x tool context x where the value sits x
placeholder or raw value x client (httpx/httpx2, sync/async). 127.0.0.1 is the
allowed host, 127.0.0.2 (also loopback) the denied one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import httpx2
import pytest

from keyguard.audit import Auditor
from keyguard.context import tool_context
from keyguard.edge import async_guarded_client, guarded_client
from keyguard.edge import httpx2_transport as edge2
from keyguard.errors import PolicyViolation
from keyguard.policy import Policy
from keyguard.sources import EnvSource
from keyguard.store import SecretStore
from tests import fakes
from tests.helpers_http import RecordingServer

ALLOWED, DENIED = "127.0.0.1", "127.0.0.2"

POLICY = f"""
version: 1
secrets:
  GEMINI_API_KEY:
    inject: {{hosts: ["{ALLOWED}"], header: x-goog-api-key}}
  GITHUB_PERSONAL_ACCESS_TOKEN:
    inject: {{hosts: ["{ALLOWED}"], header: Authorization, template: "Bearer {{value}}"}}
  E2B_API_KEY:
    inject: {{hosts: ["{ALLOWED}"]}}
  N8N_API_KEY:
    inject: {{hosts: ["{ALLOWED}"]}}
tools:
  agent:
    secrets: [GEMINI_API_KEY, GITHUB_PERSONAL_ACCESS_TOKEN, E2B_API_KEY, N8N_API_KEY]
  code_interpreter:
    secrets: [E2B_API_KEY]
"""

KEYS = fakes.the_four()
HEADER_INJECTED = {"GEMINI_API_KEY", "GITHUB_PERSONAL_ACCESS_TOKEN"}


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, RecordingServer]]:
    with RecordingServer(ALLOWED) as a, RecordingServer(DENIED) as d:
        yield {ALLOWED: a, DENIED: d}


# One policy, store and auditor for the module: a store's redactor compiles its
# matcher once per set of values, which is the expensive part of a test.
@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.loads(POLICY, "edge-test.yaml")


@pytest.fixture(scope="module")
def store(policy: Policy) -> SecretStore:
    return SecretStore(sources=[EnvSource(KEYS)], policy=policy)


@pytest.fixture(scope="module")
def auditor() -> Auditor:
    return Auditor([])


@pytest.fixture
def events(auditor: Auditor) -> Iterator[list[Any]]:
    seen: list[Any] = []
    sink = auditor.add_sink(seen.append)
    yield seen
    auditor.remove_sink(sink)


@pytest.fixture(autouse=True)
def _clear(servers: dict[str, RecordingServer]) -> None:
    for server in servers.values():
        server.clear()


CLIENTS = ["httpx-sync", "httpx-async", "httpx2-sync", "httpx2-async"]


def send_with(
    kind: str, store: SecretStore, policy: Policy, auditor: Auditor, **client_kw: Any
) -> Callable[..., Any]:
    """A ``send(method, url, **kw) -> (status, headers, text)`` through a guarded client."""
    lib, mode = kind.split("-")
    sync_factory = guarded_client if lib == "httpx" else edge2.guarded_client
    async_factory = async_guarded_client if lib == "httpx" else edge2.async_guarded_client
    # plain-http loopback: verify=False skips loading the CA bundle (~70 ms per client)
    kw = {"auditor": auditor, "verify": False, **client_kw}

    def send_sync(method: str, url: str, **req: Any) -> tuple[int, Any, str]:
        with sync_factory(store, policy, **kw) as client:
            r = client.request(method, url, **req)
            return r.status_code, r.headers, r.text

    def send_async(method: str, url: str, **req: Any) -> tuple[int, Any, str]:
        async def go() -> tuple[int, Any, str]:
            async with async_factory(store, policy, **kw) as client:
                r = await client.request(method, url, **req)
                return r.status_code, r.headers, r.text

        return asyncio.run(go())

    return send_sync if mode == "sync" else send_async


def placed(where: str, value: str) -> dict[str, Any]:
    """Request keyword arguments that put ``value`` in one place of the request."""
    if where == "header":
        return {"headers": {"X-Api-Key": value}}
    if where == "query":
        return {"params": {"key": value}}
    if where == "json":
        return {"json": {"api_key": value, "n": 1}}
    if where == "form":
        return {"data": {"api_key": value}}
    if where == "multipart":
        return {"data": {"field": value}, "files": {"upload": ("k.txt", f"token={value}\n")}}
    raise AssertionError(where)


def tool_scope(tool: str | None) -> contextlib.AbstractContextManager[Any]:
    return tool_context(tool) if tool else contextlib.nullcontext()


def granted(tool: str | None, secret: str) -> bool:
    return tool == "agent" or (tool == "code_interpreter" and secret == "E2B_API_KEY")


# ------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("form", ["placeholder", "raw"])
@pytest.mark.parametrize("where", ["header", "query", "json", "form", "multipart"])
@pytest.mark.parametrize("tool", ["agent", "code_interpreter", None])
@pytest.mark.parametrize("host", [ALLOWED, DENIED])
@pytest.mark.parametrize("secret", ["GEMINI_API_KEY", "E2B_API_KEY"])
def test_matrix(
    servers, store, policy, auditor, events, secret, host, tool, where, form, client
) -> None:
    real = KEYS[secret]
    sent_value = store.get(secret).placeholder if form == "placeholder" else real
    server = servers[host]
    send = send_with(client, store, policy, auditor)
    allowed = host == ALLOWED and granted(tool, secret)

    with tool_scope(tool):
        if not allowed:
            with pytest.raises(PolicyViolation) as info:
                send("POST", server.url("/echo"), **placed(where, sent_value))
            message = str(info.value)
            assert secret in message
            assert real not in message
            assert server.requests == []  # nothing was sent at all
            assert not any(s.saw(real) for s in servers.values())
            assert any(e.event == "denied" and e.secret == secret for e in events)
            return
        status, headers, text = send(
            "POST", server.url("/echo?chunk=7"), **placed(where, sent_value)
        )

    assert status == 200
    (received,) = server.requests
    assert server.saw(real), "the allowed host must receive the real value"
    assert store.get(secret).placeholder.encode() not in received.raw
    # the echo of the key came back scrubbed, although split across 7-byte chunks
    assert real not in text
    assert f"[REDACTED:{secret}]" in text
    assert all(real not in v for v in headers.values())
    if secret in HEADER_INJECTED and tool == "agent":
        assert received.header("x-goog-api-key") == real
    assert not servers[DENIED].requests
    for event in events:
        assert real not in event.to_json()
    assert any(e.event == "injected" and e.secret == secret for e in events)
    assert any(e.event == "redacted" and e.secret == secret for e in events)


# ------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("client", CLIENTS)
def test_same_host_redirect_carries_value_again(servers, store, policy, auditor, client) -> None:
    a = servers[ALLOWED]
    ph = store.get("E2B_API_KEY").placeholder
    send = send_with(client, store, policy, auditor, follow_redirects=True)
    with tool_context("agent"):
        status, _, text = send("GET", a.redirect_url(a.url("/echo")), headers={"X-Api-Key": ph})
    assert status == 200
    first, second = a.requests
    assert first.path == "/redirect" and second.path == "/echo"
    for hop in (first, second):
        assert hop.header("X-Api-Key") == KEYS["E2B_API_KEY"]
        assert hop.header("x-goog-api-key") == KEYS["GEMINI_API_KEY"]  # injected per hop
    assert KEYS["E2B_API_KEY"] not in text


@pytest.mark.parametrize("code", [302, 307])
@pytest.mark.parametrize("client", CLIENTS)
def test_cross_host_redirect_drops_injected_header(
    servers, store, policy, auditor, client, code
) -> None:
    a, d = servers[ALLOWED], servers[DENIED]
    gh = store.get("GITHUB_PERSONAL_ACCESS_TOKEN").placeholder
    send = send_with(client, store, policy, auditor, follow_redirects=True)
    with tool_context("agent"):
        status, _, _ = send(
            "GET",
            a.redirect_url(d.url("/ok"), code),
            headers={"Authorization": f"Bearer {gh}"},
        )
    assert status == 200
    (first,) = a.requests
    assert first.header("x-goog-api-key") == KEYS["GEMINI_API_KEY"]
    assert first.header("Authorization") == f"Bearer {KEYS['GITHUB_PERSONAL_ACCESS_TOKEN']}"
    (second,) = d.requests  # the other host was reached, without any secret
    for name, value in KEYS.items():
        assert not d.saw(value), name
    assert second.header("x-goog-api-key") is None


@pytest.mark.parametrize("form", ["placeholder", "raw"])
@pytest.mark.parametrize("client", CLIENTS)
def test_cross_host_redirect_with_value_in_header_is_refused(
    servers, store, policy, auditor, client, form
) -> None:
    a, d = servers[ALLOWED], servers[DENIED]
    real = KEYS["E2B_API_KEY"]
    value = store.get("E2B_API_KEY").placeholder if form == "placeholder" else real
    send = send_with(client, store, policy, auditor, follow_redirects=True)
    with tool_context("agent"), pytest.raises(PolicyViolation) as info:
        send("POST", a.redirect_url(d.url("/echo")), headers={"X-Api-Key": value}, json={"a": 1})
    assert real not in str(info.value)
    assert "127.0.0.2" in str(info.value)
    assert a.saw(real)
    assert d.requests == []


# ------------------------------------------------------------------------- responses


# "chunk=N": chunked, scrubbed as a stream; "length=1": Content-Length, read whole
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("framing", ["chunk=1", "chunk=3", "chunk=64", "length=1"])
def test_echo_scrubbed_for_any_framing(servers, store, policy, auditor, client, framing) -> None:
    a = servers[ALLOWED]
    key = KEYS["N8N_API_KEY"]
    send = send_with(client, store, policy, auditor)
    with tool_context("agent"):
        _, headers, text = send(
            "POST",
            a.url(f"/echo?{framing}"),
            content=f"before {key} middle {key} after".encode(),
            headers={"X-Echo-Me": f"k={key}"},
        )
    assert key not in text
    assert text.count("[REDACTED:N8N_API_KEY]") == 3  # body twice + the echoed header line
    assert headers["X-Echo"] == "k=[REDACTED:N8N_API_KEY]"
    if framing == "length=1":
        assert int(headers["content-length"]) == len(text.encode())  # corrected
    else:
        assert "content-length" not in headers


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("framing", ["chunk=5", "length=1"])
def test_gzip_echo_is_decoded_then_scrubbed(
    servers, store, policy, auditor, client, framing
) -> None:
    a = servers[ALLOWED]
    key = KEYS["E2B_API_KEY"]
    send = send_with(client, store, policy, auditor)
    with tool_context("agent"):
        status, headers, text = send("POST", a.url(f"/echo?gzip=1&{framing}"), content=key.encode())
    assert status == 200
    assert key not in text and "[REDACTED:E2B_API_KEY]" in text
    assert "content-encoding" not in headers


@pytest.mark.parametrize("lib", [httpx, httpx2])
def test_unchanged_response_keeps_its_headers(servers, store, policy, auditor, lib) -> None:
    a = servers[ALLOWED]
    factory = guarded_client if lib is httpx else edge2.guarded_client
    with factory(store, policy, auditor=auditor, verify=False) as client:
        r = client.get(a.url("/ok"))  # no tool: nothing injected, nothing echoed
    assert r.text == "ok" and r.headers["content-length"] == "2"


def test_streamed_response_is_scrubbed(servers, store, policy, auditor) -> None:
    a = servers[ALLOWED]
    key = KEYS["GEMINI_API_KEY"]
    filler = "x" * 4000  # longer than what the stream redactor holds back
    with tool_context("agent"), guarded_client(store, policy, auditor=auditor) as client:
        with client.stream(
            "POST", a.url("/echo?chunk=50"), content=f"{filler} {key} {filler}".encode()
        ) as response:
            pieces = list(response.iter_bytes())
    body = b"".join(pieces)
    assert len(pieces) > 1  # really streamed, not buffered whole
    assert key.encode() not in body
    assert b"[REDACTED:GEMINI_API_KEY]" in body


# ------------------------------------------------------------------------- the caller's request


@pytest.mark.parametrize("lib", [httpx, httpx2])
def test_callers_request_is_not_mutated(servers, store, policy, auditor, lib) -> None:
    a = servers[ALLOWED]
    factory = guarded_client if lib is httpx else edge2.guarded_client
    ph = store.get("E2B_API_KEY").placeholder
    with tool_context("agent"), factory(store, policy, auditor=auditor) as client:
        request = client.build_request(
            "POST", a.url("/ok"), params={"k": ph}, headers={"X-Api-Key": ph}, json={"k": ph}
        )
        before = (str(request.url), list(request.headers.raw), request.content)
        response = client.send(request)
    assert response.status_code == 200
    assert (str(request.url), list(request.headers.raw), request.content) == before
    assert response.request is request
    assert KEYS["E2B_API_KEY"] not in str(response.request.url)
    assert a.requests[0].header("X-Api-Key") == KEYS["E2B_API_KEY"]


def test_error_from_inner_transport_points_at_callers_request(store, policy, auditor) -> None:
    ph = store.get("E2B_API_KEY").placeholder
    with tool_context("agent"), guarded_client(store, policy, auditor=auditor) as client:
        # a closed port on the allowed host: the request is built with the value, then fails
        with pytest.raises(httpx.ConnectError) as info:
            client.get("http://127.0.0.1:9/x", params={"k": ph})
    assert KEYS["E2B_API_KEY"] not in str(info.value.request.url)
    assert ph in str(info.value.request.url)
