"""The edge for httpx2, google-genai's default HTTP stack: the httpx edge bound to httpx2.

``httpx2`` is imported here only (an optional extra, ``keyguard[gemini]``), so
``import keyguard.edge`` works without it.
"""

from __future__ import annotations

from typing import Any

import httpx2

from keyguard.audit import Auditor
from keyguard.edge.httpx_transport import AsyncEdge, SyncEdge, guard_client

__all__ = [
    "AsyncGuardedTransport",
    "GuardedTransport",
    "async_guarded_client",
    "guarded_client",
]


class GuardedTransport(SyncEdge, httpx2.BaseTransport):
    """``httpx2.Client(transport=GuardedTransport(store=..., policy=...))``."""

    _http = httpx2


class AsyncGuardedTransport(AsyncEdge, httpx2.AsyncBaseTransport):
    """``httpx2.AsyncClient(transport=AsyncGuardedTransport(store=..., policy=...))``."""

    _http = httpx2


def guarded_client(
    store: Any, policy: Any, *, redactor: Any = None, auditor: Auditor | None = None, **kwargs: Any
) -> httpx2.Client:
    """An ``httpx2.Client`` (any of its keyword arguments) whose transports are the edge."""
    return guard_client(
        httpx2.Client(**kwargs),
        GuardedTransport,
        store=store,
        policy=policy,
        redactor=redactor,
        auditor=auditor,
    )


def async_guarded_client(
    store: Any, policy: Any, *, redactor: Any = None, auditor: Auditor | None = None, **kwargs: Any
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` whose transports are the edge."""
    return guard_client(
        httpx2.AsyncClient(**kwargs),
        AsyncGuardedTransport,
        store=store,
        policy=policy,
        redactor=redactor,
        auditor=auditor,
    )
