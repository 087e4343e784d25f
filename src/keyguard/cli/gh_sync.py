"""``keyguard gh-sync``: set GitHub repository secrets from the store.

Only secrets the policy marks ``github: true`` are sent. Each value goes to
``gh secret set NAME --repo OWNER/REPO`` on standard input, never in argv (argv is
visible to every user of the machine through ``ps`` and /proc).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import click

from keyguard.errors import KeyguardError
from keyguard.hygiene.files import find_policy

_REPO_RE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


@click.command("gh-sync")
@click.option("--repo", required=True, help="OWNER/REPO whose Actions secrets are set.")
@click.option(
    "--policy",
    type=click.Path(exists=True, path_type=Path),
    help="Policy file or folder (default: ./policies).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be set; call nothing.")
@click.option("--gh", "gh_path", default="gh", show_default=True, help="The GitHub CLI executable.")
def command(repo: str, policy: Path | None, dry_run: bool, gh_path: str) -> None:
    """Set the repository secrets the policy marks `github: true`, from the store.

    Exit 0 when all were set, 1 when one is missing or gh failed, 2 on usage errors.
    """
    from keyguard.store import SecretStore

    if not _REPO_RE.fullmatch(repo):
        raise click.BadParameter("expected OWNER/REPO", param_hint="--repo")
    policy = policy or find_policy()
    if policy is None:
        raise click.UsageError("no policy found: pass --policy or run `keyguard init`")
    try:
        store = SecretStore.from_policy(policy)
    except KeyguardError as exc:
        click.echo(f"gh-sync: {exc}", err=True)
        sys.exit(2)
    pol = store.policy
    names = [name for name, spec in pol.secrets.items() if spec.github]
    if not names:
        click.echo("no secret in the policy is marked `github: true`; nothing to do", err=True)
        sys.exit(0)
    gh = shutil.which(gh_path)
    if gh is None and not dry_run:
        click.echo(
            f"gh-sync: GitHub CLI {gh_path!r} not found; install it from "
            "https://cli.github.com and run `gh auth login`",
            err=True,
        )
        sys.exit(2)
    failed = 0
    for name in names:
        try:
            secret = store.try_get(name)
        except KeyguardError as exc:
            click.echo(f"✘ {name}: {exc}", err=True)
            failed += 1
            continue
        if secret is None:
            click.echo(f"✘ {name}: not found in any source; nothing set", err=True)
            failed += 1
            continue
        where = f"{secret.masked}, from {store.origin(name)}"
        if dry_run:
            click.echo(f"would set {name} on {repo} ({where})")
            continue
        assert gh is not None
        proc = subprocess.run(
            [gh, "secret", "set", name, "--repo", repo],
            input=secret.reveal().encode(),
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            # gh should not echo the value, but its message goes through the redactor anyway.
            msg = store.redactor.redact(proc.stderr.decode("utf-8", "replace")).strip()
            click.echo(f"✘ {name}: gh secret set failed ({proc.returncode}): {msg}", err=True)
            failed += 1
            continue
        click.echo(f"✔ set {name} on {repo} ({where})")
    sys.exit(1 if failed else 0)
