"""``keyguard run``: run a command with only its granted secrets, output redacted live."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from keyguard.errors import KeyguardError
from keyguard.hygiene.files import find_policy


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.option(
    "--policy",
    type=click.Path(exists=True, path_type=Path),
    help="Policy file or folder (default: ./policies if present).",
)
@click.option("--tool", help="The policy tool whose sandbox_env secrets the command gets.")
@click.option(
    "--placeholders",
    is_flag=True,
    help="Give the command placeholders instead of values (for SDKs pointed at a keyguard edge).",
)
@click.option(
    "--pty/--no-pty",
    "use_pty",
    default=None,
    help="Run on a pseudo-terminal (default: when stdout is a terminal).",
)
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def command(
    policy: Path | None,
    tool: str | None,
    placeholders: bool,
    use_pty: bool | None,
    cmd: tuple[str, ...],
) -> None:
    """Run CMD with the secrets the policy grants TOOL (tools.<tool>.sandbox_env) and no
    other secret-looking variables; its stdout and stderr are redacted live.

    The exit status and signals pass through. Example:
    keyguard run --tool code_interpreter -- python agent.py
    """
    from keyguard.hygiene.childproc import build_env, run_child
    from keyguard.redact import Redactor
    from keyguard.store import SecretStore

    policy = policy or find_policy()
    try:
        if policy is not None:
            store = SecretStore.from_policy(policy)
            pol = store.policy
            # Every declared secret the store can load is redacted from the output,
            # granted or not: the child may find one some other way.
            for name in pol.secrets:
                try:
                    store.try_get(name)
                except KeyguardError:
                    continue
            redactor = store.redactor
        else:
            if tool or placeholders:
                raise click.UsageError("--tool and --placeholders need a policy (--policy)")
            store, pol, redactor = None, None, Redactor()
        env = build_env(policy=pol, store=store, tool=tool, placeholders=placeholders)
    except KeyguardError as exc:
        click.echo(f"keyguard run: {exc}", err=True)
        sys.exit(2)
    try:
        status = run_child(cmd, env=env, redactor=redactor, use_pty=use_pty)
    except FileNotFoundError:
        # argv[0] as typed may be a value ("$KEY" in the wrong place): shown redacted
        click.echo(f"keyguard run: command not found: {redactor.redact(cmd[0])}", err=True)
        sys.exit(127)
    except PermissionError:
        click.echo(f"keyguard run: permission denied: {redactor.redact(cmd[0])}", err=True)
        sys.exit(126)
    if status > 128 and status - 128 in {s.value for s in signal.Signals}:
        # Die the way the child died, so our parent sees the same signal.
        sys.stdout.flush()
        sig = status - 128
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(status)
