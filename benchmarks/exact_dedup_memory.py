"""exact_dedup's two passes (hash a slice at a time, then compare the shared-hash rows' texts) against
grouping the whole normalised column with one ``dictionary_encode`` (the step before stop 21, and
what a pyarrow script would do): decide seconds and peak RSS, each variant in its own process on the
same rows, side by side in one run (issue 15: peak memory).

    python benchmarks/exact_dedup_memory.py --rows 1000000

Rows: ``card_scale.make_source`` (random-word paragraphs, ~3% exact duplicates). Writes
``benchmarks/results/exact_dedup_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _hwm_mb() -> float:
    """This process's peak RSS (VmHWM: reset by exec, unlike getrusage's ru_maxrss)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def child(rows_path: str, variant: str) -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import pyarrow.parquet as pq

    from curation.columns import normalised, text_column
    from curation.steps import exact_dedup

    table = pq.read_table(rows_path)
    base = _hwm_mb()
    t0 = time.perf_counter()
    if variant == "hash_then_compare":
        first, distinct = exact_dedup._first_rows(text_column(table, "all"), True)
    else:  # the whole normalised column, one dictionary
        codes, distinct = exact_dedup._codes(normalised(text_column(table, "all"), True, exact_dedup.normalise))
        first = exact_dedup._first_of(codes, distinct)[codes]
    seconds = time.perf_counter() - t0
    peak = _hwm_mb()
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1), "rss_before_mb": round(base, 1),
                      "added_mb": round(peak - base, 1), "duplicates": int((first != np.arange(len(first))).sum()),
                      "distinct": int(distinct), "arrow_mb": round(table.nbytes / 2**20, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT))

    from card_scale import make_source
    from curation.ledger import write_parquet
    from curation.rows import make_row

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pool.jsonl"
        make_source(src, args.rows)
        rows = [make_row("text", "pool", text=json.loads(line)["body"]) for line in src.read_text().splitlines()]
        for k, r in enumerate(rows):
            r["id"] = f"pool@{k}"
        from curation.rows import rows_to_table

        write_parquet(rows_to_table(rows), Path(tmp) / "rows.parquet")
        del rows
        out = {"command": f"python benchmarks/exact_dedup_memory.py --rows {args.rows}", "rows": args.rows, "variants": {}}
        for variant in ("whole_column_dictionary", "hash_then_compare"):
            proc = subprocess.run([sys.executable, __file__, "--child", str(Path(tmp) / "rows.parquet"), variant],
                                  capture_output=True, text=True, check=True)
            out["variants"][variant] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(variant, out["variants"][variant], flush=True)
    a, b = out["variants"]["whole_column_dictionary"], out["variants"]["hash_then_compare"]
    assert a["duplicates"] == b["duplicates"] and a["distinct"] == b["distinct"]
    out["added_memory_ratio"] = round(a["added_mb"] / max(b["added_mb"], 1e-9), 2)
    out["speedup"] = round(a["seconds"] / b["seconds"], 2)
    res = ROOT / "benchmarks" / "results"
    (res / "exact_dedup_memory.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"# exact_dedup memory\n\n`{out['command']}` (rows' Arrow size {a['arrow_mb']} MB; same decisions in both).\n",
             "| variant | decide s | peak RSS MB | added over the loaded rows MB |", "|---|---:|---:|---:|"]
    for name, v in out["variants"].items():
        lines.append(f"| {name} | {v['seconds']} | {v['peak_rss_mb']} | {v['added_mb']} |")
    lines.append(f"\nAdded memory: {out['added_memory_ratio']}x less; decide time ratio (dictionary over hash) {out['speedup']}.")
    (res / "exact_dedup_memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
