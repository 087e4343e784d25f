"""The policy: which secrets exist, where they may be sent, and which tool may use them.

Deny by default: a secret without ``inject.hosts`` is sent nowhere, a tool not listed may
use no secret, and code running outside any tool context counts as the tool ``default``
only if the policy defines one.

Host patterns (``inject.hosts``):

* ``api.github.com`` matches exactly that host (case-insensitive, trailing dot ignored);
* ``*.e2b.dev`` matches ONE OR MORE labels below ``e2b.dev`` (``api.e2b.dev``,
  ``a.b.e2b.dev``) but not ``e2b.dev`` itself; list the apex separately if you want it;
* IPv4 literals, IPv6 literals in brackets (``[::1]``) and ``localhost``;
* ``host:port`` matches only that port; a pattern without a port matches the default
  ports 443 and 80, and any port on a loopback host (so local test servers work).

``https`` (or ``wss``) is required, except towards loopback hosts (127.0.0.0/8, ``::1``,
``localhost``) or when the secret sets ``allow_http: true``.

Every load error is a :class:`~keyguard.errors.PolicyError` naming the file, the line and
the key, with a suggested fix; line numbers come from the composed YAML node tree.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
import string
import types
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from keyguard.errors import InvalidReference, PolicyError
from keyguard.secret import Reference, mask

__all__ = [
    "DEFAULT_TOOL",
    "Decision",
    "InjectSpec",
    "Policy",
    "PolicyDocument",
    "PolicyWarning",
    "SecretSpec",
    "SettingsSpec",
    "SourcesSpec",
    "ToolSpec",
    "VaultSpec",
    "is_loopback",
    "parse_host_pattern",
]

DEFAULT_TOOL = "default"
SUPPORTED_VERSION = 1
_SECURE_SCHEMES = {"https": 443, "wss": 443}
_INSECURE_SCHEMES = {"http": 80, "ws": 80}
_DEFAULT_PORTS = frozenset({80, 443})
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 9110 token characters: what a header name may contain.
_HEADER_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class PolicyWarning(UserWarning):
    """A policy that loads but does something discouraged (e.g. a key in a URL query)."""


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class InjectSpec(_Model):
    """Where a secret may be sent and how it is put on the request."""

    hosts: list[str] = Field(default_factory=list)
    header: str | None = None
    template: str = "{value}"
    basic_user: str | None = None
    query: str | None = None
    json_field: str | None = None

    @property
    def form(self) -> str | None:
        """``header`` | ``basic`` | ``query`` | ``json`` or ``None`` (placeholder only)."""
        if self.header:
            return "header"
        if self.basic_user is not None:
            return "basic"
        if self.query:
            return "query"
        if self.json_field:
            return "json"
        return None

    def render(self, value: str) -> str:
        """The header/field text for ``value`` (the template filled in)."""
        return self.template.replace("{value}", value)


class SecretSpec(_Model):
    from_ref: str | None = Field(default=None, alias="from")
    required: bool = True
    format: str | None = None
    min_length: int = Field(default=10, ge=0)
    description: str = ""
    inject: InjectSpec | None = None
    allow_http: bool = False
    github: bool = False


class ToolSpec(_Model):
    secrets: list[str] = Field(default_factory=list)
    sandbox_env: list[str] = Field(default_factory=list)
    description: str = ""


class VaultSpec(_Model):
    addr: str | None = None
    mount: str = "secret"
    auth: Literal["token", "approle"] = "token"
    role_id: str | None = None
    secret_id_ref: str | None = None
    verify: bool | str = True
    namespace: str | None = None


SourceName = Literal["env", "dotenv", "files", "vault"]


class SourcesSpec(_Model):
    order: list[SourceName] = Field(default_factory=lambda: ["env", "dotenv", "files", "vault"])
    dotenv: list[str] = Field(default_factory=lambda: [".env", ".env.local"])
    secrets_dir: str = "/run/secrets"
    vault: VaultSpec = Field(default_factory=VaultSpec)
    ttl: float = Field(default=300.0, ge=0)


class SettingsSpec(_Model):
    debug_env: str = "DEBUG"
    environment_env: str = "ENVIRONMENT"
    # Values of `environment_env` that mean production (compared case-insensitively).
    production_values: list[str] = Field(default_factory=lambda: ["production", "prod"])
    # Secret-looking environment variables that are expected and not reported.
    allowed_env: list[str] = Field(default_factory=list)


class PolicyDocument(_Model):
    """One policy file as written (a folder of files merges several of these)."""

    version: Any = SUPPORTED_VERSION
    sources: SourcesSpec | None = None
    secrets: dict[str, SecretSpec] = Field(default_factory=dict)
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    settings: SettingsSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # `tools:` with nothing under it, or `GEMINI_API_KEY:` with no settings, reads as
        # YAML null; both mean "empty / all defaults", which is what the writer meant.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for section in ("secrets", "tools"):
            if section in data and data[section] is None:
                data[section] = {}
            if isinstance(data.get(section), dict):
                data[section] = {k: ({} if v is None else v) for k, v in data[section].items()}
        return data


# --------------------------------------------------------------------------- hosts


@dataclass(frozen=True, slots=True)
class HostPattern:
    text: str  # as written (normalised: lower case, no trailing dot)
    host: str  # without the "*." and without brackets
    wildcard: bool
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None:
            if port != self.port:
                return False
        elif port not in _DEFAULT_PORTS and not is_loopback(host):
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    def matches_host(self, host: str) -> bool:
        return host.endswith("." + self.host) if self.wildcard else host == self.host


def _normalize_host(host: str) -> str:
    # No whitespace stripping: a request host with spaces is not a host and must not
    # match one.
    host = host.lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _is_host(name: str) -> bool:
    """A normalised request host: a DNS name or an IP literal."""
    if _HOSTNAME_RE.fullmatch(name):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 and ``::1`` (brackets allowed)."""
    host = _normalize_host(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _suggest_host(text: str) -> str | None:
    """For a URL or a host with a path, the ``host[:port]`` the writer probably meant."""
    from urllib.parse import urlsplit

    candidate = text.strip()
    if "://" not in candidate:
        candidate = "//" + candidate
    try:
        netloc = urlsplit(candidate).netloc
    except ValueError:
        return None
    netloc = netloc.rsplit("@", 1)[-1]
    if netloc and netloc != text:
        try:
            parse_host_pattern(netloc)
        except ValueError:
            return None
        return netloc
    return None


def parse_host_pattern(text: str) -> HostPattern:
    """Parse one ``inject.hosts`` entry; ``ValueError`` says what is wrong and the fix."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("an empty host; write a host name such as 'api.example.com'")
    raw = text.strip()
    if "://" in raw or "/" in raw or "?" in raw or "@" in raw:
        fix = _suggest_host(raw)
        hint = f"; write {_show(fix)!r}" if fix else ""
        raise ValueError(
            f"{_show(raw)!r} is a URL, not a host: give only the host (and port){hint}"
        )
    lowered = raw.lower().rstrip(".")
    port: int | None = None
    host = lowered
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ValueError(f"{_show(raw)!r}: unclosed '[' in an IPv6 host; write e.g. '[::1]'")
        rest = host[end + 1 :]
        host = host[1:end]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{_show(raw)!r}: expected ':port' after ']'")
            port = _parse_port(rest[1:], raw)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{_show(raw)!r}: not an IPv6 address inside [...]") from None
        return HostPattern(f"[{host}]" + (f":{port}" if port else ""), host, False, port)
    if host.count(":") > 1:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{_show(raw)!r} is not a host name") from None
        return HostPattern(f"[{host}]", host, False, None)
    if ":" in host:
        host, _, port_text = host.partition(":")
        port = _parse_port(port_text, raw)
    if host in ("*", "*.*"):
        raise ValueError(
            f"{raw!r} would allow every host; list the API hosts the secret is for instead"
        )
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if "*" in name:
        raise ValueError(
            f"{_show(raw)!r}: a wildcard must be the whole first label, e.g. '*.example.com'"
        )
    if not _HOSTNAME_RE.fullmatch(name):
        raise ValueError(
            f"{_show(raw)!r} is not a host name: use letters, digits, '-' and '.', "
            "e.g. 'api.example.com' or '*.example.com'"
        )
    if re.fullmatch(r"[0-9.]+", name):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise ValueError(f"{_show(raw)!r} is not a valid IPv4 address") from None
        if wildcard:
            raise ValueError(f"{_show(raw)!r}: a wildcard cannot apply to an IP address")
    if wildcard and name.count(".") < 1:
        raise ValueError(
            f"{_show(raw)!r} is too broad: a wildcard needs a domain with at least two labels, "
            f"e.g. '*.example.{name}'"
        )
    return HostPattern(lowered if port is None else f"{host}:{port}", name, wildcard, port)


def _parse_port(text: str, raw: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{_show(raw)!r}: the port must be a number from 1 to 65535")
    return int(text)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this secret go there?": truthy when allowed; ``reason`` says why."""

    allowed: bool
    reason: str
    secret: str
    host: str
    tool: str | None
    pattern: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


# --------------------------------------------------------------------------- format rules


@functools.lru_cache(maxsize=1)
def _rules() -> dict[str, Any]:
    from keyguard.redact.rules import load_rules

    return {rule.id: rule for rule in load_rules()}


def known_rule_ids() -> list[str]:
    """Rule ids usable as a secret's ``format`` (the redaction engine's default rules)."""
    return sorted(_rules())


def get_format_rule(rule_id: str) -> Any | None:
    """The rule for ``format: <rule_id>``, or ``None``."""
    return _rules().get(rule_id)


def _show(text: Any) -> str:
    """Echo user-written text in an error, with anything shaped like a credential masked
    (someone may have pasted a key where a host or a name belongs)."""
    text = str(text)
    if len(text) < 8:
        return text
    try:
        rules = list(_rules().values())
    except Exception:  # the rule set unavailable: hide long text rather than risk it
        return mask(text) if len(text) > 24 else text
    for rule in rules:
        compiled = getattr(rule, "compiled", None)
        if compiled is None:
            continue
        for match in reversed(list(compiled.finditer(text))):
            group = getattr(rule, "secret_group", 0)
            try:
                hit = rule.validate(match.group(group))
            except Exception:  # a broken user rule must not break error reporting
                hit = False
            if hit:
                start, end = match.span(group)
                text = text[:start] + mask(text[start:end]) + text[end:]
    return text


# --------------------------------------------------------------------------- YAML with lines

_Path = tuple[Any, ...]


@dataclass(slots=True)
class _Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '(top level)'}: {self.message}"


