"""``keyguard check``: validate the environment against the policy (the guide's validator)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from keyguard.cli.policy import UsageProblem, console, load_policy, policy_option
from keyguard.errors import KeyguardError
from keyguard.validate import Problem, Report, check_environment, environment_view

__all__ = ["command"]

_MARKS = {"ok": "[green]✓[/green]", "unset": "[dim]–[/dim]"}


def _relative(path: Path, base: Path) -> str:
    """``path`` as the dotenv source will read it (relative to the project folder when it
    is inside it, so origins read ``other.env:3`` rather than a long absolute path)."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(base.resolve()))
    except ValueError:
        return str(resolved)


def _short(problem: Problem) -> str:
    """A problem's sentence without the secret's name (the row already shows it)."""
    text = problem.message
    for prefix in (f"{problem.name}: ", f"{problem.name} "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _rule(problem: Problem) -> str:
    """The Problem column: the rule, or for a consequence the rule of the environment
    problem it follows from (told once, under Environment)."""
    return problem.cause or problem.rule


def _human(report: Report) -> None:
    out = console()
    table = Table(title="Secrets", title_justify="left")
    table.add_column("Secret", style="bold", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Source")
    table.add_column("Value", no_wrap=True)
    table.add_column("Problem", overflow="fold")  # a rule id cut short would say nothing
    for status in report.secrets:
        mark = _MARKS.get(status.status, "[red]✗[/red]")
        label = {"unset": "optional, unset"}.get(status.status, status.status)
        table.add_row(
            escape(status.name),
            f"{mark} {label}",
            escape(status.origin or "-"),
            escape(status.masked or "-"),
            escape(", ".join(_rule(p) for p in status.problems)),
        )
    out.print(table)
    # "required" is already the row's status; a problem with a cause is told once, below.
    details = [
        p for s in report.secrets for p in s.problems if p.rule != "required" and not p.cause
    ]
    if details:
        out.print("Problems:")
        for problem in details:
            out.print(f"  [red]✗[/red] {escape(problem.name)}: {escape(_short(problem))}")
    if report.environment:
        out.print("Environment:")
        for problem in report.environment:
            mark = "[yellow]![/yellow]" if problem.severity == "warning" else "[red]✗[/red]"
            out.print(f"  {mark} {escape(problem.message)} {escape(f'[{problem.rule}]')}")
    errors, warns = len(report.errors), len(report.warnings)
    if not errors:
        extra = f" ({warns} warning(s))" if warns else ""
        out.print(f"[green]✓ environment OK[/green]{extra}")
        return
    out.print(f"[red]✗ {errors} problem(s)[/red]" + (f", {warns} warning(s)" if warns else ""))
    if any(p.cause for s in report.secrets for p in s.problems):
        out.print(
            "Next: fix the file named under Environment (the secrets marked unavailable "
            "could not be looked up), then run `keyguard check` again."
        )
    elif any(p.rule == "required" for p in report.errors):
        out.print(
            "Next: copy .env.template to .env (or export the variables) and fill in the "
            "missing secrets, then run `keyguard check` again."
        )


@click.command("check")
@policy_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Dotenv file(s) to read instead of the policy's sources.dotenv (repeatable).",
)
@click.option("--strict", is_flag=True, help="Warnings fail the check too.")
def command(
    policy_path: Path | None, as_json: bool, env_files: tuple[Path, ...], strict: bool
) -> None:
    """Validate the environment against the policy.

    Required secrets present, minimum length, provider format, DEBUG refused in
    production, unexpected secret-looking variables. Exit 0 clean, 1 problems, 2 usage.
    """
    from keyguard.store import SecretStore

    policy = load_policy(policy_path)
    if env_files:
        policy.sources = policy.sources.model_copy(
            update={"dotenv": [_relative(p, Path(policy.project_dir)) for p in env_files]}
        )
    try:
        store = SecretStore.from_policy(policy)
    except KeyguardError as exc:
        raise UsageProblem(f"cannot build the secret store: {exc}") from None
    environ, dotenv_names = environment_view(policy)
    report = check_environment(policy, store, environ, extra_names=dotenv_names)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _human(report)
    if report.errors or (strict and report.warnings):
        raise SystemExit(1)
