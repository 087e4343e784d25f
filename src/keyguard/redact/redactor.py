"""The Redactor: known values in every form + pattern rules -> ``[REDACTED:NAME]``.

Semantics:

* known values (``add_secret``) and their encoded forms become ``[REDACTED:NAME]``;
  rule hits become ``[REDACTED:<rule-id>]`` (only the rule's secret group is replaced);
* overlapping hits are merged: the union of their spans is replaced once, labelled by
  the longest member (a known value before a rule on a tie, then the first rule);
* ``keyguard:allow`` on a line suppresses *pattern* hits on that line; known values
  are always redacted (a value we know is a leak wherever it appears);
* registered placeholders (``add_placeholder``) and placeholders minted by this process
  (``keyguard.secret.placeholder_for``) are never redacted nor reported;
* findings carry a masked form and a fingerprint, never the value (for a known value
  the fingerprint is that of the value, i.e. ``Secret.fingerprint``);
* a text that ENDS with a prefix of 8+ characters of a known form (a stream cut inside
  a value) has that tail replaced as ``[REDACTED:NAME]`` too: ``redact`` and a stream's
  ``flush`` agree, so any chunking still gives ``redact(whole)``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyguard.redact.engine import Engine, make_engine
from keyguard.redact.forms import forms
from keyguard.redact.rules import Rule, load_rules
from keyguard.secret import Secret, fingerprint, mask, parse_placeholder

if TYPE_CHECKING:
    from keyguard.redact.stream import StreamRedactor

__all__ = ["MIN_SECRET_LENGTH", "PRAGMA", "Finding", "Redactor"]

MIN_SECRET_LENGTH = 8
PRAGMA = "keyguard:allow"
_KNOWN, _PLACEHOLDER, _PRAGMA = 0, 1, 2
_PLACEHOLDER_RULE = Rule(
    id="keyguard-placeholder",
    description="a placeholder minted by this process (never redacted)",
    regex=r"kg_ph_[A-Za-z_][A-Za-z0-9_]*_[0-9a-f]{20}",
    keywords=("kg_ph_",),
    source="<builtin>",
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One redacted span. Carries a masked form and a fingerprint, never the value."""

    start: int
    end: int
    name: str
    kind: str  # "known" | "pattern" | "pii"
    masked: str
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "name": self.name,
            "kind": self.kind,
            "masked": self.masked,
            "fingerprint": self.fingerprint,
        }


# A resolved span: start, end, label, kind, the matched secret (for mask/fingerprint).
Span = tuple[int, int, str, str, str]


@dataclass
class Scan:
    """Everything one pass over a buffer found (the stream needs more than the spans)."""

    spans: list[Span]  # merged, sorted, to replace
    rule_extents: list[tuple[int, int]]  # every rule regex match, accepted or not
    marks: list[tuple[int, int]]  # placeholder and pragma occurrences
    open_patterns: list[int]  # starts of pattern spans a later pragma could still suppress


