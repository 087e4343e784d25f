"""Teaching a redactor the local environment's real values, so a scan finds them
wherever they were pasted or committed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from keyguard.errors import KeyguardError
from keyguard.validate import looks_like_secret_name

if TYPE_CHECKING:
    from keyguard.redact import Redactor

__all__ = ["add_env_file", "add_policy_secrets"]


def add_env_file(redactor: Redactor, path: Path) -> list[str]:
    """Add the secret-looking values of a dotenv file; returns the names added."""
    from dotenv import dotenv_values

    if not path.is_file():
        raise KeyguardError(f"env file {path} does not exist")
    added = []
    for name, value in dotenv_values(path).items():
        if not value or not looks_like_secret_name(name):
            continue
        try:
            redactor.add_secret(name, value)
        except ValueError:
            # Too short to be redacted safely (the redactor refuses it); a value that
            # short is not worth reporting as a leak either.
            continue
        added.append(name)
    return added


def add_policy_secrets(redactor: Redactor, policy_path: Path) -> tuple[list[str], list[str]]:
    """Load every secret the policy names through the store and add its value.

    Returns (names added, problems); a problem names the secret, never the value.
    """
    from keyguard.store import SecretStore

    store = SecretStore.from_policy(policy_path)
    added: list[str] = []
    problems: list[str] = []
    policy = store.policy
    assert policy is not None  # from_policy always sets it
    for name in policy.secrets:
        try:
            secret = store.try_get(name)
        except KeyguardError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if secret is None:
            continue
        try:
            redactor.add_secret(name, secret)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        added.append(name)
    return added, problems
