"""``keyguard migrate``: find code that reads secrets straight from the environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from keyguard.hygiene.migrate import migrate_paths


@click.command("migrate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the suggestions as JSON.")
def command(paths: tuple[Path, ...], as_json: bool) -> None:
    """Find os.getenv / os.environ / load_dotenv reads of secret-looking names and
    hard-coded keys under PATHS (default: .), with the keyguard replacement for each.

    Exit 0 when nothing is found, 1 with suggestions, 2 on errors.
    """
    report = migrate_paths(list(paths) or [Path(".")])
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for s in report.suggestions:
            click.echo(f"{click.style(f'{s.path}:{s.line}:{s.column}', bold=True)}: {s.found}")
            click.echo(f"    -> {s.replacement}")
            if s.client:
                click.echo(f"    client: {s.client}")
        for sk in report.skipped:
            click.echo(f"skipped {sk.path}: {sk.reason} {sk.detail}".rstrip(), err=True)
        for e in report.errors:
            click.echo(click.style(f"error: {e}", fg="red"), err=True)
        if report.suggestions:
            click.echo(
                f"\n{len(report.suggestions)} place(s) to migrate in "
                f"{report.files_scanned} file(s). Start with: "
                'store = keyguard.SecretStore.from_policy("policies/")'
            )
        else:
            click.echo(f"nothing to migrate in {report.files_scanned} file(s)")
    sys.exit(report.exit_code)
