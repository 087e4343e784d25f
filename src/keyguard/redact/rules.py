"""Pattern rules: loaded from TOML data files (the packaged ``rules.toml`` plus user files)."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import tomllib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from keyguard.errors import KeyguardError

__all__ = ["DEFAULT_RULES_PATH", "Rule", "RuleError", "get_rule", "load_rules", "shannon_entropy"]

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.toml")


class RuleError(KeyguardError, ValueError):
    """A rule file that does not load (names the file and the rule, never a value)."""


def shannon_entropy(text: str) -> float:
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _b64url_json(part: str) -> dict | None:
    try:
        data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        obj = json.loads(data)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _check_jwt(secret: str) -> bool:
    parts = secret.split(".")
    if len(parts) != 3:
        return False
    header = _b64url_json(parts[0])
    return header is not None and "alg" in header and _b64url_json(parts[1]) is not None


def _check_jwt_n8n(secret: str) -> bool:
    if not _check_jwt(secret):
        return False
    claims = _b64url_json(secret.split(".")[1]) or {}
    return claims.get("iss") == "n8n"


CHECKS = {"jwt": _check_jwt, "jwt-n8n": _check_jwt_n8n}


@dataclass(eq=False)
class Rule:
    """One detection rule. ``regex`` is Python syntax with ASCII semantics."""

    id: str
    description: str
    regex: str
    keywords: tuple[str, ...] = ()
    entropy: float | None = None
    secret_group: int = 0
    check: str | None = None
    multiline: bool = False
    lead: int = 0
    value_regex: str | None = None
    allowlist: tuple[re.Pattern[str], ...] = ()
    stopwords: tuple[str, ...] = ()
    source: str = ""
    compiled: re.Pattern[str] = field(init=False, repr=False)
    value_compiled: re.Pattern[str] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            self.compiled = re.compile(self.regex, re.ASCII)
        except re.error as exc:
            raise RuleError(f"{self.source}: rule {self.id!r}: invalid regex: {exc}") from None
        try:
            self.value_compiled = (
                re.compile(self.value_regex, re.ASCII) if self.value_regex else None
            )
        except re.error as exc:
            raise RuleError(
                f"{self.source}: rule {self.id!r}: invalid value_regex: {exc}"
            ) from None
        if self.check is not None and self.check not in CHECKS:
            raise RuleError(
                f"{self.source}: rule {self.id!r}: unknown check {self.check!r} "
                f"(known: {', '.join(sorted(CHECKS))})"
            )
        if self.secret_group > self.compiled.groups:
            raise RuleError(f"{self.source}: rule {self.id!r}: secret_group has no such group")

    @functools.cached_property
    def compiled_bytes(self) -> re.Pattern[bytes]:
        return re.compile(self.regex.encode(), re.ASCII)

    @property
    def max_keyword(self) -> int:
        return max((len(k) for k in self.keywords), default=0)

    def accepts(self, secret: str) -> bool:
        """Whether a regex match's secret part is a hit (entropy, check, allowlist)."""
        if self.entropy is not None and shannon_entropy(secret) < self.entropy:
            return False
        if self.check is not None and not CHECKS[self.check](secret):
            return False
        if self.stopwords:
            low = secret.lower()
            if any(w in low for w in self.stopwords):
                return False
        return not any(a.search(secret) for a in self.allowlist)

    def validate(self, value: str) -> bool:
        """True when the WHOLE ``value`` has this rule's format."""
        if self.value_compiled is not None:  # the regex needs context around the secret
            return self.value_compiled.fullmatch(value) is not None and self.accepts(value)
        m = self.compiled.fullmatch(value)
        return m is not None and self.accepts(m.group(self.secret_group))


def _parse_file(path: Path) -> list[Rule]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(f"{path}: cannot read rule file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: invalid TOML: {exc}") from None
    entries = data.get("rules")
    if not isinstance(entries, list):
        raise RuleError(f"{path}: expected [[rules]] tables")
    rules = []
    known = {"id", "description", "regex", "keywords", "entropy", "secret_group", "check"}
    known |= {"multiline", "lead", "allowlist", "value_regex"}
    for i, entry in enumerate(entries, 1):
        rid = entry.get("id")
        if not isinstance(rid, str) or not rid:
            raise RuleError(f"{path}: rule #{i}: missing 'id'")
        if not isinstance(entry.get("regex"), str):
            raise RuleError(f"{path}: rule {rid!r}: missing 'regex'")
        unknown = set(entry) - known
        if unknown:
            raise RuleError(f"{path}: rule {rid!r}: unknown keys {sorted(unknown)}")
        allow = entry.get("allowlist", {})
        try:
            allow_res = tuple(re.compile(a, re.ASCII) for a in allow.get("regexes", []))
        except re.error as exc:
            raise RuleError(f"{path}: rule {rid!r}: invalid allowlist regex: {exc}") from None
        rules.append(
            Rule(
                id=rid,
                description=entry.get("description", ""),
                regex=entry["regex"],
                keywords=tuple(k.lower() for k in entry.get("keywords", [])),
                entropy=entry.get("entropy"),
                secret_group=int(entry.get("secret_group", 0)),
                check=entry.get("check"),
                multiline=bool(entry.get("multiline", False)),
                lead=int(entry.get("lead", 0)),
                value_regex=entry.get("value_regex"),
                allowlist=allow_res,
                stopwords=tuple(s.lower() for s in allow.get("stopwords", [])),
                source=str(path),
            )
        )
    return rules


@functools.lru_cache(maxsize=1)
def _default_rules() -> tuple[Rule, ...]:
    return tuple(_parse_file(DEFAULT_RULES_PATH))


def load_rules(paths: Iterable[str | Path] | None = None, *, default: bool = True) -> list[Rule]:
    """The packaged rules (unless ``default=False``) followed by each file in ``paths``.

    A user rule with the id of an earlier one replaces it.
    """
    rules: dict[str, Rule] = {}
    if default:
        rules.update((r.id, r) for r in _default_rules())
    for p in paths or ():
        for r in _parse_file(Path(p)):
            rules[r.id] = r
    return list(rules.values())


def get_rule(rule_id: str) -> Rule | None:
    """The packaged rule with this id, or None."""
    return next((r for r in _default_rules() if r.id == rule_id), None)
