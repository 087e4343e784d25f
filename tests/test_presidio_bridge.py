"""The presidio bridge: same rules, known values, offline analyzer, optional PII."""

from __future__ import annotations

import socket

import pytest

from keyguard.redact import Redactor
from tests.fakes import e2b_api_key, github_classic, google_api_key, rand


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Any connection attempt fails the test (the analyzer must work offline)."""
    attempts: list[object] = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert attempts == [], "presidio bridge tried to reach the network"


def test_recognizers_cover_every_rule_and_known_values(no_network) -> None:
    from keyguard.integrations.presidio import KnownSecretRecognizer, recognizers

    r = Redactor()
    recs = recognizers(r)
    ids = {e for rec in recs for e in rec.supported_entities}
    assert {rule.id for rule in r.rules} <= ids
    assert any(isinstance(rec, KnownSecretRecognizer) for rec in recs)


def test_analyzer_finds_rules_and_known_values_offline(no_network) -> None:
    from keyguard.integrations.presidio import analyzer

    value = rand(30)
    r = Redactor()
    r.add_secret("INTERNAL_TOKEN", value)
    g, gh, e = google_api_key(), github_classic(), e2b_api_key()
    text = f"a {g} b {gh} c {e} d {value} e bob@example.com"
    results = analyzer(r).analyze(text=text, language="en")
    found = {(x.entity_type, text[x.start : x.end]) for x in results}
    assert ("google-api-key", g) in found
    assert ("github-pat", gh) in found
    assert ("e2b-api-key", e) in found
    assert ("INTERNAL_TOKEN", value) in found
    assert not any(x.entity_type == "EMAIL_ADDRESS" for x in results)


def test_analyzer_with_pii(no_network) -> None:
    from keyguard.integrations.presidio import analyzer

    r = Redactor()
    text = "mail bob@example.com from 192.168.10.20 card 4111 1111 1111 1111"
    types = {x.entity_type for x in analyzer(r, pii=True).analyze(text=text, language="en")}
    assert {"EMAIL_ADDRESS", "IP_ADDRESS", "CREDIT_CARD"} <= types


def test_redactor_pii_mode(no_network) -> None:
    r = Redactor(pii=True)
    g = google_api_key()
    out = r.redact(f"key {g} mail alice@example.org")
    assert out == "key [REDACTED:google-api-key] mail [REDACTED:EMAIL_ADDRESS]"
    kinds = {f.kind for f in r.findings(f"key {g} mail alice@example.org")}
    assert kinds == {"pattern", "pii"}


def test_rule_validation_applies_in_presidio(no_network) -> None:
    from keyguard.integrations.presidio import analyzer

    r = Redactor()
    low = 'password = "aaaaaaaaaaaa1111"'  # low entropy: not a generic-secret hit
    assert not [
        x for x in analyzer(r).analyze(text=low, language="en") if x.entity_type == "generic-secret"
    ]


def test_pii_stream_releases_whole_lines(no_network) -> None:
    r = Redactor(pii=True)
    text = "a alice@example.org b\nc 10.0.0.1 d\n"
    s = r.stream()
    out = "".join(s.feed(text[i : i + 5]) for i in range(0, len(text), 5)) + s.flush()
    assert out == r.redact(text)
    assert "alice@" not in out and "10.0.0.1" not in out
