"""Adversarial leak hunt: nothing keyguard prints, logs, raises or writes holds a value.

Each test drives a real code path (loopback servers, real sockets, the real CLI) with
freshly generated keys, and asserts that neither the value nor its base64, hex,
percent-encoded or case-folded forms (nor its middle, which a mask never shows) appear
in what comes out.
"""

from __future__ import annotations

import base64
import copy
import functools
import io
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner

from keyguard.audit import Auditor
from keyguard.cli import cli
from keyguard.context import tool_context
from keyguard.edge import guarded_client
from keyguard.edge.decide import EdgeGuard, OutgoingRequest
from keyguard.errors import (
    BackendUnavailable,
    InvalidReference,
    KeyguardError,
    PolicyError,
    PolicyViolation,
    SecretNotFound,
    SourceError,
)
from keyguard.integrations.logging import RedactingFilter, install, structlog_processor
from keyguard.policy import Policy
from keyguard.redact import Redactor
from keyguard.secret import Reference, Secret
from keyguard.sources import DotenvSource, EnvSource, VaultSource
from keyguard.sources.base import Fetched
from keyguard.store import SecretStore
from tests import fakes
from tests.helpers_http import RecordingServer

ALLOWED, DENIED = "127.0.0.1", "127.0.0.2"


def forms(value: str) -> list[str]:
    """The value and the forms of it that must not appear either."""
    raw = value.encode()
    return [
        value,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
        quote(value, safe=""),
        value[4:-4],  # the middle: mask() shows only the first and last four
    ]


def assert_clean(text: str, *values: str, case: bool = False) -> None:
    for value in values:
        for form in forms(value):
            assert form not in text, f"a form of a secret value leaked: {text[:300]!r}"
        if case:  # a value upper-cased into a "name" is still the value
            assert value[4:-4].upper() not in text.upper(), f"case-folded leak: {text[:300]!r}"


