"""A method's miniature: its shipped sweep (recipes/sweeps/<method>.yaml), 3 seeds, vs its baseline.

    python benchmarks/method_sweep.py skill_it      # = recipe sweep recipes/sweeps/skill_it.yaml --out ...
    python benchmarks/method_sweep.py meco
    python benchmarks/method_sweep.py reweight
    python benchmarks/method_sweep.py iclm          # ICLM order vs random packing of the same documents

Copies the sweep's summary.json (``{command, metric, lower_is_better, method, baseline, seeds,
variants: {NAME: {per_seed, mean, std}}}``) to benchmarks/results/<method>.json, with summary.png,
summary.md and metrics.json (every eval value after every stage, per variant) beside it. For meco it
also writes meco_tokens.json: the fewest tokens at which MeCo's mean held-out loss reaches the plain
run's final loss (variants at 67%, 80% and 100% of the plain run's steps).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def meco_tokens(out: Path, results: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    v = summary["variants"]
    plain = v["plain"]["mean"]
    budgets = {"meco_67pct": 268, "meco_80pct": 320, "meco": 400}
    reach = [(steps, name) for name, steps in sorted(budgets.items(), key=lambda kv: kv[1]) if v[name]["mean"] <= plain]
    plain_at = {steps: v[name]["mean"] for name, steps in (("plain_67pct", 268), ("plain_80pct", 320), ("plain", 400))}
    meco_at = {steps: v[name]["mean"] for name, steps in budgets.items()}
    out_doc = {"plain_final_loss": plain, "plain_steps": 400,
               "meco_loss_at_steps": meco_at, "plain_loss_at_steps": plain_at,
               "fewest_meco_steps_reaching_plain": reach[0][0] if reach else None,
               "token_saving": (1 - reach[0][0] / 400) if reach else None,
               "note": "steps x the same batch of documents: tokens scale with steps"}
    (results / "meco_tokens.json").write_text(json.dumps(out_doc, indent=1))
    return out_doc


def mates_details(out: Path, results: Path) -> dict:
    """What MATES chose, round by round: the influence model's Spearman, the probing cost, and the
    selection by source, by quality label and by style (web_text's metadata), plus the held-out loss
    per style for every variant -- what the "why" in mates.md is read from."""
    from collections import Counter

    import numpy as np
    import pyarrow.parquet as pq

    summary = json.loads((out / "summary.json").read_text())
    det: dict = {"rounds": {}, "held_out_loss_by_style": {}}
    for seed in summary["seeds"]:
        run = out / "mates" / f"seed{seed}"
        pool = pq.read_table(run / "datasets" / "pool.parquet", columns=["metadata"]).column("metadata").to_pylist()
        meta = [json.loads(m) if m else {} for m in pool]
        hook = run / "stages" / "0-pretrain" / "hooks" / "mates"
        rounds = []
        for line in (hook / "log.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if "spearman" not in rec:
                continue
            with np.load(hook / f"round-{rec['round']}.npz") as z:
                chosen = z["pool"][z["selected"]]
            rounds.append({"round": rec["round"], "step": rec["step"], "spearman": rec["spearman"],
                           "seconds_per_probe": rec["seconds_per_probe"], "selected_by_source": rec["selected_by_source"],
                           "selected_by_quality": dict(Counter(meta[i].get("quality") for i in chosen).most_common()),
                           "selected_by_style": dict(Counter(meta[i].get("style") for i in chosen).most_common())})
        det["rounds"][seed] = rounds
    det["pool_by_quality"] = dict(Counter(m.get("quality") for m in meta).most_common())
    det["pool_by_style"] = dict(Counter(m.get("style") for m in meta).most_common())
    for variant in summary["variants"]:
        per: dict = {}
        for seed in summary["seeds"]:
            res = json.loads((out / variant / f"seed{seed}" / "eval" / "results.json").read_text())
            by = res["evals"]["held_out"]["models"]["pretrain"]["metrics"]["loss"].get("by_skill", {}).get("loss", {})
            for style, val in by.items():
                per.setdefault(style, []).append(val)
        det["held_out_loss_by_style"][variant] = {k: sum(v) / len(v) for k, v in sorted(per.items())}
    (results / "mates_details.json").write_text(json.dumps(det, indent=1))
    return det


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("method")
    ap.add_argument("--seeds", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix=f"{args.method}_sweep_"))
    cmd = [sys.executable, "-m", "recipe.cli", "sweep", f"recipes/sweeps/{args.method}.yaml", "--out", str(out)]
    if args.seeds:
        cmd += ["--seeds", args.seeds]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    results = ROOT / "benchmarks" / "results"
    for src, dst in (("summary.json", f"{args.method}.json"), ("summary.md", f"{args.method}.md"),
                     ("summary.png", f"{args.method}.png"), ("metrics.json", f"{args.method}_metrics.json")):
        shutil.copy(out / src, results / dst)
    if args.method == "mates":
        mates_details(out, results)
    if args.method == "meco":
        print(json.dumps(meco_tokens(out, results), indent=1))
    print((results / f"{args.method}.md").read_text()[:2000])


if __name__ == "__main__":
    main()
