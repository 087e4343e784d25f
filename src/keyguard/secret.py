"""Opaque secret values, references, fingerprints and masking.

This module is the bottom layer: it imports nothing else of keyguard but the errors.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

from keyguard.errors import InvalidReference

__all__ = [
    "PLACEHOLDER_PREFIX",
    "PLACEHOLDER_RE",
    "Reference",
    "Secret",
    "fingerprint",
    "mask",
    "parse_placeholder",
    "placeholder_for",
]

# Fingerprints and placeholders are keyed per process: they identify a value within a
# run (audit, findings, baselines use their own stable form) without being a hash that
# could be brute-forced offline from a log.
_PROCESS_KEY = os.urandom(32)

MIN_VISIBLE_LENGTH = 16
PLACEHOLDER_PREFIX = "kg_ph_"
PLACEHOLDER_RE = re.compile(r"kg_ph_([A-Za-z_][A-Za-z0-9_]*?)_([0-9a-f]{20})(?![A-Za-z0-9_])")


def mask(value: str | bytes, *, visible: int = 4) -> str:
    """Return the guide's ``first4…last4`` form; fully hidden below 16 characters."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if len(value) < MIN_VISIBLE_LENGTH:
        return "*" * 8
    return f"{value[:visible]}…{value[-visible:]}"


def fingerprint(value: str | bytes, *, key: bytes | None = None) -> str:
    """A short keyed hash of a value (per-process key unless one is given)."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    digest = hmac.new(key or _PROCESS_KEY, value, hashlib.sha256).hexdigest()
    return digest[:16]


def placeholder_for(name: str) -> str:
    """The stand-in for secret ``name``: stable within a process, unguessable outside it."""
    tag = hmac.new(_PROCESS_KEY, b"placeholder:" + name.encode(), hashlib.sha256).hexdigest()
    return f"{PLACEHOLDER_PREFIX}{name}_{tag[:20]}"


def parse_placeholder(text: str) -> str | None:
    """Return the secret name if ``text`` is exactly a placeholder minted by this process."""
    m = PLACEHOLDER_RE.fullmatch(text)
    if m and hmac.compare_digest(placeholder_for(m.group(1)), text):
        return m.group(1)
    return None


class Secret:
    """A secret value that does not show itself.

    ``repr``/``str``/``format``, logging, ``json.dumps(default=...)``, pickling and
    copying never expose the value; ``reveal()`` is the one explicit way out.
    """

    __slots__ = ("__value", "_fingerprint", "name", "source", "version")

    def __init__(
        self,
        name: str,
        value: str,
        *,
        source: str | None = None,
        version: str | int | None = None,
    ) -> None:
        if not isinstance(value, str):
            raise TypeError(f"secret {name!r}: value must be str, not {type(value).__name__}")
        self.name = name
        self.__value = value
        self.source = source
        self.version = version
        self._fingerprint = fingerprint(value)

    def reveal(self) -> str:
        """Return the real value. Call it only where the value must go on the wire."""
        return self.__value

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def masked(self) -> str:
        return mask(self.__value)

    @property
    def placeholder(self) -> str:
        return placeholder_for(self.name)

    def __len__(self) -> int:
        return len(self.__value)

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, {self.masked!r})"

    def __str__(self) -> str:
        return f"[REDACTED:{self.name}]"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __bool__(self) -> bool:
        return bool(self.__value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other_value = other.reveal()
        elif isinstance(other, str):
            other_value = other
        else:
            return NotImplemented
        return hmac.compare_digest(self.__value.encode(), other_value.encode())

    def __hash__(self) -> int:
        return hash(("keyguard.Secret", self.name, self._fingerprint))

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"secret {self.name!r} cannot be pickled; pass its name and load it from the store"
        )

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __json__(self) -> str:
        return str(self)


def json_default(obj: Any) -> Any:
    """``json.dumps(data, default=json_default)`` writes secrets as ``[REDACTED:NAME]``."""
    if isinstance(obj, Secret):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _masked_ref(ref: str) -> str:
    """A reference that failed to parse, as an error may show it: the scheme, then the
    rest masked (it failed the shape, so it may be a value pasted where a path belongs)."""
    scheme, sep, rest = ref.partition("://")
    if not sep or not scheme.isalpha() or len(scheme) > 10:
        return mask(ref)
    return f"{scheme}://{mask(rest)}" if rest else ref


@dataclass(frozen=True, slots=True)
class Reference:
    """Where a secret lives: ``env://NAME``, ``file:///path``, ``vault://mount/path#field``,
    or a bare name resolved through the store's source order (scheme ``name``)."""

    scheme: str  # "env" | "file" | "vault" | "name"
    target: str  # env var name, file path, "mount/path", or bare name
    field: str | None = None  # vault field

    _NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")

    @classmethod
    def parse(cls, ref: str) -> Reference:
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidReference("empty secret reference")
        ref = ref.strip()
        if "://" not in ref:
            if not cls._NAME_RE.fullmatch(ref):
                # What fails the name shape may be a value pasted where a name belongs.
                raise InvalidReference(
                    f"invalid secret reference {mask(ref)!r}: "
                    "use a name or env://, file://, vault://"
                )
            return cls("name", ref)
        scheme, _, rest = ref.partition("://")
        scheme = scheme.lower()
        if scheme == "env":
            if not cls._NAME_RE.fullmatch(rest):
                raise InvalidReference(
                    f"invalid env reference env://{mask(rest)!r}: expected env://NAME"
                )
            return cls("env", rest)
        if scheme == "file":
            path = unquote(urlsplit(ref).path)
            if not path or not path.startswith("/"):
                raise InvalidReference(
                    f"invalid file reference {_masked_ref(ref)!r}: expected file:///absolute/path"
                )
            return cls("file", path)
        if scheme == "vault":
            path, sep, field = rest.partition("#")
            path = path.strip("/")
            if not sep or not field or "/" not in path:
                raise InvalidReference(
                    f"invalid vault reference {_masked_ref(ref)!r}: "
                    "expected vault://<mount>/<path>#<field>"
                )
            return cls("vault", path, field)
        raise InvalidReference(
            f"unknown reference scheme in {_masked_ref(ref)!r}: use env://, file:// or vault://"
        )

    @property
    def mount(self) -> str:
        return self.target.split("/", 1)[0]

    @property
    def path(self) -> str:
        return self.target.split("/", 1)[1] if "/" in self.target else ""

    def __str__(self) -> str:
        if self.scheme == "name":
            return self.target
        if self.scheme == "file":
            return f"file://{self.target}"
        if self.scheme == "vault":
            return f"vault://{self.target}#{self.field}"
        return f"{self.scheme}://{self.target}"
