"""Redaction for log records: a stdlib ``logging.Filter`` and a structlog processor.

``install(redactor)`` attaches a :class:`RedactingFilter` to every handler of the root
logger (or the given one): handler filters see records propagated from every library
(httpx, httpcore, urllib3, ...), not only those logged on that logger. Handlers added
later (``logging.basicConfig`` after ``install``, a handler on ``httpx``'s own logger)
get the filter too: a log record factory puts it on every handler a record is about
to reach, before the record reaches it.

A scrubbed record carries the already-formatted, redacted message in ``msg`` with
``args`` emptied (formatting again could re-join a value split across arguments), the
redacted traceback in ``exc_text`` (``exc_info`` is dropped so no formatter renders the
raw exception again), a redacted ``stack_info`` and redacted extra fields.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyguard.redact import Redactor

__all__ = ["RedactingFilter", "install", "structlog_processor"]

_STANDARD = frozenset(
    vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None)).keys()
) | {"message", "asctime", "taskName"}

_FAILED = "[keyguard: log message withheld, it could not be redacted]"


class RedactingFilter(logging.Filter):
    """Scrubs a record in place; never raises, never drops a record (always returns True)."""

    def __init__(self, redactor: Redactor, name: str = "") -> None:
        super().__init__(name)
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        # Several handlers share the record: each filter scrubs it once. Each filter, not
        # the first one only: two stores (two redactors) know different values.
        done = record.__dict__.setdefault("_keyguard_redacted_by", set())
        if id(self) in done:
            return True
        try:
            self._scrub(record)
        except Exception:
            # Withhold rather than pass on something unscrubbed.
            record.msg, record.args = _FAILED, None
            record.exc_info = record.exc_text = record.stack_info = None
        done.add(id(self))
        record._keyguard_redacted = True  # type: ignore[attr-defined]
        return True

    def _scrub(self, record: logging.LogRecord) -> None:
        redact = self.redactor.redact
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep what can be shown, redacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        if "message" in record.__dict__:
            record.message = record.msg
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and not key.startswith("_keyguard"):
                record.__dict__[key] = self.redactor.redact_obj(value)


def install(redactor: Redactor, logger: logging.Logger | str | None = None) -> RedactingFilter:
    """Attach one :class:`RedactingFilter` to every handler of ``logger`` (root by default)
    and to the logger itself; idempotent. Returns the filter."""
    if logger is None or isinstance(logger, str):
        logger = logging.getLogger(logger)
    existing = next(
        (f for f in logger.filters if isinstance(f, RedactingFilter) and f.redactor is redactor),
        None,
    )
    flt = existing or RedactingFilter(redactor)
    if existing is None:
        logger.addFilter(flt)
    for handler in logger.handlers:
        if flt not in handler.filters:
            handler.addFilter(flt)
    _watch(logger, flt)
    return flt


# (scope logger, filter) pairs that install() set up; the record factory keeps their
# handlers covered. A pair whose filter was removed from its logger is dropped.
_installed: list[tuple[logging.Logger, RedactingFilter]] = []
_installed_lock = threading.Lock()


def _watch(logger: logging.Logger, flt: RedactingFilter) -> None:
    with _installed_lock:
        if not any(scope is logger and f is flt for scope, f in _installed):
            _installed.append((logger, flt))
        base = logging.getLogRecordFactory()
        if getattr(base, "_keyguard_covering", False):
            return

        def covering_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = base(*args, **kwargs)
            _cover(record.name)
            return record

        covering_factory._keyguard_covering = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(covering_factory)


def _cover(name: str) -> None:
    """Put each installed filter on every handler a record of logger ``name`` will reach
    (within the filter's scope), so a handler added after ``install`` is covered too."""
    pairs = _installed
    if not pairs:
        return
    origin = logging.root if name == "root" else logging.getLogger(name)
    stale = False
    for scope, flt in pairs:
        if flt not in scope.filters:  # removed by its owner: uninstalled
            stale = True
            continue
        if scope is not logging.root and name != scope.name:
            if not name.startswith(scope.name + "."):
                continue
        current: logging.Logger | None = origin
        while current is not None:
            for handler in current.handlers:
                if flt not in handler.filters:
                    handler.addFilter(flt)
            if current is scope or not current.propagate:
                break
            current = current.parent
    if stale:
        with _installed_lock:
            _installed[:] = [(s, f) for s, f in _installed if f in s.filters]


def structlog_processor(
    redactor: Redactor,
) -> Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]:
    """A structlog processor; place it after ``format_exc_info`` and before the renderer."""

    def redact_event(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        out = redactor.redact_obj(dict(event_dict))
        exc = out.get("exc_info")
        if exc and not isinstance(exc, str):
            if exc is True:
                import sys

                exc = sys.exc_info()
            if isinstance(exc, BaseException):
                exc = (type(exc), exc, exc.__traceback__)
            if isinstance(exc, tuple) and exc[0] is not None:
                out["exception"] = redactor.redact("".join(traceback.format_exception(*exc)))
            del out["exc_info"]
        return out

    return redact_event
