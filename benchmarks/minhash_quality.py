"""Recall and precision of ``minhash_dedup`` on Alpaca with planted exact and near duplicates.

Data: /work/shared/data/alpaca/alpaca_5000.json (or --alpaca PATH), one chat row per record
(instruction + input -> output). Planted: 250 exact copies and 250 near copies per edit level,
whose response/instruction words are edited at random (each chosen word replaced, deleted, or
a random word inserted) at 5%, 10% and 15% of the words. A planted copy is found when it ends in
the same cluster as its original (the two rows have the same kept row; with union-find clusters
the link may run through another copy of the same original, itself a real near-duplicate). An
earlier version also credited a copy whose original was dropped for a *different* copy, which
overstated recall on edited copies. Precision = drops in favour of a row of
the same group / all drops, so a drop linking two different Alpaca records counts as false even
when those records are genuinely near-identical (Alpaca has a few; see the false-drop count).

Reported per threshold (and ngram): recall on exact copies and per edit level, precision, and
the mean true 5-gram Jaccard of the planted pairs per edit level (what the threshold is up against).

Run:  python benchmarks/minhash_quality.py
Writes benchmarks/results/minhash_quality.json and .md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curation.rows import make_row, rows_to_dataset  # noqa: E402
from curation.shingles import ngram_hashes, tokenize  # noqa: E402
from curation.steps.base import StepContext  # noqa: E402
from curation.steps.minhash_dedup import MinHashDedup, MinHashDedupParams  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
VOCAB = "the of and to a in is that for it as with was on be by this are or from at which an not".split()


def edit(text: str, frac: float, rng: random.Random) -> str:
    words = text.split()
    k = max(1, round(len(words) * frac))
    for i in sorted(rng.sample(range(len(words)), min(k, len(words))), reverse=True):
        op = rng.random()
        if op < 0.5:
            words[i] = rng.choice(VOCAB + ["data", "model", "value", "system", "result"])
        elif op < 0.75 and len(words) > 1:
            del words[i]
        else:
            words.insert(i, rng.choice(VOCAB))
    return " ".join(words)


def chat(instruction: str, output: str, tag: str):
    return make_row("chat", "alpaca", messages=[{"role": "user", "content": instruction},
                                                {"role": "assistant", "content": output}], metadata={"tag": tag})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpaca", default=str(ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_5000.json"))
    ap.add_argument("--per-level", type=int, default=250)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8])
    ap.add_argument("--ngrams", type=int, nargs="+", default=[5, 3], help="word n-gram sizes")
    ap.add_argument("--char-ngrams", type=int, nargs="+", default=[5], help="character n-gram sizes")
    args = ap.parse_args()
    rng = random.Random(0)
    data = [d for d in json.loads(Path(args.alpaca).read_text()) if d["output"].strip()]
    base = [(d["instruction"] + ("\n" + d["input"] if d["input"] else ""), d["output"]) for d in data]
    rows = [chat(i, o, f"orig:{k}") for k, (i, o) in enumerate(base)]
    levels = {"exact": 0.0, "edit5": 0.05, "edit10": 0.10, "edit15": 0.15}
    planted: list[tuple[int, str]] = []  # (original index, level)
    for level, frac in levels.items():
        # copies of rows with at least 20 words, so an edit level is a real fraction
        pool = [k for k, (i, o) in enumerate(base) if len((i + " " + o).split()) >= 20]
        for k in rng.sample(pool, args.per_level):
            i, o = base[k]
            if frac:
                i, o = edit(i, frac, rng), edit(o, frac, rng)
            rows.append(chat(i, o, f"copy:{k}:{level}"))
            planted.append((k, level))
    order = list(range(len(rows)))
    rng.shuffle(order)  # copies are spread through the data, not appended
    rows = [rows[i] for i in order]
    ds = rows_to_dataset(rows)
    tags = [json.loads(m)["tag"] for m in ds["metadata"]]
    orig_of = [int(t.split(":")[1]) for t in tags]
    level_of = [t.split(":")[2] if t.startswith("copy") else None for t in tags]

    # true Jaccard of planted pairs (word 5-grams of the `all` field)
    texts = [r[0] + "\n" + r[1] for r in base]
    pos_orig = {orig_of[i]: i for i in range(len(tags)) if tags[i].startswith("orig")}
    all_texts = [m[0]["content"] + "\n" + m[1]["content"] for m in ds["messages"]]

    def jacc(a: str, b: str, n: int = 5) -> float:
        h, o = ngram_hashes(tokenize([a, b]), n)
        A, B = set(h[o == 0].tolist()), set(h[o == 1].tolist())
        return len(A & B) / max(len(A | B), 1)

    true_j = {lv: float(np.mean([jacc(all_texts[i], texts[orig_of[i]]) for i in range(len(tags)) if level_of[i] == lv]))
              for lv in levels}

    results = []
    for unit, n in [("word", n) for n in args.ngrams] + [("char", n) for n in args.char_ngrams]:
        for thr in args.thresholds:
            t0 = time.perf_counter()
            d = MinHashDedup(MinHashDedupParams(threshold=thr, ngram=n, unit=unit), StepContext(seed=0)).decide(ds)
            secs = time.perf_counter() - t0
            id_group = dict(zip(ds["id"], orig_of))

            def linked(i: int) -> bool:  # dropped in favour of a row of its own group
                return not d.keep[i] and id_group.get(d.reason[i].split(":", 1)[1]) == orig_of[i]

            # a row's cluster is named by its kept row (a drop's reason names the kept row of its cluster)
            row_pos = {rid: i for i, rid in enumerate(ds["id"])}
            rep = [i if d.keep[i] else row_pos[d.reason[i].split(":", 1)[1]] for i in range(len(tags))]
            recall = {}
            for lv in levels:
                idx = [i for i in range(len(tags)) if level_of[i] == lv]
                # found: the copy ended in its original's cluster (one row of the two is dropped)
                recall[lv] = sum(rep[i] == rep[pos_orig[orig_of[i]]] for i in idx) / len(idx)
            drops = np.flatnonzero(~d.keep)
            tp = sum(linked(i) for i in drops.tolist())
            fp = len(drops) - tp
            res = {"unit": unit, "ngram": n, "threshold": thr, "bands": d.extras["bands"], "rows": d.extras["rows"],
                   "recall": {k: round(v, 4) for k, v in recall.items()},
                   "precision": round(tp / max(tp + fp, 1), 4), "drops": int(len(drops)), "true_pairs_dropped": tp,
                   "false_drops": fp, "seconds": round(secs, 2)}
            results.append(res)
            print(json.dumps(res), flush=True)

    header = "| unit | ngram | threshold | b x r | recall exact | recall 5% | recall 10% | recall 15% | precision | drops (false) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    lines = [header] + [f"| {r['unit']} | {r['ngram']} | {r['threshold']} | {r['bands']}x{r['rows']} | {r['recall']['exact']:.3f} | {r['recall']['edit5']:.3f} | "
                        f"{r['recall']['edit10']:.3f} | {r['recall']['edit15']:.3f} | {r['precision']:.3f} | {r['drops']} ({r['false_drops']}) |"
                        for r in results]
    table = "\n".join(lines)
    jt = ", ".join(f"{k}: {v:.3f}" for k, v in true_j.items())
    print(table)
    print(f"mean true word-5-gram Jaccard of planted pairs: {jt}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/minhash_quality.py " + " ".join(sys.argv[1:])
    (RESULTS / "minhash_quality.json").write_text(json.dumps(
        {"command": cmd, "rows": len(tags), "planted_per_level": args.per_level, "true_jaccard_5gram": true_j,
         "results": results}, indent=2))
    (RESULTS / "minhash_quality.md").write_text(
        f"# minhash_dedup quality on Alpaca with planted duplicates\n\n`{cmd}`\n\n{len(tags)} rows "
        f"({len(base)} Alpaca + {args.per_level} planted per level). num_perm 128, field all, keep first.\n\n{table}\n\n"
        f"Mean true word-5-gram Jaccard of planted pairs: {jt}. A false drop is a drop whose kept row is not "
        f"from the same planted group (Alpaca's own near-duplicates included).\n")


if __name__ == "__main__":
    main()
