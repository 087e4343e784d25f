"""Echoing user-written text (a name, a host, a reference, an option) in a message.

Someone may paste a key where a name, a host or a path belongs; whatever keyguard
prints back then shows it masked. One helper for every layer above ``keyguard.secret``
(the store, the policy, the CLI), so they all agree on what looks like a value.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from keyguard.redact.rules import Rule, load_rules
from keyguard.secret import mask

__all__ = ["shown"]

# A run of credential characters long enough to be a key ("/" and "." split it: paths and
# host names are not tokens, while each part of a JWT or a base64 blob still is one).
_TOKEN = re.compile(r"[A-Za-z0-9_\-+=~]{20,}")
# ALL_CAPS_NAMES and lower-case-names are names; a mix of cases and digits is a value.
_NAME_SHAPE = re.compile(r"[A-Z0-9_\-]+|[a-z0-9_\-]+")


@functools.lru_cache(maxsize=1)
def _rules() -> tuple[Rule, ...]:
    return tuple(load_rules())


def _mask_rule_hits(text: str) -> str:
    """``text`` with every span a rule validates (its secret group) masked."""
    try:
        rules = _rules()
    except Exception:  # the rule set unavailable: hide long text rather than risk it
        return mask(text) if len(text) > 24 else text
    for rule in rules:
        # Right to left: masking a span does not move the spans before it.
        for match in reversed(list(rule.compiled.finditer(text))):
            group = rule.secret_group
            try:
                hit = rule.validate(match.group(group))
            except Exception:  # a broken user rule must not break error reporting
                hit = False
            if hit:
                start, end = match.span(group)
                text = text[:start] + mask(text[start:end]) + text[end:]
    return text


def _mask_shaped(match: re.Match[str]) -> str:
    token = match.group()
    if _NAME_SHAPE.fullmatch(token):
        return token
    if any(c.islower() for c in token) and any(c.isupper() for c in token):
        if any(c.isdigit() for c in token):
            return mask(token)
    return token


def shown(text: Any) -> str:
    """``text`` (made a ``str``) as a message may show it: anything a rule recognises as
    a credential, or shaped like one (20+ characters mixing cases and digits), masked."""
    text = str(text)
    if len(text) < 8:
        return text
    return _TOKEN.sub(_mask_shaped, _mask_rule_hits(text))
