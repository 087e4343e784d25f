"""``.env`` files: ``.env`` then ``.env.local``, later files overriding earlier ones.

Parsing is python-dotenv's. Unlike ``load_dotenv`` nothing is written into
``os.environ`` unless ``export=True`` is asked for: values stay in this source (and
then in the store) so a child process does not inherit them by accident.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from keyguard.errors import AccessDenied, SourceError
from keyguard.secret import Reference
from keyguard.sources.base import Fetched

__all__ = ["DotenvSource"]

DEFAULT_FILES = (".env", ".env.local")
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


@dataclass(frozen=True, slots=True)
class _Entry:
    value: str | None
    origin: str  # "<file>:<line>"


class DotenvSource:
    """Serves ``env://NAME`` and bare names from a stack of dotenv files.

    Files are re-read when their size or mtime changes, so an edit is picked up at the
    store's next refresh. ``env://`` references are served too because code written
    for ``load_dotenv()`` + ``os.getenv`` expects the ``.env`` file to *be* the
    environment.
    """

    name = "dotenv"

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]] = DEFAULT_FILES,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        interpolate: bool = True,
        export: bool = False,
        encoding: str = "utf-8",
    ) -> None:
        self._base = Path(base_dir) if base_dir is not None else None
        self._paths = [Path(p) for p in paths]
        self._labels = [str(p) for p in paths]
        self._interpolate = interpolate
        self._encoding = encoding
        self._lock = threading.Lock()
        self._stamp: tuple[object, ...] | None = None
        self._entries: dict[str, _Entry] = {}
        if export:
            self.export()

    def describe(self) -> str:
        return "dotenv (" + ", ".join(self._labels) + ")"

    def files(self) -> list[Path]:
        """The dotenv files in override order (later wins), resolved against ``base_dir``."""
        base = self._base if self._base is not None else Path.cwd()
        return [p if p.is_absolute() else base / p for p in self._paths]

    def fetch(self, ref: Reference) -> Fetched | None:
        if ref.scheme not in ("env", "name"):
            return None
        entry = self._load().get(ref.target)
        if entry is None or not entry.value:
            return None
        return Fetched(entry.value, entry.origin)

    def names(self) -> list[str]:
        """Every name the files define, in file order."""
        return list(self._load())

    def origin(self, name: str) -> str | None:
        entry = self._load().get(name)
        return entry.origin if entry else None

    def export(self, *, override: bool = False) -> list[str]:
        """Copy the values into ``os.environ`` (not replacing existing ones unless
        ``override``); return the names written. Only when explicitly asked."""
        written = []
        for name, entry in self._load().items():
            if entry.value is None or (name in os.environ and not override):
                continue
            os.environ[name] = entry.value
            written.append(name)
        return written

    # -- reading ---------------------------------------------------------------

    def _load(self) -> dict[str, _Entry]:
        files = self.files()
        stamp = tuple(_stat_stamp(p) for p in files)
        with self._lock:
            if stamp != self._stamp:
                self._entries = self._parse_all(files)
                self._stamp = stamp
            return self._entries

    def _parse_all(self, files: Iterable[Path]) -> dict[str, _Entry]:
        bindings: list[tuple[str, str | None, str]] = []
        for path, label in zip(files, self._labels, strict=True):
            text = _read(path)
            if text is not None:
                bindings.extend(_parse(text, label, path))
        values: dict[str, str | None]
        if self._interpolate:
            from dotenv.main import resolve_variables

            values = dict(resolve_variables(((k, v) for k, v, _ in bindings), override=True))
        else:
            values = {k: v for k, v, _ in bindings}
        origins = {k: origin for k, _, origin in bindings}  # the last file wins
        return {k: _Entry(values[k], origins[k]) for k in origins}


def _stat_stamp(path: Path) -> tuple[object, ...]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (None,)
    except OSError as exc:
        return (type(exc).__name__,)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except PermissionError:
        raise AccessDenied(f"cannot read dotenv file {path}: permission denied") from None
    except IsADirectoryError:
        raise SourceError(f"dotenv file {path} is a directory") from None
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"dotenv file {path} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise SourceError(f"cannot read dotenv file {path}: {exc.strerror}") from None


def _parse(text: str, label: str, path: Path) -> list[tuple[str, str | None, str]]:
    from dotenv.parser import parse_stream

    out = []
    for binding in parse_stream(io.StringIO(text)):
        # The parser's line is where the binding's leading whitespace starts; the line a
        # user would look at is after the blank lines that precede it.
        original = binding.original.string
        stripped = original.lstrip()
        line = binding.original.line + original[: len(original) - len(stripped)].count("\n")
        if binding.error:
            # The line's text is not quoted: it may be half a value.
            raise SourceError(
                f"{path}:{line}: cannot parse this line; expected KEY=value "
                "(check for an unclosed quote or a space in the name)"
            )
        if binding.key is None:
            continue
        if binding.value is None:
            # python-dotenv accepts a bare word as "declared, no value"; here it is far
            # more likely a value pasted on a line of its own, so it is not taken as a
            # name (names end up in templates and messages).
            raise SourceError(f"{path}:{line}: no '=' on this line; expected KEY=value")
        if not _KEY_RE.fullmatch(binding.key):
            raise SourceError(
                f"{path}:{line}: invalid variable name; use letters, digits and underscores"
            )
        out.append((binding.key, binding.value, f"{label}:{line}"))
    return out
