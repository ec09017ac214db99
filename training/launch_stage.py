"""Entry point of a launched stage: ``python -m training.launch_stage JOB.json`` on every rank.

The runner (``recipe.run``) curates the data and builds the base model once, in its own process,
then writes a job file and launches this module under ``accelerate launch`` / ``torchrun``
(``training.launch``). Each rank reads the job, loads the stage's dataset (Parquet) and start
model, and runs the one stage through ``training.stages.run_stage``; the HF Trainer does the
data-parallel/sharded part. Rank 0 writes ``result.json`` next to the job. It imports the stage
schema (``recipe.schema``) to rebuild the stage config, and never ``recipe.run`` or ``recipe.cli``.

Job keys: ``stage`` (the resolved stage mapping), ``start_model``, ``adapter`` (frozen|train|merge,
see ``training.models.load_model``), ``dtype``, ``data`` (Parquet path), ``stage_dir``, ``seed``,
``resume``, ``continued``, ``revisions`` (path -> pinned revision: ``model.revision`` of the base model),
``trust_remote_code``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def load_job(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def run_job(job: dict) -> dict:
    import datasets

    from recipe.schema import stage_models
    from training.models import load_model, load_policy, load_tokenizer
    from training.stages import run_stage

    stage = stage_models()[job["stage"]["kind"]].model_validate(job["stage"])
    rows = datasets.Dataset.from_parquet(job["data"])
    with load_policy(job.get("revisions"), job.get("trust_remote_code", False)):
        model = load_model(job["start_model"], dtype=job.get("dtype", "float32"), adapter=job.get("adapter", "frozen"))
        tokenizer = load_tokenizer(job["start_model"])
        result = run_stage(stage, model, tokenizer, rows, Path(job["stage_dir"]), seed=job["seed"],
                           resume=job.get("resume", False), continued=job.get("continued", False))
    return {"metrics": result.metrics, "model_dir": str(result.model_dir),
            "world_size": int(os.environ.get("WORLD_SIZE", "1"))}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m training.launch_stage JOB.json", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    job_path = Path(argv[0])
    out = run_job(load_job(job_path))
    if int(os.environ.get("RANK", "0")) == 0:
        (job_path.parent / "result.json").write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