@dataclass(slots=True)
class _Source:
    """One loaded file: its name and where each key path sits in it."""

    file: str
    lines: dict[_Path, int]

    def line(self, path: Iterable[Any]) -> int | None:
        path = tuple(path)
        while True:
            for candidate in (path, tuple(str(p) for p in path)):
                if candidate in self.lines:
                    return self.lines[candidate]
            if not path:
                return None
            path = path[:-1]

    def problem(self, path: Iterable[Any], message: str) -> _Problem:
        path = tuple(path)
        return _Problem(self.file, self.line(path), _key_text(path), message)


def _key_text(path: _Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _show(part)
    return out


def _compose_yaml(text: str, file: str) -> tuple[Any, dict[_Path, int], list[_Problem]]:
    """Parse YAML, returning (data, key path -> line, duplicate-key problems)."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        lines, problems = _index_nodes(node, file)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = f", column {mark.column + 1}" if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise _error(
            [_Problem(file, line, "", f"invalid YAML{col}: {what}; fix the syntax there")]
        ) from None
    except yaml.YAMLError as exc:
        raise _error([_Problem(file, None, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise _error([_Problem(file, None, "", "YAML nested too deeply")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines, problems


def _index_nodes(root: yaml.Node, file: str) -> tuple[dict[_Path, int], list[_Problem]]:
    lines: dict[_Path, int] = {(): root.start_mark.line + 1}
    problems: list[_Problem] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, _Path]] = [(root, ())]
    # Iterative, and each node once: aliases may make the tree a graph (or a cycle).
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                line = key_node.start_mark.line + 1
                if isinstance(key_node, yaml.ScalarNode):
                    if key in first:
                        problems.append(
                            _Problem(
                                file,
                                line,
                                _key_text((*path, key)),
                                f"duplicate key (first defined at line {first[key]}); "
                                "keep one of them",
                            )
                        )
                    else:
                        first[key] = line
                lines.setdefault((*path, key), line)
                stack.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*path, index), item.start_mark.line + 1)
                stack.append((item, (*path, index)))
    return lines, problems


def _error(problems: list[_Problem]) -> PolicyError:
    if len(problems) == 1:
        message = str(problems[0])
    else:
        body = "\n".join(f"  {p}" for p in problems)
        message = f"{len(problems)} problems in the policy:\n{body}"
    err = PolicyError(message)
    first = problems[0]
    err.file, err.line, err.key = first.file, first.line, first.key  # type: ignore[attr-defined]
    err.problems = [  # type: ignore[attr-defined]
        {"file": p.file, "line": p.line, "key": p.key, "message": p.message} for p in problems
    ]
    return err


# --------------------------------------------------------------------------- validation


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _fields_at(model: type[BaseModel], loc: _Path) -> list[str]:
    """Valid field names of the model found at ``loc`` (for "did you mean" hints)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) is list:
            current = get_args(current)[0]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


