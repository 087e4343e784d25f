"""``keyguard policy check|explain``, and the policy loading every CLI command shares."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from keyguard.errors import PolicyError
from keyguard.policy import Policy, PolicyWarning
from keyguard.redact import shown

__all__ = ["UsageProblem", "command", "console", "load_policy", "policy_option", "resolve_policy"]

POLICY_ENV = "KEYGUARD_POLICY"


class UsageProblem(click.ClickException):
    """The command cannot run as asked (missing or broken input): exit code 2."""

    exit_code = 2


def console(*, stderr: bool = False) -> Console:
    # Created per call so click's CliRunner (which swaps sys.stdout) captures the output;
    # no syntax highlighting: it would colour parts of names and hosts at random.
    # soft_wrap: a message line stays one line (grep-able file:line: key: ...); tables
    # still fit the width.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def resolve_policy(path: str | os.PathLike[str] | None) -> Path:
    """``--policy``, else ``$KEYGUARD_POLICY``, else ``policies/`` if it exists, else
    ``policies/keyguard.yaml``."""
    if path:
        return Path(path)
    env = os.environ.get(POLICY_ENV)
    if env:
        return Path(env)
    folder = Path("policies")
    return folder if folder.is_dir() else folder / "keyguard.yaml"


def load_policy(path: str | os.PathLike[str] | None) -> Policy:
    """Load the policy for a command; a missing or invalid one is a usage error (exit 2).

    Load warnings are not printed by Python's warnings machinery (an unreadable
    ``file:line: PolicyWarning`` line); they stay in ``policy.warnings`` for the command.
    """
    resolved = resolve_policy(path)
    if not resolved.exists():
        raise UsageProblem(
            f"no policy at {resolved}; run `keyguard init` to create one "
            f"(or pass --policy / set {POLICY_ENV})"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PolicyWarning)
        try:
            return Policy.load(resolved)
        except PolicyError as exc:
            raise UsageProblem(f"invalid policy:\n{exc}\n(run `keyguard policy check`)") from None


def policy_option(func: Any) -> Any:
    return click.option(
        "--policy",
        "policy_path",
        type=click.Path(dir_okay=True, path_type=Path),
        default=None,
        help=f"Policy file or folder (default: ${POLICY_ENV}, policies/, policies/keyguard.yaml).",
    )(func)


def _hosts_text(policy: Policy, secret: str) -> str:
    return ", ".join(policy.hosts_for(secret)) or "(no hosts: never sent)"


def _inject_text(policy: Policy, secret: str) -> str:
    inject = policy.secrets[secret].inject
    if inject is None or inject.form is None:
        return "placeholder only"
    if inject.form == "header":
        return f"header {inject.header}"
    if inject.form == "basic":
        return "Basic auth"
    if inject.form == "query":
        return f"query ?{inject.query}= (discouraged)"
    return f"JSON field {inject.json_field}"


def policy_summary(policy: Policy) -> dict[str, Any]:
    """What each tool may reach: tool -> secrets -> hosts (for humans and --json)."""
    granted = {s for spec in policy.tools.values() for s in spec.secrets}
    return {
        "files": policy.files,
        "warnings": policy.warnings,
        "tools": {
            name: {
                "secrets": {s: policy.hosts_for(s) for s in spec.secrets},
                "sandbox_env": list(spec.sandbox_env),
                "description": spec.description,
            }
            for name, spec in policy.tools.items()
        },
        "secrets": {
            name: {
                "required": spec.required,
                "format": spec.format,
                "hosts": policy.hosts_for(name),
                "inject": _inject_text(policy, name),
                "allow_http": spec.allow_http,
                "used_by": [t for t, ts in policy.tools.items() if name in ts.secrets],
            }
            for name, spec in policy.secrets.items()
        },
        "unused_secrets": [s for s in policy.secrets if s not in granted],
        "default_tool": "default" in policy.tools,
    }


@click.group("policy")
def command() -> None:
    """Validate and explain policy files."""


@command.command("check")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check_command(path: Path | None, as_json: bool) -> None:
    """Validate a policy; list what each tool may reach.

    PATH is a policy file or folder (default as for --policy). Exit 1 if it is invalid.
    """
    resolved = resolve_policy(path)
    out = console()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PolicyWarning)
        try:
            policy = Policy.load(resolved)
        except PolicyError as exc:
            problems = getattr(exc, "problems", [{"message": str(exc)}])
            if as_json:
                click.echo(json.dumps({"ok": False, "problems": problems}, indent=2))
            else:
                console(stderr=True).print(f"[red]✗ invalid policy[/red]\n{escape(str(exc))}")
            raise SystemExit(1) from None
    summary = policy_summary(policy)
    if as_json:
        click.echo(json.dumps({"ok": True, **summary}, indent=2))
        return
    out.print(f"[green]✓[/green] policy OK: {escape(', '.join(policy.files))}")
    for text in policy.warnings:
        out.print(f"[yellow]! warning[/yellow] {escape(text)}")
    tree = Tree("What each tool may reach")
    for tool, spec in policy.tools.items():
        sandbox = ", ".join(spec.sandbox_env) or "none"
        branch = tree.add(f"[bold]{escape(tool)}[/bold]  (sandbox env: {escape(sandbox)})")
        if not spec.secrets:
            branch.add("(no secrets)")
        for secret in spec.secrets:
            branch.add(
                f"{escape(secret)} -> {escape(_hosts_text(policy, secret))}  "
                f"[dim]({escape(_inject_text(policy, secret))})[/dim]"
            )
    out.print(tree, soft_wrap=False)
    if not summary["default_tool"]:
        out.print("Outside any tool context no secret may be sent (no 'default' tool).")
    for secret in summary["unused_secrets"]:
        out.print(f"[yellow]![/yellow] {escape(secret)} is granted to no tool: it is never sent.")


def _target(host: str, scheme: str | None, port: int | None) -> tuple[str, str, int | None]:
    """Accept a bare host, ``host:port`` or a URL for ``--host``."""
    text = host if "://" in host else f"//{host}"
    try:
        parts = urlsplit(text)
        parsed_port = parts.port
    except ValueError:
        raise UsageProblem(f"--host {host!r} is not a host or URL") from None
    if not parts.hostname:
        raise UsageProblem(f"--host {host!r} is not a host or URL")
    return (
        parts.hostname,
        (scheme or parts.scheme or "https").lower(),
        port if port is not None else parsed_port,
    )


@command.command("explain")
@click.option("--tool", default=None, help="The acting tool (omit: outside any tool context).")
@click.option("--host", required=True, help="Target host, host:port or URL.")
@click.option("--scheme", default=None, type=click.Choice(["https", "http", "wss", "ws"]))
@click.option("--port", default=None, type=click.IntRange(1, 65535))
@policy_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def explain_command(
    tool: str | None,
    host: str,
    scheme: str | None,
    port: int | None,
    policy_path: Path | None,
    as_json: bool,
) -> None:
    """Which secrets would go to a host, and why (or why not).

    --host takes a host, host:port or a URL; without --tool the request is judged as
    made outside any tool context.
    """
    for option, text in (("--tool", tool), ("--host", host)):
        # Echoed in every line of the answer: a pasted key must not be.
        if text and shown(text) != text:
            raise UsageProblem(f"{option} {shown(text)!r} looks like a secret value, not a name")
    policy = load_policy(policy_path)
    hostname, scheme_, port_ = _target(host, scheme, port)
    decisions = policy.explain(hostname, tool, scheme=scheme_, port=port_)
    injected = {
        name for name, _ in policy.injections_for(hostname, tool, scheme=scheme_, port=port_)
    }
    if as_json:
        rows = [
            {
                "secret": d.secret,
                "allowed": d.allowed,
                "injected": d.secret in injected,
                "reason": d.reason,
                "pattern": d.pattern,
            }
            for d in decisions
        ]
        payload = {
            "tool": tool,
            "host": hostname,
            "scheme": scheme_,
            "port": port_,
            "secrets": rows,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    out = console()
    where = f"{scheme_}://{hostname}" + (f":{port_}" if port_ else "")
    who = f"tool {tool!r}" if tool else "code outside any tool context"
    out.print(f"Requests to {escape(where)} made by {escape(who)}:")
    for d in decisions:
        if d.allowed:
            how = (
                f"injected as {_inject_text(policy, d.secret)}"
                if d.secret in injected
                else "may be sent (placeholder only)"
            )
            out.print(f"  [green]✓[/green] {escape(d.secret)}: {escape(how)}")
        else:
            out.print(f"  [red]✗[/red] {escape(d.secret)}: not sent")
        out.print(f"      {escape(d.reason)}")
    if not decisions:
        out.print("  (the policy declares no secrets)")
