"""The edge's fast paths decide exactly what the full path decides.

Header memo (``EdgeGuard._replay``), render cache, literal-only ``contains_known``,
``Redactor.certainly_clean`` (the response's one-pass "nothing to scrub"), the
inner response handed back as is, and ``byte_headers``.
"""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
import pytest

from keyguard.audit import Auditor
from keyguard.context import tool_context
from keyguard.edge import EdgeGuard, OutgoingRequest, guarded_client
from keyguard.edge.httpx_transport import byte_headers
from keyguard.errors import PolicyViolation
from keyguard.policy import Policy, PolicyWarning
from keyguard.redact import Redactor
from keyguard.sources import EnvSource
from keyguard.store import SecretStore
from tests import fakes
from tests.fake_gemini import strings_in

HOST = "127.0.0.1"
POLICY = f"""
version: 1
secrets:
  API_KEY:
    inject: {{hosts: ["{HOST}"], header: Authorization, template: "Bearer {{value}}"}}
  QUERY_KEY:
    inject: {{hosts: ["{HOST}"], query: key}}
tools:
  agent:
    secrets: [API_KEY, QUERY_KEY]
  other:
    secrets: []
"""


@pytest.fixture
def world() -> tuple[dict[str, str], SecretStore, EdgeGuard, list[Any]]:
    env = {"API_KEY": fakes.github_classic(), "QUERY_KEY": fakes.google_api_key()}
    with pytest.warns(PolicyWarning, match="query"):
        policy = Policy.loads(POLICY, "fast.yaml")
    store = SecretStore(sources=[EnvSource(env)], policy=policy)
    seen: list[Any] = []
    guard = EdgeGuard(store, policy, auditor=Auditor([seen.append]))
    return env, store, guard, seen


def _request(store: SecretStore, query: bytes = b"") -> OutgoingRequest:
    ph = store.get("API_KEY").placeholder.encode()
    headers = ((b"Accept", b"*/*"), (b"Authorization", ph))
    return OutgoingRequest("GET", "http", HOST, 8080, b"/v1", query, headers, b"")


def _injected(seen: list[Any]) -> list[tuple[str, int]]:
    return [(e.secret, e.count) for e in seen if e.event == "injected"]


def test_replayed_headers_and_audit_equal_the_full_pass(world, monkeypatch) -> None:
    env, store, guard, seen = world
    with tool_context("agent"):
        first = guard.decide(_request(store, b"a=1"))
        events_first = _injected(seen)
        seen.clear()

        def full_pass(*args: Any) -> Any:
            raise AssertionError("same headers: the memo should have answered")

        monkeypatch.setattr(guard, "_substitute_headers", full_pass)
        second = guard.decide(_request(store, b"b=2"))
    assert second.request.headers == first.request.headers
    assert (b"Authorization", f"Bearer {env['API_KEY']}".encode()) in second.request.headers
    # the query injection still runs per request, on this request's query
    assert second.request.query == b"b=2&key=" + env["QUERY_KEY"].encode()
    assert _injected(seen) == events_first == [("API_KEY", 2), ("QUERY_KEY", 1)]
    # the memo keeps a recipe, never a value: only the store and the redactor hold them
    held = list(strings_in(guard))
    assert not [t for t in held for v in env.values() if v in t]


def test_a_placeholder_inside_a_value_is_substituted_every_time(world) -> None:
    env, store, guard, _ = world
    ph = store.get("API_KEY").placeholder.encode()
    headers = ((b"Authorization", b"Token " + ph),)
    req = OutgoingRequest("GET", "http", HOST, 8080, b"/", b"", headers, b"")
    with tool_context("agent"):
        sent = [guard.decide(req).request for _ in range(3)]
    expected = (b"Authorization", f"Bearer {env['API_KEY']}".encode())
    assert all(r.headers == (expected,) for r in sent)
    assert not [t for t in strings_in(guard) if env["API_KEY"] in t]


def test_replay_follows_a_rotated_value(world) -> None:
    env, store, guard, _ = world
    with tool_context("agent"):
        guard.decide(_request(store))
        old = env["API_KEY"]
        env["API_KEY"] = fakes.github_classic()
        store.refresh("API_KEY")
        sent = guard.decide(_request(store)).request
    assert (b"Authorization", f"Bearer {env['API_KEY']}".encode()) in sent.headers
    assert old.encode() not in b"".join(v for _, v in sent.headers)


def test_replay_is_per_tool_and_a_denial_is_never_remembered(world) -> None:
    _, store, guard, seen = world
    with tool_context("agent"):
        guard.decide(_request(store))
    for _ in range(2):
        with tool_context("other"), pytest.raises(PolicyViolation, match="API_KEY"):
            guard.decide(_request(store))
    assert [e.event for e in seen].count("denied") == 2


def test_contains_known_runs_literals_only() -> None:
    r = Redactor()
    value = fakes.google_api_key()
    r.add_secret("K", value)
    shaped = fakes.github_classic()  # a rule hit, not a known value
    assert r.contains_known(f"x {shaped} y") == []
    assert r.contains_known(f"x {value} y".encode()) == ["K"]
    assert r.contains_known(f"é {value}") == ["K"]


def test_certainly_clean_only_when_redact_changes_nothing() -> None:
    r = Redactor()
    value = fakes.e2b_api_key()
    r.add_secret("K", value)
    assert r.certainly_clean(b'{"text":"A short summary."}')
    for dirty in (value, fakes.github_classic(), fakes.jwt()):
        data = f'{{"text":"{dirty}"}}'.encode()
        assert not r.certainly_clean(data)
        assert r.redact(data.decode()) != data.decode()
    assert not r.certainly_clean("café".encode("latin-1"))  # non-ASCII: not judged


def test_clean_response_comes_back_whole_and_echo_is_scrubbed(world) -> None:
    env, store, guard, _ = world
    policy = guard.policy
    body = {"echo": ""}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body, headers={"X-Seen": "yes"})

    with (
        guarded_client(store, policy, transport=httpx.MockTransport(handler)) as client,
        tool_context("agent"),
    ):
        clean = client.get(f"http://{HOST}:8080/")
        assert clean.json() == body and clean.headers["x-seen"] == "yes"
        assert clean.headers["content-length"] == str(len(clean.content))
        body["echo"] = env["API_KEY"]
        echoed = client.get(f"http://{HOST}:8080/")
    assert env["API_KEY"] not in echoed.text
    assert echoed.json() == {"echo": "[REDACTED:API_KEY]"}
    assert echoed.headers["content-length"] == str(len(echoed.content))


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_byte_headers_equal_what_httpx_builds(http: Any) -> None:
    pairs = ((b"Host", b"a"), (b"X-Key", b"v\xe9"), (b"x-key", b"2"), (b"Accept", b"*/*"))
    fast, slow = byte_headers(http, pairs), http.Headers(list(pairs))
    assert fast.raw == slow.raw and fast == slow
    assert fast.multi_items() == slow.multi_items() and fast.encoding == slow.encoding
    request = http.Request("GET", "http://a/", headers=fast)
    assert request.headers.raw == list(pairs)
