"""``keyguard get NAME``: the masked form, origin and fingerprint; never the value."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from keyguard.cli.policy import UsageProblem, console, load_policy, policy_option
from keyguard.errors import KeyguardError
from keyguard.redact import shown

__all__ = ["command"]


@click.command("get")
@click.argument("name")
@policy_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(name: str, policy_path: Path | None, as_json: bool) -> None:
    """Show NAME's masked form, where it came from and its fingerprint (exit 1 if absent).

    NAME is a secret name or a reference (env://, file://, vault://...#field). The value
    itself is never printed: use the store (or `keyguard run`) where it is needed.
    """
    from keyguard.store import SecretStore

    policy = load_policy(policy_path)
    try:
        store = SecretStore.from_policy(policy)
    except KeyguardError as exc:
        raise UsageProblem(f"cannot build the secret store: {exc}") from None
    try:
        secret = store.get(name)
        origin = store.origin(secret.name) if "://" not in name else str(secret.source)
    except KeyguardError as exc:
        # Not found, access denied, backend down: the message names the reference and
        # the cause. NAME is what the user typed, possibly a pasted value, so it and the
        # message quoting it are shown with anything credential-shaped masked.
        message = shown(str(exc))
        if as_json:
            error = {"name": shown(name), "found": False, "error": message}
            click.echo(json.dumps(error, indent=2))
        else:
            console(stderr=True).print(f"[red]✗[/red] {escape(message)}")
        raise SystemExit(1) from None
    info = {
        "name": shown(secret.name),
        "found": True,
        "masked": secret.masked,
        "origin": origin,
        "fingerprint": secret.fingerprint,
        "version": secret.version,
        "declared": secret.name in policy.secrets,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    out = console()
    out.print(f"[bold]{escape(shown(secret.name))}[/bold]  {escape(secret.masked)}")
    out.print(f"  from         {escape(origin)}")
    out.print(f"  fingerprint  {secret.fingerprint}  (keyed per run: compare within one run)")
    if secret.version is not None:
        out.print(f"  version      {escape(str(secret.version))}")
    if not info["declared"]:
        out.print("  [yellow]![/yellow] not declared in the policy")
