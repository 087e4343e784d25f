"""Environment edges: what a sandbox or a child process may see of the secrets.

``sandbox_env`` builds a tool sandbox's environment and refuses any secret the policy
does not list under ``tools.<tool>.sandbox_env``. ``child_env`` is for ordinary child
processes: a copy of the environment without anything that is or holds a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from keyguard.audit import Auditor, get_auditor
from keyguard.context import current_tool
from keyguard.errors import PolicyViolation
from keyguard.secret import PLACEHOLDER_PREFIX, PLACEHOLDER_RE, Secret, parse_placeholder

__all__ = ["SECRET_NAME_RE", "child_env", "sandbox_env"]

# Names that conventionally carry credentials (GEMINI_API_KEY, GH_TOKEN, DB_PASSWORD...).
SECRET_NAME_RE = re.compile(
    r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIALS?|PAT)(?:_|$)",
    re.IGNORECASE,
)
# Secret-sounding names that hold no secret and that tools need.
_HARMLESS = frozenset({"SSH_AUTH_SOCK", "GPG_AGENT_INFO", "KEYGUARD_POLICY"})


def sandbox_env(
    policy: Any,
    tool: str | None,
    store: Any,
    requested: Mapping[str, str | Secret | None],
    *,
    redactor: Any = None,
    auditor: Auditor | None = None,
) -> dict[str, str]:
    """The environment for ``tool``'s sandbox, from ``requested`` (name -> value).

    A declared secret's name (value ``None``, its placeholder or its ``Secret``), a
    ``Secret`` or a placeholder anywhere in a value gets the real value, but only for
    secrets in ``policy.sandbox_env(tool)``; a value holding any known secret value
    is checked the same way. Anything else raises ``PolicyViolation`` naming the
    variable and the secret; nothing is returned then.
    """
    tool = tool if tool is not None else current_tool()
    allowed = set(policy.sandbox_env(tool))
    redactor = redactor if redactor is not None else store.redactor
    audit = auditor if auditor is not None else get_auditor()
    declared = getattr(policy, "secrets", {})
    granted: list[tuple[str, Secret]] = []

    def grant(secret_name: str, var: str) -> Secret:
        if secret_name not in allowed:
            audit.emit("denied", secret_name, tool=tool, detail=f"sandbox env {var}")
            raise PolicyViolation(
                f"tool {tool or 'none'} may not receive {secret_name} in its sandbox "
                f"environment (variable {var}); list it under tools.{tool or 'default'}"
                ".sandbox_env to allow it"
            )
        secret = store.get(secret_name)
        granted.append((var, secret))
        return secret

    env: dict[str, str] = {}
    for var, value in requested.items():
        if isinstance(value, Secret):
            env[var] = grant(value.name, var).reveal()
            continue
        if value is None or (var in declared and parse_placeholder(value) == var):
            if var not in declared:
                raise PolicyViolation(f"{var} is not a secret declared in the policy; give a value")
            env[var] = grant(var, var).reveal()
            continue
        for name in redactor.contains_known(value):  # a raw value pasted in
            grant(name, var)
        if PLACEHOLDER_PREFIX in value:

            def resolve(m: re.Match[str], var: str = var) -> str:
                name = parse_placeholder(m.group())
                return m.group() if name is None else grant(name, var).reveal()

            value = PLACEHOLDER_RE.sub(resolve, value)
        env[var] = value
    for var, secret in granted:
        audit.emit("injected", secret, tool=tool, detail=f"sandbox env {var}")
    return env


def child_env(
    base: Mapping[str, str] | None = None,
    *,
    store: Any = None,
    policy: Any = None,
    redactor: Any = None,
    keep: Iterable[str] = (),
) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) without secrets, for a child process.

    Dropped: variables named like credentials (``*_API_KEY``, ``*_TOKEN``,
    ``*_SECRET``, ``*_PASSWORD``...), secrets the policy declares or the store has
    loaded, and any variable whose value contains a known value in any form.
    ``keep`` names variables to pass through regardless.
    """
    source = os.environ if base is None else base
    kept = set(keep)
    names: set[str] = set(getattr(policy, "secrets", {}) or {})
    if store is not None:
        names.update(s.name for s in store.loaded())
        if redactor is None:
            redactor = store.redactor
    out: dict[str, str] = {}
    for var, value in source.items():
        if var not in kept:
            if var in names or (var not in _HARMLESS and SECRET_NAME_RE.search(var)):
                continue
            if redactor is not None and redactor.contains_known(value):
                continue
        out[var] = value
    return out
