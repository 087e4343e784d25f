"""The loaded policy: files merged, cross-references checked, and the decisions
(may this secret go to that host for this tool?)."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyguard.policy.checks import _parse_data, _parse_text, _Part
from keyguard.policy.formats import _show
from keyguard.policy.hosts import (
    HostPattern,
    _is_host,
    _normalize_host,
    is_loopback,
    parse_host_pattern,
)
from keyguard.policy.lines import _error, _Path, _Problem, _Source
from keyguard.policy.model import (
    DEFAULT_TOOL,
    SUPPORTED_VERSION,
    InjectSpec,
    PolicyWarning,
    SecretSpec,
    SettingsSpec,
    SourcesSpec,
    ToolSpec,
)

_SECURE_SCHEMES = {"https": 443, "wss": 443}
_INSECURE_SCHEMES = {"http": 80, "ws": 80}


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
                                    f"tools.{_show(tool)}.secrets; add it to secrets "
                                    "(or remove it)",
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
