"""What every source hands the store, and the one method a source implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from keyguard.secret import Reference

__all__ = ["Fetched", "Source", "describe"]


@dataclass(frozen=True, slots=True)
class Fetched:
    """A value as a source found it. The store wraps it in a ``Secret`` at once."""

    # repr=False: a Fetched may end up in a traceback or a debugger before it is wrapped.
    value: str = field(repr=False)
    origin: str
    version: str | int | None = None
    lease_seconds: float | None = None


@runtime_checkable
class Source(Protocol):
    """A place secrets come from.

    ``fetch`` returns ``None`` when the reference is "not here" (a scheme the source
    does not serve, or a name it does not hold), and raises a ``KeyguardError`` when
    the source exists but cannot answer (malformed file, access denied, backend down).
    """

    name: str

    def fetch(self, ref: Reference) -> Fetched | None: ...


def describe(source: object) -> str:
    """A short human description of a source, for "looked in ..." messages."""
    method = getattr(source, "describe", None)
    if callable(method):
        return str(method())
    return str(getattr(source, "name", type(source).__name__))