_TYPE_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
}


def _pydantic_problems(exc: ValidationError, src: _Source) -> list[_Problem]:
    problems = []
    for err in exc.errors(include_url=False, include_input=True, include_context=True):
        loc = tuple(p for p in err["loc"] if p != "[key]")
        kind = err["type"]
        given = err.get("input")
        got = _TYPE_NAMES.get(type(given), "null" if given is None else type(given).__name__)
        if kind == "literal_error":
            options = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
            close = (
                difflib.get_close_matches(given, options, n=1, cutoff=0.5)
                if isinstance(given, str)
                else []
            )
            hint = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(options)}"
            message = f"{_show(given)!r} is not allowed here; {hint}"
        elif kind == "extra_forbidden":
            field = str(loc[-1])
            valid = _fields_at(PolicyDocument, loc[:-1])
            close = difflib.get_close_matches(field, valid, n=1, cutoff=0.5)
            if close:
                hint = f"did you mean {close[0]!r}?"
            else:
                hint = f"valid fields here: {', '.join(valid)}" if valid else "remove it"
            message = f"unknown field {_show(field)!r}; {hint}"
        elif kind == "missing":
            message = f"missing required field {loc[-1]!r}; add it"
        elif "[key]" in err["loc"]:
            message = f"invalid name: {err['msg']}; names must be strings"
        else:
            expected = _fields_at(PolicyDocument, loc)
            message = f"{err['msg']}, got {got}"
            if expected:
                message += f" (expected a mapping with fields: {', '.join(expected)})"
        problems.append(src.problem(loc, message))
    return problems


