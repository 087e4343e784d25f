"""Injection forms and corner cases of the edge, checked on what a loopback server received."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keyguard.audit import Auditor
from keyguard.context import tool_context
from keyguard.edge import EdgeGuard, GuardedTransport, OutgoingRequest, guarded_client
from keyguard.errors import PolicyViolation
from keyguard.policy import Policy, PolicyWarning
from keyguard.secret import placeholder_for
from keyguard.sources import EnvSource
from keyguard.store import SecretStore
from tests import fakes
from tests.helpers_http import RecordingServer

HOST = "127.0.0.1"

POLICY = f"""
version: 1
secrets:
  BEARER_KEY:
    inject: {{hosts: ["{HOST}"], header: Authorization, template: "Bearer {{value}}"}}
  BASIC_KEY:
    inject: {{hosts: ["{HOST}"], basic_user: api}}
  JSON_KEY:
    inject: {{hosts: ["{HOST}"], json_field: api_key}}
  PLAIN_KEY:
    inject: {{hosts: ["{HOST}"]}}
  MISSING_KEY:
    required: false
    inject: {{hosts: ["{HOST}"]}}
tools:
  default:
    secrets: [PLAIN_KEY, MISSING_KEY]
  bearer:
    secrets: [BEARER_KEY]
  basic:
    secrets: [BASIC_KEY, PLAIN_KEY]
  json:
    secrets: [JSON_KEY]
"""

QUERY_POLICY = f"""
version: 1
secrets:
  QUERY_KEY:
    inject: {{hosts: ["{HOST}"], query: key}}
tools:
  default:
    secrets: [QUERY_KEY]
