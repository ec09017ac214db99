"""Per-row loss of a trained run's model on its own training rows, by web_text's quality label.

    python benchmarks/loss_by_quality.py /tmp/sweep_reweight/uniform/seed0 [--rows 600]

Reads ``<run>/datasets/<stage data>.parquet`` and ``<run>/stages/0-*/final``, scores a seeded sample
of rows (mean token cross-entropy, the first 96 tokens) and prints, per ``metadata.quality``
(clean, noise, duplicate), the mean loss and the share of rows in the top-loss quartile: what a
loss-based reweighting (``reweight``) upweights in that pool.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from curation.lm_loss import load_scoring_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--max-length", type=int, default=96)
    args = ap.parse_args()
    final = next(args.run.glob("stages/0-*/final"))
    data = next((args.run / "datasets").glob("*.parquet"))
    model, tok = load_scoring_model(str(final))
    rows = pq.read_table(data, columns=["text", "metadata"]).to_pylist()
    pick = np.random.default_rng(0).choice(len(rows), min(args.rows, len(rows)), replace=False)
    by: dict[str, list[float]] = defaultdict(list)
    with torch.no_grad():
        for i in pick:
            ids = tok(rows[i]["text"], return_tensors="pt", truncation=True, max_length=args.max_length).input_ids
            if ids.shape[1] >= 2:
                by[json.loads(rows[i]["metadata"] or "{}").get("quality")].append(float(model(ids, labels=ids).loss))
    top = np.quantile(np.concatenate([np.asarray(v) for v in by.values()]), 0.75)
    out = {str(q): {"rows": len(v), "mean_loss": float(np.mean(v)), "share_in_top_loss_quartile": float(np.mean(np.asarray(v) >= top))}
           for q, v in by.items()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
