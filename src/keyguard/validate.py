"""The environment validator: are the declared secrets present and well-formed?

It reports every problem at once, each naming the secret and the rule, never the value:
required secrets present, minimum length, provider format (the redaction rule's
``validate``), debug mode refused in production, and secret-looking variables the policy
does not know about (warnings: they are not guarded). A broken ``.env`` file is reported
once, as an environment problem; the secrets it hides are marked ``unavailable``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from keyguard.errors import KeyguardError, SourceError
from keyguard.policy import Policy, SecretSpec, get_format_rule
from keyguard.secret import PLACEHOLDER_PREFIX, Reference, Secret

__all__ = [
    "Problem",
    "Report",
    "SecretStatus",
    "check_environment",
    "check_secret",
    "environment_view",
    "looks_like_secret_name",
]

Severity = Literal["error", "warning"]

# Names that announce a credential (the guide's *_KEY, *_TOKEN, *_SECRET, *PASSWORD* ...).
_SECRET_NAME_RE = re.compile(
    r"(?:_KEY|_TOKEN|_SECRET|_PAT|_CREDENTIAL|_CREDENTIALS|_PASSWD)$|PASSWORD|SECRET_KEY|API_?KEY"
)
# Expected, harmless or keyguard's own bootstrap credentials: not reported.
_BENIGN_NAMES = frozenset({"GPG_KEY", "VAULT_TOKEN"})
# What a .env.template line (or one of our placeholders) holds before a real key is put in.
_TEMPLATE_VALUE_RE = re.compile(r"(?i)^(?:your[_-].*[_-]here|changeme|xxx+|<.*>|todo)$")
_TRUE = frozenset({"1", "true", "yes", "on"})
# How the dotenv source starts a parse error: "<file>:<line>: ".
_AT_LINE_RE = re.compile(r"^(?P<where>.+?:\d+): ")


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: the secret (or variable) it is about, the rule broken, a sentence."""

    name: str
    rule: str
    message: str
    severity: Severity = "error"
    # The rule of the environment problem this one follows from (e.g. a broken .env
    # hides the secret): shown on the secret, counted once, under the environment.
    cause: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.name}: {self.message} [{self.rule}]"


@dataclass(slots=True)
class SecretStatus:
    """One declared secret as the check found it (masked form and fingerprint only)."""

    name: str
    required: bool
    present: bool
    origin: str | None = None
    masked: str | None = None
    fingerprint: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``ok`` | ``missing`` | ``invalid`` | ``unset`` (optional and absent) |
        ``unavailable`` (a source it depends on is broken: see ``Report.environment``)."""
        if any(p.cause for p in self.problems):
            return "unavailable"
        if any(p.severity == "error" for p in self.problems):
            return "missing" if not self.present else "invalid"
        return "ok" if self.present else "unset"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "required": self.required,
            "present": self.present,
            "origin": self.origin,
            "masked": self.masked,
            "fingerprint": self.fingerprint,
            "problems": [p.to_dict() for p in self.problems],
        }


@dataclass(slots=True)
class Report:
    """Everything ``check_environment`` found."""

    secrets: list[SecretStatus] = field(default_factory=list)
    environment: list[Problem] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        """Each problem once: a secret's problem that follows from an environment problem
        (``cause``) is that environment problem, not another one."""
        own = [p for s in self.secrets for p in s.problems if p.cause is None]
        return own + list(self.environment)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "secrets": [s.to_dict() for s in self.secrets],
            "environment": [p.to_dict() for p in self.environment],
        }


class _Store(Protocol):
    def try_get(self, name: str) -> Secret | None: ...

    def origin(self, name: str) -> str: ...


def check_secret(name: str, secret: Secret | str | None, spec: SecretSpec) -> list[Problem]:
    """Every problem with one secret's value against its spec (empty list when fine)."""
    if secret is None or (isinstance(secret, str) and not secret):
        if not spec.required:
            return []
        return [
            Problem(
                name,
                "required",
                f"{name} is required but no source has it; set it in .env "
                "(see .env.template), the environment or your secret store",
            )
        ]
    value = secret.reveal() if isinstance(secret, Secret) else secret
    problems: list[Problem] = []
    if value != value.strip():
        problems.append(
            Problem(
                name,
                "whitespace",
                f"{name} has leading or trailing whitespace (a copy-paste slip?); remove it",
            )
        )
    if _TEMPLATE_VALUE_RE.match(value.strip()) or value.startswith(PLACEHOLDER_PREFIX):
        problems.append(
            Problem(
                name,
                "template-value",
                f"{name} still holds a template/placeholder text, not a real key; "
                "put the real value in",
            )
        )
    if len(value) < spec.min_length:
        problems.append(
            Problem(
                name,
                "min_length",
                f"{name} is shorter than the minimum of {spec.min_length} characters",
            )
        )
    if spec.formats:
        problems.extend(_format_problems(name, value, spec))
    return problems


