"""PASER's miniature: does recovering a pruned model on PASER's selection beat a random subset?

    python benchmarks/paser.py                       # the original, then the 3-seed sweep (CPU: ~30-60 min)
    python benchmarks/paser.py --seeds 0 --out /tmp/paser    # one seed

1. Trains the "original" (recipes/miniatures/paser_original.yaml): a tiny Llama on addition,
   subtraction and multiplication, plus 2,000 Alpaca instructions when ../shared/data/alpaca is
   present (skipped cleanly otherwise).
2. Sweeps recipes/sweeps/paser.yaml from that model (``model.init=null model.path=<original>``, an
   override applied to every variant): prune 80% of the MLP weights (50% costs the tiny original nothing: see recipes/paser_tiny.yaml) -> select -> LoRA recovery, 3
   epochs, for PASER at 10% and 20% of the pool, PASER at 10% without its concept filter, random
   10% / 20%, RS2 (a fresh random 10% every epoch: the 10% variants' steps) and the whole pool; the
   pool gets 1,000 other Alpaca rows and a 200-row Alpaca test set when the shared data is there.
3. Copies the sweep's summary.json (``{command, metric, lower_is_better, method, baseline, seeds,
   variants: {NAME: {per_seed, mean, std}}}``: held-out arithmetic loss after recovery, baseline
   random_10) to benchmarks/results/paser.json with paser.png, paser.md and paser_metrics.json
   (every eval value after every stage), and writes paser_details.json: held-out loss and accuracy
   per skill for every variant, the model before and after pruning, what each selection holds by
   skill, and PASER's own facts (CDS and budget per cluster, rows the concept filter rejected,
   budget left unspent) -- what the "why" in paser.md is read from.
4. Writes benchmarks/results/rs2.json (+ rs2.png): the same sweep's RS2 comparison as the RS2 paper
   makes it (Okanovic et al. 2023: a fresh random 10% every epoch vs one static random 10%, the same
   steps; the whole pool for reference), baseline random_10; and random_subset.json (+ .png): random
   10% and 20% against the whole pool (baseline full), what a random budget costs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the shared data next to the checkout (RECIPE_KIT_SHARED names it elsewhere, e.g. from a git worktree)
ALPACA = Path(os.environ.get("RECIPE_KIT_SHARED", ROOT.parent / "shared")) / "data" / "alpaca" / "alpaca_5000.json"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}


def alpaca_splits(work: Path) -> dict[str, Path] | None:
    """Disjoint slices of the shared Alpaca sample: original's training, recovery pool, test."""
    if not ALPACA.is_file():
        return None
    rows = json.loads(ALPACA.read_text())
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, part in (("train", rows[:2000]), ("pool", rows[2000:3000]), ("test", rows[3000:3200])):
        path = work / f"alpaca_{name}.json"
        path.write_text(json.dumps(part))
        out[name] = path
    return out


def _source(path: Path) -> str:
    return f"{{path: '{path}', format: alpaca, skill: alpaca, license: CC-BY-NC-4.0}}"


def recipe(*args: str) -> None:
    cmd = [sys.executable, "-m", "recipe.cli", *args]
    print("$ recipe " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, env=ENV, cwd=ROOT)


def _mean_std(values: list) -> dict:
    vals = [v for v in values if v is not None]
    return {"per_seed": values, "mean": statistics.mean(vals) if vals else None,
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0 if vals else None}


def details(sweep_dir: Path, seeds: list[int]) -> dict:
    """Per-skill held-out values, the pruning damage, and what each selection holds."""
    summary = json.loads((sweep_dir / "summary.json").read_text())
    out: dict = {"variants": {}}
    for variant in summary["variants"]:
        runs = [sweep_dir / variant / f"seed{s}" for s in seeds]
        per: dict = {}
        for run in runs:
            res = json.loads((run / "eval" / "results.json").read_text())
            models = res["models"]
            for ev, e in res["evals"].items():
                for model in (models[0], "prune", models[-1]):
                    entry = e["models"].get(model)
                    if entry is None:
                        continue
                    label = {models[0]: "original", "prune": "pruned"}.get(model, "recovered")
                    for metric, m in entry["metrics"].items():
                        for key, val in m["values"].items():
                            per.setdefault(f"{label}/{ev}/{key}", []).append(val)
                        for key, skills in (m.get("by_skill") or {}).items():
                            for skill, val in skills.items():
                                per.setdefault(f"{label}/{ev}/{key}/{skill}", []).append(val)
        selection = []
        for run in runs:
            import pyarrow.parquet as pq

            skills = Counter(pq.read_table(run / "datasets" / "pool.parquet", columns=["skill"]).column("skill").to_pylist())
            cur = json.loads((run / "curation.json").read_text())
            funnel = cur["mixtures"]["pool"]["funnel"]
            step = funnel[-1]
            entry = {"rows": sum(skills.values()), "by_skill": dict(sorted(skills.items())),
                     "pool_rows": funnel[1]["rows_out"] if len(funnel) > 1 else funnel[0]["rows_out"]}
            ex = step.get("extras") or {}
            if step["step"] == "paser":
                table = (ex.get("card_section") or {}).get("table") or []
                entry["paser"] = {k: ex.get(k) for k in ("budget", "selected", "unused_budget", "mean_jsd",
                                                         "mean_jsd_selected", "concept_graph_nodes")}
                entry["paser"]["clusters"] = [{k: c.get(k) for k in ("cluster", "size", "top_skill", "cds", "budget",
                                                                   "selected", "concept_conflicts")} for c in table]
                entry["paser"]["dropped"] = step.get("dropped")
            selection.append(entry)
        out["variants"][variant] = {"values": {k: _mean_std(v) for k, v in sorted(per.items())}, "selection": selection}
    return out