def _semantic_problems(doc: PolicyDocument, src: _Source) -> tuple[list[_Problem], list[_Problem]]:
    """Checks pydantic's types cannot express. Returns (errors, warnings)."""
    errors: list[_Problem] = []
    warns: list[_Problem] = []
    version = doc.version
    if isinstance(version, bool) or version != SUPPORTED_VERSION:
        shown = _show(version) if isinstance(version, str) else version
        errors.append(
            src.problem(
                ("version",),
                f"unsupported policy version {shown!r}; "
                f"this keyguard reads 'version: {SUPPORTED_VERSION}'",
            )
        )
    for name, spec in doc.secrets.items():
        base = ("secrets", name)
        if not _NAME_RE.fullmatch(name):
            errors.append(
                src.problem(
                    base,
                    f"invalid secret name {_show(name)!r}: use an environment-variable style "
                    "name (letters, digits, '_'; not starting with a digit)",
                )
            )
        if spec.from_ref is not None:
            try:
                Reference.parse(spec.from_ref)
            except InvalidReference as exc:
                errors.append(src.problem((*base, "from"), f"{exc}"))
        if spec.format is not None:
            errors.extend(_format_problems(spec.format, src, (*base, "format")))
        if spec.inject is not None:
            e, w = _inject_problems(name, spec.inject, src, (*base, "inject"))
            errors.extend(e)
            warns.extend(w)
    vault = (doc.sources or SourcesSpec()).vault
    if vault.secret_id_ref is not None:
        try:
            Reference.parse(vault.secret_id_ref)
        except InvalidReference as exc:
            errors.append(src.problem(("sources", "vault", "secret_id_ref"), str(exc)))
    if doc.sources is not None and len(set(doc.sources.order)) != len(doc.sources.order):
        errors.append(src.problem(("sources", "order"), "a source is listed twice; list it once"))
    return errors, warns


