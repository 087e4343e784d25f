"""The transport edge: the one place where a secret value goes on the wire.

``guarded_client``/``async_guarded_client`` and ``GuardedTransport``/
``AsyncGuardedTransport`` are for httpx; the httpx2 versions (google-genai's default
stack) live in ``keyguard.edge.httpx2`` under the same names, and are also exported
here as ``Httpx2GuardedTransport``/``AsyncHttpx2GuardedTransport`` (imported lazily,
so httpx2 stays optional). ``sandbox_env``/``child_env`` filter environments.
"""

from __future__ import annotations

import importlib
from typing import Any

from keyguard.edge.decide import EdgeGuard, OutgoingRequest, Verdict
from keyguard.edge.env import child_env, sandbox_env
from keyguard.edge.httpx_transport import (
    AsyncGuardedTransport,
    GuardedTransport,
    async_guarded_client,
    guarded_client,
)

# The httpx2 names are left out of __all__ so a star-import does not pull httpx2 in.
__all__ = [
    "AsyncGuardedTransport",
    "EdgeGuard",
    "GuardedTransport",
    "OutgoingRequest",
    "Verdict",
    "async_guarded_client",
    "child_env",
    "guarded_client",
    "sandbox_env",
]

_LAZY = {
    "Httpx2GuardedTransport": "GuardedTransport",
    "AsyncHttpx2GuardedTransport": "AsyncGuardedTransport",
}


def __getattr__(name: str) -> Any:
    if name == "httpx2":
        # ``keyguard.edge.httpx2`` reads better than the file name httpx2_transport.
        module = importlib.import_module("keyguard.edge.httpx2_transport")
        globals()["httpx2"] = module
        return module
    if name in _LAZY:
        value = getattr(importlib.import_module("keyguard.edge.httpx2_transport"), _LAZY[name])
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keyguard.edge' has no attribute {name!r}")
