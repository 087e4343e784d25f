"""Audit events, sinks, store watching, Prometheus metrics; never a value, never a query."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from keyguard import audit as audit_mod
from keyguard import metrics as metrics_mod
from keyguard.audit import AuditEvent, Auditor, LoggerSink, get_auditor, set_auditor
from keyguard.context import tool_context
from keyguard.edge import guarded_client
from keyguard.errors import PolicyViolation
from keyguard.metrics import Metrics
from keyguard.policy import Policy
from keyguard.sources import EnvSource
from keyguard.store import SecretStore
from tests import fakes
from tests.helpers_http import RecordingServer

POLICY = """
version: 1
secrets:
  E2B_API_KEY:
    inject: {hosts: ["127.0.0.1"], header: X-API-KEY}
tools:
  code_interpreter:
    secrets: [E2B_API_KEY]
"""


def test_event_strips_query_and_rejects_unknown_kinds() -> None:
    event = AuditEvent("injected", "K", path="/v1/x?key=abc#frag", host="h", count=2)
    assert event.path == "/v1/x"
    data = event.to_dict()
    assert data["event"] == "injected" and data["count"] == 2
    assert data["time"].endswith("+00:00")
    assert "fingerprint" not in data  # unset fields are left out
    with pytest.raises(ValueError, match="unknown audit event"):
        AuditEvent("leaked")


def test_sinks_logger_jsonl_callback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[AuditEvent] = []
    path = tmp_path / "audit.jsonl"
    auditor = Auditor(logger="keyguard.audit.test", jsonl=path, callback=seen.append, metrics=False)
    value = fakes.e2b_api_key()
    secret_fp = "0123456789abcdef"  # keyguard:allow (a fingerprint, not a secret)
    with caplog.at_level(logging.INFO, logger="keyguard.audit.test"):
        auditor.emit("denied", "E2B_API_KEY", fingerprint=secret_fp, host="evil", path="/p?k=v")
        auditor.emit("redacted", "E2B_API_KEY", count=3)
    auditor.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["denied", "redacted"]
    assert lines[0]["path"] == "/p" and lines[0]["fingerprint"] == secret_fp
    assert lines[1]["count"] == 3
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [e.event for e in seen] == ["denied", "redacted"]
    records = [r for r in caplog.records if r.name == "keyguard.audit.test"]
    assert len(records) == 2 and records[0].keyguard_audit["host"] == "evil"
    assert value not in path.read_text() + caplog.text


def test_failing_sink_never_breaks_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[AuditEvent] = []

    def broken(event: AuditEvent) -> None:
        raise RuntimeError("disk full")

    auditor = Auditor([broken, seen.append])
    with caplog.at_level(logging.WARNING, logger="keyguard.audit"):
        assert auditor.emit("injected", "K") is not None
    assert len(seen) == 1
    assert "RuntimeError" in caplog.text


def test_disabled_logger_costs_nothing() -> None:
    logger = logging.getLogger("keyguard.audit.quiet")
    logger.setLevel(logging.WARNING)
    auditor = Auditor([LoggerSink(logger)])
    assert auditor.emit("injected", "K") is None  # no event built at all


def test_watch_store_loaded_rotated_removed() -> None:
    env = {"E2B_API_KEY": fakes.e2b_api_key()}
    old_value = env["E2B_API_KEY"]
    seen: list[AuditEvent] = []
    auditor = Auditor([seen.append])
    store = SecretStore(sources=[EnvSource(env)], ttl=0, audit=auditor)  # audit= calls watch
    first = store.get("E2B_API_KEY")
    env["E2B_API_KEY"] = fakes.e2b_api_key()
    second = store.get("E2B_API_KEY")
    del env["E2B_API_KEY"]
    with pytest.raises(Exception, match="E2B_API_KEY"):
        store.get("E2B_API_KEY")
    assert [e.event for e in seen] == ["loaded", "rotated", "removed"]
    assert seen[0].fingerprint == first.fingerprint
    assert seen[1].fingerprint == second.fingerprint
    assert first.fingerprint in (seen[1].detail or "")
    dumped = "".join(e.to_json() for e in seen)
    assert old_value not in dumped and second.reveal() not in dumped


def test_default_auditor_is_replaceable() -> None:
    mine = Auditor([])
    old = set_auditor(mine)
    try:
        assert get_auditor() is mine
    finally:
        set_auditor(old)


@pytest.fixture(scope="module")
def edge_setup() -> tuple[SecretStore, Policy, str]:
    value = fakes.e2b_api_key()
    policy = Policy.loads(POLICY, "audit.yaml")
    return SecretStore(sources=[EnvSource({"E2B_API_KEY": value})], policy=policy), policy, value


def test_edge_events_and_metrics(edge_setup: tuple[SecretStore, Policy, str]) -> None:
    store, policy, value = edge_setup
    registry = CollectorRegistry()
    counters = Metrics(registry)
    seen: list[AuditEvent] = []
    auditor = Auditor([seen.append, counters])
    with RecordingServer("127.0.0.1") as allowed, RecordingServer("127.0.0.2") as denied:
        with guarded_client(store, policy, auditor=auditor, verify=False) as client:
            with tool_context("code_interpreter"):
                r = client.get(allowed.url("/echo?secret=1"))
                assert value not in r.text
                with pytest.raises(PolicyViolation):
                    client.get(denied.url("/x"), headers={"X-API-KEY": value})
    kinds = {(e.event, e.secret, e.tool) for e in seen}
    assert ("injected", "E2B_API_KEY", "code_interpreter") in kinds
    assert ("redacted", "E2B_API_KEY", "code_interpreter") in kinds
    assert ("denied", "E2B_API_KEY", "code_interpreter") in kinds
    for event in seen:
        assert value not in event.to_json()
        assert "?" not in (event.path or "")
    labels = {"secret": "E2B_API_KEY", "tool": "code_interpreter"}
    assert registry.get_sample_value("keyguard_injections_total", labels) == 1
    assert registry.get_sample_value("keyguard_denials_total", labels) == 1
    assert registry.get_sample_value("keyguard_redactions_total", labels) >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert metrics_mod.from_env({"CACHE_METRICS_ENABLED": "false"}) is None
    assert metrics_mod.from_env({}) is None
    with pytest.raises(ValueError, match="CACHE_METRICS_PORT"):
        metrics_mod.from_env({"CACHE_METRICS_ENABLED": "true", "CACHE_METRICS_PORT": "http"})
    port = _free_port()
    monkeypatch.setenv("CACHE_METRICS_ENABLED", "true")
    monkeypatch.setenv("CACHE_METRICS_PORT", str(port))
    monkeypatch.setattr(audit_mod, "_default", None)
    auditor = get_auditor()  # the default auditor picks the metrics up from the env
    assert any(isinstance(s, Metrics) for s in auditor.sinks)
    server: Any = metrics_mod._server
    assert server.server_address[0] == "127.0.0.1"  # loopback by default
    auditor.emit("denied", "SOME_KEY", tool="t")
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'keyguard_denials_total{secret="SOME_KEY",tool="t"} 1.0' in body
