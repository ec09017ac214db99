"""Our MinHash against rensa (a Rust MinHash library on PyPI), side by side in one run (issue 16).

Same texts, same permutations count (128), same shingles (word 5-grams of lower-cased ``\\w+``
tokens; rensa gets them as strings, the way its README feeds it), one process each, one core:

* ``ours_signatures`` -- ``MinHasher.signatures``: word split, word and n-gram hashes and the
  permutations in the compiled kernels (``curation.kernels``, numba; ``recipe-kit[fast]``);
  numba's import and the loading of the kernels' cached machine code (about 0.4 s) are inside the
  clock (``kernels_start`` measures it alone); ``ours_signatures_numpy`` -- the same values from the numpy references (``RECIPE_KIT_KERNELS=numpy``,
  what runs without numba);
* ``rensa_signatures`` -- ``RMinHash.digest_matrix_from_token_sets`` (rensa's bulk path) over
  Python lists of shingle strings built per text, the user's side of the work included;
* ``rensa_signatures_our_shingles`` -- rensa's ``digest_matrix_from_flat_token_hashes`` fed with
  our vectorised shingle hashes; ``..._to_numpy`` adds getting the matrix out as a numpy array
  (rensa 0.5's matrix has no buffer interface, only ``to_rows()`` lists): what using rensa as our
  signature backend would cost;
* ``ours_step`` -- the whole dedup (8 bands x 16 rows for both, see :func:`_bands`): signatures, band keys, candidate pairs, connected components
  (``curation.minhash``), i.e. ``minhash_dedup``'s work without the ledger; ``ours_step_numpy``
  the same without the kernels;
* ``rensa_loop`` -- rensa's README dedup loop: one ``RMinHash`` per text (``update`` with its
  shingles), ``RMinHashLSH.insert`` of all, then ``query`` of each and a union-find over the
  candidates -- the clusters ours gives;
* ``rensa_bulk_flags`` -- rensa's fastest path: digest matrix, then
  ``insert_matrix_and_query_duplicate_flags`` (a duplicate flag per row, no clusters or partners).

The texts: random-word paragraphs (8-40 words from a 5,000-word vocabulary), 3% exact copies and 5%
copies with one word changed. Each variant runs in its own process under GNU time (peak RSS: the
texts' own memory, the ``load_only`` line, is in every figure); seconds are measured inside it,
after the texts are loaded.

    python benchmarks/minhash_vs_rensa.py --rows 100000 1000000

Writes ``benchmarks/results/minhash_vs_rensa.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from curate_scale import timed  # noqa: E402

NUM_PERM, NGRAM, SEED, THRESHOLD = 128, 5, 42, 0.8
VARIANTS = ["load_only", "kernels_start", "ours_signatures", "ours_signatures_numpy", "rensa_signatures", "rensa_signatures_our_shingles",
            "rensa_signatures_our_shingles_to_numpy", "ours_step", "ours_step_numpy",
            "rensa_loop", "rensa_bulk_flags"]
WORD = re.compile(r"\w+")


def make_texts(path: Path, n: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    texts: list[str] = []
    for _ in range(n):
        r = rng.random()
        if texts and r < 0.03:
            texts.append(rng.choice(texts))
        elif texts and r < 0.08:
            words = rng.choice(texts).split(" ")
            words[rng.randrange(len(words))] = rng.choice(vocab)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choices(vocab, k=rng.randint(8, 40))))
    pq.write_table(pa.table({"text": texts}), path)


def _shingle_strings(text: str) -> list[str]:
    words = WORD.findall(text.lower())
    if len(words) < NGRAM:
        return [" ".join(words)] if words else []
    return [" ".join(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)]


def _bands():
    """8 bands of 16 rows: rensa's LSH needs bands dividing num_perm, and 8 x 16 is the divisor pair
    nearest the optimum for threshold 0.8 (9 x 13, ``curation.minhash.optimal_bands_rows``)."""
    return 8, 16


def _union_find_clusters(n: int, pairs) -> int:
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = [find(i) for i in range(n)]
    sizes: dict[int, int] = {}
    for r in roots:
        sizes[r] = sizes.get(r, 0) + 1
    return sum(1 for s in sizes.values() if s > 1)


def worker(variant: str, path: Path) -> dict:
    import os

    import numpy as np
    import pyarrow.parquet as pq

    if variant.startswith("ours") and variant.endswith("_numpy"):
        os.environ["RECIPE_KIT_KERNELS"] = "numpy"
        variant = variant[: -len("_numpy")]
    texts = pq.read_table(path).column("text").to_pylist()
    out: dict = {}
    t0 = time.perf_counter()
    if variant == "kernels_start":  # what the ours_* variants pay once per process: numba's import, the cached code's load
        import numpy as np

        from curation import kernels

        if kernels.enabled():
            kernels.compiled().hash_slices(np.zeros(1, np.uint8), np.zeros(1, np.int64), np.ones(1, np.int64))
    elif variant == "ours_signatures":
        from curation.minhash import MinHasher

        MinHasher(NUM_PERM, SEED).signatures(texts, NGRAM, "word")
    elif variant == "rensa_signatures":
        from rensa import RMinHash

        RMinHash.digest_matrix_from_token_sets([_shingle_strings(t) for t in texts], NUM_PERM, SEED)
    elif variant in ("rensa_signatures_our_shingles", "rensa_signatures_our_shingles_to_numpy"):
        from rensa import RMinHash

        from curation.shingles import ngram_hashes, tokenize

        for i in range(0, len(texts), 20000):
            part = texts[i:i + 20000]
            h, owner = ngram_hashes(tokenize(part, "word"), NGRAM)
            offsets = np.searchsorted(owner, np.arange(len(part) + 1)).astype(np.uint64)
            matrix = RMinHash.digest_matrix_from_flat_token_hashes(h, offsets, NUM_PERM, SEED)
            if variant.endswith("_to_numpy"):  # rensa 0.5 gives its matrix out only as Python lists
                np.array(matrix.to_rows(), dtype=np.uint32)
    elif variant == "ours_step":
        from curation.minhash import EMPTY, MinHasher, band_keys, candidate_pairs, clusters

        bands, rows = _bands()
        sig = MinHasher(NUM_PERM, SEED).signatures(texts, NGRAM, "word")
        u, v = candidate_pairs(band_keys(sig, bands, rows), sig[:, 0] != EMPTY)
        labels = clusters(len(texts), u, v)
        sizes = np.bincount(labels)
        out["clusters"] = int((sizes > 1).sum())
        out["in_clusters"] = int((sizes[labels] > 1).sum())
    elif variant == "rensa_loop":
        from rensa import RMinHash, RMinHashLSH

        bands, _ = _bands()
        lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=bands)
        hashes = []
        for i, t in enumerate(texts):
            m = RMinHash(num_perm=NUM_PERM, seed=SEED)
            m.update(_shingle_strings(t))
            lsh.insert(i, m)
            hashes.append(m)
        pairs = [(i, j) for i, m in enumerate(hashes) for j in lsh.query(m) if j != i]
        out["clusters"] = _union_find_clusters(len(texts), pairs)
    elif variant == "rensa_bulk_flags":
        from rensa import RMinHash, RMinHashLSH

        bands, _ = _bands()
        matrix = RMinHash.digest_matrix_from_token_sets([_shingle_strings(t) for t in texts], NUM_PERM, SEED)
        flags = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=bands).insert_matrix_and_query_duplicate_flags(matrix)
        out["flagged"] = int(np.asarray(flags).sum())
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--worker", choices=VARIANTS)
    ap.add_argument("--texts", type=Path)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.texts)))
        return
    import rensa  # noqa: F401  (fail before any work if it is missing)

    results = {"command": "python benchmarks/minhash_vs_rensa.py --rows " + " ".join(map(str, args.rows)),
               "num_perm": NUM_PERM, "ngram": NGRAM, "threshold": THRESHOLD, "bands_rows": list(_bands()),
               "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            path = Path(tmp) / f"texts_{n}.parquet"
            make_texts(path, n)
            size = {}
            for variant in VARIANTS:
                run = timed([sys.executable, __file__, "--worker", variant, "--texts", str(path)])
                res = json.loads(run["output"].split("RESULT ", 1)[1].splitlines()[0])
                res["peak_rss_mb"] = run["peak_rss_mb"]
                if variant != "load_only":
                    res["rows_per_s"] = round(n / max(res["seconds"], 1e-9))
                size[variant] = res
                print(n, variant, res, flush=True)
            size["ratios"] = {
                "rensa_signatures_s / ours_signatures_s": round(size["rensa_signatures"]["seconds"] / size["ours_signatures"]["seconds"], 2),
                "rensa_loop_s / ours_step_s": round(size["rensa_loop"]["seconds"] / size["ours_step"]["seconds"], 2),
                "rensa_loop_s / ours_step_numpy_s": round(size["rensa_loop"]["seconds"] / size["ours_step_numpy"]["seconds"], 2),
                "ours_step_numpy_s / ours_step_s": round(size["ours_step_numpy"]["seconds"] / size["ours_step"]["seconds"], 2),
                "rensa_bulk_flags_s / ours_step_s": round(size["rensa_bulk_flags"]["seconds"] / size["ours_step"]["seconds"], 2),
            }
            results["sizes"][str(n)] = size
    out = ROOT / "benchmarks" / "results"
    (out / "minhash_vs_rensa.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# MinHash: ours against rensa\n\n`{results['command']}` (one process each, 128 permutations, word "
             f"5-grams, threshold {THRESHOLD}, bands x rows {results['bands_rows']})\n",
             "| rows | variant | seconds | rows/s | peak RSS MB | clusters / flagged |", "|---:|---|---:|---:|---:|---:|"]
    for n, size in results["sizes"].items():
        for v in VARIANTS:
            r = size[v]
            lines.append(f"| {int(n):,} | {v} | {r['seconds']} | {r.get('rows_per_s', '')} | {r['peak_rss_mb']} | "
                         f"{r.get('clusters', r.get('flagged', ''))} |")
        lines.append(f"| {int(n):,} | ratios | {size['ratios']} | | | |")
    (out / "minhash_vs_rensa.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
