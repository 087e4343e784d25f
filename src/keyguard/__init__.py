"""keyguard: API keys for agent runtimes, injected at the transport edge, redacted everywhere else.

The public names are imported lazily so that ``import keyguard`` stays cheap and the
optional SDK integrations are never pulled in by it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Secret": "keyguard.secret",
    "Reference": "keyguard.secret",
    "mask": "keyguard.secret",
    "fingerprint": "keyguard.secret",
    "SecretStore": "keyguard.store",
    "Policy": "keyguard.policy",
    "Redactor": "keyguard.redact",
    "Finding": "keyguard.redact",
    "tool_context": "keyguard.context",
    "current_tool": "keyguard.context",
    "KeyguardError": "keyguard.errors",
    "InvalidReference": "keyguard.errors",
    "SecretNotFound": "keyguard.errors",
    "AccessDenied": "keyguard.errors",
    "BackendUnavailable": "keyguard.errors",
    "SourceError": "keyguard.errors",
    "PolicyError": "keyguard.errors",
    "PolicyViolation": "keyguard.errors",
}

__all__ = [
    "AccessDenied",
    "BackendUnavailable",
    "Finding",
    "InvalidReference",
    "KeyguardError",
    "Policy",
    "PolicyError",
    "PolicyViolation",
    "Redactor",
    "Reference",
    "Secret",
    "SecretNotFound",
    "SecretStore",
    "SourceError",
    "__version__",
    "current_tool",
    "fingerprint",
    "mask",
    "tool_context",
]

if TYPE_CHECKING:
    from keyguard.context import current_tool, tool_context
    from keyguard.errors import (
        AccessDenied,
        BackendUnavailable,
        InvalidReference,
        KeyguardError,
        PolicyError,
        PolicyViolation,
        SecretNotFound,
        SourceError,
    )
    from keyguard.policy import Policy
    from keyguard.redact import Finding, Redactor
    from keyguard.secret import Reference, Secret, fingerprint, mask
    from keyguard.store import SecretStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keyguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
