"""Benchmark: recipes/tulu3_tiny.yaml on CPU, held-out exact-answer accuracy after each stage.

For each seed the whole recipe runs (curation, base model, SFT -> DPO -> RLVR, eval of the base and of
every stage's output on the held-out arithmetic test split); the table gives the mean and the
per-seed values. Writes benchmarks/results/tulu3_tiny.json and .md.

    python benchmarks/tulu3_tiny.py                 # seeds 0 1 2
    python benchmarks/tulu3_tiny.py --seeds 0 --stages sft    # a subset (reported as such)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_seed(seed: int, stages: list[str] | None, workdir: Path) -> dict:
    from recipe.load import load_recipe
    from recipe.run import Runner

    doc = yaml.safe_load((ROOT / "recipes" / "tulu3_tiny.yaml").read_text())
    if stages:
        doc["stages"] = [s for s in doc["stages"] if s["name"] in stages]
    path = workdir / f"tulu3_tiny_seed{seed}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    started = time.time()
    runner = Runner(load_recipe(path, [f"seed={seed}"]), out=workdir / f"seed{seed}")
    runner.train()
    results = runner.evaluate()
    seconds = time.time() - started
    acc = {model: res["metrics"]["accuracy"]["values"]["accuracy"]
           for model, res in results["evals"]["arith_test"]["models"].items()}
    return {"seed": seed, "accuracy": acc, "n": results["evals"]["arith_test"]["models"]["base"]["metrics"]["accuracy"]["n"], "seconds": round(seconds, 1),
            "timings": {k: round(v, 1) for k, v in runner.timings.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--stages", nargs="+", default=None, help="stage names to keep (default: all three)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tulu3_tiny_"))
    workdir.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        runs.append(run_seed(seed, args.stages, workdir))
        print(json.dumps(runs[-1]), flush=True)
    models = list(runs[0]["accuracy"])
    summary = {m: {"mean": statistics.mean(r["accuracy"][m] for r in runs),
                   "per_seed": [r["accuracy"][m] for r in runs]} for m in models}
    out = {"recipe": "recipes/tulu3_tiny.yaml", "command": "python benchmarks/tulu3_tiny.py " + " ".join(sys.argv[1:]),
           "seeds": args.seeds, "stages": args.stages or "all", "summary": summary, "runs": runs}
    (ROOT / "benchmarks" / "results" / "tulu3_tiny.json").write_text(json.dumps(out, indent=1))
    lines = ["# tulu3_tiny: held-out accuracy after each stage (CPU)", "",
             f"Command: `{out['command']}`; seeds {args.seeds}; {runs[0]['n']} held-out problems per seed.", "",
             "| model | mean accuracy | per seed |", "|---|---|---|"]
    for m in models:
        lines.append(f"| {m} | {summary[m]['mean']:.3f} | {', '.join(f'{v:.3f}' for v in summary[m]['per_seed'])} |")
    lines += ["", "Wall time per seed (s): " + ", ".join(str(r["seconds"]) for r in runs)]
    (ROOT / "benchmarks" / "results" / "tulu3_tiny.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
