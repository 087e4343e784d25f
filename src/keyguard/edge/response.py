"""Response scrubbing: a server that echoes a key never hands it back to the caller.

Two paths, same result (the stream redactor's contract: for any chunking, the output
equals ``redact`` of the whole):

* a body whose announced size is at most ``WHOLE_BODY_LIMIT`` is read at once by the
  transport and scrubbed together with the headers in one redactor pass
  (``scrub_whole``); its ``Content-Length`` is corrected if the body changed;
* any other body is scrubbed as it streams (``BodyScrubber``, a value split across
  chunks is still caught) and loses ``Content-Length`` (its final size is unknown).

Bodies are redacted as text decoded with latin-1: every byte maps to one character
and back, so binary bodies pass byte-exact and the (ASCII) key forms match as they are
on the wire. A compressed body is decompressed first (by the transport) and
``Content-Encoding`` dropped with it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

from keyguard.audit import Auditor

__all__ = [
    "WHOLE_BODY_LIMIT",
    "BodyScrubber",
    "body_framing",
    "report",
    "scrub_headers",
    "scrub_whole",
    "strip_body_headers",
    "whole_is_clean",
]

# Bodies up to this size are read whole: one scan instead of a stream's per-chunk ones.
WHOLE_BODY_LIMIT = 64 * 1024

_Headers = list[tuple[bytes, bytes]]
_MARKER = re.compile(r"\[REDACTED:([^\]\s]{1,128})\]")
_MARK = "[REDACTED:"
_SEP = "\x00"  # between header values: neither a key nor a rule spans it
_BODY_SEP = "\n\x00\x00\n"
_SEP_B, _BODY_SEP_B = _SEP.encode(), _BODY_SEP.encode()
_IDENTITY = (b"", b"identity")


def _counts(before: str, after: str) -> Counter[str]:
    """Redaction markers the redactor added (a body may contain markers already)."""
    if _MARK not in after:
        return Counter()
    added = Counter(_MARKER.findall(after))
    if _MARK in before:
        added -= Counter(_MARKER.findall(before))
    return added


def _clean(redactor: Any, data: bytes) -> bool:
    """Whether one cheap pass proves the redactor would change nothing in ``data``
    (the common case: a response that echoes nothing is not scanned twice)."""
    clean = getattr(redactor, "certainly_clean", None)
    return clean is not None and clean(data)


def body_framing(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bool, int | None]:
    """(``Content-Encoding`` other than identity?, announced ``Content-Length``)."""
    encoded, length = False, None
    for key, value in headers:
        lower = key.lower()
        if lower == b"content-length":
            value = value.strip()
            length = int(value) if value.isdigit() else None
        elif lower == b"content-encoding":
            encoded = value.strip().lower() not in _IDENTITY
    return encoded, length


def scrub_headers(
    redactor: Any, headers: Iterable[tuple[bytes, bytes]]
) -> tuple[_Headers, Counter[str]]:
    """Return the headers with known values and secret-shaped strings replaced."""
    items = list(headers)
    raw = _SEP_B.join([v for _, v in items])
    if _clean(redactor, raw):
        return items, Counter()
    joined = raw.decode("latin-1")
    scrubbed = redactor.redact(joined)
    if scrubbed == joined:
        return items, Counter()
    return _replace_values(redactor, items, scrubbed), _counts(joined, scrubbed)


def _replace_values(redactor: Any, items: _Headers, scrubbed: str) -> _Headers:
    values = scrubbed.split(_SEP)
    if len(values) != len(items):  # a value held a NUL: scrub one by one
        values = [redactor.redact(v.decode("latin-1")) for _, v in items]
    out = []
    for (key, value), new in zip(items, values, strict=True):
        text = value.decode("latin-1")
        out.append((key, value if new == text else new.encode("latin-1", "replace")))
    return out


def strip_body_headers(headers: Iterable[tuple[bytes, bytes]], *, decoded: bool) -> _Headers:
    """Drop ``Content-Length`` (the body may change) and, if decoded, ``Content-Encoding``."""
    drop = (b"content-length", b"content-encoding") if decoded else (b"content-length",)
    return [(k, v) for k, v in headers if k.lower() not in drop]


def whole_is_clean(redactor: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """True when ``scrub_whole`` would certainly change nothing (one cheap pass)."""
    return _clean(redactor, _SEP_B.join([v for _, v in headers]) + _BODY_SEP_B + body)


def scrub_whole(
    redactor: Any, headers: Iterable[tuple[bytes, bytes]], body: bytes, *, decoded: bool
) -> tuple[_Headers, bytes, Counter[str]]:
    """Scrub headers and a complete body in one redactor pass.

    ``Content-Length`` is set to the new size when the body changed; ``decoded``: the
    body was decompressed, so ``Content-Encoding`` goes and the length is set too.
    Unchanged, the headers stay as they were (a HEAD response keeps its length), and
    ``headers`` itself is returned when it is a list.
    """
    items = headers if isinstance(headers, list) else list(headers)
    original = body
    head_b = _SEP_B.join([v for _, v in items])
    joined_b = head_b + _BODY_SEP_B + body
    counts = Counter[str]()
    if _clean(redactor, joined_b):
        scrubbed = joined = ""
    else:
        head, text = head_b.decode("latin-1"), body.decode("latin-1")
        joined = joined_b.decode("latin-1")
        scrubbed = redactor.redact(joined)
    if scrubbed != joined:
        counts = _counts(joined, scrubbed)
        new_head, sep, new_text = scrubbed.partition(_BODY_SEP)
        if not sep or _BODY_SEP in new_text or _BODY_SEP in text:
            new_head, new_text = redactor.redact(head), redactor.redact(text)
        if new_head != head:
            items = _replace_values(redactor, items, new_head)
        if new_text != text:
            body = new_text.encode("latin-1", "replace")
    if decoded or body is not original:
        items = set_length(items, len(body), decoded=decoded)
    return items, body, counts


def set_length(headers: _Headers, length: int, *, decoded: bool) -> _Headers:
    """``headers`` with ``Content-Length: length`` (and no ``Content-Encoding`` if decoded)."""
    kept = strip_body_headers(headers, decoded=decoded)
    kept.append((b"Content-Length", str(length).encode()))
    return kept


def report(auditor: Auditor | None, counts: Counter[str], where: dict[str, Any] | None) -> None:
    """One ``redacted`` event per name (secret or rule id), with its count."""
    if auditor is None:
        return
    for name, count in counts.items():
        auditor.emit("redacted", name, count=count, detail="response", **(where or {}))


class BodyScrubber:
    """Feeds body chunks through the redactor's stream; emits ``redacted`` events at the end."""

    def __init__(
        self,
        redactor: Any,
        auditor: Auditor | None = None,
        where: dict[str, Any] | None = None,
        initial: Counter[str] | None = None,
    ) -> None:
        self._stream = redactor.stream()
        self._auditor = auditor
        self._where = where
        self._counts: Counter[str] = Counter(initial or ())
        self._done = False

    def _out(self, text: str) -> bytes:
        if _MARK in text:
            # A marker already in the input is counted too: streaming cannot tell.
            self._counts.update(_MARKER.findall(text))
        return text.encode("latin-1", "replace")

    def feed(self, chunk: bytes) -> bytes:
        return self._out(self._stream.feed(chunk.decode("latin-1")))

    def flush(self) -> bytes:
        out = self._out(self._stream.flush())
        self.finish()
        return out

    def finish(self) -> None:
        """Report what was scrubbed (once; also when the caller stops reading early)."""
        if not self._done:
            self._done = True
            report(self._auditor, self._counts, self._where)

    def iterate(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        try:
            for chunk in chunks:
                out = self.feed(chunk)
                if out:
                    yield out
            tail = self.flush()
            if tail:
                yield tail
        finally:
            self.finish()

    async def aiterate(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                out = self.feed(chunk)
                if out:
                    yield out
            tail = self.flush()
            if tail:
                yield tail
        finally:
            self.finish()