class _Tails:
    """Proper prefixes (>= ``MIN_SECRET_LENGTH`` characters) of known forms at the end of
    a text: a stream cut inside a value (a reply stopped by max_tokens, a killed child)
    must not release the part that arrived.

    Indexed by each form's first 8 characters (str or bytes forms, one instance each).
    ``find`` is cheap on the common "no" (it runs on every ``redact``): the text's last
    ``_END`` characters must be the last ones of some such prefix (a bitmap of their
    hashes, about 16 bits per prefix: a few percent false positives), and only then are
    the last ``longest form - 1`` positions looked at.
    """

    __slots__ = ("bitmap", "heads", "is_bytes", "mask", "window")

    _END = 4

    def __init__(self, known: Iterable[tuple[str, str, str]], is_bytes: bool) -> None:
        heads: dict[Any, list[tuple[Any, str, str]]] = {}
        ends: list[Any] = []
        longest = 0
        k = self._END
        for form, name, value in known:
            f: Any = form.encode("utf-8", "surrogatepass") if is_bytes else form
            if len(f) <= MIN_SECRET_LENGTH:
                continue  # no proper prefix is long enough
            heads.setdefault(f[:MIN_SECRET_LENGTH], []).append((f, name, value))
            ends += [f[end - k : end] for end in range(MIN_SECRET_LENGTH, len(f))]
            longest = max(longest, len(f))
        bits = 1 << max(12, (16 * len(ends)).bit_length())
        bitmap = bytearray(bits >> 3)
        mask = bits - 1
        for end in ends:
            h = hash(end) & mask
            bitmap[h >> 3] |= 1 << (h & 7)
        self.is_bytes = is_bytes
        self.heads = heads
        self.bitmap, self.mask = bytes(bitmap), mask
        self.window = longest - 1

    def find(self, data: Any, skip: int = 0) -> tuple[int, str, str] | None:
        """(start, name, value) of the longest such prefix ending ``data`` at or after
        ``skip``, else None."""
        n = len(data)
        if n < MIN_SECRET_LENGTH or not self.heads:
            return None
        h = hash(data[-self._END :]) & self.mask
        if not (self.bitmap[h >> 3] >> (h & 7)) & 1:
            return None
        lo = max(skip, n - self.window)
        tail = data[lo:]
        heads = self.heads
        for i in range(len(tail) - MIN_SECRET_LENGTH + 1):  # earliest first: longest wins
            group = heads.get(tail[i : i + MIN_SECRET_LENGTH])
            if not group:
                continue
            rest = tail[i:]
            for form, name, value in group:
                if form.startswith(rest) and (
                    not self.is_bytes or len(rest.decode("utf-8", "replace")) >= MIN_SECRET_LENGTH
                ):
                    return lo + i, name, value
        return None


class _Compiled:
    """An immutable snapshot of what the redactor looks for, with its engine."""

    def __init__(
        self,
        known: Sequence[tuple[str, str]],
        placeholders: Iterable[str],
        rules: Sequence[Rule],
        engine: str | None,
        allow: Sequence[re.Pattern[str]] = (),
    ) -> None:
        info: dict[str, tuple[int, str, str]] = {PRAGMA: (_PRAGMA, "", "")}
        placeholders = list(placeholders)
        self.placeholders = frozenset(placeholders)
        for p in placeholders:
            info.setdefault(p, (_PLACEHOLDER, "", ""))
        for name, value in known:
            for f in forms(value):
                info.setdefault(f, (_KNOWN, name, value))
        self.literals = list(info)
        self.info = list(info.values())
        self.rules = [*rules, _PLACEHOLDER_RULE]
        self.ph_rule = len(self.rules) - 1
        self.engine: Engine = make_engine(self.literals, self.rules, engine)
        self._accepts = [self._make_accept(i, allow) for i in range(len(self.rules))]
        self.max_literal = max(len(s) for s in self.literals)
        self.has_known = bool(known)
        self._tails: list[_Tails | None] = [None, None]  # str, bytes

    def _make_accept(self, i: int, allow: Sequence[re.Pattern[str]]) -> Callable[[Any], bool]:
        rule = self.rules[i]
        is_placeholder = i == self.ph_rule

        def accept(secret: Any) -> bool:
            if isinstance(secret, bytes):
                secret = secret.decode("utf-8", "replace")
            if is_placeholder:
                # A registered placeholder is known good: skip re-checking its HMAC.
                return secret in self.placeholders or parse_placeholder(secret) is not None
            if not rule.accepts(secret):
                return False
            return not (allow and any(a.search(secret) for a in allow))

        return accept

    def acceptor(self, i: int) -> Callable[[Any], bool]:
        return self._accepts[i]

    def tails(self, is_bytes: bool) -> _Tails:
        """The end-of-text prefix index, built on first use (the edge's request checks,
        ``contains_known``, never need it)."""
        index = self._tails[is_bytes]
        if index is None:
            known = [
                (lit, name, value)
                for lit, (kind, name, value) in zip(self.literals, self.info, strict=True)
                if kind == _KNOWN
            ]
            index = self._tails[is_bytes] = _Tails(known, is_bytes)
        return index


