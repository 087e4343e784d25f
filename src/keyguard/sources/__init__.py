"""Where secret values come from. Each source is small and knows one place.

``VaultSource`` is imported lazily: it needs the optional ``hvac`` (``keyguard[vault]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keyguard.sources.base import Fetched, Source, describe
from keyguard.sources.dotenv import DotenvSource
from keyguard.sources.env import EnvSource
from keyguard.sources.files import DEFAULT_SECRETS_DIR, FilesSource, read_secret_file

if TYPE_CHECKING:
    from keyguard.sources.vault import VaultSource

__all__ = [
    "DEFAULT_SECRETS_DIR",
    "DotenvSource",
    "EnvSource",
    "Fetched",
    "FilesSource",
    "Source",
    "VaultSource",
    "describe",
    "read_secret_file",
]


def __getattr__(name: str) -> Any:
    if name == "VaultSource":
        from keyguard.sources.vault import VaultSource

        return VaultSource
    raise AttributeError(f"module 'keyguard.sources' has no attribute {name!r}")
