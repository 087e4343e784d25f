"""``keyguard doctor``: the guide's security checklist, item by item, with the fix, and
the rotation steps for every key found exposed."""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from keyguard.errors import KeyguardError
from keyguard.hygiene.files import find_policy, git_toplevel
from keyguard.hygiene.scan import ScanFinding, Scanner, ScanReport

__all__ = ["Check", "DoctorReport", "Exposure", "rotation_for", "run_doctor"]

Status = Literal["pass", "fail", "warn", "skip"]
ENV_FILES = (".env", ".env.local")
TEMPLATE = ".env.template"
# What counts as "a CI workflow that scans for secrets".
SCANNERS = ("keyguard scan", "gitleaks", "trufflehog", "detect-secrets", "ggshield")


@dataclass(slots=True)
class Check:
    id: str
    title: str
    status: Status
    details: list[str] = field(default_factory=list)
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "details": self.details,
            "fix": self.fix,
        }


@dataclass(slots=True)
class Exposure:
    """One exposed value (by fingerprint), where it was seen, and how to rotate it."""

    name: str  # rule id or secret name
    rule: str  # the rule id used for rotation steps
    masked: str
    fingerprint: str
    locations: list[str]
    provider: str
    url: str
    steps: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rule": self.rule,
            "masked": self.masked,
            "fingerprint": self.fingerprint,
            "locations": self.locations,
            "rotation": {"provider": self.provider, "url": self.url, "steps": self.steps},
        }


@dataclass(slots=True)
class DoctorReport:
    project: str
    checks: list[Check] = field(default_factory=list)
    exposures: list[Exposure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "ok": self.ok,
            "checks": [c.to_dict() for c in self.checks],
            "exposures": [e.to_dict() for e in self.exposures],
        }


@cache
def _rotation_data() -> dict[str, Any]:
    text = resources.files("keyguard.hygiene").joinpath("rotation.toml").read_text("utf-8")
    return tomllib.loads(text)


def rotation_for(
    rule_or_name: str, *, fmt: str | Sequence[str] | None = None
) -> tuple[str, dict[str, Any]]:
    """(rule id, rotation entry) for a rule id, or for a secret name (by its policy
    ``format``: the first listed id with an entry, else the name hints); unknown providers
    get the generic entry."""
    data = _rotation_data()
    rules: dict[str, Any] = data["rules"]
    known = [f for f in ([fmt] if isinstance(fmt, str) else fmt or []) if f in rules]
    if rule_or_name in rules:
        rule = rule_or_name
    elif known:
        rule = known[0]
    else:
        upper = rule_or_name.upper()
        hints: dict[str, str] = data.get("name_hints", {})
        rule = next((r for word, r in hints.items() if word in upper), "generic-secret")
        rule = rule if rule in rules else "generic-secret"
    entry = dict(rules[rule])
    entry["steps"] = [*entry.get("steps", []), *data["common"]["tail"]]
    return rule, entry


def _capped(lines: list[str], limit: int = 50) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"... and {len(lines) - limit} more (keyguard scan lists all)"]


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )


