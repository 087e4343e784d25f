"""SARIF 2.1.0 output that GitHub code scanning accepts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from keyguard import __version__
from keyguard.hygiene.scan import ScanFinding, ScanReport

__all__ = ["SARIF_SCHEMA", "to_sarif"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/keyguard/keyguard"


def _rule_description(rule_id: str, kind: str, known_rules: dict[str, Any]) -> str:
    if kind == "known":
        return f"The value of the local secret {rule_id} appears in this file."
    rule = known_rules.get(rule_id)
    if rule is None:
        from keyguard.redact.rules import get_rule

        rule = get_rule(rule_id)
    return getattr(rule, "description", None) or f"Possible secret ({rule_id})."


def _result(f: ScanFinding, index: int) -> dict[str, Any]:
    where = f" in commit {f.commit}" if f.commit else ""
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": index,
        "level": "error",
        "message": {"text": f"Secret ({f.rule}) {f.masked}{where}; fingerprint {f.fingerprint}"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": f.line, "startColumn": f.column},
                }
            }
        ],
        # GitHub uses partialFingerprints to track one alert across commits.
        "partialFingerprints": {"keyguardFingerprint/v1": f.fingerprint},
    }
    if f.commit:
        result["properties"] = {"commit": f.commit}
    return result


def to_sarif(report: ScanReport, *, rules: Iterable[Any] = ()) -> dict[str, Any]:
    """The report as a SARIF log; ``rules`` (e.g. ``redactor.rules``) describe the rule
    ids, user rule files included."""
    known_rules = {r.id: r for r in rules}
    rule_ids: dict[str, int] = {}
    rules: list[dict[str, Any]] = []
    for f in report.findings:
        if f.rule not in rule_ids:
            rule_ids[f.rule] = len(rules)
            text = _rule_description(f.rule, f.kind, known_rules)
            rules.append(
                {
                    "id": f.rule,
                    "name": f.rule,
                    "shortDescription": {"text": text},
                    "fullDescription": {"text": text},
                    "help": {
                        "text": "Remove the secret from the file (and history), rotate it, and "
                        "load it through keyguard instead. Run `keyguard doctor` for the "
                        "provider's rotation steps."
                    },
                    "defaultConfiguration": {"level": "error"},
                    "properties": {"tags": ["security", "secret"]},
                }
            )
    notifications = [
        {
            "level": "note",
            "message": {"text": f"skipped {s.path}: {s.reason} {s.detail}".rstrip()},
        }
        for s in report.skipped
    ] + [{"level": "error", "message": {"text": e}} for e in report.errors]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "keyguard",
                "version": __version__,
                "informationUri": INFO_URI,
                "rules": rules,
            }
        },
        "results": [_result(f, rule_ids[f.rule]) for f in report.findings],
        "invocations": [
            {
                "executionSuccessful": not report.errors,
                "toolExecutionNotifications": notifications,
            }
        ],
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
