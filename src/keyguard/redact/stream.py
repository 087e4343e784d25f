"""Streaming redaction: ``"".join(feed(c) for c in chunks) + flush() == redact(text)``.

The stream emits as soon as the output is decided and holds back only what it must:
the last ``longest literal form - 1`` characters (a known value may still be arriving),
the unfinished tail of a possible pattern match (checked with the ``regex`` module's
partial matching when it is installed; otherwise from the rule keyword on), and pattern
hits on the current line until the line ends (an inline ``keyguard:allow`` later on the
line would suppress them). With ``Redactor(pii=True)`` output is released per line.
``flush`` ends the text: a held-back tail that is an 8+ character prefix of a known
form (the stream stopped inside a value) is redacted, as ``Redactor.redact`` does.

``release`` ("idle release", for a writer that went quiet mid-line, e.g. at a prompt)
emits what can go out now without ending the text: everything held except a tail of
4+ characters that starts a known form (shorter prefixes such as ``AIz`` are ordinary
text) and the trailing run of a rule match that more text could complete (``ghp_ab``;
the keyword and separator of ``token: `` go out). What it keeps stays held, so the
stream goes on as before; a value whose first characters it let out (a 1-3 character
prefix, ``token: ``) is still found when the rest arrives and the rest is redacted.
It is outside the ``feed*+flush == redact`` invariant only in that it may emit
earlier, never differently, for text that contains no secret (for text that does, the
released head of a value shows in front of ``[REDACTED:NAME]``).
"""

from __future__ import annotations

import bisect
import threading
from typing import TYPE_CHECKING, Any

from keyguard.redact.redactor import _KNOWN, PRAGMA, _apply

if TYPE_CHECKING:
    from keyguard.redact.redactor import Redactor, _Compiled

__all__ = ["StreamRedactor"]

_CTX = 8  # emitted characters kept as left context (\b and friends)
# After a release: enough left context to find a match whose head went out (a rule's
# keyword, lead and separator) when its secret part arrives.
_SEAM_CTX = 256
_MIN_HELD_PREFIX = 4  # a release lets out a shorter prefix of a known form
# What ends the trailing run a release holds of an unfinished rule match: a secret part
# does not contain these, so what precedes the run (keyword, ": ") is not secret.
_SEPARATORS = frozenset(" \t\r\n\v\f'\"`:,;()<>[]{}")
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}

try:  # optional: exact "could this still become a match?" answers
    import regex as _regex
except ImportError:  # pragma: no cover - exercised only without the regex module
    _regex = None


