"""The policy document as written: pydantic models for one file's sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_TOOL = "default"
SUPPORTED_VERSION = 1


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
