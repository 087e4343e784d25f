"""Baselines: findings already known (by stable fingerprint) are not reported again."""

from __future__ import annotations

import json
from pathlib import Path

from keyguard.errors import KeyguardError
from keyguard.hygiene.scan import ScanFinding

__all__ = ["load_baseline", "write_baseline"]

FORMAT = "keyguard-baseline"
VERSION = 1


def load_baseline(path: Path) -> set[str]:
    """Fingerprints listed in the baseline file; a clear error when it is not one."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise KeyguardError(
            f"baseline {path} does not exist: create it with --write-baseline"
        ) from None
    except (OSError, ValueError) as exc:
        raise KeyguardError(f"baseline {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise KeyguardError(f"baseline {path} is not a keyguard baseline (missing format)")
    if data.get("version") != VERSION:
        raise KeyguardError(f"baseline {path} has unsupported version {data.get('version')!r}")
    entries = data.get("findings")
    if not isinstance(entries, list):
        raise KeyguardError(f"baseline {path}: 'findings' must be a list")
    out: set[str] = set()
    for i, entry in enumerate(entries):
        fp = entry.get("fingerprint") if isinstance(entry, dict) else None
        if not isinstance(fp, str) or not fp:
            raise KeyguardError(f"baseline {path}: findings[{i}] has no fingerprint")
        out.add(fp)
    return out


def write_baseline(path: Path, findings: list[ScanFinding], *, keep: set[str] = frozenset()) -> int:
    """Write every finding (plus fingerprints in ``keep``) to ``path``; returns the count.

    Entries hold rule, path, line and masked form for review, never a value.
    """
    entries: dict[str, dict[str, object]] = {}
    for f in sorted(findings, key=lambda f: (f.path, f.line, f.column)):
        entries.setdefault(
            f.fingerprint,
            {
                "fingerprint": f.fingerprint,
                "rule": f.rule,
                "path": f.path,
                "line": f.line,
                "masked": f.masked,
            },
        )
    for fp in sorted(keep - entries.keys()):
        entries[fp] = {"fingerprint": fp}
    doc = {"format": FORMAT, "version": VERSION, "findings": list(entries.values())}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return len(entries)
