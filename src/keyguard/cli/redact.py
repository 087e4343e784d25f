"""``keyguard redact``: redact standard input to standard output, line by line.

Each line is written (and flushed) as soon as it is read, so ``tail -f app.log |
keyguard redact`` works. A PEM private-key block is collected until its END line so
the pattern rule sees it whole; when a known value itself spans lines, the exact
streaming redactor is used instead (it may hold a few characters until more input).

Exit status: 0 nothing found, 1 something was redacted, 2 usage error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from keyguard.errors import KeyguardError
from keyguard.redact import Redactor, shown

_PEM_BEGIN = "-----BEGIN"
_PEM_END = "-----END"


def _warn(message: str) -> None:
    click.echo(f"keyguard redact: {message}", err=True)


def _add(redactor: Redactor, name: str, value: str | object, origin: str) -> None:
    try:
        redactor.add_secret(name, value)  # type: ignore[arg-type]
    except ValueError:
        _warn(f"not redacting {name} from {origin}: shorter than 8 characters")


def _load_env_file(redactor: Redactor, path: str) -> None:
    from dotenv import dotenv_values

    p = Path(path)
    if not p.is_file():
        raise click.BadParameter(f"{path}: no such file", param_hint="--env-file")
    for name, value in dotenv_values(p).items():
        if value:
            _add(redactor, name, value, path)


def _load_policy(redactor: Redactor, path: str) -> None:
    from keyguard.store import SecretStore

    try:
        store = SecretStore.from_policy(path)
    except KeyguardError as exc:
        raise click.BadParameter(str(exc), param_hint="--policy") from None
    for name in store.policy.secrets if store.policy is not None else ():
        try:
            secret = store.try_get(name)
        except KeyguardError as exc:
            _warn(f"{name}: {exc}")
            continue
        if secret is not None:
            redactor.add_placeholder(secret.placeholder)
            _add(redactor, name, secret, f"policy {path}")


def _lines():
    # readline, not iteration: a line is handed over as soon as it is complete.
    readline = sys.stdin.readline
    while True:
        line = readline()
        if not line:
            return
        yield line


def _chunks(multiline_values: bool):
    """Units to redact: lines, with PEM blocks kept together."""
    block: list[str] = []
    for line in _lines():
        if block:
            block.append(line)
            if _PEM_END in line or len(block) > 200:
                yield "".join(block)
                block = []
            continue
        if _PEM_BEGIN in line and _PEM_END not in line and not multiline_values:
            block.append(line)
            continue
        yield line
    if block:
        yield "".join(block)


@click.command(name="redact")
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    metavar="FILE",
    help="Redact every value of this .env file (repeatable).",
)
@click.option(
    "--secret-env",
    "secret_envs",
    multiple=True,
    metavar="NAME",
    help="Redact the value of environment variable NAME (repeatable).",
)
@click.option(
    "--policy",
    "policy",
    metavar="PATH",
    help="Redact every secret the policy declares (loaded through the store).",
)
@click.option("--no-rules", is_flag=True, help="Known values only; no pattern rules.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print findings as JSON lines (masked, fingerprint, offsets) instead of text.",
)
def command(
    env_files: tuple[str, ...],
    secret_envs: tuple[str, ...],
    policy: str | None,
    no_rules: bool,
    as_json: bool,
) -> None:
    """Redact secrets from standard input, line by line."""
    redactor = Redactor(default_rules=not no_rules)
    for f in env_files:
        _load_env_file(redactor, f)
    for name in secret_envs:
        value = os.environ.get(name)
        if value is None:
            _warn(f"environment variable {shown(name)} is not set")
            continue
        if value:
            _add(redactor, name, value, "the environment")
    if policy:
        _load_policy(redactor, policy)

    # Logs are not always valid UTF-8: pass undecodable bytes through unchanged.
    for stream_ in (sys.stdin, sys.stdout):
        if hasattr(stream_, "reconfigure"):
            stream_.reconfigure(errors="surrogateescape")
    out = sys.stdout
    found = 0
    multiline = redactor.multiline_known
    if multiline and not as_json:
        stream = redactor.stream()
        for line in _lines():
            piece = stream.feed(line)
            if piece:
                out.write(piece)
                out.flush()
        out.write(stream.flush())
        out.flush()
        sys.exit(1 if stream.redacted else 0)

    offset = 0
    line_no = 1
    for unit in _chunks(multiline):
        findings = redactor.findings(unit)
        found += len(findings)
        if as_json:
            for f in findings:
                before = unit[: f.start]
                record = {
                    "line": line_no + before.count("\n"),
                    "column": f.start - (before.rfind("\n") + 1),
                    "start": offset + f.start,
                    "end": offset + f.end,
                    **{k: v for k, v in f.to_dict().items() if k not in ("start", "end")},
                }
                out.write(json.dumps(record) + "\n")
        else:
            out.write(redactor.redact(unit) if findings else unit)
        out.flush()
        offset += len(unit)
        line_no += unit.count("\n")
    sys.exit(1 if found else 0)