def _format_problems(name: str, value: str, spec: SecretSpec) -> list[Problem]:
    """Nothing when any accepted format's rule validates the value; else why not."""
    # A list is reported under all its ids at once (one row in `keyguard check`).
    label = "|".join(spec.formats)
    problems: list[Problem] = []
    checked: list[str] = []
    described: list[str] = []
    for rule_id in spec.formats:
        rule = get_format_rule(rule_id)
        if rule is None:
            problems.append(Problem(name, label, f"{name}: unknown format rule {rule_id!r}"))
            continue
        try:
            if rule.validate(value.strip()):
                return []
        except Exception as exc:  # a broken rule is reported, not raised, never with the value
            problems.append(
                Problem(name, label, f"{name}: rule {rule_id} failed ({type(exc).__name__})")
            )
            continue
        checked.append(rule_id)
        described.append(getattr(rule, "description", "") or rule_id)
    if checked:
        problems.append(
            Problem(
                name,
                label,
                f"{name} does not match format {' or '.join(checked)} "
                f"({' or '.join(described)}); check that the right key was pasted",
            )
        )
    return problems


def looks_like_secret_name(name: str) -> bool:
    """Does an environment variable's name announce a credential?"""
    return bool(_SECRET_NAME_RE.search(name.upper()))


def declared_env_names(policy: Policy) -> set[str]:
    """Variable names the policy accounts for: secret names and their ``env://`` targets."""
    names = set(policy.secrets) | set(policy.settings.allowed_env)
    for spec in policy.secrets.values():
        if spec.from_ref:
            try:
                ref = Reference.parse(spec.from_ref)
            except KeyguardError:
                continue
            if ref.scheme in ("env", "name"):
                names.add(ref.target)
    return names


def check_environment(
    policy: Policy,
    store: _Store,
    environ: Mapping[str, str] | None = None,
    *,
    extra_names: Iterable[str] = (),
) -> Report:
    """Run every check; ``environ`` defaults to ``os.environ`` (only names, ``DEBUG`` and
    ``ENVIRONMENT`` are read from it). ``extra_names`` are more variable names to screen
    for undeclared secrets (e.g. the names defined in ``.env``)."""
    environ = os.environ if environ is None else environ
    report = Report()
    broken = _broken_dotenv(store)
    report.environment.extend(broken.values())
    for name, spec in policy.secrets.items():
        report.secrets.append(_check_one(name, spec, store, broken))
    report.environment.extend(_debug_problems(policy, environ))
    report.environment.extend(
        _unexpected_problems(policy, [n for n, v in environ.items() if v], extra_names)
    )
    return report


def _broken_dotenv(store: _Store) -> dict[str, Problem]:
    """The store's dotenv files that do not load, by error text -> one environment problem
    each. A malformed file fails every lookup that reaches it; it is reported here once
    instead of once per secret."""
    from keyguard.sources import DotenvSource

    broken: dict[str, Problem] = {}
    for source in getattr(store, "sources", ()):
        if not isinstance(source, DotenvSource):
            continue
        try:
            source.names()
        except KeyguardError as exc:
            # Dotenv errors name the file and line, never the line's text.
            text = str(exc)
            files = [str(f) for f in source.files() if str(f) in text]
            at_line = _AT_LINE_RE.match(text)
            syntax = isinstance(exc, SourceError) and at_line is not None
            broken[text] = Problem(
                files[0] if files else source.describe(),
                "env-file-syntax" if syntax else "env-file-unreadable",
                text + ("" if syntax else "; fix the file or its permissions"),
            )
    return broken


