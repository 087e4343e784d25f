"""keyguard scan benchmark: MB/s on a large source tree vs detect-secrets, in one run.

    python bench/scan_bench.py [--tree PATH] [--ds-mb 2] [--max-bytes N]

1. keyguard's Scanner (the code behind ``keyguard scan``) on the whole tree, end to end:
   walking (.gitignore honoured), reading, binary/size skipping, matching, line/column.
   The default tree is this interpreter's site-packages.
2. detect-secrets (default plugins and filters, ``scan_file``) on a deterministic sample
   of the same text files (every Nth file up to --ds-mb MB): it is far too slow for the
   whole tree. keyguard is timed on the very same sample too, so the ratio compares
   like with like; per-MB figures are printed for both.

Target: keyguard >= 50x detect-secrets. Wall-clock on a shared machine; best of 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keyguard.hygiene.files import DEFAULT_MAX_BYTES, Skipped, read_text, walk
from keyguard.hygiene.scan import Scanner, ScanReport
from keyguard.redact import Redactor

TARGET_RATIO = 50.0


def mb(n: int) -> float:
    return n / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, default=Path(sysconfig.get_paths()["purelib"]))
    ap.add_argument("--ds-mb", type=float, default=2.0, help="detect-secrets sample size")
    ap.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    args = ap.parse_args()

    redactor = Redactor()
    redactor.findings("warm up the engine " * 10)
    scanner = Scanner(redactor, max_bytes=args.max_bytes)

    t0 = time.perf_counter()
    report = scanner.scan_paths([args.tree])
    kg_secs = time.perf_counter() - t0
    kg_bytes = report.bytes_scanned
    kg_mbps = mb(kg_bytes) / kg_secs
    skipped = Counter(s.reason for s in report.skipped)

    # The same text files, sampled evenly across the tree for detect-secrets.
    files = list(walk([args.tree]))
    texts: list[tuple[Path, int]] = []
    for p in files:
        text = read_text(p, max_bytes=args.max_bytes)
        if not isinstance(text, Skipped) and text:
            texts.append((p, len(text.encode("utf-8", "surrogateescape"))))
    total = sum(n for _, n in texts)
    budget = int(args.ds_mb * 1e6)
    step = max(1, round(total / budget)) if budget else 1
    sample: list[Path] = []
    sample_bytes = 0
    for p, n in texts[::step]:
        if sample_bytes >= budget:
            break
        sample.append(p)
        sample_bytes += n

    sub = ScanReport()
    t0 = time.perf_counter()
    scanner.scan_paths(sample, report=sub)
    kg_sub_secs = time.perf_counter() - t0
    kg_sub_mbps = mb(sub.bytes_scanned) / kg_sub_secs

    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    ds_hits = 0
    with default_settings():
        t0 = time.perf_counter()
        for p in sample:
            ds_hits += sum(1 for _ in scan_file(os.fspath(p)))
        ds_secs = time.perf_counter() - t0
    ds_mbps = mb(sample_bytes) / ds_secs

    ratio_same = kg_sub_mbps / ds_mbps
    ratio_tree = kg_mbps / ds_mbps
    print(f"tree: {args.tree}")
    print(
        f"keyguard, whole tree : {len(files):,} files listed, {report.files_scanned:,} scanned, "
        f"skipped {dict(skipped)}"
    )
    print(
        f"    {mb(kg_bytes):,.1f} MB in {kg_secs:.2f} s = {kg_mbps:,.1f} MB/s "
        f"({kg_secs / mb(kg_bytes) * 1000:.2f} ms/MB), {len(report.findings)} findings"
    )
    print(
        f"sample for detect-secrets: {len(sample):,} files, {mb(sample_bytes):.2f} MB "
        f"(1 in {step} text files)"
    )
    print(
        f"keyguard, sample     : {kg_sub_secs:.3f} s = {kg_sub_mbps:,.1f} MB/s "
        f"({kg_sub_secs / mb(sub.bytes_scanned) * 1000:.2f} ms/MB), {len(sub.findings)} findings"
    )
    print(
        f"detect-secrets, sample: {ds_secs:.2f} s = {ds_mbps:,.3f} MB/s "
        f"({ds_secs / mb(sample_bytes) * 1000:,.0f} ms/MB), {ds_hits} findings"
    )
    verdict = "OK" if ratio_same >= TARGET_RATIO else "BELOW TARGET"
    print(
        f"ratio keyguard/detect-secrets: {ratio_same:,.0f}x on the same files, "
        f"{ratio_tree:,.0f}x whole-tree keyguard vs sample detect-secrets "
        f"(target >= {TARGET_RATIO:.0f}x: {verdict})"
    )


if __name__ == "__main__":
    main()
