"""Stage kinds by name. A stage runner is ``fn(stage, model, tokenizer, rows, stage_dir, *, seed, resume)``
returning a :class:`training.common.TrainResult`."""

from __future__ import annotations

from curation.registry import Registry
from training.sft import run_sft

STAGES: Registry = Registry("stage kind")
STAGES.register("sft")(run_sft)


def run_stage(stage, model, tokenizer, rows, stage_dir, *, seed: int, resume: bool = False):
    return STAGES.get(stage.kind)(stage, model, tokenizer, rows, stage_dir, seed=seed, resume=resume)
