"""Audit events: what happened to which secret, where, on behalf of which tool.

An event names a secret and carries its fingerprint, never its value; a path never
carries its query string. Sinks are plain callables taking an ``AuditEvent`` (like
structlog processors): a logger, a JSON-lines file, any callback, the Prometheus
counters of ``keyguard.metrics``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyguard.secret import Secret

__all__ = [
    "EVENTS",
    "AuditEvent",
    "Auditor",
    "JsonlSink",
    "LoggerSink",
    "Sink",
    "get_auditor",
    "set_auditor",
]

EVENTS = frozenset(
    {
        "loaded",
        "rotated",
        "removed",
        "injected",
        "denied",
        "redacted",
        "policy_error",
        # agent-framework runs (names and counts only), from integrations.langchain
        "model_run",
        "tool_run",
    }
)

_log = logging.getLogger(__name__)


def _strip_query(path: str | None) -> str | None:
    # The query string is where keys leak (``?key=``); an audit path never keeps it.
    if path is None:
        return None
    return path.split("?", 1)[0].split("#", 1)[0]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One decision or lifecycle step. ``detail`` is a short reason, never a value."""

    event: str
    secret: str | None = None
    fingerprint: str | None = None
    tool: str | None = None
    host: str | None = None
    method: str | None = None
    path: str | None = None
    count: int | None = None
    detail: str | None = None
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(
                f"unknown audit event {self.event!r}; expected one of {sorted(EVENTS)}"
            )
        object.__setattr__(self, "path", _strip_query(self.path))

    def to_dict(self) -> dict[str, Any]:
        """Fields that are set, with ``time`` as an ISO 8601 UTC timestamp."""
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds"),
            "event": self.event,
        }
        for name in ("secret", "fingerprint", "tool", "host", "method", "path", "count", "detail"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


Sink = Callable[[AuditEvent], object]


class LoggerSink:
    """Logs each event as one JSON line (``extra={"keyguard_audit": {...}}`` for formatters)."""

    def __init__(self, logger: str | logging.Logger = "keyguard.audit", level: int = logging.INFO):
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    @property
    def active(self) -> bool:
        """False while the logger drops this level: the event need not even be built."""
        return self.logger.isEnabledFor(self.level)

    def __call__(self, event: AuditEvent) -> None:
        if self.logger.isEnabledFor(self.level):
            data = event.to_dict()
            self.logger.log(
                self.level,
                "%s",
                json.dumps(data, ensure_ascii=False),
                extra={"keyguard_audit": data},
            )


class JsonlSink:
    """Appends one JSON object per line to ``path`` (created ``0600``), flushed per event."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.Lock()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def __call__(self, event: AuditEvent) -> None:
        line = event.to_json() + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(line)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class Auditor:
    """Fans events out to sinks; a failing sink is reported and never breaks the caller.

    ``Auditor()`` logs to ``keyguard.audit`` and, when ``CACHE_METRICS_ENABLED=true``,
    counts into the Prometheus metrics (served on ``CACHE_METRICS_PORT``).
    """

    def __init__(
        self,
        sinks: list[Sink] | None = None,
        *,
        logger: str | logging.Logger | None = "keyguard.audit",
        jsonl: str | os.PathLike[str] | None = None,
        callback: Sink | None = None,
        metrics: bool | None = None,
    ) -> None:
        self._sinks: list[Sink] = list(sinks or [])
        if sinks is None:
            if logger is not None:
                self._sinks.append(LoggerSink(logger))
            if jsonl is not None:
                self._sinks.append(JsonlSink(jsonl))
            if callback is not None:
                self._sinks.append(callback)
            if metrics is None or metrics:
                sink = _metrics_sink(explicit=bool(metrics))
                if sink is not None:
                    self._sinks.append(sink)
        self._lock = threading.Lock()

    @property
    def sinks(self) -> list[Sink]:
        return list(self._sinks)

    def add_sink(self, sink: Sink) -> Sink:
        with self._lock:
            self._sinks = [*self._sinks, sink]
        return sink

    def remove_sink(self, sink: Sink) -> None:
        with self._lock:
            self._sinks = [s for s in self._sinks if s is not sink]

    def emit(
        self, event: str, secret: Secret | str | None = None, **fields: Any
    ) -> AuditEvent | None:
        """Record ``event``; ``secret`` may be a ``Secret`` (name and fingerprint are taken).

        Returns the event, or ``None`` when no sink would take it (a sink with a false
        ``active`` attribute, like a logger below its level, is skipped): the request
        path then pays nothing for auditing.
        """
        sinks = [s for s in self._sinks if getattr(s, "active", True)]  # add/remove copy
        if not sinks:
            return None
        if secret is not None and not isinstance(secret, str):
            fields.setdefault("fingerprint", secret.fingerprint)
            secret = secret.name
        record = AuditEvent(event, secret, **fields)
        for sink in sinks:
            try:
                sink(record)
            except Exception as exc:  # an audit sink must never break a request
                _log.warning("keyguard audit sink %r failed: %s", sink, type(exc).__name__)
        return record

    def watch(self, store: Any) -> Any:
        """Subscribe to a store's ``loaded``/``rotated``/``removed`` events; returns the store."""

        def on_store_event(event: str, secret: Secret, old: Secret | None) -> None:
            detail = None
            if event == "rotated" and old is not None:
                detail = f"previous fingerprint {old.fingerprint}"
            self.emit(event, secret, detail=detail)

        store.subscribe(on_store_event)
        return store

    def close(self) -> None:
        for sink in self._sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                close()


def _metrics_sink(*, explicit: bool) -> Sink | None:
    from keyguard import metrics

    if explicit:
        return metrics.default_metrics()
    try:
        return metrics.from_env()
    except ImportError as exc:
        # Asked for by the environment only: audit on without counters rather than fail
        # the first request that creates the default auditor.
        _log.warning("CACHE_METRICS_ENABLED=true but metrics are off: %s", exc)
        return None


_default: Auditor | None = None
_default_lock = threading.Lock()


def get_auditor() -> Auditor:
    """The process-wide auditor the edge uses when none is given (created on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Auditor()
    return _default


def set_auditor(auditor: Auditor | None) -> Auditor | None:
    """Replace the process-wide auditor (``None``: recreate on next use); returns the old one."""
    global _default
    with _default_lock:
        old, _default = _default, auditor
    return old
