"""The process environment (or any mapping standing in for it)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from keyguard.secret import Reference
from keyguard.sources.base import Fetched

__all__ = ["EnvSource"]


class EnvSource:
    """Serves ``env://NAME`` and bare names from environment variables.

    ``environ=None`` reads ``os.environ`` live, so a variable set after start-up is seen
    at the next refresh. An empty variable counts as unset: that is what a ``KEY=`` line
    copied from a template means.
    """

    name = "env"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def describe(self) -> str:
        return "environment"

    def fetch(self, ref: Reference) -> Fetched | None:
        if ref.scheme not in ("env", "name"):
            return None
        value = self.environ.get(ref.target)
        if not value:
            return None
        return Fetched(value, f"env://{ref.target}")
