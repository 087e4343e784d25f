"""Redaction: known secret values in every encoded form, pattern rules, streams, objects.

``Redactor`` is the entry point; see ``keyguard.redact.redactor``.
"""

from keyguard.redact.echo import shown
from keyguard.redact.redactor import Finding, Redactor
from keyguard.redact.rules import Rule, get_rule, load_rules
from keyguard.redact.stream import StreamRedactor

__all__ = ["Finding", "Redactor", "Rule", "StreamRedactor", "get_rule", "load_rules", "shown"]
