"""keyguard redaction benchmark: the four measurements of the redaction issue, one run.

    python bench/redact_bench.py [--mb 10] [--peer-mb 1] [--ds-kb 100]

1. MB/s of ``redact`` on ~10 MB of mixed ASCII text (log lines, prose, JSON, code)
   with planted secrets, 1000 known values (all forms) + all rules (target >= 300);
   the same text with some non-ASCII is measured too.
2. p50/p99 of ``redact`` on a 4 KB prompt with 100 known values (target p50 <= 50 us).
3. per-chunk cost of streaming 20-character chunks (target <= 5 us per chunk).
4. presidio (NoOpNlpEngine; the same rules as PatternRecognizers + a deny list of the
   known values) and detect-secrets on the same workload, scaled down because they are
   slow; MB/s and keyguard's ratio (target >= 10x presidio).

Fake values only, generated at run time. Time is wall-clock on a shared machine.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import random
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes import (
    e2b_api_key,
    github_classic,
    google_api_key,
    jwt,
    openai_key,
    rand,
)

from keyguard.redact import Redactor

ALPHABETS = [
    string.ascii_letters + string.digits,
    string.ascii_letters + string.digits + "-_",
    "0123456789abcdef",
    string.ascii_letters + string.digits + "+/",
    string.ascii_letters + string.digits + "!#%&*+-.:=?@^_~",
]

WORDS = (
    "the model returned a response with tool call arguments for the sandbox and the "
    "agent retried after a timeout while the user asked for a summary of the report "
    "latency increased during deployment of version build cache hit miss queue worker"
).split()


def known_values(n: int, rng: random.Random) -> dict[str, str]:
    return {f"SECRET_{i}": rand(rng.randint(20, 60), rng.choice(ALPHABETS)) for i in range(n)}


def make_corpus(size: int, values: list[str], rng: random.Random, non_ascii: bool) -> str:
    parts: list[str] = []
    total = 0
    planted = 0
    while total < size:
        kind = rng.random()
        if kind < 0.4:
            line = (
                f"2026-12-04T15:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z INFO "
                f"httpx request GET https://api.example.com/v1/items/{rng.randint(1, 99999)} "
                f'"HTTP/1.1 200 OK" took {rng.randint(1, 900)}ms '
                f"trace={rand(32, '0123456789abcdef')}\n"
            )
        elif kind < 0.65:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + ".\n"
            if non_ascii and rng.random() < 0.3:
                line = "Résumé — naïve café: " + line
        elif kind < 0.85:
            line = (
                json.dumps(
                    {
                        "id": rng.randint(1, 10**6),
                        "name": rng.choice(WORDS),
                        "tags": WORDS[:4],
                        "sha": rand(40, "0123456789abcdef"),
                    }
                )
                + "\n"
            )
        else:
            line = (
                f"    def {rng.choice(WORDS)}_{rng.randint(0, 99)}(self, item: dict) -> int:\n"
                f"        return len(item.get('{rng.choice(WORDS)}', [])) + {rng.randint(0, 9)}\n"
            )
        if rng.random() < 0.01:
            v = rng.choice(values)
            line = (
                line.rstrip("\n")
                + " "
                + rng.choice(
                    [
                        v,
                        base64.b64encode(v.encode()).decode(),
                        v.encode().hex(),
                        google_api_key(),
                        github_classic(),
                        e2b_api_key(),
                        jwt(),
                        openai_key(),
                    ]
                )
                + "\n"
            )
            planted += 1
        parts.append(line)
        total += len(line)
    return "".join(parts)


def mbps(n_bytes: int, seconds: float) -> float:
    return n_bytes / seconds / 1e6


def best_time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=10.0)
    ap.add_argument("--peer-mb", type=float, default=1.0)
    ap.add_argument("--ds-kb", type=float, default=100.0)
    args = ap.parse_args()
    rng = random.Random(1234)
    rows: list[tuple[str, str, str]] = []

    values = known_values(1000, rng)
    r1000 = Redactor()
    for name, v in values.items():
        r1000.add_secret(name, v)
    t = time.perf_counter()
    r1000.redact("warm up")
    compile_s = time.perf_counter() - t
    size = int(args.mb * 1_000_000)
    corpus = make_corpus(size, list(values.values()), rng, non_ascii=False)
    corpus_u = make_corpus(size, list(values.values()), rng, non_ascii=True)
    nbytes = len(corpus.encode())
    nbytes_u = len(corpus_u.encode())
    engine = r1000.engine
    print(
        f"engine={engine}  known=1000 values ({len(r1000._snapshot().literals)} literal forms)"
        f"  rules={len(r1000.rules)}  compile={compile_s:.2f}s  cpus={os.cpu_count()}"
    )

    secs = best_time(lambda: r1000.redact(corpus))
    kg_mbps = mbps(nbytes, secs)
    found = len(r1000.findings(corpus))
    rows.append(
        (
            "1. redact, 1000 known + rules, ASCII",
            f"{kg_mbps:,.0f} MB/s",
            f">= 300 MB/s  ({nbytes / 1e6:.1f} MB, {found} spans)",
        )
    )
    secs_u = best_time(lambda: r1000.redact(corpus_u))
    rows.append(("1b. same, text with non-ASCII", f"{mbps(nbytes_u, secs_u):,.0f} MB/s", "-"))
    secs_b = best_time(lambda: r1000.redact_bytes(corpus.encode()))
    rows.append(("1c. redact_bytes (incl. encode)", f"{mbps(nbytes, secs_b):,.0f} MB/s", "-"))

    r100 = Redactor()
    vals100 = list(values.items())[:100]
    for name, v in vals100:
        r100.add_secret(name, v)
    prompt = corpus[:4000] + " " + vals100[3][1] + " " + google_api_key() + "\n"
    r100.redact(prompt)
    lat = []
    for _ in range(3000):
        t = time.perf_counter()
        r100.redact(prompt)
        lat.append(time.perf_counter() - t)
    lat.sort()
    p50, p99 = lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6
    rows.append(
        ("2. redact 4 KB prompt, 100 known", f"p50 {p50:.1f} us / p99 {p99:.1f} us", "p50 <= 50 us")
    )

    stream_text = corpus[:400_000]
    for label, red in (("100 known", r100), ("1000 known", r1000)):
        chunks = [stream_text[i : i + 20] for i in range(0, len(stream_text), 20)]
        s = red.stream()
        s.feed(stream_text[:1000])  # builds the stream's scan database once
        s.flush()
        gc.collect()
        t = time.perf_counter()
        out = [s.feed(c) for c in chunks]
        out.append(s.flush())
        per = (time.perf_counter() - t) / len(chunks) * 1e6
        assert "".join(out) == red.redact(stream_text), "stream != redact"
        rows.append((f"3. stream 20-char chunks, {label}", f"{per:.2f} us/chunk", "<= 5 us"))

    # -- peers --------------------------------------------------------------------------
    peer_text = corpus[: int(args.peer_mb * 1_000_000)]
    peer_bytes = len(peer_text.encode())
    kg_peer = mbps(peer_bytes, best_time(lambda: r1000.redact(peer_text)))
    from presidio_analyzer import PatternRecognizer

    from keyguard.integrations.presidio import analyzer

    rules_only = Redactor()
    az = analyzer(rules_only)
    secs = best_time(lambda: az.analyze(text=peer_text, language="en"), repeat=1)
    p_rules = mbps(peer_bytes, secs)
    rows.append(
        (
            "4a. presidio, same rules",
            f"{p_rules:,.1f} MB/s",
            f"keyguard {kg_mbps / p_rules:,.0f}x  ({peer_bytes / 1e6:.1f} MB)",
        )
    )
    az.registry.add_recognizer(
        PatternRecognizer(supported_entity="KNOWN", deny_list=list(values.values()))
    )
    small = peer_text[: peer_bytes // 10]
    secs = best_time(lambda: az.analyze(text=small, language="en"), repeat=1)
    p_all = mbps(len(small.encode()), secs)
    rows.append(
        (
            "4b. presidio, rules + 1000 values",
            f"{p_all:,.2f} MB/s",
            f"keyguard {kg_mbps / p_all:,.0f}x  ({len(small) / 1e6:.2f} MB)",
        )
    )

    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import default_settings

    ds_text = corpus[: int(args.ds_kb * 1000)]
    with default_settings():
        t = time.perf_counter()
        hits = sum(1 for line in ds_text.splitlines() for _ in scan_line(line))
        secs = time.perf_counter() - t
    d_mbps = mbps(len(ds_text.encode()), secs)
    rows.append(
        (
            "4c. detect-secrets (default plugins)",
            f"{d_mbps:,.2f} MB/s",
            f"keyguard {kg_mbps / d_mbps:,.0f}x  ({len(ds_text) / 1e3:.0f} KB, {hits} hits)",
        )
    )
    rows.append(("    keyguard on the presidio slice", f"{kg_peer:,.0f} MB/s", "-"))

    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'measurement':<{w0}}  {'result':<{w1}}  target / note")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")


if __name__ == "__main__":
    main()
