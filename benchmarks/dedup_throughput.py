"""Throughput and peak memory: our MinHash/LSH core and decontamination vs datasketch.

Rows are generated text of realistic instruction-data length (100-200 words from a Zipf-distributed
20k-word vocabulary, in capitalised sentences with commas and full stops; 5% of rows are near-duplicates of an earlier row with 3% of words changed),
identical for every side. Each (side, size) runs in its own subprocess so its peak RSS is its own;
``rss_after_imports_and_data_mb`` is the RSS once libraries are imported and the rows are in
memory, before the timed work starts (imports and data generation are not timed).

Sides (same params everywhere: 128 permutations, word 5-grams, threshold 0.8):

* ``ours``       -- curation.minhash: signatures of all rows (tokenise + shingle + permute), band
                    keys with (b, r) chosen for the threshold, candidate pairs, clusters.
* ``datasketch`` -- datasketch MinHash (update_batch of the same word 5-grams) + MinHashLSH, the
                    usual dedup loop: query each row, then insert it.
* ``decontam``   -- curation.steps.decontaminate's core: 8-gram index of 1,000 eval items
                    (40-80 words) and best overlap of every row against it, in 50k-row batches;
                    0.1% of rows have an eval item planted inside them (before timing), and the
                    rows flagged at overlap >= 0.5 give recall and false hits.

Run:  python benchmarks/dedup_throughput.py [--sizes 10000 100000 1000000] [--datasketch-max N]
Writes benchmarks/results/dedup_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def make_texts(n: int, seed: int = 0, chunk: int = 50_000) -> list[str]:
    """``n`` texts, generated ``chunk`` rows at a time so the generator's own temporaries stay small
    (they would otherwise dominate the peak RSS measured afterwards)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20000)], dtype=object)
    ranks = np.arange(1, len(vocab) + 1)
    p = 1.0 / ranks**1.1
    p /= p.sum()
    texts: list[str] = []
    for c0 in range(0, n, chunk):
        lengths = rng.integers(100, 201, size=min(chunk, n - c0))
        words = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p)]
        # sentences of 8-20 words: capitalised first word, a comma now and then, a full stop
        punct = rng.random(int(lengths.sum()))
        pos = 0
        for L in lengths.tolist():
            w = list(words[pos:pos + L])
            pr = punct[pos:pos + L]
            i = 0
            while i < L:
                w[i] = w[i].capitalize()
                j = min(L, i + 8 + int(pr[i] * 12))
                w[j - 1] += "."
                if j - i > 10:
                    w[i + 4] += ","
                i = j
            texts.append(" ".join(w))
            pos += L
        del words, punct
    # 5% near-duplicates of an earlier row, 3% of words changed
    dup = rng.choice(np.arange(1, n), size=n // 20, replace=False) if n > 1 else []
    for i in dup.tolist():
        src = texts[int(rng.integers(0, i))].split()
        for k in rng.choice(len(src), size=max(1, len(src) * 3 // 100), replace=False).tolist():
            src[k] = f"edit{rng.integers(1 << 30)}"
        texts[i] = " ".join(src)
    return texts


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(side: str, n: int) -> dict:
    # imports first, so neither the timing nor rss_after_data_mb depends on import order
    if side == "datasketch":
        import datasketch  # noqa: F401
    else:
        import curation.minhash  # noqa: F401
        import curation.steps.decontaminate  # noqa: F401
    texts = make_texts(n)
    if side == "decontam":  # eval items, and leaks of them planted into 0.1% of rows (not timed)
        import numpy as np

        rng = np.random.default_rng(1)
        items = [" ".join(t.split()[: int(rng.integers(40, 81))]) for t in make_texts(1000, seed=7)]
        leaked = rng.choice(n, size=max(1, n // 1000), replace=False)
        for i in leaked.tolist():  # an eval item inside a training row, text on either side
            words = texts[i].split()
            cut = int(rng.integers(0, len(words)))
            texts[i] = " ".join(words[:cut] + [items[int(rng.integers(len(items)))]] + words[cut:])
        leaked_set = set(leaked.tolist())
    base = rss_mb()
    t0 = time.perf_counter()
    info: dict = {}
    if side == "ours":
        import numpy as np

        from curation.minhash import MinHasher, band_keys, candidate_pairs, clusters, optimal_bands_rows

        b, r, _, _ = optimal_bands_rows(0.8, 128)
        sig = MinHasher(128, seed=1).signatures(texts, ngram=5, unit="word")
        u, v = candidate_pairs(band_keys(sig, b, r))
        labels = clusters(len(texts), u, v)
        sizes = np.bincount(labels)
        info = {"lsh_bands": b, "lsh_rows": r, "candidate_pairs": int(len(u)), "duplicates_found": int((sizes[sizes > 1] - 1).sum())}
    elif side == "datasketch":
        import re

        from datasketch import MinHash, MinHashLSH

        token = re.compile(r"\w+")
        lsh = MinHashLSH(threshold=0.8, num_perm=128)
        dups = 0
        for i, t in enumerate(texts):
            w = token.findall(t.lower())
            sh = {" ".join(w[k:k + 5]) for k in range(max(len(w) - 4, 1))}
            m = MinHash(num_perm=128, seed=1)
            m.update_batch([s.encode("utf-8") for s in sh])
            if lsh.query(m):
                dups += 1
            lsh.insert(i, m)
        info = {"lsh_bands": lsh.b, "lsh_rows": lsh.r, "duplicates_found": dups}
    elif side == "decontam":
        from curation.shingles import tokenize
        from curation.steps.decontaminate import EvalIndex

        index = EvalIndex(tokenize(items), 8)
        hit_rows: list[int] = []
        for b0 in range(0, n, 50000):
            best, _ = index.best_overlap(tokenize(texts[b0:b0 + 50000]))
            hit_rows += (np.flatnonzero(best >= 0.5) + b0).tolist()
        true_hits = len(leaked_set.intersection(hit_rows))
        info = {"eval_items": len(items), "rows_planted": len(leaked_set), "rows_hit": len(hit_rows),
                "recall": round(true_hits / len(leaked_set), 4), "false_hits": len(hit_rows) - true_hits}
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"side": side, "rows": n, "seconds": round(seconds, 2), "rows_per_s": round(n / seconds, 1),
            "peak_rss_mb": round(peak, 1), "rss_after_imports_and_data_mb": round(base, 1), **info}


def run_side(side: str, n: int, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--n", str(n)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"side": side, "rows": n, "error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        return {"side": side, "rows": n, "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"rc {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--datasketch-max", type=int, default=1_000_000, help="largest size datasketch is run at")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args()
    if args.worker:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(worker(args.worker, args.n)))
        return
    results = []
    for n in args.sizes:
        for side in ("ours", "decontam", "datasketch"):
            if side == "datasketch" and n > args.datasketch_max:
                continue
            r = run_side(side, n, args.timeout)
            print(json.dumps(r), flush=True)
            results.append(r)
    by = {(r["side"], r["rows"]): r for r in results}
    lines = ["| rows | ours rows/s | datasketch rows/s | speed-up | ours peak RSS MB | datasketch peak RSS MB | decontam rows/s | decontam peak RSS MB | decontam recall (false hits) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in args.sizes:
        o, d, c = by.get(("ours", n), {}), by.get(("datasketch", n), {}), by.get(("decontam", n), {})
        ratio = f"{o['rows_per_s'] / d['rows_per_s']:.1f}x" if "rows_per_s" in o and "rows_per_s" in d else "-"
        lines.append(f"| {n:,} | {o.get('rows_per_s', o.get('error', '-'))} | {d.get('rows_per_s', d.get('error', 'not run'))} | {ratio} | "
                     f"{o.get('peak_rss_mb', '-')} | {d.get('peak_rss_mb', '-')} | {c.get('rows_per_s', c.get('error', '-'))} | {c.get('peak_rss_mb', '-')} | "
                     f"{c.get('recall', '-')} ({c.get('false_hits', '-')}) |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"command": "python benchmarks/dedup_throughput.py " + " ".join(sys.argv[1:]), "machine": platform.platform(),
            "cpus": __import__("os").cpu_count(), "params": {"num_perm": 128, "ngram": 5, "unit": "word", "threshold": 0.8},
            "note": "2 CPU cores; each side in its own process, one at a time"}
    (RESULTS / "dedup_throughput.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    (RESULTS / "dedup_throughput.md").write_text(f"# MinHash dedup / decontamination throughput\n\n`{meta['command']}`\n\n"
                                                  f"{table}\n\n{meta['note']}. Params: {meta['params']}.\n")


if __name__ == "__main__":
    main()