class _Doctor:
    def __init__(
        self,
        project: Path,
        policy_path: Path | None,
        environ: Mapping[str, str],
        history: bool,
        redactor: Any,
    ) -> None:
        self.project = project
        self.policy_path = policy_path or find_policy(project)
        self.environ = environ
        self.history = history
        self.redactor = redactor
        self.git_root = git_toplevel(project)
        self.report = DoctorReport(str(project))
        self.policy: Any = None

    def add(self, check: Check) -> None:
        self.report.checks.append(check)

    # -- .env and git -------------------------------------------------------------

    def env_ignored(self) -> None:
        title = ".env is ignored by git"
        if self.git_root is None:
            self.add(Check("env-ignored", title, "skip", ["not a git repository"]))
            return
        not_ignored = [
            name
            for name in ENV_FILES
            if _git(self.project, "check-ignore", "-q", "--no-index", name).returncode != 0
        ]
        if ".env" in not_ignored:
            self.add(
                Check(
                    "env-ignored",
                    title,
                    "fail",
                    [f"{n} is not matched by .gitignore" for n in not_ignored],
                    "add `.env`, `.env.local` and `.env.*.local` to .gitignore "
                    "(`keyguard init` does it)",
                )
            )
        else:
            details = [f"{n} is not matched by .gitignore" for n in not_ignored]
            self.add(
                Check(
                    "env-ignored",
                    title,
                    "warn" if details else "pass",
                    details,
                    "add `.env.local` to .gitignore" if details else "",
                )
            )

    def env_untracked(self) -> None:
        title = ".env is not tracked and was never committed"
        if self.git_root is None:
            self.add(Check("env-history", title, "skip", ["not a git repository"]))
            return
        specs = [*ENV_FILES, ":(glob)**/.env", ":(glob)**/.env.local"]
        tracked = _git(self.project, "ls-files", "--", *specs).stdout.split()
        # Commits that added or changed one (removing it leaks nothing new).
        log = _git(self.project, "log", "--all", "--diff-filter=AM", "--format=%h %s", "--", *specs)
        commits = [line for line in log.stdout.splitlines() if line.strip()]
        details = [f"tracked now: {t}" for t in tracked]
        details += [f"in history: commit {c}" for c in commits[:20]]
        if len(commits) > 20:
            details.append(f"... and {len(commits) - 20} more commit(s)")
        if not details:
            self.add(Check("env-history", title, "pass"))
            return
        fix = []
        if tracked:
            fix.append("`git rm --cached " + " ".join(sorted(set(tracked))) + "` and commit")
        if commits:
            fix.append(
                "rotate every key it ever held (steps below), then remove it from "
                "history (`git filter-repo --invert-paths --path .env`) and force-push"
            )
        self.add(Check("env-history", title, "fail", details, "; ".join(fix)))

    # -- policy and template ----------------------------------------------------------

    def policy_valid(self) -> None:
        title = "a keyguard policy is present and valid"
        if self.policy_path is None:
            self.add(
                Check(
                    "policy",
                    title,
                    "fail",
                    ["no policies/ folder or keyguard.yaml"],
                    "run `keyguard init` to write a starter policy",
                )
            )
            return
        from keyguard.policy import Policy

        try:
            self.policy = Policy.load(self.policy_path, project_dir=self.project)
        except KeyguardError as exc:
            self.add(
                Check(
                    "policy",
                    title,
                    "fail",
                    str(exc).splitlines(),
                    "fix the policy as the message says (`keyguard policy check`)",
                )
            )
            return
        self.add(
            Check(
                "policy",
                title,
                "pass",
                [
                    f"{self.policy_path}: {len(self.policy.secrets)} secret(s), "
                    f"{len(self.policy.tools)} tool(s)"
                ],
            )
        )

    def template(self) -> None:
        title = f"{TEMPLATE} is present and in step with the policy"
        path = self.project / TEMPLATE
        if not path.is_file():
            self.add(
                Check(
                    "template",
                    title,
                    "fail",
                    [f"{TEMPLATE} is missing"],
                    "run `keyguard template` to write it from the policy",
                )
            )
            return
        from dotenv import dotenv_values

        names = set(dotenv_values(path))
        details: list[str] = []
        if self.policy is not None:
            details += [
                f"{n} is in the policy but not in {TEMPLATE}"
                for n in sorted(set(self.policy.secrets) - names)
            ]
        found = Scanner(self.redactor).scan_paths([path]).findings
        details += [
            f"{TEMPLATE}:{f.line} holds what looks like a real key ({f.rule}, {f.masked})"
            for f in found
        ]
        self.add(
            Check(
                "template",
                title,
                "fail" if details else "pass",
                details,
                "run `keyguard template` (names and comments only, no values)" if details else "",
            )
        )

    # -- secrets in files ---------------------------------------------------------------

    def scan(self) -> None:
        from keyguard.hygiene.known import add_env_file

        for name in ENV_FILES:
            env = self.project / name
            if env.is_file():
                try:
                    add_env_file(self.redactor, env)
                except KeyguardError:
                    pass  # reported by the environment check
        scanner = Scanner(self.redactor)
        report = ScanReport()
        scanner.scan_paths([self.project], report=report)
        files = list(report.findings)
        title = "no secrets in tracked files"
        details = _capped([f"{f.path}:{f.line}:{f.column} {f.rule} {f.masked}" for f in files])
        details += [f"error: {e}" for e in report.errors]
        self.add(
            Check(
                "scan",
                title,
                "fail" if details else "pass",
                details,
                "move each value into .env / the store, load it with "
                "`store.get(NAME)`, and rotate it (steps below)"
                if details
                else "",
            )
        )
        history: list[ScanFinding] = []
        if self.history and self.git_root is not None:
            hreport = scanner.scan_git_history(self.project)
            history = hreport.findings
            hdetails = _capped(
                [
                    f"{f.path}:{f.line} in commit {(f.commit or '')[:12]}: {f.rule} {f.masked}"
                    for f in history
                ]
            )
            hdetails += [f"error: {e}" for e in hreport.errors]
            self.add(
                Check(
                    "history",
                    "no secrets in git history",
                    "fail" if hdetails else "pass",
                    hdetails,
                    "rotate each key (steps below); then rewrite history "
                    "(git filter-repo) and force-push"
                    if hdetails
                    else "",
                )
            )
        self._exposures([*files, *history])

    def _exposures(self, findings: list[ScanFinding]) -> None:
        by_fp: dict[str, Exposure] = {}
        for f in findings:
            where = f"{f.path}:{f.line}" + (f" (commit {f.commit[:12]})" if f.commit else "")
            if f.fingerprint in by_fp:
                by_fp[f.fingerprint].locations.append(where)
                continue
            fmt: tuple[str, ...] = ()
            if self.policy is not None and f.rule in self.policy.secrets:
                fmt = self.policy.secrets[f.rule].formats
            rule, entry = rotation_for(f.rule, fmt=fmt)
            by_fp[f.fingerprint] = Exposure(
                f.rule,
                rule,
                f.masked,
                f.fingerprint,
                [where],
                entry.get("provider", ""),
                entry.get("url", ""),
                list(entry["steps"]),
            )
        self.report.exposures = list(by_fp.values())

    def ci(self) -> None:
        title = "a CI workflow scans for secrets"
        wf_dir = (self.git_root or self.project) / ".github" / "workflows"
        hits = []
        for wf in sorted([*wf_dir.glob("*.yml"), *wf_dir.glob("*.yaml")]):
            text = wf.read_text("utf-8", "replace")
            if any(s in text for s in SCANNERS):
                hits.append(wf.name)
        if hits:
            self.add(Check("ci", title, "pass", [f".github/workflows/{h}" for h in hits]))
        else:
            self.add(
                Check(
                    "ci",
                    title,
                    "fail",
                    ["no workflow in .github/workflows runs a secret scanner"],
                    "copy examples/github/secret-scan.yml from keyguard to "
                    ".github/workflows/ (runs `keyguard scan --format sarif`)",
                )
            )

    # -- the environment ----------------------------------------------------------------

    def environment(self) -> None:
        debug_title = "debug is off when ENVIRONMENT=production"
        secrets_title = "each required secret is present and well-formed"
        if self.policy is None:
            for cid, title in (("debug", debug_title), ("secrets", secrets_title)):
                self.add(Check(cid, title, "skip", ["needs a valid policy"]))
            return
        from dotenv import dotenv_values

        from keyguard.store import SecretStore
        from keyguard.validate import check_environment

        settings = self.policy.settings
        environ = dict(self.environ)
        dotenv_names: list[str] = []
        for name in self.policy.sources.dotenv:
            env = self.project / name
            if env.is_file():
                values = dotenv_values(env)
                dotenv_names += list(values)
                # The app reads DEBUG/ENVIRONMENT from .env too when the process env
                # does not set them.
                for key in (settings.debug_env, settings.environment_env):
                    if key not in environ and values.get(key):
                        environ[key] = values[key] or ""
        store = SecretStore.from_policy(self.policy, project_dir=self.project)
        result = check_environment(self.policy, store, environ, extra_names=dotenv_names)
        debug = [str(p) for p in result.environment if p.rule == "debug-in-production"]
        self.add(
            Check(
                "debug",
                debug_title.replace("ENVIRONMENT", settings.environment_env),
                "fail" if debug else "pass",
                debug,
                f"set {settings.debug_env}=false in production" if debug else "",
            )
        )
        errors = [str(p) for s in result.secrets for p in s.problems if p.severity == "error"]
        warnings = [str(p) for p in result.warnings if p.rule != "debug-in-production"]
        oks = [
            f"{s.name}: ok ({s.masked}, from {s.origin})"
            for s in result.secrets
            if s.status == "ok"
        ]
        status: Status = "fail" if errors else ("warn" if warnings else "pass")
        self.add(
            Check(
                "secrets",
                secrets_title,
                status,
                [*errors, *warnings, *oks],
                "set the missing/invalid values in .env (see .env.template) or the "
                "store; `keyguard check` explains each"
                if errors or warnings
                else "",
            )
        )


def run_doctor(
    project: Path,
    *,
    policy: Path | None = None,
    environ: Mapping[str, str] | None = None,
    history: bool = True,
    redactor: Any = None,
) -> DoctorReport:
    """Run every checklist item against ``project``."""
    if redactor is None:
        from keyguard.redact import Redactor

        redactor = Redactor()
    doc = _Doctor(project, policy, os.environ if environ is None else environ, history, redactor)
    doc.env_ignored()
    doc.env_untracked()
    doc.policy_valid()
    doc.template()
    doc.scan()
    doc.ci()
    doc.environment()
    return doc.report
