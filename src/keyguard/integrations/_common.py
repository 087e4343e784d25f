"""What every integration does the same way with the store and its redactor."""

from __future__ import annotations

from typing import Any


def resolve_redactor(store: Any, redactor: Any = None) -> Any:
    """``redactor``, or the store's own when none is given."""
    return redactor if redactor is not None else store.redactor


def placeholder(store: Any, redactor: Any, name: str) -> str:
    """Load secret ``name`` (from then on the redactor knows its value) and return its
    placeholder, which the redactor is told never to redact: it is what the SDK sends and
    the edge turns into the value."""
    secret = store.get(name)
    redactor.add_placeholder(secret.placeholder)
    return secret.placeholder
