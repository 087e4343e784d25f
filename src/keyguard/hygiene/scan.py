"""Scanning text, trees and git history with the redactor's findings.

Scanned text stays in memory: nothing is written to temporary files. A finding carries
the rule (or the known secret's name), where it is, the masked value and a *stable*
fingerprint (the same value gives the same fingerprint in every run, which is what a
baseline needs), never the value itself.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from keyguard.hygiene.files import DEFAULT_MAX_BYTES, Skipped, display_path, read_text, walk
from keyguard.secret import fingerprint

if TYPE_CHECKING:
    from keyguard.redact import Redactor

__all__ = [
    "ScanFinding",
    "ScanReport",
    "Scanner",
    "stable_fingerprint",
]

# A fixed, project-independent key: fingerprints must match across runs and machines so a
# committed baseline keeps working. The values scanned for are high-entropy secrets, so a
# public key does not make the fingerprint a useful oracle.
_STABLE_KEY = b"keyguard/finding-fingerprint/v1"


def stable_fingerprint(value: str) -> str:
    return fingerprint(value, key=_STABLE_KEY)


@dataclass(frozen=True, slots=True)
class ScanFinding:
    rule: str  # pattern rule id, or the known secret's name
    kind: str  # "pattern" | "known"
    path: str
    line: int  # 1-based
    column: int  # 1-based, in characters
    masked: str
    fingerprint: str
    commit: str | None = None  # set for git-history findings

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        if self.commit is None:
            del data["commit"]
        return data


@dataclass(slots=True)
class ScanReport:
    findings: list[ScanFinding] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    suppressed: int = 0  # by baseline (pragma lines are not findings at all)
    files_scanned: int = 0
    bytes_scanned: int = 0
    commits_scanned: int = 0

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return 1 if self.findings else 0

    def to_dict(self) -> dict[str, object]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "skipped": [s.to_dict() for s in self.skipped],
            "errors": list(self.errors),
            "suppressed_by_baseline": self.suppressed,
            "files_scanned": self.files_scanned,
            "bytes_scanned": self.bytes_scanned,
            "commits_scanned": self.commits_scanned,
        }


class Scanner:
    """Finds secrets in text, files and git history using ``redactor.findings``."""

    def __init__(
        self,
        redactor: Redactor | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        baseline: Iterable[str] = (),
    ) -> None:
        if redactor is None:
            from keyguard.redact import Redactor

            redactor = Redactor()
        self.redactor = redactor
        self.max_bytes = max_bytes
        self.baseline = frozenset(baseline)

    def scan_text(
        self,
        text: str,
        path: str,
        *,
        commit: str | None = None,
        line_numbers: list[int] | None = None,
        report: ScanReport | None = None,
    ) -> list[ScanFinding]:
        """Findings in ``text``. ``line_numbers[i]`` maps the text's line i+1 to the real
        line number (git history scans only the added lines of a file)."""
        out: list[ScanFinding] = []
        line = 1
        counted_to = 0
        seen: set[tuple[int, int]] = set()
        # Known values first, so a value that is both known and matches a rule is reported
        # once, under the secret's name.
        ordered = sorted(self.redactor.findings(text), key=lambda f: (f.start, f.kind != "known"))
        for f in ordered:
            if (f.start, f.end) in seen:
                continue
            seen.add((f.start, f.end))
            line += text.count("\n", counted_to, f.start)
            counted_to = f.start
            # (Lines carrying the keyguard:allow pragma never reach here: the redactor
            # drops their findings.)
            line_start = text.rfind("\n", 0, f.start) + 1
            value = text[f.start : f.end]
            fp = stable_fingerprint(value)
            if fp in self.baseline:
                if report is not None:
                    report.suppressed += 1
                continue
            real_line = line_numbers[line - 1] if line_numbers else line
            out.append(
                ScanFinding(
                    rule=f.name,
                    kind=f.kind,
                    path=path,
                    line=real_line,
                    column=f.start - line_start + 1,
                    masked=f.masked,
                    fingerprint=fp,
                    commit=commit,
                )
            )
        return out

    def scan_paths(
        self,
        paths: list[Path],
        *,
        report: ScanReport | None = None,
        progress: Callable[[str, int], None] | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> ScanReport:
        """Scan the files under ``paths``; ``on_total(n)`` once the files are listed,
        ``progress(path, nbytes)`` after each file."""
        report = report or ScanReport()
        try:
            files = list(walk(paths))
        except OSError as exc:
            report.errors.append(str(exc))
            return report
        if on_total:
            on_total(len(files))
        for path in files:
            shown = display_path(path)
            text = read_text(path, max_bytes=self.max_bytes, shown=shown)
            if isinstance(text, Skipped):
                if text.reason == "unreadable":
                    report.errors.append(f"{shown}: cannot read: {text.detail}")
                else:
                    report.skipped.append(text)
                if progress:
                    progress(shown, 0)
                continue
            report.files_scanned += 1
            report.bytes_scanned += len(text)
            report.findings.extend(self.scan_text(text, shown, report=report))
            if progress:
                progress(shown, len(text))
        return report

    def scan_git_history(self, repo: Path, *, report: ScanReport | None = None) -> ScanReport:
        """Every line added by every commit reachable from any ref (``git log -p --all``),
        streamed from git; findings carry the commit id and the path in that commit."""
        report = report or ScanReport()
        cmd = [
            "git",
            "-C",
            str(repo),
            "-c",
            "core.quotepath=off",
            "log",
            "-p",
            "--all",
            "--no-color",
            "--no-ext-diff",
            "--no-renames",
            "-U0",
            "--format=commit %H",
        ]
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            report.errors.append("git history: git is not installed")
            return report
        assert proc.stdout is not None
        for commit, path, lines, numbers, binary in _added_lines(proc.stdout):
            if path is None:
                if commit is not None:
                    report.commits_scanned += 1
                continue
            if binary:
                report.skipped.append(Skipped(path, "binary", f"commit {commit}"))
                continue
            text = "\n".join(lines)
            if len(text) > self.max_bytes:
                report.skipped.append(
                    Skipped(path, "too large", f"commit {commit}: {len(text)} bytes added")
                )
                continue
            report.bytes_scanned += len(text)
            report.findings.extend(
                self.scan_text(text, path, commit=commit, line_numbers=numbers, report=report)
            )
        stderr = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        if proc.wait() != 0:
            msg = stderr.strip().splitlines()
            # An empty repository has no history yet: that is clean, not an error.
            if not any("does not have any commits" in m for m in msg):
                report.errors.append(f"git history: {msg[-1] if msg else 'git log failed'}")
        return report


def _unquote_git_path(raw: str) -> str:
    if not (raw.startswith('"') and raw.endswith('"')):
        return raw
    # C-style quoting with octal escapes of UTF-8 bytes (core.quotepath=off leaves only
    # control characters, quotes and backslashes quoted).
    body = raw[1:-1].encode("latin-1", "backslashreplace")
    return body.decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


_GitChunk = tuple[str | None, str | None, list[str], list[int], bool]


def _added_lines(stream: Iterable[bytes]) -> Iterator[_GitChunk]:
    """Yield (commit, path, added lines, their line numbers, is_binary) per file diff,
    and (commit, None, ...) once per commit header."""
    commit: str | None = None
    path: str | None = None
    lines: list[str] = []
    numbers: list[int] = []
    binary = False
    next_line = 0
    in_file = False
    in_hunk = False

    def flush() -> Iterator[_GitChunk]:
        if in_file and path is not None and (lines or binary):
            yield commit, path, lines, numbers, binary

    for raw in stream:
        text = raw.decode("utf-8", "replace").rstrip("\n")
        if in_hunk:
            # Inside a hunk every line is "+added", "-removed" or "\ No newline"; the
            # first line that is none of these is the next header.
            if text.startswith("+"):
                lines.append(text[1:])
                numbers.append(next_line)
                next_line += 1
                continue
            if text.startswith(("-", "\\")):
                continue
            in_hunk = False
        if text.startswith("commit "):
            yield from flush()
            commit, path, in_file = text[7:].strip(), None, False
            yield commit, None, [], [], False
        elif text.startswith("diff --git "):
            yield from flush()
            path, lines, numbers, binary, in_file = None, [], [], False, True
        elif in_file and text.startswith("+++ "):
            path = _diff_target(text[4:])
        elif in_file and text.startswith("@@ "):
            # "@@ -a,b +c,d @@": added lines are numbered from c.
            plus = text.split(" ")[2]
            next_line = int(plus[1:].split(",")[0])
            in_hunk = True
        elif in_file and text.startswith("Binary files ") and text.endswith(" differ"):
            binary = True
            # "Binary files /dev/null and b/x differ": binaries have no +++ line.
            path = _diff_target(text[len("Binary files ") : -len(" differ")].split(" and ")[-1])
    yield from flush()


def _diff_target(raw: str) -> str | None:
    target = _unquote_git_path(raw)
    return None if target == "/dev/null" else target.removeprefix("b/")
