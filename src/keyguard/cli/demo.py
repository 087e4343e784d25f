"""``keyguard demo``: the offline demo of an agent that tries to leak keys."""

from __future__ import annotations

import sys
from collections import Counter

import click

_NEEDS = "keyguard demo needs the optional SDKs: pip install 'keyguard[gemini,e2b,langchain]'"
_STYLE = {
    "injected": "green",
    "refused": "yellow",
    "redacted": "cyan",
    "clean": "white",
    "leaked": "bold red",
}


@click.command("demo")
def command() -> None:
    """Run the offline demo: an agent that tries to leak keys.

    Starts loopback stand-ins for Gemini and E2B, runs a small LangChain agent whose
    model tries to leak its key (in its answer, through a tool argument, from sandbox
    code that prints the environment) and shows what keyguard injected, refused and
    redacted. Keys are freshly generated fakes; nothing leaves 127.0.0.1.
    """
    missing = [
        m for m in ("google.genai", "e2b_code_interpreter", "langchain_core") if not _importable(m)
    ]
    if missing:
        click.echo(f"{_NEEDS} (missing: {', '.join(missing)})", err=True)
        sys.exit(1)

    from rich.console import Console
    from rich.table import Table

    from keyguard.demo.agent import run_demo

    console = Console()
    with console.status("running the agent against loopback Gemini and E2B stand-ins..."):
        report = run_demo()

    table = Table(title="keyguard demo: an agent that tries to leak keys", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("the agent tried to...", max_width=48)
    table.add_column("keyguard", justify="center")
    table.add_column("what happened", max_width=70)
    for row in report.rows:
        style = _STYLE.get(row.outcome, "white")
        table.add_row(
            row.step, row.attempt, f"[{style}]{row.outcome}[/{style}]", row.detail, style=None
        )
    console.print(table)

    counts = Counter((e.event, e.secret or "-") for e in report.events)
    summary = Table(title="audit events (names and counts, never values)")
    for col in ("event", "secret", "count"):
        summary.add_column(col)
    for (event, secret), n in sorted(counts.items()):
        summary.add_row(event, secret, str(n))
    console.print(summary)
    if report.ok:
        console.print("[green]No key value appeared in any output.[/green]")
    else:
        console.print(f"[bold red]LEAKED: {', '.join(report.leaked)}[/bold red]")
        sys.exit(1)


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