class _StreamPlan:
    """Per-snapshot data the stream needs (keywords, partial-match regexes, hold-back)."""

    def __init__(self, c: _Compiled) -> None:
        self.rules = c.rules
        kw_rules: dict[str, list[int]] = {}
        for i, rule in enumerate(c.rules):
            for kw in rule.keywords:
                kw_rules.setdefault(kw, []).append(i)
        self.kw_list = sorted(kw_rules)
        self.kw_rules = [kw_rules[k] for k in self.kw_list]
        self.kw_len = [len(k) for k in self.kw_list]
        self._hs_db = self._kw_proto = None
        self.fast_db = self._fast_proto = None
        self._local = threading.local()  # hyperscan scratch space is per thread
        self.n_main = 0
        if c.engine.name == "hyperscan" and self.kw_list:
            import hyperscan

            kw_exprs = [b"".join(b"\\x%02x" % ch for ch in k.encode()) for k in self.kw_list]
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            db.compile(
                expressions=kw_exprs,
                ids=list(range(len(kw_exprs))),
                elements=len(kw_exprs),
                flags=hyperscan.HS_FLAG_CASELESS,
            )
            self._hs_db, self._kw_proto = db, hyperscan.Scratch(db)
            # One scan per feed in the common case: everything the redactor looks for
            # plus the rule keywords. Any hit but a keyword sends the feed the slow way.
            main = list(getattr(c.engine, "hs_exprs", []))
            self.n_main = len(main)
            exprs = main + kw_exprs
            flags = list(c.engine.hs_flags) + [hyperscan.HS_FLAG_CASELESS] * len(kw_exprs)
            fast = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            fast.compile(
                expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags
            )
            self.fast_db, self._fast_proto = fast, hyperscan.Scratch(fast)
        kw_hold = max((r.lead + r.max_keyword for r in c.rules), default=1) - 1
        self.max_lead = max((r.lead for r in c.rules), default=0)
        self.hold = max(c.max_literal - 1, kw_hold, 0)
        self._partial: dict[int, Any] = {}
        self._c = c
        self._forms: list[str] | None = None  # sorted known forms, for release()

    def _scratch(self, which: str) -> Any:
        sc = getattr(self._local, which, None)
        if sc is None:
            sc = self._kw_proto.clone()
            setattr(self._local, which, sc)
        return sc

    def keywords(self, data: str, lo: int) -> list[tuple[int, int]]:
        """(position, keyword index) of every keyword occurrence at or after ``lo``."""
        if self._hs_db is not None:
            raw = data[lo:].encode("utf-8", "surrogatepass")
            found: list[tuple[int, int]] = []
            lens = self.kw_len

            def on_match(idx: int, start: int, end: int, flags: int, ctx: Any) -> None:
                found.append((end - lens[idx], idx))

            self._hs_db.scan(raw, match_event_handler=on_match, scratch=self._scratch("kw"))
            if found and len(raw) != len(data) - lo:
                # byte -> str offsets (rare: non-ASCII text in the tail)
                return [(lo + len(raw[:b].decode("utf-8", "ignore")), i) for b, i in found]
            return [(lo + b, i) for b, i in found]
        low = data.translate(_ASCII_LOWER)  # keeps offsets, unlike str.lower()
        out = []
        for i, kw in enumerate(self.kw_list):
            k = low.find(kw, lo)
            while k >= 0:
                out.append((k, i))
                k = low.find(kw, k + 1)
        return out

    def known_prefix_start(self, data: str, lo: int) -> int:
        """Earliest ``p >= lo`` such that ``data[p:]`` (4+ characters) starts a known
        form, else ``len(data)``. Only on release: a sorted list and bisection."""
        forms = self._forms
        if forms is None:
            c = self._c
            forms = self._forms = sorted(
                lit for lit, inf in zip(c.literals, c.info, strict=True) if inf[0] == _KNOWN
            )
        n = len(data)
        if not forms:
            return n
        for p in range(max(lo, n - self._c.max_literal), n - _MIN_HELD_PREFIX + 1):
            tail = data[p:]
            i = bisect.bisect_left(forms, tail)
            if i < len(forms) and forms[i].startswith(tail):
                return p
        return n

    def partial_rx(self, i: int) -> Any:
        rx = self._partial.get(i)
        if rx is None:
            rx = self._partial[i] = _regex.compile(self.rules[i].regex, _regex.ASCII | _regex.V0)
        return rx

    def pending(
        self,
        data: str,
        lo_any: int,
        lo_line: int,
        dead: set[tuple[int, int]],
        base: int,
        occurrences: list[tuple[int, int]] | None = None,
        *,
        release: bool = False,
    ) -> int:
        """Earliest start >= lo_* of a rule match that more text could still complete.

        ``dead`` holds (absolute start ``base + s``, rule) pairs already shown final.
        ``release``: the start of such a match's trailing run of non-separators instead
        (multi-line rules: the match start; without ``regex``: always the match start).
        """
        n = len(data)
        best = n
        run = -1
        if occurrences is None:
            occurrences = self.keywords(data, lo_any)
        occurrences.sort()
        for k, kwi in occurrences:
            if k - self.max_lead >= best:  # later keywords cannot start earlier matches
                break
            for i in self.kw_rules[kwi]:
                rule = self.rules[i]
                lo = lo_any if rule.multiline else lo_line
                if k < lo:
                    continue
                for s in range(max(lo, k - rule.lead), min(k, best - 1) + 1):
                    if _regex is None:
                        best = s
                        break
                    key = (base + s, i)
                    if key in dead:
                        continue
                    pm = self.partial_rx(i).match(data, s, partial=True)
                    if pm is not None and (pm.partial or pm.end() >= n):
                        if release and not rule.multiline:
                            if run < 0:
                                run = n
                                while run > 0 and data[run - 1] not in _SEPARATORS:
                                    run -= 1
                            best = min(best, max(s, run))
                        else:
                            best = s
                        break
                    # No match, or one that ended before the end of the text: more text
                    # cannot change that.
                    dead.add(key)
        return best


