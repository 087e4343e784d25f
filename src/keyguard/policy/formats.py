"""Format rule ids (the redaction engine's rules) and echoing user text masked in errors."""

from __future__ import annotations

import functools
from typing import Any

from keyguard.secret import mask


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
    """Echo user-written text in an error, with anything shaped like a credential masked
    (someone may have pasted a key where a host or a name belongs)."""
    text = str(text)
    if len(text) < 8:
        return text
    try:
        rules = list(_rules().values())
    except Exception:  # the rule set unavailable: hide long text rather than risk it
        return mask(text) if len(text) > 24 else text
    for rule in rules:
        compiled = getattr(rule, "compiled", None)
        if compiled is None:
            continue
        for match in reversed(list(compiled.finditer(text))):
            group = getattr(rule, "secret_group", 0)
            try:
                hit = rule.validate(match.group(group))
            except Exception:  # a broken user rule must not break error reporting
                hit = False
            if hit:
                start, end = match.span(group)
                text = text[:start] + mask(text[start:end]) + text[end:]
    return text