class Redactor:
    """Finds and replaces secrets. Thread-safe; compiled lazily once per change."""

    def __init__(
        self,
        rules: Sequence[str | Path] | None = None,
        default_rules: bool = True,
        pii: bool = False,
        *,
        allow: Sequence[str] = (),
        engine: str | None = None,
    ) -> None:
        """``rules``: extra rule files (TOML) after the packaged ones (``default_rules``);
        ``allow``: regexes; a pattern hit whose secret matches one is not a hit (known
        values are always redacted); ``pii``: also redact PII through presidio;
        ``engine``: ``hyperscan`` | ``re2`` | ``python`` (default: ``KEYGUARD_ENGINE`` or the
        fastest available)."""
        self.rules: list[Rule] = load_rules(rules, default=default_rules)
        try:
            self._allow = [re.compile(a) for a in allow]
        except re.error as exc:
            raise ValueError(f"invalid allow pattern: {exc}") from None
        self.pii = pii
        self._engine_name = engine
        self._secrets: dict[str, str] = {}
        self._retired: list[tuple[str, str, float]] = []  # name, value, monotonic expiry
        self._placeholders: set[str] = set()
        self._lock = threading.RLock()
        self._compiled: _Compiled | None = None
        self._next_expiry = float("inf")
        self._pii_analyzer: Any = None

    # -- the known set ---------------------------------------------------------------
    def add_secret(self, name: str, value: str | Secret, *, force: bool = False) -> None:
        """Redact ``value`` (and its encoded forms) as ``[REDACTED:name]`` from now on.

        A value shorter than 8 characters is refused unless ``force=True``; a new value
        for a known name retires the old one with the default grace period.
        """
        raw = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(raw, str):
            raise TypeError(f"secret {name!r}: value must be str or Secret")
        if not raw:
            raise ValueError(f"secret {name!r} is empty; an empty value cannot be redacted")
        if len(raw) < MIN_SECRET_LENGTH and not force:
            raise ValueError(
                f"secret {name!r} is shorter than {MIN_SECRET_LENGTH} characters; refusing to "
                "redact it everywhere (pass force=True to insist)"
            )
        with self._lock:
            old = self._secrets.get(name)
            if old == raw:
                return
            if old is not None:
                self._retire(name, old, 300.0)
            self._secrets[name] = raw
            self._compiled = None

    def remove_secret(self, name: str, *, grace: float = 300.0) -> None:
        """Stop knowing ``name``; its value stays redacted for ``grace`` seconds."""
        with self._lock:
            old = self._secrets.pop(name, None)
            if old is None:
                return
            if grace > 0:
                self._retire(name, old, grace)
            self._compiled = None

    def _retire(self, name: str, value: str, grace: float) -> None:
        expiry = time.monotonic() + grace
        self._retired.append((name, value, expiry))
        self._next_expiry = min(self._next_expiry, expiry)

    def add_placeholder(self, placeholder: str) -> None:
        """Never redact nor report ``placeholder`` (a safe stand-in for a secret)."""
        with self._lock:
            if placeholder not in self._placeholders:
                self._placeholders.add(placeholder)
                self._compiled = None

    def names(self) -> list[str]:
        """Names of the secrets currently known (retired ones excluded)."""
        with self._lock:
            return sorted(self._secrets)

    @property
    def multiline_known(self) -> bool:
        """Whether a known value spans lines (line-by-line redaction would miss it)."""
        with self._lock:
            return any("\n" in v for v in self._secrets.values())

    def __len__(self) -> int:
        return len(self._secrets)

    def _snapshot(self) -> _Compiled:
        compiled = self._compiled
        if compiled is not None and time.monotonic() < self._next_expiry:
            return compiled
        with self._lock:
            now = time.monotonic()
            if self._compiled is None or now >= self._next_expiry:
                self._retired = [r for r in self._retired if r[2] > now]
                self._next_expiry = min((r[2] for r in self._retired), default=float("inf"))
                # Current values first: on a shared form, the current name is reported.
                known = list(self._secrets.items())
                known += [(n, v) for n, v, _ in self._retired]
                self._compiled = _Compiled(
                    known, sorted(self._placeholders), self.rules, self._engine_name, self._allow
                )
            return self._compiled

    @property
    def engine(self) -> str:
        return self._snapshot().engine.name

    # -- scanning ----------------------------------------------------------------------
    def _scan(
        self,
        data: str | bytes,
        *,
        skip: int = 0,
        pragma_first_line: bool = False,
        end: bool = True,
        straddle: bool = False,
    ) -> Scan:
        """Resolve ``data``; hits starting before ``skip`` (left context) are ignored.

        ``end``: ``data`` ends the text, so a known form cut short at its end (a
        prefix of 8+ characters) is a hit too (a stream passes False until it flushes).
        ``straddle``: a hit that starts before ``skip`` and ends after it is kept, cut to
        start at ``skip`` (a stream's idle release let its first characters out).
        """
        c = self._snapshot()
        lits, rhits = c.engine.scan(data, c.acceptor)
        is_bytes = isinstance(data, bytes)
        nl = b"\n" if is_bytes else "\n"
        info = c.info
        # start, end, kind order (0 known, 1 pattern), tie-break index, label, secret
        cands: list[tuple[int, int, int, int, str, str]] = []
        marks: list[tuple[int, int]] = []
        pragmas: list[int] = []
        for s, e, i in lits:
            kind, name, value = info[i]
            if kind == _KNOWN:
                if s >= skip:
                    cands.append((s, e, 0, i, name, value))
                elif straddle and e > skip:
                    cands.append((skip, e, 0, i, name, value))
            else:
                marks.append((s, e))
                if kind == _PRAGMA:
                    pragmas.append(s)
        rule_extents: list[tuple[int, int]] = []
        rules = c.rules
        for ri, s, e, ss, se, accepted in rhits:
            cs = ss
            if s < skip:
                if not straddle or e <= skip:
                    continue
                s, cs = skip, max(ss, skip)
            rule_extents.append((s, e))
            if not accepted or (cs != ss and se <= cs):  # or its secret was all let out
                continue
            if ri == c.ph_rule:
                marks.append((cs, se))
            else:
                secret = data[ss:se]
                if is_bytes:
                    secret = secret.decode("utf-8", "replace")
                cands.append((cs, se, 1, ri, rules[ri].id, secret))
        if end and c.has_known:
            cut = c.tails(is_bytes).find(data, 0 if straddle else skip)
            if cut is not None and len(data) > skip:
                # Ranked after every real literal hit on a tie (index past the literals).
                cands.append((max(cut[0], skip), len(data), 0, len(info), cut[1], cut[2]))
        open_patterns: list[int] = []
        if not cands:
            return Scan([], rule_extents, marks, open_patterns)
        if marks:
            cands = [x for x in cands if not _shadowed(x, marks)]
        if pragmas or pragma_first_line:
            kept = []
            first_nl = data.find(nl, skip)
            for x in cands:
                if x[2] == 1:
                    ls = data.rfind(nl, 0, x[0]) + 1
                    le = data.find(nl, x[0])
                    le = len(data) if le < 0 else le
                    if pragma_first_line and (first_nl < 0 or x[0] <= first_nl):
                        continue
                    if any(ls <= p < le for p in pragmas):
                        continue
                kept.append(x)
            cands = kept
        last_nl = data.rfind(nl) if cands else -1
        open_patterns = [x[0] for x in cands if x[2] == 1 and x[0] > last_nl]
        return Scan(_merge(cands), rule_extents, marks, open_patterns)

    # -- public API --------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """``text`` with every known value (any form) and rule hit replaced."""
        if not isinstance(text, str):
            raise TypeError(f"redact() takes str, not {type(text).__name__}; use redact_bytes")
        spans = self._scan(text).spans
        out = _apply(text, spans) if spans else text
        if self.pii:
            out = self._redact_pii(out)
        return out

    def certainly_clean(self, data: bytes) -> bool:
        """True when :meth:`redact` of ``data`` decoded as latin-1 (or ASCII) would
        certainly return it unchanged, found by one cheap pass (no rule is confirmed);
        False means "redact to know". Only ASCII ``data`` can be declared clean."""
        if self.pii or not data.isascii():
            return False
        c = self._snapshot()
        if not c.engine.quiet(data):
            return False
        return not c.has_known or c.tails(True).find(data) is None

    def redact_bytes(self, data: bytes) -> bytes:
        """Like :meth:`redact` for bytes (need not be valid UTF-8)."""
        data = bytes(data)
        spans = self._scan(data).spans
        if not spans:
            return data
        parts = []
        pos = 0
        for s, e, label, _kind, _secret in spans:
            parts.append(data[pos:s])
            parts.append(b"[REDACTED:" + label.encode() + b"]")
            pos = e
        parts.append(data[pos:])
        return b"".join(parts)

    def redact_obj(self, obj: Any) -> Any:
        """A new object of the same shape with every str/bytes inside redacted."""
        from keyguard.redact.structured import redact_obj

        return redact_obj(self, obj)

    def findings(self, text: str | bytes) -> list[Finding]:
        """The spans :meth:`redact` replaces (str offsets for str, byte offsets for bytes)."""
        out = [
            Finding(s, e, label, kind, mask(secret), fingerprint(secret))
            for s, e, label, kind, secret in self._scan(text).spans
        ]
        if self.pii and isinstance(text, str):
            out += self._pii_findings(text)
            out.sort(key=lambda f: f.start)
        return out

    def contains_known(self, data: str | bytes) -> list[str]:
        """Names of known secrets present in ``data`` in any form (placeholders excluded)."""
        c = self._snapshot()
        if not c.has_known:
            return []
        # Literals only: rules cannot name a known secret, and a placeholder that shadows
        # a value is one of the registered literals (the edge runs this on every request).
        lits = c.engine.literal_hits(data)
        if not lits:
            return []
        info = c.info
        known = [(s, e, info[i][1]) for s, e, i in lits if info[i][0] == _KNOWN]
        if not known:
            return []
        marks = [(s, e) for s, e, i in lits if info[i][0] == _PLACEHOLDER]
        return sorted({n for s, e, n in known if not (marks and _shadowed((s, e, 0), marks))})

    def stream(self) -> StreamRedactor:
        from keyguard.redact.stream import StreamRedactor

        return StreamRedactor(self)

    # -- PII (optional, through presidio) -----------------------------------------------
    def _pii_results(self, text: str) -> list[Any]:
        if self._pii_analyzer is None:
            from keyguard.integrations.presidio import pii_analyzer

            self._pii_analyzer = pii_analyzer()
        return self._pii_analyzer.analyze(text=text, language="en")

    def _redact_pii(self, text: str) -> str:
        results = self._pii_results(text)
        spans = _merge([(r.start, r.end, 2, 0, r.entity_type, "") for r in results])
        # Our own placeholders ("[REDACTED:X]") are not PII.
        return _apply(text, spans) if spans else text

    def _pii_findings(self, text: str) -> list[Finding]:
        spans = _merge([(r.start, r.end, 2, 0, r.entity_type, "") for r in self._pii_results(text)])
        return [
            Finding(s, e, lab, "pii", mask(text[s:e]), fingerprint(text[s:e]))
            for s, e, lab, _k, _v in spans
        ]