def _format_problems(rule_id: str, src: _Source, path: _Path) -> list[_Problem]:
    ids = known_rule_ids()
    if rule_id in ids:
        return []
    close = difflib.get_close_matches(rule_id, ids, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = f"known rule ids: {', '.join(ids)}"
    return [
        src.problem(
            path,
            f"unknown format rule id {_show(rule_id)!r}; " + (hint or listing),
        )
    ]


def _inject_problems(
    name: str, inject: InjectSpec, src: _Source, path: _Path
) -> tuple[list[_Problem], list[_Problem]]:
    errors: list[_Problem] = []
    warns: list[_Problem] = []
    for index, host in enumerate(inject.hosts):
        try:
            parse_host_pattern(host)
        except ValueError as exc:
            errors.append(src.problem((*path, "hosts", index), f"invalid host pattern: {exc}"))
    forms = [
        f
        for f, set_ in (
            ("header", inject.header is not None),
            ("basic_user", inject.basic_user is not None),
            ("query", inject.query is not None),
            ("json_field", inject.json_field is not None),
        )
        if set_
    ]
    if len(forms) > 1:
        errors.append(
            src.problem(
                (*path, forms[1]),
                f"choose one injection form, not {' and '.join(forms)}; remove all but one",
            )
        )
    if inject.header is not None and not _HEADER_RE.fullmatch(inject.header):
        errors.append(
            src.problem((*path, "header"), "not a valid HTTP header name (e.g. 'Authorization')")
        )
    for field in ("query", "json_field"):
        if getattr(inject, field) == "":
            errors.append(src.problem((*path, field), "empty name; give a name or remove it"))
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(inject.template) if f is not None}
    except ValueError:
        fields = {"?"}
    if fields != {"value"}:
        errors.append(
            src.problem(
                (*path, "template"),
                "the template must contain '{value}' exactly and no other {...} field, "
                "e.g. 'Bearer {value}'",
            )
        )
    if inject.query is not None:
        warns.append(
            src.problem(
                (*path, "query"),
                f"{name} is injected into a URL query parameter: URLs end up in logs, "
                "proxies and error messages; prefer a header if the API accepts one",
            )
        )
    if inject.form and not inject.hosts:
        warns.append(
            src.problem(
                (*path, "hosts"),
                f"{name} has an injection form but no hosts, so it is never sent; "
                "add the API host to inject.hosts",
            )
        )
    return errors, warns


# --------------------------------------------------------------------------- the policy


@dataclass(slots=True)
class _Origin:
    src: _Source
    path: _Path

    @property
    def where(self) -> str:
        line = self.src.line(self.path)
        return f"{self.src.file}:{line}" if line else self.src.file


