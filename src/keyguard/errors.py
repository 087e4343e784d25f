"""Exceptions. Every message names a secret, a reference or a rule, never a value."""

from __future__ import annotations


class KeyguardError(Exception):
    """Base class of every error keyguard raises."""


class InvalidReference(KeyguardError, ValueError):
    """A secret reference (``env://``, ``file://``, ``vault://``) that cannot be parsed."""


class SecretNotFound(KeyguardError, LookupError):
    """No source holds the secret (or the reference points at nothing)."""


class AccessDenied(KeyguardError, PermissionError):
    """The backend refused to hand the secret over."""


class BackendUnavailable(KeyguardError, ConnectionError):
    """The backend (Vault/OpenBao, a secrets directory) could not be reached."""


class SourceError(KeyguardError):
    """A source exists but its content is invalid (a malformed ``.env`` line, unreadable file)."""


class PolicyError(KeyguardError, ValueError):
    """A policy file that does not load or validate."""


class PolicyViolation(KeyguardError, PermissionError):
    """An action the policy does not allow (a secret towards a host, a tool using a secret)."""