"""

KEYS = {
    "BEARER_KEY": fakes.github_classic(),
    "BASIC_KEY": fakes.rand(32),
    "JSON_KEY": fakes.openai_key(),
    "PLAIN_KEY": fakes.e2b_api_key(),
    "QUERY_KEY": fakes.google_api_key(),
}


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    with RecordingServer(HOST) as s:
        yield s


@pytest.fixture(autouse=True)
def _clear(server: RecordingServer) -> None:
    server.clear()


@pytest.fixture(scope="module")
def setup() -> tuple[SecretStore, Policy, Auditor]:
    # module scope: the store's redactor compiles its matcher once
    policy = Policy.loads(POLICY, "forms.yaml")
    return SecretStore(sources=[EnvSource(KEYS)], policy=policy), policy, Auditor([])


@pytest.fixture
def events(setup: tuple[SecretStore, Policy, Auditor]) -> Iterator[list[Any]]:
    seen: list[Any] = []
    sink = setup[2].add_sink(seen.append)
    yield seen
    setup[2].remove_sink(sink)


def client_for(setup: tuple[SecretStore, Policy, Auditor], **kw: Any) -> Any:
    store, policy, auditor = setup
    return guarded_client(store, policy, auditor=auditor, verify=False, **kw)


def test_bearer_template_injected_without_placeholder(server, setup) -> None:
    with tool_context("bearer"), client_for(setup) as client:
        client.get(server.url("/ok"), headers={"Authorization": "Bearer dummy"})
    assert server.requests[0].header("Authorization") == f"Bearer {KEYS['BEARER_KEY']}"


def test_exact_placeholder_in_injected_header_gets_template(server, setup) -> None:
    store = setup[0]
    ph = store.get("BEARER_KEY").placeholder
    with tool_context("bearer"), client_for(setup) as client:
        client.get(server.url("/ok"), headers={"Authorization": ph})
    assert server.requests[0].header("Authorization") == f"Bearer {KEYS['BEARER_KEY']}"


def test_sdk_style_bearer_placeholder_is_not_doubled(server, setup) -> None:
    store = setup[0]
    ph = store.get("BEARER_KEY").placeholder
    with tool_context("bearer"), client_for(setup) as client:
        client.get(server.url("/ok"), headers={"Authorization": f"Bearer {ph}"})
    assert server.requests[0].header("Authorization") == f"Bearer {KEYS['BEARER_KEY']}"


def test_basic_user_injection(server, setup) -> None:
    with tool_context("basic"), client_for(setup) as client:
        client.get(server.url("/ok"))
    auth = server.requests[0].header("Authorization")
    assert auth is not None and auth.startswith("Basic ")
    assert base64.b64decode(auth[6:]).decode() == f"api:{KEYS['BASIC_KEY']}"


def test_placeholder_inside_httpx_basic_auth(server, setup) -> None:
    store = setup[0]
    ph = store.get("PLAIN_KEY").placeholder
    with client_for(setup) as client:  # no tool context: tool "default", PLAIN_KEY only
        client.get(server.url("/ok"), auth=("me", ph))
    auth = server.requests[0].header("Authorization")
    assert base64.b64decode(auth[6:]).decode() == f"me:{KEYS['PLAIN_KEY']}"


def test_json_field_injection(server, setup) -> None:
    with tool_context("json"), client_for(setup) as client:
        client.post(server.url("/ok"), json={"prompt": "hi"})
    received = server.requests[0]
    assert json.loads(received.body) == {"prompt": "hi", "api_key": KEYS["JSON_KEY"]}
    assert int(received.header("Content-Length")) == len(received.body)


def test_query_injection(server, events) -> None:
    with pytest.warns(PolicyWarning, match="query"):
        policy = Policy.loads(QUERY_POLICY, "q.yaml")
    store = SecretStore(sources=[EnvSource(KEYS)], policy=policy)
    with guarded_client(store, policy, auditor=Auditor([events.append])) as client:
        r = client.get(server.url("/ok"), params={"a": "1", "key": "dummy"})
    assert r.status_code == 200
    assert server.requests[0].query == f"a=1&key={KEYS['QUERY_KEY']}"
    # the audit path never carries the query
    assert all("?" not in (e.path or "") and KEYS["QUERY_KEY"] not in e.to_json() for e in events)


def test_body_value_is_escaped_for_its_content_type(server, setup) -> None:
    store = setup[0]
    ph = store.get("PLAIN_KEY").placeholder
    with client_for(setup) as client:
        client.post(server.url("/ok"), json={"k": ph})
        client.post(server.url("/ok"), data={"k": ph})
    as_json, as_form = server.requests
    assert json.loads(as_json.body) == {"k": KEYS["PLAIN_KEY"]}
    assert as_form.body == f"k={KEYS['PLAIN_KEY']}".encode()
    for received in (as_json, as_form):
        assert int(received.header("Content-Length")) == len(received.body)


def test_foreign_placeholder_lookalike_passes_untouched(server, setup) -> None:
    lookalike = "kg_ph_PLAIN_KEY_" + "0" * 20  # right shape, not minted by this process
    with client_for(setup) as client:
        client.get(server.url("/ok"), headers={"X-Thing": lookalike})
    assert server.requests[0].header("X-Thing") == lookalike


def test_unloadable_secret_is_a_violation_naming_it(server, setup, events) -> None:
    ph = placeholder_for("MISSING_KEY")
    with client_for(setup) as client, pytest.raises(PolicyViolation, match="MISSING_KEY"):
        client.get(server.url("/ok"), headers={"X-Api-Key": ph})
    assert server.requests == []
    assert any(e.event == "denied" and e.secret == "MISSING_KEY" for e in events)


def test_undeclared_secret_placeholder_is_denied(server, setup) -> None:
    ph = placeholder_for("NOT_IN_POLICY")
    with client_for(setup) as client, pytest.raises(PolicyViolation, match="NOT_IN_POLICY"):
        client.get(server.url("/ok"), params={"k": ph})
    assert server.requests == []


def test_https_required_off_loopback(setup) -> None:
    store, policy, auditor = setup
    guard = EdgeGuard(store, policy, auditor=auditor)
    ph = store.get("PLAIN_KEY").placeholder.encode()
    req = OutgoingRequest(
        "GET", "http", "api.example.com", None, b"/", b"", ((b"X-Api-Key", ph),), b""
    )
    with pytest.raises(PolicyViolation) as info:
        guard.decide(req)
    assert KEYS["PLAIN_KEY"] not in str(info.value)


def test_decide_returns_same_object_when_nothing_to_do(setup) -> None:
    store, policy, auditor = setup
    guard = EdgeGuard(store, policy, auditor=auditor)
    req = OutgoingRequest("GET", "http", HOST, 8080, b"/x", b"a=1", ((b"Accept", b"*/*"),), b"")
    with tool_context("json"):  # JSON_KEY is injected only into JSON bodies
        assert guard.decide(req).request is req


def test_value_with_line_break_never_goes_in_a_header(server, events) -> None:
    policy = Policy.loads(QUERY_POLICY.replace("query: key", "header: X-Key"), "crlf.yaml")
    value = "abc\r\nX-Evil: 1" + fakes.rand(12)
    store = SecretStore(sources=[EnvSource({"QUERY_KEY": value})], policy=policy)
    transport = GuardedTransport(store=store, policy=policy, auditor=Auditor([events.append]))
    with httpx.Client(transport=transport) as client, pytest.raises(PolicyViolation):
        client.get(server.url("/ok"))
    assert server.requests == []


def test_every_transport_of_the_client_is_guarded(setup) -> None:
    store, policy, auditor = setup
    ph = store.get("PLAIN_KEY").placeholder
    inner = httpx.HTTPTransport()
    with RecordingServer("127.0.0.2") as other:
        with guarded_client(
            store,
            policy,
            auditor=auditor,
            transport=inner,
            mounts={"http://127.0.0.2": httpx.HTTPTransport(), "http://127.0.0.3": None},
        ) as client:
            assert isinstance(client._transport, GuardedTransport)
            assert client._transport.inner is inner
            # a mounted transport is no way around the edge
            with pytest.raises(PolicyViolation, match="PLAIN_KEY"):
                client.get(other.url("/ok"), headers={"X-Api-Key": ph})
        assert other.requests == []


def test_httpx2_names_are_exported_lazily() -> None:
    import httpx2

    import keyguard.edge as edge

    assert edge.Httpx2GuardedTransport is edge.httpx2.GuardedTransport
    assert edge.AsyncHttpx2GuardedTransport is edge.httpx2.AsyncGuardedTransport
    assert issubclass(edge.Httpx2GuardedTransport, httpx2.BaseTransport)
    assert issubclass(edge.AsyncHttpx2GuardedTransport, httpx2.AsyncBaseTransport)


def test_placeholder_in_url_path(server, setup, events) -> None:
    store = setup[0]
    ph = store.get("PLAIN_KEY").placeholder
    with client_for(setup) as client:
        r = client.get(server.url(f"/bot{ph}/getMe"))
    assert r.status_code == 200
    assert server.requests[0].path == f"/bot{KEYS['PLAIN_KEY']}/getMe"
    # audit paths keep the placeholder, never the value
    assert all(KEYS["PLAIN_KEY"] not in (e.path or "") for e in events)
    assert any(e.event == "injected" and ph in (e.path or "") for e in events)


def test_raw_value_in_path_is_never_audited_or_raised(server, setup, events) -> None:
    value = KEYS["PLAIN_KEY"]
    with client_for(setup) as client:
        client.get(server.url(f"/bot{value}/getMe"))  # allowed host: goes through
        with tool_context("json"), pytest.raises(PolicyViolation) as info:
            client.get(server.url(f"/bot{value}/getMe"))  # tool "json" may not use it
    assert value not in str(info.value)
    assert "[REDACTED:PLAIN_KEY]" in str(info.value)
    assert events and all(value not in e.to_json() for e in events)
    assert any(e.path == "/bot[REDACTED:PLAIN_KEY]/getMe" for e in events)
