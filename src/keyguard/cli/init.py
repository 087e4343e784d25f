"""``keyguard init``: a starter policy, ``.env.template`` and ``.gitignore`` entries."""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

import click
from rich.markup import escape

from keyguard.cli.policy import console
from keyguard.cli.template import render_template
from keyguard.errors import PolicyError
from keyguard.policy import Policy, PolicyWarning

__all__ = ["GITIGNORE_LINES", "POLICY_FILE", "command", "starter_policy_text"]

POLICY_FILE = Path("policies") / "keyguard.yaml"
TEMPLATE_FILE = Path(".env.template")
GITIGNORE_LINES = (".env", ".env.local", ".env.*.local")


def starter_policy_text() -> str:
    """The packaged starter policy (``keyguard/data/starter_policy.yaml``)."""
    return (
        resources.files("keyguard").joinpath("data/starter_policy.yaml").read_text(encoding="utf-8")
    )


def _write(path: Path, text: str, *, force: bool, label: str) -> str:
    """Write unless it exists (or ``force``); return what happened, for the report."""
    if path.exists():
        if path.read_text(encoding="utf-8", errors="replace") == text:
            return f"{label} exists, unchanged"
        if not force:
            return f"{label} exists, kept; use --force to overwrite it"
        path.write_text(text, encoding="utf-8")
        return f"{label} overwritten (--force)"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return f"{label} written"


def _update_gitignore(path: Path) -> str:
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {line.strip() for line in existing.splitlines()}
    missing = [line for line in GITIGNORE_LINES if line not in present]
    if not missing:
        return ".gitignore already ignores .env files"
    prefix = "" if not existing or existing.endswith("\n") else "\n"
    block = "# keyguard: local secrets never go into git\n" + "\n".join(missing) + "\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(prefix + ("\n" if existing.strip() else "") + block)
    return f".gitignore: added {', '.join(missing)}"


def _policy_for_template(project: Path, starter: str) -> Policy:
    """The policy now on disk (it may be the user's, kept), else the starter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PolicyWarning)
        try:
            return Policy.load(project / POLICY_FILE.parent)
        except PolicyError:
            return Policy.loads(starter, "starter_policy.yaml")


@click.command("init")
@click.argument(
    "directory",
    required=False,
    default=".",
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--force", is_flag=True, help="Overwrite the policy and template if they exist.")
def command(directory: Path, force: bool) -> None:
    """Write a starter policy, .env.template and .gitignore entries into DIRECTORY."""
    directory.mkdir(parents=True, exist_ok=True)
    starter = starter_policy_text()
    done = [_write(directory / POLICY_FILE, starter, force=force, label=str(POLICY_FILE))]
    policy = _policy_for_template(directory, starter)
    done.append(
        _write(
            directory / TEMPLATE_FILE,
            render_template(policy),
            force=force,
            label=str(TEMPLATE_FILE),
        )
    )
    done.append(_update_gitignore(directory / ".gitignore"))
    out = console()
    for line in done:
        mark = "[yellow]•[/yellow]" if "kept" in line else "[green]✓[/green]"
        out.print(f"{mark} {escape(line)}")
    where = "" if directory.resolve() == Path.cwd().resolve() else f"cd {directory} && "
    out.print("\nNext steps:")
    out.print(f"  1. {escape(where)}cp .env.template .env   and fill in the values")
    out.print("     (.env is git-ignored; never commit it)")
    out.print(f"  2. edit {POLICY_FILE}: put your n8n host under N8N_API_KEY.inject.hosts")
    out.print("  3. keyguard check          validates your keys against the policy")
    out.print("  4. keyguard policy check   shows what each tool may reach")
