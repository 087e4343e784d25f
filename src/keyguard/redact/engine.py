"""Matchers: find literal forms and rule matches in text, with str (or byte) offsets.

Engines (``KEYGUARD_ENGINE`` = ``hyperscan`` | ``re2`` | ``python``; default: the first
one importable):

* ``hyperscan``: ONE block-mode database holds every literal form (byte-escaped, no
  SOM needed: start = end - length) and every rule (``HS_FLAG_SOM_LEFTMOST``; bounded
  repeats it refuses are rewritten to open ones). Its hits are candidate regions; the
  rule's Python regex run inside each region decides the exact match, so all engines
  agree. A rule hyperscan cannot compile at all falls back to the Python path.
* ``re2``: one leftmost-longest RE2 alternation of the literals; rules in Python ``re``.
* ``python``: a trie-shaped ``re`` alternation of the literals; rules in Python ``re``
  behind a keyword prefilter. Slow (a few MB/s) but dependency-free.

Every engine returns the same hits: for literals, every (start, longest end) pair, so
the union of spans is exact even when forms overlap; for rules, the ``finditer``
matches of the rule's regex.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from keyguard.redact.rules import Rule

__all__ = ["Engine", "LitHit", "RuleHit", "available_engines", "make_engine"]

LitHit = tuple[int, int, int]  # start, end, literal index
# rule index, start, end, secret start, secret end, accepted
RuleHit = tuple[int, int, int, int, int, bool]
# (rule index) -> (secret text -> is it a hit?); bytes secrets are decoded first
Acceptor = Callable[[int], Callable[[Any], bool]]
Accept = Callable[[Any], bool]

# How far past a candidate region the confirming regex may look (\b, trailing context).
_CONFIRM_SLACK = 64


def _trie_pattern(words: Sequence[str]) -> str:
    trie: dict[str, Any] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = True

    def build(node: dict[str, Any]) -> str:
        end = "" in node
        alts = [re.escape(ch) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if end:
            # Greedy optional: the longest literal at a start wins, shorter on backtrack.
            return body + "?" if len(alts) > 1 else "(?:" + body + ")?"
        return body

    return build(trie)


def _matches(
    rx: re.Pattern,
    text: Any,
    group: int,
    ok: Accept,
    start: int = 0,
    end: int | None = None,
) -> list[tuple[int, int, int, int, bool]]:
    """Leftmost matches of ``rx`` from ``start``; an accepted match is skipped over like
    ``finditer`` does, a rejected one (entropy, allowlist, check) only by one character so
    that it cannot hide a real match that overlaps it.

    With ``end`` (a candidate region), only matches starting before ``end`` count, and the
    first is found with ``rx`` anchored at ``start`` when possible (cheap), else by a
    search bounded near the region.
    """
    out = []
    n = len(text)
    p = start
    stop = n if end is None else end
    while p < stop:
        m = rx.match(text, p) if end is not None else None
        if m is None:
            limit = n if end is None else min(n, end + _CONFIRM_SLACK)
            m = rx.search(text, p, limit)
            if m is None or m.start() >= stop:
                break
            if end is not None:
                m = rx.match(text, m.start()) or m
        s, e = m.span()
        ss, se = m.span(group)
        accepted = ok(text[ss:se])
        out.append((s, e, ss, se, accepted))
        p = e if accepted and e > s else s + 1
    return out


def _confirm(rule: Rule, text: Any, regions: list[tuple[int, int]], rx: re.Pattern, ok: Accept):
    """The matches of ``_matches`` restricted to candidate regions (sorted, merged)."""
    out: list[tuple[int, int, int, int, bool]] = []
    pos = 0
    for start, end in regions:
        if pos >= end:
            continue
        found = _matches(rx, text, rule.secret_group, ok, max(start, pos), end)
        if found:
            out += found
            last = found[-1]
            pos = last[1] if last[4] and last[1] > last[0] else last[0] + 1
    return out


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    intervals.sort()
    merged: list[list[int]] = []
    for s, e in intervals:
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1][1] = e
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


class Engine:
    """Base: literals via ``_lit_hits``; rules via the keyword prefilter + Python ``re``."""

    name = "python"

    def __init__(self, literals: Sequence[str], rules: Sequence[Rule]) -> None:
        self.literals = list(literals)
        self.rules = list(rules)
        self.py_rules = list(range(len(self.rules)))  # rule indices scanned in Python
        self._index = {lit: i for i, lit in enumerate(self.literals)}
        self._index_b = {lit.encode("utf-8", "surrogatepass"): i for lit, i in self._index.items()}

    # -- literals ---------------------------------------------------------------
    @functools.cached_property
    def _lit_rx(self) -> re.Pattern[str] | None:
        return re.compile(_trie_pattern(self.literals)) if self.literals else None

    @functools.cached_property
    def _lit_rx_b(self) -> re.Pattern[bytes] | None:
        if not self.literals:
            return None
        words = [lit.encode("utf-8", "surrogatepass").decode("latin-1") for lit in self.literals]
        return re.compile(_trie_pattern(words).encode("latin-1"))

    def _lit_hits(self, data: str | bytes) -> list[LitHit]:
        is_bytes = isinstance(data, bytes)
        rx = self._lit_rx_b if is_bytes else self._lit_rx
        if rx is None:
            return []
        index = self._index_b if is_bytes else self._index
        hits = []
        search = rx.search
        m = search(data)
        while m is not None:
            s, e = m.span()
            hits.append((s, e, index[m.group()]))
            m = search(data, s + 1)
        return hits

    # -- rules ------------------------------------------------------------------
    def _py_rule_hits(
        self, data: str | bytes, indices: Sequence[int], acceptor: Acceptor
    ) -> list[RuleHit]:
        if not indices:
            return []
        is_bytes = isinstance(data, bytes)
        low = data.lower()
        hits: list[RuleHit] = []
        for i in indices:
            rule = self.rules[i]
            kws = [k.encode() for k in rule.keywords] if is_bytes else rule.keywords
            if kws and not any(k in low for k in kws):
                continue
            rx = rule.compiled_bytes if is_bytes else rule.compiled
            for h in _matches(rx, data, rule.secret_group, acceptor(i)):
                hits.append((i, *h))
        return hits

    def scan(self, data: str | bytes, acceptor: Acceptor) -> tuple[list[LitHit], list[RuleHit]]:
        """Literal and rule hits; offsets index ``data`` (str or bytes)."""
        return self._lit_hits(data), self._py_rule_hits(data, self.py_rules, acceptor)

    def literal_hits(self, data: str | bytes) -> list[LitHit]:
        """Literal hits only (no rule runs). Offsets are consistent within one call but,
        for a non-ASCII str, may be byte offsets: fit for comparing hits, not slicing."""
        return self._lit_hits(data)

    def quiet(self, raw: bytes) -> bool:
        """True only if no literal and no rule candidate occurs in ``raw`` (so ``scan``
        of it, or of its ASCII text, finds nothing); False means "scan to know"."""
        return False


class Re2Engine(Engine):
    name = "re2"

    @functools.cached_property
    def _re2(self) -> Any:
        import re2

        opts = re2.Options()
        opts.longest_match = True
        opts.max_mem = 1 << 30
        opts.encoding = re2.Options.Encoding.LATIN1
        words = [lit.encode("utf-8", "surrogatepass") for lit in self.literals]
        pattern = b"|".join(re.escape(w) for w in words)
        return re2.compile(pattern, opts)

    def _lit_hits(self, data: str | bytes) -> list[LitHit]:
        if not self.literals:
            return []
        if isinstance(data, bytes):
            raw, to_str = data, None
        else:
            raw = data.encode("utf-8", "surrogatepass")
            to_str = None if len(raw) == len(data) else raw
        hits = []
        search = self._re2.search
        m = search(raw)
        while m is not None:
            s, e = m.span()
            hits.append((s, e, self._index_b[m.group()]))
            m = search(raw, s + 1)
        if to_str is not None:
            hits = _to_str_offsets(to_str, hits)
        return hits


def _to_str_offsets(raw: bytes, hits: list[Any]) -> list[Any]:
    """Map byte offsets (fields 1.. of each tuple after the first int for rule hits) to str."""
    offsets = sorted({o for h in hits for o in h[:2]})
    table: dict[int, int] = {}
    prev_b = prev_s = 0
    for off in offsets:
        prev_s += len(raw[prev_b:off].decode("utf-8", "surrogatepass"))
        prev_b = off
        table[off] = prev_s
    return [(table[h[0]], table[h[1]], *h[2:]) for h in hits]


def _char_boundary(raw: bytes, off: int) -> int:
    while off < len(raw) and (raw[off] & 0xC0) == 0x80:
        off += 1
    return off


# A trailing repeat is cut to its minimum for hyperscan: the match *prefix* is enough to
# find the start (the Python regex then takes the exact span) and hyperscan reports one
# end per start instead of one per character of a long token.
_TRAILING_REPEAT = re.compile(r"\{(\d+),(\d*)\}$")


@functools.lru_cache(maxsize=512)
def _hs_expression(regex: str) -> bytes | None:
    """The hyperscan form of a rule regex, or None when hyperscan cannot take it."""
    import hyperscan

    base = _TRAILING_REPEAT.sub(r"{\1}", regex)
    candidates = [base, re.sub(r"\{(\d+),(\d+)\}", r"{\1,}", base)]
    for cand in candidates:
        expr = cand.replace("\\Z", "$").encode()
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            db.compile(
                expressions=[expr], ids=[0], elements=1, flags=hyperscan.HS_FLAG_SOM_LEFTMOST
            )
        except hyperscan.error:
            continue
        return expr
    return None


class HyperscanEngine(Engine):
    name = "hyperscan"

    def __init__(self, literals: Sequence[str], rules: Sequence[Rule]) -> None:
        import hyperscan

        super().__init__(literals, rules)
        self._lit_bytes = [lit.encode("utf-8", "surrogatepass") for lit in self.literals]
        self._lit_len = [len(b) for b in self._lit_bytes]
        exprs: list[bytes] = [b"".join(b"\\x%02x" % c for c in lit) for lit in self._lit_bytes]
        flags = [0] * len(exprs)
        self._nlit = len(exprs)
        self.py_rules = []
        # hyperscan id - nlit -> rule indices (rules sharing a regex share an expression)
        self._hs_rules: list[list[int]] = []
        by_expr: dict[bytes, list[int]] = {}
        for i, rule in enumerate(self.rules):
            expr = _hs_expression(rule.regex)
            if expr is None:
                self.py_rules.append(i)
            elif expr in by_expr:
                by_expr[expr].append(i)
            else:
                by_expr[expr] = [i]
                self._hs_rules.append(by_expr[expr])
                exprs.append(expr)
                flags.append(hyperscan.HS_FLAG_SOM_LEFTMOST)
        self.hs_exprs, self.hs_flags = exprs, flags  # the stream builds on them
        self._db = None
        if exprs:
            self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._db.compile(
                expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags
            )
        self._scratch_proto = hyperscan.Scratch(self._db) if self._db else None
        self._local = threading.local()
        self._lit_lock = threading.Lock()
        self._lit_db: Any = None
        self._lit_scratch_proto: Any = None

    def _scratch(self) -> Any:
        sc = getattr(self._local, "scratch", None)
        if sc is None:
            sc = self._scratch_proto.clone()
            self._local.scratch = sc
        return sc

    def _literal_db(self) -> tuple[Any, Any]:
        """(database, per-thread scratch) of the literals alone, compiled on first use:
        ``literal_hits`` (the edge's check of every request) skips the rules entirely."""
        if self._lit_db is None:
            import hyperscan

            with self._lit_lock:
                if self._lit_db is None:
                    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
                    db.compile(
                        expressions=self.hs_exprs[: self._nlit],
                        ids=list(range(self._nlit)),
                        elements=self._nlit,
                        flags=0,
                    )
                    self._lit_scratch_proto = hyperscan.Scratch(db)
                    self._lit_db = db
        sc = getattr(self._local, "lit_scratch", None)
        if sc is None:
            sc = self._lit_scratch_proto.clone()
            self._local.lit_scratch = sc
        return self._lit_db, sc

    def quiet(self, raw: bytes) -> bool:
        if self.py_rules:
            return False
        if self._db is None:
            return True
        import hyperscan

        def on_match(idx: int, start: int, end: int, flags: int, ctx: Any) -> bool:
            return True  # the first hit of anything settles it: stop the scan

        try:
            self._db.scan(raw, match_event_handler=on_match, scratch=self._scratch())
        except hyperscan.ScanTerminated:
            return False
        return True

    def literal_hits(self, data: str | bytes) -> list[LitHit]:
        if not self._nlit:
            return []
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
        db, scratch = self._literal_db()
        lens = self._lit_len
        lits: list[LitHit] = []
        add = lits.append

        def on_match(idx: int, start: int, end: int, flags: int, ctx: Any) -> None:
            add((end - lens[idx], end, idx))

        db.scan(raw, match_event_handler=on_match, scratch=scratch)
        return lits

    def _raw_scan(self, raw: bytes) -> tuple[list[LitHit], dict[int, list[tuple[int, int]]]]:
        lits: list[LitHit] = []
        hits: list[tuple[int, int, int]] = []
        if self._db is None:
            return lits, {}
        nlit, lens = self._nlit, self._lit_len
        add_lit, add_hit = lits.append, hits.append

        def on_match(idx: int, start: int, end: int, flags: int, ctx: Any) -> None:
            if idx < nlit:
                add_lit((end - lens[idx], end, idx))
            else:
                add_hit((idx, start, end))

        self._db.scan(raw, match_event_handler=on_match, scratch=self._scratch())
        regions: dict[int, list[tuple[int, int]]] = {}
        for idx, start, end in hits:
            for ri in self._hs_rules[idx - nlit]:
                regions.setdefault(ri, []).append((start, end))
        return lits, regions

    def scan(self, data: str | bytes, acceptor: Acceptor) -> tuple[list[LitHit], list[RuleHit]]:
        if isinstance(data, bytes):
            raw, text = data, data
            ascii_ = True  # offsets are byte offsets already
        else:
            raw = data.encode("utf-8", "surrogatepass")
            text = data
            ascii_ = len(raw) == len(data)
        lits, regions = self._raw_scan(raw)
        if not ascii_:
            lits = _to_str_offsets(raw, lits)
            regions = {
                i: _to_str_offsets(
                    raw, [(_char_boundary(raw, s), _char_boundary(raw, e)) for s, e in rs]
                )
                for i, rs in regions.items()
            }
        rule_hits: list[RuleHit] = []
        is_bytes = isinstance(data, bytes)
        for i, rs in regions.items():
            rule = self.rules[i]
            rx = rule.compiled_bytes if is_bytes else rule.compiled
            ok = acceptor(i)
            rule_hits += [(i, *h) for h in _confirm(rule, text, _merge(rs), rx, ok)]
        rule_hits += self._py_rule_hits(data, self.py_rules, acceptor)
        return lits, rule_hits


def available_engines() -> list[str]:
    names = []
    for name, module in (("hyperscan", "hyperscan"), ("re2", "re2")):
        try:
            __import__(module)
        except ImportError:
            continue
        names.append(name)
    return [*names, "python"]


_ENGINES: dict[str, type[Engine]] = {
    "hyperscan": HyperscanEngine,
    "re2": Re2Engine,
    "python": Engine,
}


def engine_name(requested: str | None = None) -> str:
    name = (requested or os.environ.get("KEYGUARD_ENGINE") or "").strip().lower()
    if not name:
        return available_engines()[0]
    if name not in _ENGINES:
        raise ValueError(f"unknown KEYGUARD_ENGINE {name!r}: use {', '.join(_ENGINES)}")
    return name


def make_engine(literals: Sequence[str], rules: Sequence[Rule], name: str | None = None) -> Engine:
    return _ENGINES[engine_name(name)](literals, rules)