class Policy:
    """A loaded, validated policy (one file or a folder of files merged)."""

    def __init__(
        self,
        *,
        secrets: Mapping[str, SecretSpec],
        tools: Mapping[str, ToolSpec],
        sources: SourcesSpec | None = None,
        settings: SettingsSpec | None = None,
        path: Path | None = None,
        project_dir: Path | None = None,
        warnings: list[str] | None = None,
        files: list[str] | None = None,
    ) -> None:
        self.version = SUPPORTED_VERSION
        self.secrets: dict[str, SecretSpec] = dict(secrets)
        self.tools: dict[str, ToolSpec] = dict(tools)
        self.sources = sources or SourcesSpec()
        self.settings = settings or SettingsSpec()
        self.path = path
        self.project_dir = project_dir or Path.cwd()
        self.warnings: list[str] = list(warnings or [])
        self.files: list[str] = list(files or [])
        self._hosts: dict[str, list[HostPattern]] = {
            name: [parse_host_pattern(h) for h in spec.inject.hosts] if spec.inject else []
            for name, spec in self.secrets.items()
        }

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(cls, path: str | Path, *, project_dir: str | Path | None = None) -> Policy:
        """Load a policy file, or every ``*.yaml``/``*.yml`` of a folder (merged)."""
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            files = [p for p in files if p.is_file()]
            if not files:
                raise _error(
                    [_Problem(str(path), None, "", "no *.yaml policy files in this folder")]
                )
        elif path.exists():
            files = [path]
        else:
            raise _error(
                [_Problem(str(path), None, "", "no such policy file; run `keyguard init`")]
            )
        parts = []
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise _error([_Problem(str(file), None, "", f"cannot read: {reason}")]) from None
            parts.append(_parse_text(text, str(file)))
        return cls._merge(parts, path=path, project_dir=_project_dir(path, project_dir))

    @classmethod
    def loads(
        cls, text: str, source: str = "<string>", *, project_dir: str | Path | None = None
    ) -> Policy:
        """Load a policy from YAML text (``source`` names it in errors)."""
        return cls._merge(
            [_parse_text(text, source)], path=None, project_dir=_maybe_path(project_dir)
        )

    @classmethod
    def from_dict(
        cls, data: Any, source: str = "<dict>", *, project_dir: str | Path | None = None
    ) -> Policy:
        """Build a policy from already-parsed data (no line numbers in errors)."""
        return cls._merge(
            [_parse_data(data, _Source(source, {}))],
            path=None,
            project_dir=_maybe_path(project_dir),
        )

    @classmethod
    def _merge(cls, parts: list[_Part], *, path: Path | None, project_dir: Path | None) -> Policy:
        secrets: dict[str, SecretSpec] = {}
        tools: dict[str, ToolSpec] = {}
        origins: dict[tuple[str, str], _Origin] = {}
        sources: SourcesSpec | None = None
        settings: SettingsSpec | None = None
        errors: list[_Problem] = []
        warns: list[_Problem] = []
        for part in parts:
            errors.extend(part.errors)
            warns.extend(part.warnings)
            doc, src = part.doc, part.src
            if doc is None:
                continue
            for section, target in (("secrets", secrets), ("tools", tools)):
                for name, spec in getattr(doc, section).items():
                    here = _Origin(src, (section, name))
                    if name in target:
                        first = origins[(section, name)]
                        errors.append(
                            src.problem(
                                (section, name),
                                f"{section[:-1]} {_show(name)!r} is defined twice: in "
                                f"{first.where} and {here.where}; keep one definition",
                            )
                        )
                        continue
                    target[name] = spec  # type: ignore[index]
                    origins[(section, name)] = here
            for section in ("sources", "settings"):
                value = getattr(doc, section)
                if value is None:
                    continue
                here = _Origin(src, (section,))
                if (section, "") in origins:
                    first = origins[(section, "")]
                    errors.append(
                        src.problem(
                            (section,),
                            f"'{section}' is defined twice: in {first.where} and {here.where}; "
                            "keep one",
                        )
                    )
                    continue
                origins[(section, "")] = here
                if section == "sources":
                    sources = value
                else:
                    settings = value
        # Cross-references are checked on the merged policy: a tool in one file may name a
        # secret declared in another.
        for tool, spec in tools.items():
            origin = origins[("tools", tool)]
            for field in ("secrets", "sandbox_env"):
                for index, secret in enumerate(getattr(spec, field)):
                    if secret in secrets:
                        if field == "sandbox_env" and secret not in spec.secrets:
                            errors.append(
                                origin.src.problem(
                                    (*origin.path, field, index),
                                    f"{_show(secret)!r} is in sandbox_env but not in "
                                    f"tools.{tool}.secrets; add it to secrets (or remove it)",
                                )
                            )
                        continue
                    close = difflib.get_close_matches(secret, list(secrets), n=1, cutoff=0.5)
                    hint = f"did you mean {close[0]!r}?" if close else "declare it under secrets:"
                    errors.append(
                        origin.src.problem(
                            (*origin.path, field, index),
                            f"unknown secret {_show(secret)!r} (not declared under secrets:); "
                            + hint,
                        )
                    )
        if errors:
            raise _error(errors)
        texts = [str(w) for w in warns]
        for text in texts:
            warnings.warn(text, PolicyWarning, stacklevel=3)
        return cls(
            secrets=secrets,
            tools=tools,
            sources=sources,
            settings=settings,
            path=path,
            project_dir=project_dir,
            warnings=texts,
            files=[part.src.file for part in parts],
        )

    # ---------------------------------------------------------------- decisions

    def effective_tool(self, tool: str | None) -> str | None:
        """The tool whose grants apply: ``None`` means ``default`` if the policy defines it."""
        if not tool:
            return DEFAULT_TOOL if DEFAULT_TOOL in self.tools else None
        return tool if tool in self.tools else None

    def tool_may_use(self, tool: str | None, secret_name: str) -> bool:
        effective = self.effective_tool(tool)
        return effective is not None and secret_name in self.tools[effective].secrets

    def sandbox_env(self, tool: str | None) -> list[str]:
        """Secrets that may enter this tool's sandbox as environment variables."""
        effective = self.effective_tool(tool)
        return list(self.tools[effective].sandbox_env) if effective else []

    def required_secrets(self) -> list[str]:
        return [name for name, spec in self.secrets.items() if spec.required]

    def hosts_for(self, secret_name: str) -> list[str]:
        return [p.text for p in self._hosts.get(secret_name, [])]

    def may_send(
        self,
        secret_name: str,
        host: str,
        tool: str | None,
        *,
        scheme: str = "https",
        port: int | None = None,
    ) -> Decision:
        """May ``secret_name`` be sent to ``scheme://host:port`` on behalf of ``tool``?"""
        shown_tool = tool if tool else f"(no tool context -> {DEFAULT_TOOL!r})"

        def deny(reason: str) -> Decision:
            return Decision(False, reason, secret_name, host, tool)

        spec = self.secrets.get(secret_name)
        if spec is None:
            return deny(f"{secret_name} is not declared in the policy, so it is sent nowhere")
        effective = self.effective_tool(tool)
        if effective is None:
            if not tool:
                return deny(
                    f"the request is made outside any tool context and the policy defines no "
                    f"{DEFAULT_TOOL!r} tool, so it may carry no secret"
                )
            return deny(f"tool {tool!r} is not listed under tools:, so it may use no secret")
        if secret_name not in self.tools[effective].secrets:
            return deny(
                f"tool {shown_tool} is not granted {secret_name} "
                f"(add it to tools.{effective}.secrets to allow it)"
            )
        patterns = self._hosts.get(secret_name, [])
        if not patterns:
            return deny(f"{secret_name} has no inject.hosts, so it is never sent anywhere")
        scheme = (scheme or "https").lower()
        if scheme in _SECURE_SCHEMES:
            default_port = _SECURE_SCHEMES[scheme]
        elif scheme in _INSECURE_SCHEMES:
            default_port = _INSECURE_SCHEMES[scheme]
        else:
            return deny(f"scheme {scheme!r} is not http(s); {secret_name} is sent only over https")
        name = _normalize_host(host)
        if not _is_host(name):
            return deny(f"{host!r} is not a valid host name, so nothing is sent to it")
        effective_port = port if port is not None else default_port
        match = next((p for p in patterns if p.matches(name, effective_port)), None)
        if match is None:
            by_host = [p for p in patterns if p.matches_host(name)]
            allowed = ", ".join(p.text for p in patterns)
            if by_host:
                ports = ", ".join(
                    str(p.port) if p.port else "the default ports 443/80" for p in by_host
                )
                return deny(
                    f"{name} matches inject.hosts of {secret_name} but port {effective_port} "
                    f"does not (allowed: {ports})"
                )
            return deny(f"host {name} is not in the inject.hosts of {secret_name} ({allowed})")
        if scheme in _INSECURE_SCHEMES and not is_loopback(name) and not spec.allow_http:
            return deny(
                f"{secret_name} may go to {name} only over https, not {scheme}; set "
                "allow_http: true on the secret to allow plain http"
            )
        return Decision(
            True,
            f"tool {shown_tool} is granted {secret_name}, and {name} matches its inject.hosts "
            f"entry {match.text!r} over {scheme}",
            secret_name,
            host,
            tool,
            match.text,
        )

    def explain(
        self, host: str, tool: str | None, *, scheme: str = "https", port: int | None = None
    ) -> list[Decision]:
        """The decision for every declared secret towards ``host`` for ``tool``."""
        return [self.may_send(name, host, tool, scheme=scheme, port=port) for name in self.secrets]

    def injections_for(
        self, host: str, tool: str | None, *, scheme: str = "https", port: int | None = None
    ) -> list[tuple[str, InjectSpec]]:
        """Secrets to add to a request to ``host`` even without a placeholder: those allowed
        there whose ``inject`` names a form (header, basic auth, query or JSON field)."""
        out = []
        for name, spec in self.secrets.items():
            if spec.inject is None or spec.inject.form is None:
                continue
            if self.may_send(name, host, tool, scheme=scheme, port=port):
                out.append((name, spec.inject))
        return out

    def __repr__(self) -> str:
        where = str(self.path) if self.path else ", ".join(self.files) or "<policy>"
        return f"Policy({where!r}, secrets={list(self.secrets)}, tools={list(self.tools)})"


