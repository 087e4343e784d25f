"""Format rule ids (the redaction engine's rules) and echoing user text masked in errors."""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=1)
def _rules() -> dict[str, Any]:
    from keyguard.redact.rules import load_rules

    return {rule.id: rule for rule in load_rules()}


def known_rule_ids() -> list[str]:
    """Rule ids usable as a secret's ``format`` (the redaction engine's default rules)."""
    return sorted(_rules())


def get_format_rule(rule_id: str) -> Any | None:
    """The rule for ``format: <rule_id>``, or ``None``."""
    return _rules().get(rule_id)


def _show(text: Any) -> str:
    """Echo user-written text in an error with anything credential-shaped masked (the
    one shared helper, ``keyguard.redact.shown``)."""
    from keyguard.redact import shown

    return shown(text)
