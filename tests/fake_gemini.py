"""The loopback Gemini stand-in (lives in the package for ``keyguard demo``), and
``strings_in``, used to assert that an SDK object does not hold a value."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from keyguard.demo.gemini_server import FakeGemini, Recorded, RecordingServer

__all__ = ["FakeGemini", "Recorded", "RecordingServer", "strings_in"]


def strings_in(obj: Any, seen: set[int] | None = None, depth: int = 0) -> Iterator[str]:
    """Every string reachable from ``obj`` through attributes, dicts and sequences."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 12:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, bytes):
        yield obj.decode("latin-1")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from strings_in(k, seen, depth + 1)
            yield from strings_in(v, seen, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            yield from strings_in(v, seen, depth + 1)
    elif hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
        if type(obj).__module__.startswith(
            ("keyguard.store", "keyguard.redact", "keyguard.sources")
        ):
            return  # the store and the redactor hold values by design
        attrs = dict(getattr(obj, "__dict__", {}))
        for name in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, name):
                attrs[name] = getattr(obj, name)
        for v in attrs.values():
            yield from strings_in(v, seen, depth + 1)
