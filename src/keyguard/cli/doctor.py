"""``keyguard doctor``: check a project against the guide's security checklist."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from keyguard.hygiene.doctor import DoctorReport, run_doctor

MARKS = {
    "pass": ("✔", "green"),
    "fail": ("✘", "red"),
    "warn": ("!", "yellow"),
    "skip": ("-", "bright_black"),
}


def _print(report: DoctorReport) -> None:
    click.echo(f"keyguard doctor: {report.project}")
    for c in report.checks:
        mark, colour = MARKS[c.status]
        click.echo(f"{click.style(mark, fg=colour, bold=True)} {c.title}")
        for d in c.details:
            click.echo(f"    {d}")
        if c.fix:
            click.echo(f"    {click.style('fix:', bold=True)} {c.fix}")
    if report.exposures:
        click.echo("")
        click.echo(
            click.style(
                f"{len(report.exposures)} exposed key(s): rotate them now", fg="red", bold=True
            )
        )
        for e in report.exposures:
            click.echo(
                f"\n{click.style(e.name, bold=True)} {e.masked} "
                f"(fingerprint {e.fingerprint}) - {e.provider}"
            )
            for where in e.locations[:10]:
                click.echo(f"    seen at {where}")
            if len(e.locations) > 10:
                click.echo(f"    ... and {len(e.locations) - 10} more place(s)")
            if e.url:
                click.echo(f"    {e.url}")
            for i, step in enumerate(e.steps, 1):
                click.echo(f"    {i}. {step}")
    failed = sum(c.status == "fail" for c in report.checks)
    click.echo("")
    click.echo("all checks passed" if report.ok else f"{failed} check(s) failed")


@click.command("doctor")
@click.argument(
    "project", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--policy",
    type=click.Path(exists=True, path_type=Path),
    help="Policy file or folder (default: PROJECT/policies).",
)
@click.option("--no-history", is_flag=True, help="Do not scan the git history.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(project: Path, policy: Path | None, no_history: bool, as_json: bool) -> None:
    """Check PROJECT (default: .) against the security checklist; print each item's fix
    and the rotation steps for every exposed key. Exit 1 when a check fails."""
    report = run_doctor(project, policy=policy, history=not no_history)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print(report)
    sys.exit(0 if report.ok else 1)
