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

The package's modules: ``model`` (the document's pydantic models), ``hosts`` (host
patterns), ``lines`` (YAML with line numbers, errors), ``checks`` (problems of one
document), ``formats`` (format rule ids) and ``core`` (the merged :class:`Policy` and its
decisions).
"""

from __future__ import annotations

from keyguard.policy.core import Decision, Policy
from keyguard.policy.formats import get_format_rule, known_rule_ids
from keyguard.policy.hosts import HostPattern, is_loopback, parse_host_pattern
from keyguard.policy.model import (
    DEFAULT_TOOL,
    SUPPORTED_VERSION,
    InjectSpec,
    PolicyDocument,
    PolicyWarning,
    SecretSpec,
    SettingsSpec,
    SourceName,
    SourcesSpec,
    ToolSpec,
    VaultSpec,
)

__all__ = [
    "DEFAULT_TOOL",
    "SUPPORTED_VERSION",
    "Decision",
    "HostPattern",
    "InjectSpec",
    "Policy",
    "PolicyDocument",
    "PolicyWarning",
    "SecretSpec",
    "SettingsSpec",
    "SourceName",
    "SourcesSpec",
    "ToolSpec",
    "VaultSpec",
    "get_format_rule",
    "is_loopback",
    "known_rule_ids",
    "parse_host_pattern",
]