class StreamRedactor:
    """Incremental redaction of a text stream (one per stream; not thread-safe)."""

    def __init__(self, redactor: Redactor) -> None:
        self._r = redactor
        self._buf = ""
        self._ctx = ""
        self._line_pragma = False  # the emitted part of the current line holds the pragma
        self.redacted = 0  # spans replaced so far
        self._c: Any = None
        self._p: Any = None
        self._fast_sc: Any = None
        self._done = 0  # characters of input emitted so far
        self._dead: set[tuple[int, int]] = set()
        # The last emission was a release: a match may have begun in what went out.
        self._seam = False

    def _plan(self, c: _Compiled) -> _StreamPlan:
        if c is self._c:
            return self._p
        plan = getattr(c, "stream_plan", None)
        if plan is None:
            plan = c.stream_plan = _StreamPlan(c)  # type: ignore[attr-defined]
        self._c, self._p = c, plan
        # A stream is used by one thread at a time: its own scratch space.
        self._fast_sc = plan._fast_proto.clone() if plan.fast_db is not None else None
        return plan

    @property
    def pending(self) -> int:
        """How many characters are held back."""
        return len(self._buf)

    def feed(self, chunk: str) -> str:
        if not isinstance(chunk, str):
            raise TypeError(f"feed() takes str, not {type(chunk).__name__}")
        buf = self._buf + chunk
        c = self._r._snapshot()
        plan = self._plan(c)
        if len(buf) <= plan.hold:
            self._buf = buf
            return ""
        if plan.fast_db is not None and not self._r.pii and not self._seam:
            out = self._fast(buf, plan)
            if out is not None:
                return out
        return self._emit(buf, c, plan, final=False)

    def _fast(self, buf: str, plan: _StreamPlan) -> str | None:
        """The common case: nothing but (maybe) rule keywords in the buffer. None = slow."""
        ctx = self._ctx
        data = ctx + buf
        raw = data.encode("utf-8", "surrogatepass")
        if len(raw) != len(data):
            return None
        skip = len(ctx)
        n_main = plan.n_main
        lens = plan.kw_len
        kws: list[tuple[int, int]] = []
        other: list[int] = []

        def on_match(idx: int, start: int, end: int, flags: int, _c: Any) -> None:
            if idx < n_main:
                other.append(idx)
            else:
                k = idx - n_main
                if end - lens[k] >= skip:
                    kws.append((end - lens[k], k))

        plan.fast_db.scan(raw, match_event_handler=on_match, scratch=self._fast_sc)
        if other:
            return None
        n = len(data)
        cut = n - plan.hold
        if kws:
            last_nl = data.rfind("\n")
            base = self._done - skip
            lo_line = max(skip, last_nl + 1)
            cut = min(cut, plan.pending(data, skip, lo_line, self._dead, base, kws))
        if cut <= skip:
            self._buf = buf
            return ""
        out = data[skip:cut]
        if "\n" in out:
            self._line_pragma = False
        self._ctx = data[max(0, cut - _CTX) : cut]
        self._buf = data[cut:]
        self._done += cut - skip
        return out

    def flush(self) -> str:
        """Release everything held (end of stream); the stream can be reused afterwards."""
        buf = self._buf
        out = self._emit(buf, None, None, final=True) if buf else ""
        self._buf = self._ctx = ""
        self._line_pragma = False
        self._seam = False
        self._done = 0
        self._dead.clear()
        return out

    def release(self) -> str:
        """Emit what is safe now without ending the stream (the writer went quiet).

        Keeps held only a tail that could still become a secret: 4+ characters that
        start a known form, or the unfinished run of a rule match (see the module
        docstring). Later ``feed``/``flush`` calls go on as if nothing happened, except
        that a value whose head this let out has the rest redacted when it arrives.
        With ``Redactor(pii=True)`` only whole lines go out, as with ``feed``.
        """
        if not self._buf:
            return ""
        c = self._r._snapshot()
        return self._emit(self._buf, c, self._plan(c), final=False, release=True)

    def _emit(
        self, buf: str, c: Any, plan: _StreamPlan | None, *, final: bool, release: bool = False
    ) -> str:
        ctx = self._ctx
        data = ctx + buf
        skip = len(ctx)
        seam = self._seam
        scan = self._r._scan(
            data, skip=skip, pragma_first_line=self._line_pragma, end=final, straddle=seam
        )
        n = len(data)
        if final:
            cut = n
        else:
            assert plan is not None
            last_nl = data.rfind("\n")
            # After a release, a match may have started in the released text.
            lo = 0 if seam else skip
            if release:
                # Pattern hits on the line go out redacted now, even though a pragma
                # later on the line would have let them through (safe side).
                cut = plan.known_prefix_start(data, lo)
            else:
                cut = n - plan.hold
                if scan.open_patterns:
                    cut = min(cut, *scan.open_patterns)
            base = self._done - skip
            cut = min(
                cut,
                plan.pending(data, lo, max(lo, last_nl + 1), self._dead, base, release=release),
            )
            if self._r.pii:
                cut = min(cut, last_nl + 1)
            intervals = [(s, e) for s, e, *_ in scan.spans]
            intervals += scan.rule_extents + scan.marks
            changed = True
            while changed:
                changed = False
                for s, e in intervals:
                    if s < cut < e:
                        cut = s
                        changed = True
            if cut <= skip:
                self._buf = buf
                return ""
        emitted = data[skip:cut]
        spans = [(s - skip, e - skip, *rest) for s, e, *rest in scan.spans if e <= cut]
        out = _apply(emitted, spans) if spans else emitted
        self.redacted += len(spans)
        if self._r.pii:
            out = self._r._redact_pii(out)
        nl = emitted.rfind("\n")
        if nl >= 0:
            self._line_pragma = PRAGMA in emitted[nl + 1 :]
        elif not self._line_pragma:
            self._line_pragma = PRAGMA in emitted
        self._ctx = data[max(0, cut - (_SEAM_CTX if release else _CTX)) : cut]
        self._seam = release
        self._buf = data[cut:]
        self._done += cut - skip
        if len(self._dead) > 4096:
            self._dead = {k for k in self._dead if k[0] >= self._done}
        return out
