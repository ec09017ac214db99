"""Benchmark: recipes/tulu3_tiny.yaml on CPU, stage by stage, as the shipped sweep
recipes/sweeps/tulu3_tiny.yaml (SFT vs SFT+DPO vs SFT+DPO+RLVR, seeds 0 1 2, shared cache).

    python benchmarks/tulu3_tiny.py            # = recipe sweep recipes/sweeps/tulu3_tiny.yaml --out ...

Copies the sweep's summary.json (the shape every method comparison uses), summary.md and summary.png
to benchmarks/results/tulu3_tiny.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default=None, help="comma-separated (default: the sweep file's 0,1,2)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="tulu3_tiny_sweep_"))
    cmd = [sys.executable, "-m", "recipe.cli", "sweep", "recipes/sweeps/tulu3_tiny.yaml", "--out", str(out)]
    if args.seeds:
        cmd += ["--seeds", args.seeds]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    results = ROOT / "benchmarks" / "results"
    for src, dst in (("summary.json", "tulu3_tiny.json"), ("summary.md", "tulu3_tiny.md"), ("summary.png", "tulu3_tiny.png"),
                     ("metrics.json", "tulu3_tiny_metrics.json")):
        shutil.copy(out / src, results / dst)
    print((results / "tulu3_tiny.md").read_text())


if __name__ == "__main__":
    main()