def _check_one(
    name: str, spec: SecretSpec, store: _Store, broken: Mapping[str, Problem]
) -> SecretStatus:
    status = SecretStatus(name, spec.required, present=False)
    try:
        secret = store.try_get(name)
    except KeyguardError as exc:
        cause = broken.get(str(exc))
        if cause is not None:
            at_line = _AT_LINE_RE.match(cause.message)
            where = at_line["where"] if at_line else cause.name
            status.problems.append(
                Problem(
                    name,
                    "unavailable",
                    f"{name} is unavailable until {where} is fixed (see the {cause.rule} problem)",
                    cause=cause.rule,
                )
            )
            return status
        # Keyguard errors name the reference and the cause, never the value.
        status.problems.append(Problem(name, "source", f"{name}: {exc}"))
        return status
    except Exception as exc:  # an unexpected failure: its text might hold anything
        status.problems.append(
            Problem(name, "source", f"{name}: the source failed ({type(exc).__name__})")
        )
        return status
    if secret is not None:
        status.present = True
        status.masked = secret.masked
        status.fingerprint = secret.fingerprint
        try:
            status.origin = store.origin(name)
        except Exception:
            status.origin = secret.source
    status.problems.extend(check_secret(name, secret, spec))
    return status


def _debug_problems(policy: Policy, environ: Mapping[str, str]) -> list[Problem]:
    settings = policy.settings
    environment = environ.get(settings.environment_env, "").strip()
    debug = environ.get(settings.debug_env, "false").strip()
    production = {v.lower() for v in settings.production_values}
    if environment.lower() in production and debug.lower() in _TRUE:
        return [
            Problem(
                settings.debug_env,
                "debug-in-production",
                f"debug mode is on ({settings.debug_env}={debug}) while "
                f"{settings.environment_env}={environment}; turn debug off in production",
            )
        ]
    return []


def _unexpected_problems(
    policy: Policy, names: Iterable[str], extra_names: Iterable[str]
) -> list[Problem]:
    declared = declared_env_names(policy)
    unexpected = sorted(
        {
            n
            for n in (*names, *extra_names)
            if n not in declared and n not in _BENIGN_NAMES and looks_like_secret_name(n)
        }
    )
    return [
        Problem(
            n,
            "unexpected-secret",
            f"{n} looks like a secret but the policy does not declare it, so keyguard "
            "does not guard it; declare it under secrets: or list it in settings.allowed_env",
            "warning",
        )
        for n in unexpected
    ]


def environment_view(
    policy: Policy,
    environ: Mapping[str, str] | None = None,
    *,
    project_dir: str | os.PathLike[str] | None = None,
) -> tuple[Mapping[str, str], list[str]]:
    """The environment as the policy's sources see it, for ``check_environment``:
    ``environ`` (default ``os.environ``) with the debug/environment settings filled in
    from the policy's dotenv files when the process does not set them, and the names
    those files define (screened for undeclared secrets). No secret value is read into
    the returned mapping."""
    environ = os.environ if environ is None else environ
    if "dotenv" not in policy.sources.order:
        return environ, []
    from keyguard.sources import DotenvSource

    base = Path(project_dir) if project_dir is not None else Path(policy.project_dir)
    source = DotenvSource(policy.sources.dotenv, base_dir=base)
    try:
        names = source.names()
    except KeyguardError:
        return environ, []  # check_environment reports the broken file, once
    view = dict(environ)
    for setting in (policy.settings.debug_env, policy.settings.environment_env):
        if setting not in view:
            fetched = source.fetch(Reference("env", setting))
            if fetched is not None:
                view[setting] = fetched.value
    return view, names
