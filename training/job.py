"""A stage job: everything one stage needs to train, in one JSON file, and the one function that runs it.

The stage loop (``training.stage_loop``) prepares the data in its own single process (the curated
dataset, pairs, validation sets, each written as Parquet), resolves every model the stage names, and
writes ``stages/<i>-<kind>/job.json``. Then the same :func:`run_job` runs it: in-process, or under
``accelerate launch`` / ``torchrun`` on every rank (``python -m training.launch_stage job.json``).
Rank 0 writes ``result.json`` next to the job either way, so an in-process and a launched stage
produce the same files. Nothing here prepares data: a launched job only reads what it was given.

Job keys: ``stage`` (the resolved stage mapping), ``start_model``, ``adapter`` (frozen | train |
merge, see ``training.models.load_model``), ``models`` (a kind's extra model keys resolved to
directories, e.g. DPO's ``ref``), ``dtype``, ``revisions`` (path -> pinned revision: the base model's
``model.revision``), ``trust_remote_code``, ``datasets`` (``train``: a Parquet path; ``validation``:
name -> Parquet path), ``stage_dir``, ``seed`` (the recipe's), ``resume``, ``continued``, ``run_name``,
``hook_inputs`` (files the stage loop prepared for the stage's hooks, e.g. a Skill-it graph).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

JOB_FILE = "job.json"
RESULT_FILE = "result.json"


def write_job(job: dict, stage_dir: Path) -> Path:
    from curation.files import atomic_write_text

    path = Path(stage_dir) / JOB_FILE
    atomic_write_text(path, json.dumps(job, indent=1, default=str))
    return path


def read_job(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def stage_config(job: dict):
    from training.kinds import STAGE_KINDS

    return STAGE_KINDS.get(job["stage"]["kind"]).config.model_validate(job["stage"])


def run_job(job: dict, callbacks: list | None = None, trainer_hooks: list | None = None) -> dict[str, Any]:
    """Run one stage job on this process (one rank of a launch, or the only process). ``callbacks``
    (HF ``TrainerCallback``) and ``trainer_hooks`` (``fn(trainer, ctx)``) are added to the trainer."""
    import datasets

    from training.common import StageContext
    from training.kinds import STAGE_KINDS
    from training.models import load_model, load_policy, load_tokenizer

    stage = stage_config(job)
    sets = job["datasets"]
    train = datasets.Dataset.from_parquet(sets["train"]) if sets.get("train") else None  # None: a kind without data
    validation = {name: datasets.Dataset.from_parquet(p) for name, p in (sets.get("validation") or {}).items()}
    stage_dir = Path(job["stage_dir"])
    with load_policy(job.get("revisions"), job.get("trust_remote_code", False)):
        model = load_model(job["start_model"], dtype=job.get("dtype", "float32"), adapter=job.get("adapter", "frozen"))
        tokenizer = load_tokenizer(job["start_model"])
        ctx = StageContext(stage=stage, model=model, tokenizer=tokenizer, train=train, validation=validation,
                           stage_dir=stage_dir, seed=job["seed"], resume=job.get("resume", False),
                           continued=job.get("continued", False), models=job.get("models") or {},
                           callbacks=list(callbacks or []), trainer_hooks=list(trainer_hooks or []),
                           run_name=job.get("run_name", ""), hook_inputs=job.get("hook_inputs") or {})
        result = STAGE_KINDS.get(stage.kind).run(ctx)
    out = {"metrics": result.metrics, "model_dir": str(result.model_dir),
           "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
    if int(os.environ.get("RANK", "0")) == 0:
        from curation.files import atomic_write_text

        atomic_write_text(stage_dir / RESULT_FILE, json.dumps(out, indent=1, default=str))
    return out
