"""What a sweep and a cached re-run cost: ``recipe sweep`` of 2 variants x 3 seeds of the quickstart
vs the 6 independent ``recipe train`` runs a user would otherwise start (each its own run directory
and cache), and a second ``recipe eval`` of a finished run (every eval node cached: nothing to do).

The variants differ in the SFT learning rate only (3e-3 vs 1e-3), so in the sweep the curation and
the base model of a seed are built once for both variants. ``--max-steps`` shortens the stage for
both sides alike (default 300 of the quickstart's 1500).

    python benchmarks/sweep_overhead.py [--max-steps 300]

Writes benchmarks/results/sweep_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "quickstart.yaml"


def _run(args: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "recipe.cli", *args], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sweep_overhead_"))
    steps = f"stages.0.max_steps={args.max_steps}"
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs = ["3e-3", "1e-3"]
    independent = []
    for lr in lrs:
        for seed in seeds:
            independent.append(_run(["train", str(RECIPE), steps, f"stages.0.lr={lr}", f"seed={seed}",
                                     "--out", str(work / f"independent_{lr}_{seed}")]))
            print(f"independent lr={lr} seed={seed}: {independent[-1]:.1f} s", flush=True)
    sweep_s = _run(["sweep", str(RECIPE), "--seeds", args.seeds, "--vary", f"stages.0.lr={','.join(lrs)}",
                    "--out", str(work / "sweep"), steps])
    print(f"sweep: {sweep_s:.1f} s", flush=True)
    cached_eval = _run(["eval", str(RECIPE), steps, "stages.0.lr=3e-3", "seed=0", "--out", str(work / "independent_3e-3_0")])
    print(f"cached re-run of recipe eval: {cached_eval:.1f} s", flush=True)
    summary = json.loads((work / "sweep" / "summary.json").read_text())
    result = {"command": "python benchmarks/sweep_overhead.py " + " ".join(sys.argv[1:]), "max_steps": args.max_steps,
              "variants": lrs, "seeds": seeds, "independent_seconds": [round(x, 1) for x in independent],
              "independent_total_s": round(sum(independent), 1), "sweep_total_s": round(sweep_s, 1),
              "ratio_sweep_over_independent": round(sweep_s / sum(independent), 3),
              "cached_eval_rerun_s": round(cached_eval, 1), "sweep_summary": summary}
    (ROOT / "benchmarks" / "results" / "sweep_overhead.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "sweep_summary"}, indent=1))


if __name__ == "__main__":
    main()
