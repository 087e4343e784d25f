"""The encoded forms in which a secret value can leak.

A value is looked for as-is and as every encoding a program commonly applies on the
way out: base64 (std/url-safe, padded/unpadded, and the *core* characters it produces
when it sits inside a larger base64 blob at any byte alignment, e.g. a Basic auth
header ``base64("user:" + value)``), hex, percent-encoding, JSON and Python string
escaping. URLs (``?key=VALUE``, ``https://user:VALUE@host``) are covered by the exact
and percent-encoded forms.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import quote, quote_plus

__all__ = ["MIN_CORE_LENGTH", "base64_cores", "forms"]

# An embedded-base64 core shorter than this would match ordinary text by chance.
MIN_CORE_LENGTH = 8

_PCT = re.compile(r"%[0-9A-F]{2}")


def base64_cores(data: bytes) -> list[bytes]:
    """The base64 characters that depend on ``data`` alone, at byte offsets 0, 1 and 2.

    Inside a larger blob the first one or two characters of ``data``'s encoding mix
    bits of the previous byte and the last one mixes bits of the next byte; the core
    between them is the same whatever the neighbours are.
    """
    cores = []
    n = len(data)
    for k in (0, 1, 2):
        encoded = base64.b64encode(b"\0" * k + data)
        skip = (0, 2, 3)[k]
        core = encoded[skip : (8 * (k + n)) // 6]
        cores.append(core)
    return cores


def forms(value: str) -> list[str]:
    """Every form of ``value`` worth looking for, exact first, without duplicates."""
    raw = value.encode("utf-8", "surrogatepass")
    out: list[str] = [value]

    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    out += [std, std.rstrip("="), url, url.rstrip("=")]
    for core in base64_cores(raw):
        if len(core) >= MIN_CORE_LENGTH:
            c = core.decode()
            out += [c, c.replace("+", "-").replace("/", "_")]

    hexed = binascii.hexlify(raw).decode()
    out += [hexed, hexed.upper()]

    for pct in (quote(raw, safe=""), quote(raw), quote_plus(raw), quote_plus(raw, safe="/")):
        out += [pct, _PCT.sub(lambda m: m.group(0).lower(), pct)]

    for escaped in (json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]):
        out += [escaped, escaped.replace("/", "\\/")]

    out += [repr(value)[1:-1], repr(raw)[2:-1]]
    if "'" in value and '"' not in value:
        # repr() switched to double quotes; the single-quoted spelling escapes the quote.
        out.append(value.replace("\\", "\\\\").replace("'", "\\'"))

    return [f for f in dict.fromkeys(out) if f]
