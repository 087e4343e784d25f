"""Which files a scan reads: a git repo's tracked + untracked-not-ignored files, or a
directory walk honouring every ``.gitignore`` on the way; binaries and oversized files
are returned as :class:`Skipped` so the caller can report them."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Skipped",
    "display_path",
    "find_policy",
    "git_toplevel",
    "read_text",
    "walk",
]

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
# How much of a file decides "binary": git's own heuristic looks at the first 8000 bytes.
SNIFF_BYTES = 8192
ALWAYS_SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str  # "binary" | "too large" | "unreadable" | "symlink"
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason, "detail": self.detail}


def display_path(path: Path, base: Path | None = None) -> str:
    """Posix path relative to ``base`` (default cwd) when below it, else absolute."""
    base = (base or Path.cwd()).resolve()
    resolved = path.absolute()
    try:
        return resolved.relative_to(base).as_posix()
    except ValueError:
        return resolved.as_posix()


def git_toplevel(directory: Path) -> Path | None:
    """The work tree root containing ``directory``, or None when it is not in a git repo."""
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:  # git not installed: fall back to walking
        return None
    if out.returncode != 0:
        return None
    return Path(out.stdout.strip())


def _git_files(directory: Path) -> list[Path] | None:
    proc = subprocess.run(
        [
            "git",
            "-C",
            str(directory),
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            ".",
        ],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    names = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    files = []
    for name in dict.fromkeys(names):
        path = directory / name
        # A tracked file deleted in the work tree has nothing to read.
        # (A submodule is listed as a directory: its own files are its own business.)
        if name and (path.is_file() or path.is_symlink()):
            files.append(path)
    return files


def _load_ignore(directory: Path) -> pathspec.PathSpec | None:
    ignore = directory / ".gitignore"
    try:
        lines = ignore.read_text("utf-8", "replace").splitlines()
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _walk_dir(root: Path) -> Iterator[Path]:
    # Stack of (dir the .gitignore lives in, its spec); a path is ignored when any
    # enclosing .gitignore ignores it relative to that .gitignore's own directory.
    specs: dict[Path, list[tuple[Path, pathspec.PathSpec]]] = {}
    root_specs: list[tuple[Path, pathspec.PathSpec]] = []
    top = git_toplevel(root) if root.exists() else None
    if top is not None:
        for parent in [root, *root.parents]:
            spec = _load_ignore(parent)
            if spec is not None and parent != root:
                root_specs.append((parent, spec))
            if parent == top:
                break
    specs[root] = root_specs

    def ignored(path: Path, is_dir: bool, stack: list[tuple[Path, pathspec.PathSpec]]) -> bool:
        for base, spec in stack:
            rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
            if spec.match_file(rel):
                return True
        return False

    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        stack = specs.pop(here, [])
        spec = _load_ignore(here)
        if spec is not None:
            stack = [*stack, (here, spec)]
        keep = []
        for d in sorted(dirnames):
            sub = here / d
            if d in ALWAYS_SKIPPED_DIRS or ignored(sub, True, stack):
                continue
            specs[sub] = stack
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            path = here / f
            if not ignored(path, False, stack):
                yield path


def walk(paths: list[Path]) -> Iterator[Path]:
    """Candidate files under ``paths``. Files named explicitly are always yielded (that is
    how pre-commit passes them); directories go through git or the .gitignore walk."""
    seen: set[Path] = set()
    for root in paths:
        if root.is_file() or (root.is_symlink() and not root.is_dir()):
            candidates: Iterator[Path] | list[Path] = [root]
        elif root.is_dir():
            listed = _git_files(root) if git_toplevel(root) is not None else None
            candidates = listed if listed is not None else _walk_dir(root)
        else:
            raise FileNotFoundError(f"no such file or directory: {root}")
        for path in candidates:
            key = path.absolute()
            if key not in seen:
                seen.add(key)
                yield path


def read_text(
    path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, shown: str | None = None
) -> str | Skipped:
    """The file's text, or why it was not read. Nothing is copied anywhere else."""
    shown = shown or display_path(path)
    if path.is_symlink():
        return Skipped(shown, "symlink", os.readlink(path))
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the scan forever
            return Skipped(shown, "not a regular file")
        size = st.st_size
        if size > max_bytes:
            return Skipped(shown, "too large", f"{size} bytes > limit {max_bytes}")
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        return Skipped(shown, "unreadable", exc.strerror or type(exc).__name__)
    if len(data) > max_bytes:  # grew while we looked
        return Skipped(shown, "too large", f"> limit {max_bytes} bytes")
    if b"\0" in data[:SNIFF_BYTES]:
        return Skipped(shown, "binary")
    return data.decode("utf-8", "replace")


POLICY_CANDIDATES = ("policies", "keyguard.yaml")


def find_policy(project: Path | None = None) -> Path | None:
    """The project's policy: its ``policies/`` folder (what ``keyguard init`` writes) or a
    single ``keyguard.yaml``; None when there is neither."""
    base = project if project is not None else Path(".")
    for name in POLICY_CANDIDATES:
        if (base / name).exists():
            return base / name
    return None