def rendered(exc: BaseException) -> str:
    """Everything an exception shows: message, repr, args, the formatted traceback."""
    return "\n".join(
        [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
    )


def free_port(host: str = ALLOWED) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------- fixtures

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
    inject: {{hosts: ["{ALLOWED}"], header: X-N8N-API-KEY}}
tools:
  agent:
    secrets: [GEMINI_API_KEY, GITHUB_PERSONAL_ACCESS_TOKEN, E2B_API_KEY, N8N_API_KEY]
  code_interpreter:
    secrets: [E2B_API_KEY]
    sandbox_env: [E2B_API_KEY]
"""

QUERY_POLICY = f"""
version: 1
secrets:
  GEMINI_API_KEY:
    inject: {{hosts: ["{ALLOWED}"], query: key}}
tools:
  agent:
    secrets: [GEMINI_API_KEY]
"""

KEYS = fakes.the_four()
ALL = tuple(KEYS.values())
GEMINI = KEYS["GEMINI_API_KEY"]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.loads(POLICY, "leaks.yaml")


@pytest.fixture(scope="module")
def query_policy() -> Policy:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the PolicyWarning about ?key= is the point here
        return Policy.loads(QUERY_POLICY, "leaks-query.yaml")


@pytest.fixture(scope="module")
def store(policy: Policy) -> SecretStore:
    s = SecretStore(sources=[EnvSource(KEYS)], policy=policy)
    for name in KEYS:
        s.get(name)
    return s


@pytest.fixture(scope="module")
def events() -> list[str]:
    return []


@pytest.fixture(scope="module")
def auditor(events: list[str]) -> Auditor:
    return Auditor([lambda e: events.append(e.to_json())])


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, RecordingServer]]:
    with RecordingServer(ALLOWED) as a, RecordingServer(DENIED) as d:
        yield {ALLOWED: a, DENIED: d}


# -------------------------------------------------------------- edge: failing requests


def _hanging_listener(host: str) -> socket.socket:
    """Accepts the TCP connection (kernel backlog) and never answers: a read timeout."""
    srv = socket.socket()
    srv.bind((host, 0))
    srv.listen(8)
    return srv


@pytest.mark.parametrize("host", [ALLOWED, DENIED])
@pytest.mark.parametrize("failure", ["refused", "timeout"])
@pytest.mark.parametrize("how", ["placeholder", "raw"])
def test_failing_request_errors_carry_no_value(
    store: SecretStore, policy: Policy, auditor: Auditor, host: str, failure: str, how: str
) -> None:
    value = GEMINI if how == "raw" else store.get("GEMINI_API_KEY").placeholder
    listener = _hanging_listener(host) if failure == "timeout" else None
    port = listener.getsockname()[1] if listener else free_port(host)
    try:
        with tool_context("agent"), guarded_client(store, policy, auditor=auditor) as c:
            base = f"http://{host}:{port}"
            attempts = [
                lambda: c.get(f"{base}/v1/models?key={value}", timeout=0.3),
                lambda: c.post(f"{base}/v1/{value}/x", json={"k": value}, timeout=0.3),
                lambda: c.get(f"{base}/x", headers={"x-api-key": value}, timeout=0.3),
            ]
            for attempt in attempts:
                with pytest.raises((httpx.TransportError, PolicyViolation)) as info:
                    attempt()
                if host == DENIED:
                    assert info.type is PolicyViolation
                assert_clean(rendered(info.value), *ALL)
                request = getattr(info.value, "_request", None)
                if how == "placeholder" and request is not None:
                    # the caller's request (placeholders), not the copy that held values
                    assert_clean(repr(request) + str(request.url) + repr(request.headers), *ALL)
    finally:
        if listener:
            listener.close()


def test_injected_query_key_error_points_at_callers_request(
    store: SecretStore, query_policy: Policy, auditor: Auditor
) -> None:
    # The policy puts the key in ?key=; the server is down. httpx errors and their
    # .request must show the request as the caller wrote it (no key in the URL).
    port = free_port()
    with tool_context("agent"), guarded_client(store, query_policy, auditor=auditor) as c:
        with pytest.raises(httpx.ConnectError) as info:
            c.get(f"http://{ALLOWED}:{port}/v1beta/models")
    assert_clean(rendered(info.value), *ALL)
    assert_clean(repr(info.value.request) + str(info.value.request.url), *ALL)


def test_audit_of_injected_and_denied_requests(
    store: SecretStore,
    policy: Policy,
    servers: dict[str, RecordingServer],
    events: list[str],
    tmp_path: Path,
) -> None:
    jsonl = tmp_path / "audit.jsonl"
    auditor = Auditor(logger=None, jsonl=jsonl)
    gh = KEYS["GITHUB_PERSONAL_ACCESS_TOKEN"]
    with tool_context("agent"), guarded_client(store, policy, auditor=auditor) as c:
        a, d = servers[ALLOWED].port, servers[DENIED].port
        r = c.post(f"http://{ALLOWED}:{a}/echo?key={GEMINI}&length=1", json={"t": gh})
        assert r.status_code == 200
        # (r.request is the caller's own request, which holds the raw value it wrote)
        assert_clean(r.text + repr(r.headers), *ALL)
        for url in (
            f"http://{DENIED}:{d}/x?key={GEMINI}",
            f"http://{DENIED}:{d}/bot{gh}/send",
            f"http://{DENIED}:{d}/x?key={quote(base64.b64encode(GEMINI.encode()).decode())}",
        ):
            with pytest.raises(PolicyViolation) as info:
                c.post(url, content=f"token={gh}".encode())
            assert_clean(rendered(info.value), *ALL)
    auditor.close()
    text = jsonl.read_text(encoding="utf-8")
    assert '"event":"denied"' in text and '"event":"injected"' in text
    assert_clean(text, *ALL)
    assert not servers[DENIED].requests  # nothing reached the denied host


def test_outgoing_request_repr_hides_injected_values(
    store: SecretStore, policy: Policy, auditor: Auditor
) -> None:
    guard = EdgeGuard(store, policy, auditor=auditor)
    req = OutgoingRequest("GET", "http", ALLOWED, 80, b"/x", b"", ((b"Host", b"h"),), b"")
    with tool_context("agent"):
        verdict = guard.decide(req)
    assert any(GEMINI.encode() in v for _, v in verdict.request.headers)  # injected
    assert_clean(repr(verdict) + repr(verdict.request), *ALL)


def test_traceback_locals_of_a_failed_injected_request(
    store: SecretStore, policy: Policy, auditor: Auditor
) -> None:
    port = free_port()
    with tool_context("agent"), guarded_client(store, policy, auditor=auditor) as c:
        with pytest.raises(httpx.ConnectError) as info:
            c.get(f"http://{ALLOWED}:{port}/v1/models")
    text = "".join(
        traceback.TracebackException.from_exception(info.value, capture_locals=True).format()
    )
    assert_clean(text, *ALL)


def test_value_in_host_name_is_not_echoed(
    store: SecretStore, policy: Policy, tmp_path: Path
) -> None:
    e2b = KEYS["E2B_API_KEY"]  # lower-case hex: a valid DNS label as it is
    jsonl = tmp_path / "a.jsonl"
    auditor = Auditor(logger=None, jsonl=jsonl)
    with tool_context("agent"), guarded_client(store, policy, auditor=auditor) as c:
        with pytest.raises(PolicyViolation) as info:
            c.get(f"http://{e2b}.localhost:{free_port()}/x")
    auditor.close()
    assert_clean(rendered(info.value) + jsonl.read_text(encoding="utf-8"), e2b)


# ------------------------------------------------------------ errors with pasted values


@pytest.mark.parametrize(
    "pasted",
    [fakes.google_api_key(), fakes.github_classic(), fakes.n8n_api_key(), fakes.openai_key()],
    ids=["google", "github", "jwt", "openai"],
)
def test_store_get_of_a_pasted_value(pasted: str) -> None:
    store = SecretStore(sources=[EnvSource({})])
    with pytest.raises(KeyguardError) as info:
        store.get(pasted)
    assert_clean(rendered(info.value), pasted)
    assert store.try_get("NOPE") is None


def test_store_get_of_a_pasted_lowercase_value() -> None:
    pasted = fakes.e2b_api_key()
    store = SecretStore(sources=[EnvSource({})])
    with pytest.raises(SecretNotFound) as info:
        store.get(pasted)
    assert_clean(rendered(info.value), pasted)


@pytest.mark.parametrize("shape", ["env://{v}", "vault://secret/x#{v}", "file:///run/{v}"])
def test_store_get_ref_with_a_pasted_value(shape: str) -> None:
    pasted = fakes.google_api_key()
    store = SecretStore(sources=[EnvSource({})])
    with pytest.raises(SecretNotFound) as info:
        store.get_ref(shape.format(v=pasted))
    assert_clean(rendered(info.value), pasted, case=True)


def test_shown_masks_values_by_rule_and_by_shape() -> None:
    from keyguard.redact import shown

    # by rule (lower-case e2b, google), by shape (mixed case and digits, no rule)
    for value in (fakes.e2b_api_key(), fakes.google_api_key(), "aZ9" + fakes.rand(29)):
        out = shown(f"name {value} at /run/{value}.txt")
        assert "name " in out and "/run/" in out
        assert_clean(out, value)
    for name in ("GEMINI_API_KEY", "generativelanguage.googleapis.com", "code_interpreter"):
        assert shown(name) == name


@pytest.mark.parametrize(
    "shape", ["file://{v}", "vault://secret{v}", "vault://{v}", "{v}://x", "https://x/?key={v}"]
)
def test_invalid_reference_with_a_pasted_value(shape: str) -> None:
    pasted = fakes.google_api_key()
    with pytest.raises(InvalidReference) as info:
        Reference.parse(shape.format(v=pasted))
    assert_clean(rendered(info.value), pasted)


def test_malformed_dotenv_lines_are_not_quoted(tmp_path: Path) -> None:
    value = fakes.google_api_key()
    bad = [
        f"GEMINI_API_KEY='{value}\n",  # unclosed quote
        f"{value}\n",  # a value on its own line
        f"GEMINI API KEY={value}\n",  # space in the name
        f"1GEMINI={value}\n",  # bad name
        f'A="{value}" junk "\n',
        f"OK=1\n{value}\n",
    ]
    for index, text in enumerate(bad):
        path = tmp_path / f"{index}.env"
        path.write_text(text, encoding="utf-8")
        store = SecretStore(sources=[DotenvSource([path])])
        with pytest.raises(SourceError) as info:
            store.get("GEMINI_API_KEY")
        assert_clean(rendered(info.value) + repr(store), value)


@pytest.mark.parametrize(
    "addr",
    [
        "http://root:{t}@127.0.0.1:{p}",
        "http://{t}@127.0.0.1:{p}",
        "http://127.0.0.1:{p}/?token={t}",
    ],
)
def test_vault_address_with_a_token_in_it(addr: str) -> None:
    token = "hvs." + fakes.rand(24)
    vault = VaultSource(addr.format(t=token, p=free_port()), token=token, timeout=2.0)
    store = SecretStore(sources=[vault])
    with pytest.raises(BackendUnavailable) as info:
        store.get_ref("vault://secret/app#key")
    assert "127.0.0.1" in str(info.value)
    assert_clean(rendered(info.value) + repr(vault) + vault.describe() + repr(store), token)
    with pytest.raises(SecretNotFound) as info2:
        store.origin("GEMINI_API_KEY")
    assert_clean(rendered(info2.value), token)


def test_vault_address_that_is_a_token() -> None:
    token = fakes.google_api_key()
    vault = VaultSource(token, token=token, timeout=1.0)
    assert_clean(vault.describe() + repr(SecretStore(sources=[vault])), token)


# --------------------------------------------------------------- policy: pasted values

_SHAPES = {
    "host": 'secrets: {{GEMINI_API_KEY: {{inject: {{hosts: ["{v}"], header: x-api-key}}}}}}',
    "host_url": 'secrets: {{G: {{inject: {{hosts: ["https://h.example/?key={v}"]}}}}}}',
    "header": 'secrets: {{GEMINI_API_KEY: {{inject: {{hosts: [h.example], header: "{v}"}}}}}}',
    "template": 'secrets: {{G: {{inject: {{hosts: [h.example], header: A, template: "{v}"}}}}}}',
    "template_mixed": (
        'secrets: {{G: {{inject: {{hosts: [h.example], header: A, template: "X {v} {{value}}"}}}}}}'
    ),
    "basic_user": 'secrets: {{G: {{inject: {{hosts: [h.example], basic_user: "{v}"}}}}}}',
    "query": 'secrets: {{G: {{inject: {{hosts: [h.example], query: "{v}"}}}}}}',
    "json_field": 'secrets: {{G: {{inject: {{hosts: [h.example], json_field: "{v}"}}}}}}',
    "secret_name": "secrets: {{{v}: {{}}}}",
    "from": 'secrets: {{G: {{from: "{v}"}}}}',
    "from_env": 'secrets: {{G: {{from: "env://{v}"}}}}',
    "from_file": 'secrets: {{G: {{from: "file://{v}"}}}}',
    "from_vault": 'secrets: {{G: {{from: "vault://secret/x#{v}"}}}}',
    "format": "secrets: {{G: {{format: {v}}}}}",
    "description": 'secrets: {{G: {{description: "key is {v}"}}}}',
    "tool_name": "secrets: {{G: {{}}}}\ntools: {{{v}: {{secrets: [G]}}}}",
    "tool_secret": "secrets: {{G: {{}}}}\ntools: {{agent: {{secrets: [{v}]}}}}",
    "sandbox_env": "secrets: {{G: {{}}}}\ntools: {{agent: {{secrets: [G], sandbox_env: [{v}]}}}}",
    "vault_addr": 'sources: {{vault: {{addr: "http://root:{v}@127.0.0.1:8200"}}}}',
    "dotenv": 'sources: {{dotenv: ["{v}"]}}',
    "settings": 'settings: {{debug_env: "{v}"}}',
    "unknown_field": "secrets: {{G: {{{v}: 1}}}}",
    "version": "version: {v}",
}


@pytest.mark.parametrize("where", sorted(_SHAPES))
@pytest.mark.parametrize("maker", [fakes.google_api_key, fakes.github_classic, fakes.e2b_api_key])
def test_policy_with_a_pasted_key_fails_and_masks_it(where: str, maker: Any) -> None:
    value = maker()
    body = _SHAPES[where].format(v=value)
    text = body if body.startswith("version") else "version: 1\n" + body
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(PolicyError) as info:
            Policy.loads(text, "pasted.yaml")
    assert_clean(rendered(info.value) + json.dumps(getattr(info.value, "problems", None)), value)
    assert_clean(" ".join(str(w.message) for w in caught), value)


def test_shipped_policy_still_loads() -> None:
    repo = Path(__file__).resolve().parent.parent
    Policy.load(repo / "policies" / "keyguard.yaml")


# ------------------------------------------------------------------------------ logging


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    for name, value in KEYS.items():
        r.add_secret(name, value)
    return r


def _log_everything(log: logging.Logger) -> None:
    gh = KEYS["GITHUB_PERSONAL_ACCESS_TOKEN"]
    log.info("calling https://h/?key=%s", GEMINI)
    log.info("state %r", {"key": GEMINI, "nested": (gh, [KEYS["N8N_API_KEY"]])})
    log.warning("b64 %s", base64.b64encode(GEMINI.encode()).decode())
    log.info("extra", extra={"ctx": {"token": gh}})
    log.info("bytes %r", KEYS["E2B_API_KEY"].encode())
    try:
        raise ValueError(GEMINI, {"token": gh})
    except ValueError:
        log.exception("failed with %s", gh, stack_info=True)


def _handler(buf: io.StringIO) -> logging.Handler:
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s %(ctx)s", defaults={"ctx": ""}))
    return handler


def test_logging_handlers_added_after_install_are_covered(redactor: Redactor) -> None:
    scope = logging.getLogger("kgleaks")
    scope.setLevel(logging.DEBUG)
    scope.propagate = False
    buf = io.StringIO()
    flt = install(redactor, scope)
    try:
        # after install: one on the scope (basicConfig-style), one on a child logger
        scope.addHandler(_handler(buf))
        child = logging.getLogger("kgleaks.httpx")
        child.addHandler(_handler(buf))
        _log_everything(child)
        _log_everything(logging.getLogger("kgleaks.app"))
    finally:
        for lg in (scope, logging.getLogger("kgleaks.httpx")):
            for h in list(lg.handlers):
                lg.removeHandler(h)
        scope.removeFilter(flt)
    out = buf.getvalue()
    assert "[REDACTED:GEMINI_API_KEY]" in out and "ValueError" in out
    assert_clean(out, *ALL)


def test_root_install_then_basic_config_and_httpx_debug(
    redactor: Redactor, store: SecretStore, query_policy: Policy, servers: dict
) -> None:
    root = logging.getLogger()
    old_level, old_handlers = root.level, list(root.handlers)
    buf = io.StringIO()
    flt = install(store.redactor)
    try:
        root.setLevel(logging.DEBUG)
        root.addHandler(_handler(buf))  # what logging.basicConfig() does, after install
        port = servers[ALLOWED].port
        with tool_context("agent"), guarded_client(store, query_policy) as c:
            c.get(f"http://{ALLOWED}:{port}/echo?x={GEMINI}")
            with pytest.raises(httpx.ConnectError):
                c.get(f"http://{ALLOWED}:{free_port()}/x")
        _log_everything(logging.getLogger("kgleaks-root.app"))
    finally:
        for h in list(root.handlers):
            h.removeFilter(flt)  # pytest's own capture handlers live on across tests
            if h not in old_handlers:
                root.removeHandler(h)
        root.setLevel(old_level)
        root.removeFilter(flt)
    out = buf.getvalue()
    assert "httpcore" in out and "HTTP Request" in out  # the libraries' DEBUG logs are there
    assert_clean(out, *ALL)


def test_two_redactors_both_apply(redactor: Redactor) -> None:
    other_value = fakes.google_api_key()
    other = Redactor()
    other.add_secret("OTHER_KEY", other_value)
    log = logging.getLogger("kgleaks-two")
    log.propagate = False
    log.setLevel(logging.INFO)
    buf = io.StringIO()
    log.addHandler(_handler(buf))
    f1, f2 = install(redactor, log), install(other, log)
    try:
        log.info("a=%s b=%s", GEMINI, other_value)
    finally:
        log.handlers.clear()
        log.removeFilter(f1)
        log.removeFilter(f2)
    assert isinstance(f2, RedactingFilter)
    assert_clean(buf.getvalue(), GEMINI, other_value)


def test_structlog_processor_scrubs_everything(redactor: Redactor) -> None:
    import structlog

    out = io.StringIO()
    structlog.configure(
        processors=[
            structlog.processors.format_exc_info,
            structlog_processor(redactor),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(out),
    )
    try:
        log = structlog.get_logger()
        log.info("evt", key=GEMINI, nested={"a": [KEYS["E2B_API_KEY"]]}, url=f"h/?k={GEMINI}")
        log.info(KEYS["GITHUB_PERSONAL_ACCESS_TOKEN"])
        try:
            raise RuntimeError(GEMINI)
        except RuntimeError:
            log.exception("boom")
    finally:
        structlog.reset_defaults()
    assert "RuntimeError" in out.getvalue()
    assert_clean(out.getvalue(), *ALL)


# ------------------------------------------------------------- reprs, pickling, copying


def test_reprs_of_objects_holding_values(
    store: SecretStore, policy: Policy, auditor: Auditor, tmp_path: Path
) -> None:
    env = tmp_path / ".env"
    env.write_text("".join(f"{k}={v}\n" for k, v in KEYS.items()), encoding="utf-8")
    dotenv = DotenvSource([env])
    dotenv_store = SecretStore(sources=[dotenv])
    dotenv_store.get("GEMINI_API_KEY")
    vault = VaultSource("http://127.0.0.1:1", token=KEYS["N8N_API_KEY"])
    stream = store.redactor.stream()
    held = stream.feed("partial " + GEMINI[:25])
    client = guarded_client(store, policy, auditor=auditor)
    guard = client._transport.guard
    secret = store.get("GEMINI_API_KEY")
    objects: list[Any] = [
        store,
        dotenv_store,
        dotenv,
        vault,
        policy,
        store.redactor,
        stream,
        client,
        client._transport,
        guard,
        secret,
        Fetched(GEMINI, "env"),
        store.loaded(),
    ]
    text = held + "".join(repr(o) + str(o) for o in objects) + f"{secret}{secret!r}{secret:>60}"
    text += json.dumps({"s": secret}, default=lambda o: str(o))
    assert_clean(text, *ALL)
    client.close()


def test_integration_client_reprs(store: SecretStore, policy: Policy) -> None:
    from keyguard.integrations import gemini
    from keyguard.integrations.n8n import N8nClient

    n8n = N8nClient(f"http://{ALLOWED}:1", store, policy)
    g = gemini.client(store, policy)
    text = repr(n8n) + str(n8n) + repr(g) + repr(vars(n8n)) + repr(g._api_client.api_key)
    assert_clean(text, *ALL)


def test_e2b_sandbox_repr_and_pickle() -> None:
    pytest.importorskip("e2b_code_interpreter")
    from keyguard.integrations import e2b
    from tests.fake_e2b import FakeE2B

    keys = {"E2B_API_KEY": fakes.e2b_api_key(), "GITHUB_TOKEN": fakes.github_classic()}
    with FakeE2B(api_key=keys["E2B_API_KEY"]) as fake:
        pol = Policy.from_dict(
            {
                "version": 1,
                "secrets": {
                    "E2B_API_KEY": {"inject": {"hosts": [fake.api.host], "header": "X-API-KEY"}},
                    "GITHUB_TOKEN": {"inject": {"hosts": ["api.github.com"]}},
                },
                "tools": {
                    "code_interpreter": {
                        "secrets": ["E2B_API_KEY", "GITHUB_TOKEN"],
                        "sandbox_env": ["GITHUB_TOKEN"],
                    }
                },
            }
        )
        st = SecretStore(sources=[EnvSource(keys)], policy=pol)
        sbx = e2b.Sandbox.create(
            st,
            pol,
            api_url=fake.api_url,
            sandbox_url=fake.sandbox_url,
            envs={"GITHUB_TOKEN": st.get("GITHUB_TOKEN").placeholder},
        )
        try:
            text = repr(sbx) + str(sbx) + repr(sbx.inner)
            try:
                text += pickle.dumps(sbx).decode("latin-1")
            except Exception as exc:  # whatever it raises must be clean too
                text += rendered(exc)
            assert_clean(text, *keys.values())
        finally:
            sbx.kill()


def test_n8n_errors_do_not_quote_credentials_in_the_url(store: SecretStore, policy: Policy) -> None:
    from keyguard.integrations.n8n import N8nClient, N8nError

    pasted = fakes.google_api_key()
    port = free_port()
    for base in (f"http://admin:{pasted}@{ALLOWED}:{port}", f"http://{ALLOWED}:{port}/?t={pasted}"):
        client = N8nClient(base, store, policy, tool="agent")
        calls = [
            client.list_workflows,
            functools.partial(client.get_workflow, GEMINI),  # a value pasted as an id
            functools.partial(client.trigger_webhook, f"hook/{GEMINI}"),
        ]
        for call in calls:
            with pytest.raises(N8nError) as info:
                call()
            assert str(ALLOWED) in str(info.value)
            assert_clean(rendered(info.value), pasted, *ALL)


def test_stream_ending_inside_a_value_does_not_emit_its_prefix(store: SecretStore) -> None:
    stream = store.redactor.stream()
    out = stream.feed("the answer is " + GEMINI[:30]) + stream.flush()
    assert GEMINI[:30] not in out


def test_pickling_and_copying_never_carry_values(store: SecretStore) -> None:
    secret = store.get("GEMINI_API_KEY")
    with pytest.raises(TypeError) as info:
        pickle.dumps(secret)
    assert_clean(rendered(info.value), *ALL)
    assert copy.copy(secret) is secret and copy.deepcopy(secret) is secret
    for obj in (store, store.redactor, store.redactor.stream(), {"s": secret}):
        try:
            blob = pickle.dumps(obj)
        except (TypeError, AttributeError, pickle.PicklingError) as exc:
            assert_clean(rendered(exc), *ALL)
        else:  # pragma: no cover - nothing of these pickles today
            assert_clean(blob.decode("latin-1"), *ALL)


# -------------------------------------------------------------------------------- CLI


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (*KEYS, "OPENAI_API_KEY", "KEYGUARD_POLICY", "VAULT_ADDR", "VAULT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["init"]).exit_code == 0
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in KEYS.items()), encoding="utf-8")
    (tmp_path / "app.py").write_text(
        "import os\n"
        "key = os.environ['GEMINI_API_KEY']\n"
        f"TOKEN = '{KEYS['GITHUB_PERSONAL_ACCESS_TOKEN']}'\n"
        f"URL = 'https://h/?key={GEMINI}'\n"
        f"B64 = '{base64.b64encode(KEYS['N8N_API_KEY'].encode()).decode()}'\n",
        encoding="utf-8",
    )
    return tmp_path


def _cli(*args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_cli_outputs_carry_no_value(project: Path) -> None:
    outputs = [
        _cli("check"),
        _cli("check", "--json", "--strict"),
        _cli("get", "GEMINI_API_KEY"),
        _cli("get", "GEMINI_API_KEY", "--json"),
        _cli("get", GEMINI),
        _cli("get", KEYS["E2B_API_KEY"], "--json"),  # a pasted lower-case value
        _cli("get", KEYS["E2B_API_KEY"]),
        _cli("doctor", "--json", "--no-history"),
        _cli("doctor", "--no-history"),
        _cli("scan", ".", "--format", "json", "--env-file", ".env"),
        _cli("scan", ".", "--format", "sarif", "--policy", "policies"),
        _cli("scan", "."),
        _cli("migrate", "--json"),
        _cli("policy", "check"),
        _cli("policy", "explain", "--tool", "code_interpreter", "--host", "api.e2b.dev"),
        _cli("template", "-o", "-"),
        _cli("redact", "--env-file", ".env", "--json", input="\n".join(ALL) + "\n"),
        _cli(
            "redact",
            "--env-file",
            ".env",
            input=" ".join(ALL) + " " + base64.b64encode(GEMINI.encode()).decode() + "\n",
        ),
    ]
    text = "\n".join(outputs)
    assert "GEMINI_API_KEY" in text and "[REDACTED:" in text
    assert_clean(text, *ALL)
    for path in project.rglob("*"):
        if path.is_file() and path.name not in (".env", "app.py"):
            assert_clean(path.read_text(encoding="utf-8", errors="replace"), *ALL)


def test_cli_with_a_malformed_env_line(project: Path) -> None:
    env = project / ".env"
    env.write_text(
        env.read_text(encoding="utf-8") + f"BROKEN LINE {GEMINI}\n'{KEYS['E2B_API_KEY']}\n",
        encoding="utf-8",
    )
    text = "\n".join(
        [
            _cli("check"),
            _cli("check", "--json"),
            _cli("get", "GEMINI_API_KEY", "--json"),
            _cli("doctor", "--json", "--no-history"),
            _cli("template", "-o", "-"),
        ]
    )
    assert ".env" in text
    assert_clean(text, *ALL)


def test_key_pasted_as_a_dotenv_name_stays_out_of_the_template(project: Path) -> None:
    # `ghp_...=` (the key on the wrong side of '='): the committed .env.template lists the
    # .env's extra names, and `keyguard get` echoes the name it found.
    token = fakes.github_classic()
    env = project / ".env"
    env.write_text(env.read_text(encoding="utf-8") + f"{token}=1\n", encoding="utf-8")
    text = _cli("template") + _cli("template", "-o", "-") + _cli("get", token, "--json")
    text += _cli("get", token)
    text += (project / ".env.template").read_text(encoding="utf-8")
    assert "looks like a secret value" in text and "N8N_API_KEY=" in text
    assert_clean(text, token, *ALL)


def test_cli_does_not_echo_a_value_typed_where_a_name_belongs(project: Path) -> None:
    pasted = fakes.google_api_key()
    text = "\n".join(
        [
            _cli("run", "--no-pty", "--", pasted),  # command not found: <argv[0]>
            _cli("run", "--no-pty", "--", GEMINI, "x"),
            _cli("policy", "explain", "--tool", pasted, "--host", "api.github.com"),
            _cli("policy", "explain", "--tool", "agent", "--host", f"{pasted}.example.com"),
            _cli("policy", "explain", "--host", f"https://api.github.com/?key={pasted}"),
            _cli("redact", "--secret-env", pasted, input="x\n"),
        ]
    )
    assert "command not found" in text and "looks like a secret value" in text
    assert_clean(text, pasted, *ALL)


KEYGUARD = (sys.executable, "-m", "keyguard")


def test_cli_run_child_output_is_redacted(project: Path) -> None:
    # A real child process: what it prints of its granted and of others' values.
    script = (
        "import os; print(os.environ.get('E2B_API_KEY')); "
        f"print({GEMINI!r}); print({base64.b64encode(GEMINI.encode()).decode()!r})"
    )
    proc = subprocess.run(
        [*KEYGUARD, "run", "--tool", "code_interpreter", "--", sys.executable, "-c", script],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in KEYS},
    )
    assert proc.returncode == 0, proc.stderr
    assert "[REDACTED:" in proc.stdout
    assert_clean(proc.stdout + proc.stderr, *ALL)


def test_errors_never_include_the_secret_str(store: SecretStore) -> None:
    # A Secret interpolated into an error message by a caller shows only its name.
    secret = store.get("N8N_API_KEY")
    exc = KeyguardError(f"failed with {secret} / {secret!r}")
    assert_clean(rendered(exc), *ALL)
    assert isinstance(Secret("X", "v" * 20).masked, str)
