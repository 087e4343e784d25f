"""Every problem of one policy document: pydantic errors made readable, then the checks
pydantic's types cannot express (names, references, format rules, injection)."""

from __future__ import annotations

import difflib
import re
import string
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from keyguard.errors import InvalidReference
from keyguard.policy.formats import _show, known_rule_ids
from keyguard.policy.hosts import parse_host_pattern
from keyguard.policy.lines import _compose_yaml, _Path, _Problem, _Source
from keyguard.policy.model import (
    FORMAT_SHAPE_ERROR,
    SUPPORTED_VERSION,
    InjectSpec,
    PolicyDocument,
    SecretSpec,
    SourcesSpec,
    type_name,
)
from keyguard.secret import Reference

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 9110 token characters: what a header name may contain.
_HEADER_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


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


def _pydantic_problems(exc: ValidationError, src: _Source) -> list[_Problem]:
    problems = []
    for err in exc.errors(include_url=False, include_input=True, include_context=True):
        loc = tuple(p for p in err["loc"] if p != "[key]")
        kind = err["type"]
        given = err.get("input")
        got = type_name(given)
        if kind == FORMAT_SHAPE_ERROR:
            message = err["msg"]
        elif kind == "literal_error":
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
        errors.extend(_format_problems(spec, src, (*base, "format")))
        if spec.inject is not None:
            e, w = _inject_problems(name, spec.inject, src, (*base, "inject"))
            errors.extend(e)
            warns.extend(w)
    errors.extend(_pasted_value_problems(doc, src))
    vault = (doc.sources or SourcesSpec()).vault
    if vault.secret_id_ref is not None:
        try:
            Reference.parse(vault.secret_id_ref)
        except InvalidReference as exc:
            errors.append(src.problem(("sources", "vault", "secret_id_ref"), str(exc)))
    if doc.sources is not None and len(set(doc.sources.order)) != len(doc.sources.order):
        errors.append(src.problem(("sources", "order"), "a source is listed twice; list it once"))
    return errors, warns


def _written_texts(doc: PolicyDocument) -> Iterator[tuple[_Path, str]]:
    """Every name and text the writer typed, with its key path (values of YAML keys too)."""
    for name, spec in doc.secrets.items():
        base: _Path = ("secrets", name)
        yield base, name
        for field in ("from_ref", "description"):
            value = getattr(spec, field)
            if value:
                yield (*base, "from" if field == "from_ref" else field), value
        if spec.inject is not None:
            for index, host in enumerate(spec.inject.hosts):
                yield (*base, "inject", "hosts", index), host
            for field in ("header", "template", "basic_user", "query", "json_field"):
                value = getattr(spec.inject, field)
                if value:
                    yield (*base, "inject", field), value
    for name, tool in doc.tools.items():
        base = ("tools", name)
        yield base, name
        for field in ("secrets", "sandbox_env"):
            for index, value in enumerate(getattr(tool, field)):
                yield (*base, field, index), value
        if tool.description:
            yield (*base, "description"), tool.description
    if doc.sources is not None:
        for index, value in enumerate(doc.sources.dotenv):
            yield ("sources", "dotenv", index), value
        yield ("sources", "secrets_dir"), doc.sources.secrets_dir
        vault = doc.sources.vault
        for field in ("addr", "mount", "role_id", "secret_id_ref", "namespace", "verify"):
            value = getattr(vault, field)
            if isinstance(value, str) and value:
                yield ("sources", "vault", field), value
    if doc.settings is not None:
        for field, value in doc.settings.model_dump().items():
            for index, text in enumerate(value if isinstance(value, list) else [value]):
                path: _Path = (
                    ("settings", field, index)
                    if isinstance(value, list)
                    else (
                        "settings",
                        field,
                    )
                )
                yield path, str(text)


def _pasted_value_problems(doc: PolicyDocument, src: _Source) -> list[_Problem]:
    """A credential-shaped text anywhere in the policy is an error: a policy is committed,
    printed by ``keyguard policy`` and quoted in decisions and audit events, so a key
    pasted as a host, a tool name or a header template would travel with it."""
    problems = []
    for path, text in _written_texts(doc):
        shown = _show(text)
        if shown != text:
            problems.append(
                src.problem(
                    path,
                    f"{shown!r} looks like a secret value, not a name or setting; remove it "
                    "(and rotate the key), values belong in the environment, .env or Vault",
                )
            )
    return problems


def _format_problems(spec: SecretSpec, src: _Source, path: _Path) -> list[_Problem]:
    """Every unknown rule id of ``format``; an id inside a list is named by its index."""
    if isinstance(spec.format, str):
        written = [(path, spec.format)]
    else:
        written = [((*path, index), rule_id) for index, rule_id in enumerate(spec.format or [])]
    ids = known_rule_ids()
    problems = []
    for at, rule_id in written:
        if rule_id in ids:
            continue
        close = difflib.get_close_matches(rule_id, ids, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        listing = f"known rule ids: {', '.join(ids)}"
        problems.append(
            src.problem(at, f"unknown format rule id {_show(rule_id)!r}; " + (hint or listing))
        )
    return problems


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
        got = type_name(data)
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
