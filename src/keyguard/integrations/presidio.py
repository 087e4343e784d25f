"""Presidio bridge: keyguard's rules and known values as presidio recognizers.

``analyzer()`` is offline: presidio's ``NoOpNlpEngine`` (no spaCy model download) and
tldextract's bundled public-suffix snapshot (``TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""``).
keyguard's own redaction does not go through presidio; it is too slow for that.
"""

from __future__ import annotations

import os

# Before presidio imports tldextract: never fetch the public suffix list.
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

from typing import TYPE_CHECKING, Any

import regex
import tldextract.tldextract
from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NoOpNlpEngine

from keyguard.redact.rules import Rule

if TYPE_CHECKING:
    from keyguard.redact import Redactor

# tldextract may have been imported (and its extractor built) before us.
tldextract.tldextract.TLD_EXTRACTOR.suffix_list_urls = ()

__all__ = ["KnownSecretRecognizer", "RuleRecognizer", "analyzer", "pii_analyzer", "recognizers"]

PII_ENTITIES = ("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS")


class RuleRecognizer(PatternRecognizer):
    """One keyguard rule as a presidio ``PatternRecognizer`` (entity = the rule id)."""

    def __init__(self, rule: Rule, score: float = 0.9) -> None:
        self.rule = rule
        super().__init__(
            supported_entity=rule.id,
            name=f"keyguard:{rule.id}",
            patterns=[Pattern(name=rule.id, regex=rule.regex, score=score)],
            global_regex_flags=regex.ASCII,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        m = self.rule.compiled.match(pattern_text)
        if m is None:
            return False
        return self.rule.accepts(m.group(self.rule.secret_group))


class KnownSecretRecognizer(EntityRecognizer):
    """Finds the redactor's known values (any form); entity = the secret's name."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        super().__init__(supported_entities=["KEYGUARD_SECRET"], name="keyguard:known")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list:
        return [
            RecognizerResult(entity_type=f.name, start=f.start, end=f.end, score=1.0)
            for f in self.redactor.findings(text)
            if f.kind == "known"
        ]

    def get_supported_entities(self) -> list[str]:
        return ["KEYGUARD_SECRET", *self.redactor.names()]


def recognizers(redactor: Redactor) -> list[EntityRecognizer]:
    """A ``RuleRecognizer`` per rule of ``redactor`` plus one for its known values."""
    return [*(RuleRecognizer(rule) for rule in redactor.rules), KnownSecretRecognizer(redactor)]


def _pii_recognizers() -> list[EntityRecognizer]:
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
    )

    return [EmailRecognizer(), CreditCardRecognizer(), IbanRecognizer(), IpRecognizer()]


def _engine(recs: list[EntityRecognizer]) -> AnalyzerEngine:
    registry = RecognizerRegistry(supported_languages=["en"])
    for rec in recs:
        registry.add_recognizer(rec)
    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


def analyzer(redactor: Redactor, pii: bool = False) -> AnalyzerEngine:
    """A ready, offline ``AnalyzerEngine`` with keyguard's recognizers (+ PII ones)."""
    recs = recognizers(redactor)
    if pii:
        recs += _pii_recognizers()
    return _engine(recs)


def pii_analyzer() -> AnalyzerEngine:
    """An offline analyzer with only the PII recognizers (``Redactor(pii=True)``)."""
    return _engine(_pii_recognizers())