def markdown(det: dict) -> str:
    lines = ["", "## per skill (mean over seeds)", ""]
    keys = sorted({k for v in det["variants"].values() for k in v["values"] if k.startswith("recovered/")})
    lines += ["| variant | " + " | ".join(k.removeprefix("recovered/") for k in keys) + " |",
              "|---|" + "---:|" * len(keys)]
    for name, v in det["variants"].items():
        cells = [v["values"].get(k, {}).get("mean") for k in keys]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.4g}" for c in cells) + " |")
    first = next(iter(det["variants"].values()))["values"]
    lines += ["", "Before recovery: " + ", ".join(f"{k} {v['mean']:.4g}" for k, v in first.items()
                                                   if k.startswith(("original/", "pruned/")) and v["mean"] is not None), ""]
    lines += ["## what each selection holds (seed 0)", "", "| variant | rows | by skill |", "|---|---:|---|"]
    for name, v in det["variants"].items():
        s = v["selection"][0]
        lines.append(f"| {name} | {s['rows']} | " + ", ".join(f"{k} {n}" for k, n in s["by_skill"].items()) + " |")
    return "\n".join(lines) + "\n"


def subset_results(summary: dict, results: Path, method: str, baseline: str, variants: tuple[str, ...]) -> dict:
    """One method's own comparison out of the PASER sweep (``<method>.json`` and ``.png``)."""
    from recipe.sweep import _plot

    out = {**summary, "method": method, "baseline": baseline,
           "command": summary["command"] + f"; {method}.json: its {', '.join(variants)} variants",
           "variants": {k: summary["variants"][k] for k in variants}}
    (results / f"{method}.json").write_text(json.dumps(out, indent=1))
    _plot(out, results / f"{method}.png")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default=None, help="comma-separated (default: the sweep file's 0,1,2)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--original-steps", type=int, default=None, help="override the original's max_steps")
    ap.add_argument("--no-alpaca", action="store_true", help="arithmetic only, even when ../shared is present")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="paser_bench_")).resolve()
    splits = None if args.no_alpaca else alpaca_splits(out / "alpaca")
    print(f"Alpaca: {'from ' + str(ALPACA) if splits else 'not used (../shared/data/alpaca absent or --no-alpaca)'}")

    original = out / "original"
    over = []
    if splits:
        over += [f"sources.alpaca={_source(splits['train'])}", "mixtures.train.alpaca=1.0"]
    if args.original_steps:
        over.append(f"stages.0.max_steps={args.original_steps}")
    recipe("train", "recipes/miniatures/paser_original.yaml", *over, "--out", str(original))
    final = original / "stages" / "0-sft" / "final"

    sweep_over = ["model.init=null", f"model.path={final}"]
    if splits:
        sweep_over += [f"sources.pool_alpaca={_source(splits['pool'])}", "mixtures.pool.pool_alpaca=1.0",
                       f"sources.alpaca_test={_source(splits['test'])}",
                       "eval.alpaca_test={source: alpaca_test, suite: dev, metrics: [loss]}"]
    sweep_dir = out / "sweep"
    recipe("sweep", "recipes/sweeps/paser.yaml", *sweep_over, "--out", str(sweep_dir),
           *(["--seeds", args.seeds] if args.seeds else []))

    results = ROOT / "benchmarks" / "results"
    for src, dst in (("summary.json", "paser.json"), ("summary.png", "paser.png"), ("metrics.json", "paser_metrics.json")):
        shutil.copy(sweep_dir / src, results / dst)
    summary = json.loads((sweep_dir / "summary.json").read_text())
    summary["command"] = "python benchmarks/paser.py " + " ".join(sys.argv[1:]) + f"  # runs: {summary['command']}"
    (results / "paser.json").write_text(json.dumps(summary, indent=1))
    seeds = summary["seeds"]
    # RS2 as its paper compares it: a fresh random 10% per epoch vs one static random 10%, same steps
    subset_results(summary, results, "rs2", "random_10", ("random_10", "rs2", "full"))
    # the random_subset step itself: what training on a random 10% / 20% costs against the whole pool
    subset_results(summary, results, "random_subset", "full", ("full", "random_10", "random_20"))
    det = details(sweep_dir, seeds)
    det["alpaca"] = bool(splits)
    (results / "paser_details.json").write_text(json.dumps(det, indent=1))
    (results / "paser.md").write_text((sweep_dir / "summary.md").read_text() + markdown(det))
    print((results / "paser.md").read_text()[:4000])


if __name__ == "__main__":
    main()