@dataclass(slots=True)
class _Part:
    """One file's outcome: the document (``None`` if it did not validate) and problems."""

    doc: PolicyDocument | None
    src: _Source
    errors: list[_Problem]
    warnings: list[_Problem]


def _parse_text(text: str, file: str) -> _Part:
    data, lines, duplicates = _compose_yaml(text, file)
    part = _parse_data({} if data is None else data, _Source(file, lines))
    part.errors[:0] = duplicates
    return part


def _parse_data(data: Any, src: _Source) -> _Part:
    if not isinstance(data, dict):
        got = _TYPE_NAMES.get(type(data), type(data).__name__)
        message = f"the policy must be a mapping (version:, secrets:, tools:), not {got}"
        return _Part(None, src, [src.problem((), message)], [])
    try:
        doc = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        return _Part(None, src, _pydantic_problems(exc, src), [])
    except (RecursionError, TypeError, ValueError) as exc:
        # Cyclic YAML aliases and the like: pydantic may give up before reporting.
        return _Part(None, src, [src.problem((), f"cannot validate: {type(exc).__name__}")], [])
    errors, warns = _semantic_problems(doc, src)
    return _Part(doc, src, errors, warns)


def _maybe_path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None


def _project_dir(path: Path, explicit: str | Path | None) -> Path:
    """Where relative ``.env`` paths are read: the parent of a ``policies/`` folder, else cwd."""
    if explicit is not None:
        return Path(explicit)
    resolved = path.resolve()
    folder = resolved if resolved.is_dir() else resolved.parent
    if folder.name == "policies":
        return folder.parent
    return Path.cwd()
