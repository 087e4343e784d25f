"""``keyguard scan``: find secrets in files and git history."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click

from keyguard.errors import KeyguardError
from keyguard.hygiene.files import DEFAULT_MAX_BYTES, git_toplevel
from keyguard.hygiene.scan import Scanner, ScanReport

# Below this many files a progress bar is just flicker.
PROGRESS_MIN_FILES = 200


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[path]}", markup=False),
        transient=True,
        console=Console(stderr=True),
    )


def _print_text(report: ScanReport, show_skipped: bool) -> None:
    for f in report.findings:
        where = f"{f.path}:{f.line}:{f.column}"
        commit = f" commit {f.commit[:12]}" if f.commit else ""
        click.echo(
            f"{click.style(where, bold=True)}: {click.style(f.rule, fg='red')} "
            f"{f.masked} (fingerprint {f.fingerprint}){commit}"
        )
    if report.skipped:
        by_reason: dict[str, int] = {}
        for s in report.skipped:
            by_reason[s.reason] = by_reason.get(s.reason, 0) + 1
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(by_reason.items()))
        click.echo(f"skipped {len(report.skipped)} file(s): {counts}", err=True)
        if show_skipped:
            for s in report.skipped:
                detail = f" ({s.detail})" if s.detail else ""
                click.echo(f"  skipped {s.path}: {s.reason}{detail}", err=True)
        else:
            click.echo("  (--show-skipped lists them)", err=True)
    for e in report.errors:
        click.echo(click.style(f"error: {e}", fg="red"), err=True)
    suppressed = f", {report.suppressed} in baseline" if report.suppressed else ""
    history = f", {report.commits_scanned} commit(s)" if report.commits_scanned else ""
    click.echo(
        f"{len(report.findings)} finding(s) in {report.files_scanned} file(s){history}{suppressed}",
        err=True,
    )


def _path_option(*decls: str, **kwargs: Any) -> Any:
    """An option whose value is a file path."""
    return click.option(*decls, type=click.Path(path_type=Path), **kwargs)


@click.command("scan")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--git-history", is_flag=True, help="Also scan every line added in git history.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@_path_option("-o", "--output", help="Write the report here.")
@_path_option("--baseline", help="Findings listed in this baseline file are not reported.")
@click.option(
    "--write-baseline", is_flag=True, help="Write all current findings to --baseline and exit 0."
)
@_path_option(
    "--policy", help="Also find the values of the policy's secrets (loaded through the store)."
)
@_path_option(
    "--env-file",
    "env_files",
    multiple=True,
    help="Also find the values of this dotenv file's secrets (repeatable).",
)
@_path_option("--rules", "rule_files", multiple=True, help="An extra rule file (repeatable).")
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Files larger than this are skipped (and reported).",
)
@click.option("--show-skipped", is_flag=True, help="List each skipped file.")
def command(
    paths: tuple[Path, ...],
    git_history: bool,
    fmt: str,
    output: Path | None,
    baseline: Path | None,
    write_baseline: bool,
    policy: Path | None,
    env_files: tuple[Path, ...],
    rule_files: tuple[Path, ...],
    max_bytes: int,
    show_skipped: bool,
) -> None:
    """Scan PATHS (default: .) for secrets, honouring .gitignore.

    Exit 0 when clean, 1 with findings, 2 on errors. A line containing
    `keyguard:allow` is never reported.
    """
    from keyguard.hygiene.baseline import load_baseline
    from keyguard.hygiene.baseline import write_baseline as write_bl
    from keyguard.hygiene.known import add_env_file, add_policy_secrets
    from keyguard.redact import Redactor

    if write_baseline and baseline is None:
        raise click.UsageError("--write-baseline needs --baseline FILE")
    roots = list(paths) or [Path(".")]
    report = ScanReport()
    try:
        redactor = Redactor(rules=[str(p) for p in rule_files] or None)
        for env_file in env_files:
            add_env_file(redactor, env_file)
        if policy is not None:
            _added, problems = add_policy_secrets(redactor, policy)
            report.errors.extend(f"policy secret {p}" for p in problems)
        known = set()
        if baseline is not None and not write_baseline:
            known = load_baseline(baseline)
    except KeyguardError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

    scanner = Scanner(redactor, max_bytes=max_bytes, baseline=known)
    interactive = fmt == "text" and sys.stderr.isatty()
    progress = _progress() if interactive else None
    with progress or nullcontext():
        task: list[Any] = []

        def on_total(n: int) -> None:
            if progress is not None and n >= PROGRESS_MIN_FILES:
                task.append(progress.add_task("scan", total=n, path=""))

        def advance(path: str, _nbytes: int) -> None:
            if progress is not None and task:
                progress.update(task[0], advance=1, path=path[-40:])

        scanner.scan_paths(roots, report=report, progress=advance, on_total=on_total)
        if git_history:
            # One pass per repository, however many paths inside it were named.
            repos: dict[Path, Path] = {}
            for root in roots:
                repo = root if root.is_dir() else root.parent
                repos.setdefault(git_toplevel(repo) or repo.resolve(), repo)
            for repo in repos.values():
                scanner.scan_git_history(repo, report=report)

    if write_baseline:
        assert baseline is not None
        n = write_bl(baseline, report.findings)
        click.echo(f"wrote {n} fingerprint(s) to {baseline}", err=True)
        sys.exit(2 if report.errors else 0)

    if fmt == "text" and output is None:
        _print_text(report, show_skipped)
    else:
        if fmt == "sarif":
            from keyguard.hygiene.sarif import to_sarif

            doc: Any = to_sarif(report, rules=getattr(redactor, "rules", ()))
        elif fmt == "json":
            doc = report.to_dict()
        else:
            doc = None
        if doc is None:
            lines = [
                f"{f.path}:{f.line}:{f.column}: {f.rule} {f.masked} ({f.fingerprint})"
                for f in report.findings
            ]
            text = "\n".join(lines) + ("\n" if lines else "")
        else:
            text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        if output is not None:
            output.write_text(text, "utf-8")
            click.echo(f"{len(report.findings)} finding(s); report written to {output}", err=True)
        else:
            click.echo(text, nl=False)
        for e in report.errors:
            click.echo(f"error: {e}", err=True)
    sys.exit(report.exit_code)
