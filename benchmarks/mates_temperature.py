"""MATES at a higher Gumbel temperature: does a less greedy selection fix what the miniature shows?

    python benchmarks/method_sweep.py mates --out /tmp/sweep_mates       # random, mates (tau 0.5), rs2
    python benchmarks/mates_temperature.py --sweep /tmp/sweep_mates --out /tmp/mates_tau2 [--temperature 2.0]

The shipped sweep (recipes/sweeps/mates.yaml) runs MATES with the official tau = 0.5; its rounds
crowd into one or two of the pool's five styles (benchmarks/results/mates.md). This trains the same
miniature with ``temperature`` (default 2.0) for each seed of the sweep -- ``recipe train
recipes/miniatures/mates.yaml "stages.0.hooks=[{mates: {..., temperature: T}}]" seed=S`` into
``<out>/seed<S>`` (a seed whose eval/results.json exists is not trained again) -- and writes
benchmarks/results/mates_temperature.json (+ .png) in the sweep's shape: random, mates (tau 0.5)
and mates at tau T, baseline random, with the selection by style of every round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
HOOK = "stages.0.hooks=[{{mates: {{select_every: 100, probes: 200, ratio: 0.2, temperature: {t}}}}}]"


def _stats(values: list[float]) -> dict:
    return {"per_seed": values, "mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _styles(run: Path) -> list[dict]:
    meta = [json.loads(m) if m else {} for m in
            pq.read_table(run / "datasets" / "pool.parquet", columns=["metadata"]).column("metadata").to_pylist()]
    hook = run / "stages" / "0-pretrain" / "hooks" / "mates"
    out = []
    for line in (hook / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "spearman" in rec:
            with np.load(hook / f"round-{rec['round']}.npz") as z:
                chosen = z["pool"][z["selected"]]
            out.append({"round": rec["round"], "spearman": rec["spearman"],
                        "selected_by_quality": dict(Counter(meta[i].get("quality") for i in chosen).most_common()),
                        "selected_by_style": dict(Counter(meta[i].get("style") for i in chosen).most_common())})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", type=Path, required=True, help="the --out of `method_sweep.py mates`")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--temperature", type=float, default=2.0)
    args = ap.parse_args()
    summary = json.loads((args.sweep / "summary.json").read_text())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    values, rounds = [], {}
    for seed in summary["seeds"]:
        run = args.out / f"seed{seed}"
        if not (run / "eval" / "results.json").is_file():
            subprocess.run([sys.executable, "-m", "recipe.cli", "train", "recipes/miniatures/mates.yaml",
                            HOOK.format(t=args.temperature), f"seed={seed}", "--out", str(run)], check=True, env=env, cwd=ROOT)
        res = json.loads((run / "eval" / "results.json").read_text())
        values.append(res["evals"]["held_out"]["models"]["pretrain"]["metrics"]["loss"]["values"]["loss"])
        rounds[seed] = _styles(run)
    name = f"mates_tau{args.temperature:g}"
    result = {"command": f"{summary['command']}; python benchmarks/mates_temperature.py " + " ".join(sys.argv[1:]),
              "metric": summary["metric"], "lower_is_better": summary["lower_is_better"], "method": name,
              "baseline": "random", "seeds": summary["seeds"],
              "variants": {"random": summary["variants"]["random"], "mates_tau0.5": summary["variants"]["mates"],
                           name: _stats(values)},
              "rounds": rounds}
    results = ROOT / "benchmarks" / "results"
    (results / "mates_temperature.json").write_text(json.dumps(result, indent=1))
    from recipe.sweep import _plot

    _plot(result, results / "mates_temperature.png")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))


if __name__ == "__main__":
    main()
