"""Host patterns of ``inject.hosts``: parsing, normalising and matching request hosts."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from keyguard.policy.formats import _show

_DEFAULT_PORTS = frozenset({80, 443})
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


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
