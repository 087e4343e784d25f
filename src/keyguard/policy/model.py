"""The policy document as written: pydantic models for one file's sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

DEFAULT_TOOL = "default"
SUPPORTED_VERSION = 1


# The pydantic error type of a ``format`` that is neither a rule id nor a list of them.
FORMAT_SHAPE_ERROR = "format_shape"


class PolicyWarning(UserWarning):
    """A policy that loads but does something discouraged (e.g. a key in a URL query)."""


_TYPE_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
}


def type_name(value: Any) -> str:
    """What a wrongly typed value is, in words (never the value: it may be a pasted key)."""
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


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
    # One rule id, or a list of rule ids of which the value must match any (a GitHub token
    # may be classic or fine-grained). Kept as written; read it through ``formats``.
    format: str | list[str] | None = None
    min_length: int = Field(default=10, ge=0)
    description: str = ""
    inject: InjectSpec | None = None
    allow_http: bool = False
    github: bool = False

    @field_validator("format", mode="before")
    @classmethod
    def _format_shape(cls, value: Any) -> Any:
        # One clear sentence instead of pydantic's one error per member of the union.
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise PydanticCustomError(
                FORMAT_SHAPE_ERROR,
                "format must be a rule id or a list of rule ids, not {got}",
                {"got": type_name(value)},
            )
        if not value:
            raise PydanticCustomError(
                FORMAT_SHAPE_ERROR,
                "an empty format list accepts no value; list at least one rule id "
                "(e.g. [github-pat, github-fine-grained-pat]) or remove format",
            )
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise PydanticCustomError(
                    FORMAT_SHAPE_ERROR,
                    "format[{index}] must be a rule id, not {got}",
                    {"index": index, "got": type_name(item)},
                )
        return value

    @property
    def formats(self) -> tuple[str, ...]:
        """The accepted format rule ids (empty: no format check)."""
        if not self.format:
            return ()
        return (self.format,) if isinstance(self.format, str) else tuple(self.format)


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
