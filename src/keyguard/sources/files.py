"""Secrets kept in files: a Docker/Kubernetes secrets directory, ``NAME_FILE``
indirection (``VAULT_TOKEN_FILE=/run/secrets/vault_token``) and ``file:///path``."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from keyguard.errors import AccessDenied, SourceError
from keyguard.secret import Reference
from keyguard.sources.base import Fetched

__all__ = ["DEFAULT_SECRETS_DIR", "FilesSource", "read_secret_file"]

DEFAULT_SECRETS_DIR = "/run/secrets"
# A secret is a line, not a document: anything much bigger is a wrong path.
MAX_BYTES = 1 << 20


def read_secret_file(path: str | os.PathLike[str], *, what: str | None = None) -> str:
    """Read one secret file: surrounding whitespace (the usual trailing newline) removed.

    Errors name the path (and ``what`` pointed at it), never the content.
    """
    path = Path(path)
    label = f"{path}" if what is None else f"{path} (from {what})"
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SourceError(f"secret file {label} does not exist") from None
    except PermissionError:
        raise AccessDenied(f"cannot read secret file {label}: permission denied") from None
    except IsADirectoryError:
        raise SourceError(f"secret file {label} is a directory, not a file") from None
    except OSError as exc:
        raise SourceError(f"cannot read secret file {label}: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise SourceError(f"secret file {label} is larger than {MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"secret file {label} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    text = text.strip()
    if not text:
        raise SourceError(f"secret file {label} is empty")
    return text


class FilesSource:
    """Serves ``file:///path`` references, and bare names / ``env://NAME`` through
    ``NAME_FILE`` (a path in the environment) or ``<secrets_dir>/NAME`` (also tried in
    lower case, the usual spelling of Docker secret names).

    A file that is referenced explicitly (``file://`` or ``NAME_FILE``) and missing is an
    error; a name absent from the secrets directory is simply "not here".
    """

    name = "files"

    def __init__(
        self,
        secrets_dir: str | os.PathLike[str] | None = DEFAULT_SECRETS_DIR,
        *,
        environ: Mapping[str, str] | None = None,
        indirection: bool = True,
    ) -> None:
        self.secrets_dir = Path(secrets_dir) if secrets_dir is not None else None
        self._environ = environ
        self._indirection = indirection

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def describe(self) -> str:
        parts = []
        if self._indirection:
            parts.append("NAME_FILE")
        if self.secrets_dir is not None:
            parts.append(str(self.secrets_dir))
        return "files (" + ", ".join(parts) + ")"

    def fetch(self, ref: Reference) -> Fetched | None:
        if ref.scheme == "file":
            if _stat(Path(ref.target)) is None:
                return None
            return Fetched(read_secret_file(ref.target), f"file://{ref.target}")
        if ref.scheme not in ("env", "name"):
            return None
        name = ref.target
        if self._indirection:
            pointer = self.environ.get(f"{name}_FILE")
            if pointer:
                value = read_secret_file(pointer, what=f"{name}_FILE")
                return Fetched(value, f"{name}_FILE={pointer}")
        if ref.scheme == "name" and self.secrets_dir is not None:
            for candidate in dict.fromkeys((name, name.lower())):
                path = self.secrets_dir / candidate
                st = _stat(path)
                if st is not None and not stat.S_ISDIR(st.st_mode):
                    return Fetched(read_secret_file(path), str(path))
        return None


def _stat(path: Path) -> os.stat_result | None:
    """``stat`` that tells "absent" (None) from "not allowed to look" (AccessDenied)."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        if path.is_symlink():
            raise SourceError(f"secret file {path} is a dangling symlink") from None
        return None
    except PermissionError:
        raise AccessDenied(f"cannot look up secret file {path}: permission denied") from None