def _shadowed(cand: tuple, marks: list[tuple[int, int]]) -> bool:
    """A known hit inside a placeholder, or a pattern hit touching one, is not a leak."""
    s, e, kind = cand[0], cand[1], cand[2]
    for ms, me in marks:
        if kind == 0:
            if ms <= s and e <= me:
                return True
        elif s < me and ms < e:
            return True
    return False


_KIND = ("known", "pattern", "pii")


def _merge(cands: list[tuple[int, int, int, int, str, str]]) -> list[Span]:
    """Union of overlapping spans; each union is labelled by its longest member."""
    cands.sort()
    out: list[Span] = []
    group_s = group_e = -1
    best: tuple | None = None
    for c in cands:
        s, e = c[0], c[1]
        if best is not None and s < group_e:
            if e > group_e:
                group_e = e
            if (c[1] - c[0], -c[2], -c[3]) > (best[1] - best[0], -best[2], -best[3]):
                best = c
            continue
        if best is not None:
            out.append((group_s, group_e, best[4], _KIND[best[2]], best[5]))
        group_s, group_e, best = s, e, c
    if best is not None:
        out.append((group_s, group_e, best[4], _KIND[best[2]], best[5]))
    return out


def _apply(text: str, spans: list[Span]) -> str:
    parts = []
    pos = 0
    for s, e, label, _kind, _secret in spans:
        parts.append(text[pos:s])
        parts.append(f"[REDACTED:{label}]")
        pos = e
    parts.append(text[pos:])
    return "".join(parts)
