"""Time per training step with each training-time data hook vs the same stage without (issue 13).

Two stages from the miniatures: the SFT stage of ``recipes/miniatures/skill_it.yaml`` (per-skill
validation every 100 steps) with no hook, ``rs2``, ``reweight`` and ``skill_it``; and the pretrain
stage of ``recipes/miniatures/meco.yaml`` with no hook, ``meco`` and ``reweight``. Each variant is
prepared once by ``recipe train`` (curation, the stage's datasets, a Skill-it graph estimate: not
timed), then its ``job.json`` is run again with ``training.job.run_job`` in this one process,
variants interleaved and their order rotated each repetition. A callback stamps every
``on_step_end``; a step's time is the gap to the previous stamp, and gaps that hold an evaluation
round or a checkpoint save are dropped (the issue's "excluding evaluation rounds"), as are the
first 5 steps. Reports the median step time per variant (pooled over repetitions) and its ratio to
the same stage without hooks (goal <= 1.05).

    python benchmarks/hooks_overhead.py [--steps 200] [--reps 3]
Writes benchmarks/results/hooks_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = {
    "sft": ("recipes/miniatures/skill_it.yaml", {
        "none": [],
        "rs2": ["stages.0.hooks=[{rs2: {fraction: 0.25}}]"],
        "reweight": ["stages.0.hooks=[{reweight: {strategy: linupper, r: 0.4, burn_in: 0}}]"],
        "skill_it": ["stages.0.hooks=[{skill_it: {graph: {estimate: {steps: 20}}, eta: 0.8, update_steps: 100, "
                     "targets: [mul]}}]"],
    }),
    "pretrain": ("recipes/miniatures/meco.yaml", {
        "none": [],
        "meco": ["stages.0.hooks=[{meco: {cooldown: 0.1}}]"],
        "reweight": ["stages.0.hooks=[{reweight: {strategy: linupper, r: 0.4, burn_in: 0}}]"],
    }),
}


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.gaps, self.last, self.dirty, self.step = [], None, False, 0

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            self.step += 1
            if self.last is not None and not self.dirty and self.step > 5:
                self.gaps.append(now - self.last)
            self.last, self.dirty = now, False

        def on_evaluate(self, args, state, control, **kw):
            self.dirty = True

        def on_save(self, args, state, control, **kw):
            self.dirty = True

    return StepTimer()


def prepare(recipe: str, overrides: list[str], steps: int, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "recipe.cli", "train", recipe, f"stages.0.max_steps={steps}", "eval={}",
           *overrides, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    jobs = sorted(out.glob("stages/*/job.json"))
    if not jobs:
        raise SystemExit(f"no job.json under {out}/stages")
    return json.loads(jobs[0].read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    import torch

    from training.job import run_job

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="rk-hooks-overhead-"))
    jobs = {(stage, name): prepare(recipe, ov, a.steps, work / f"{stage}-{name}")
            for stage, (recipe, variants) in STAGES.items() for name, ov in variants.items()}
    gaps: dict[tuple[str, str], list[float]] = {k: [] for k in jobs}
    for rep in range(a.reps):
        for stage, (_, variants) in STAGES.items():
            names = list(variants)
            names = names[rep % len(names):] + names[: rep % len(names)]
            for name in names:
                job = dict(jobs[(stage, name)], resume=False, stage_dir=str(work / f"run-{stage}-{name}-{rep}"))
                Path(job["stage_dir"]).mkdir(parents=True)
                timer = step_timer()
                run_job(job, callbacks=[timer])
                gaps[(stage, name)] += timer.gaps
                print(f"rep {rep} {stage}/{name}: median step {statistics.median(timer.gaps) * 1e3:.1f} ms "
                      f"over {len(timer.gaps)} steps", flush=True)
    result = {"command": "python benchmarks/hooks_overhead.py " + " ".join(sys.argv[1:]),
              "steps": a.steps, "reps": a.reps, "goal": "ratio <= 1.05",
              "threads": torch.get_num_threads(), "stages": {}}
    for stage, (recipe, variants) in STAGES.items():
        base = statistics.median(gaps[(stage, "none")])
        result["stages"][stage] = {"recipe": recipe, "variants": {
            name: {"overrides": variants[name], "median_step_ms": round(statistics.median(gaps[(stage, name)]) * 1e3, 2),
                   "steps_timed": len(gaps[(stage, name)]),
                   "ratio_to_none": round(statistics.median(gaps[(stage, name)]) / base, 3)}
            for name in variants}}
    path = ROOT / "benchmarks" / "results" / "hooks_overhead.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["stages"], indent=1))


if __name__ == "__main__":
    main()
