"""Stage kinds by name. A stage runner is ``fn(stage, model, tokenizer, rows, stage_dir, *, seed, resume)``
returning a :class:`training.common.TrainResult`; it calls ``training.schedules.install(trainer, stage,
stage_dir)`` on its trainer so the stage's ``lr_scheduler`` (wsd, infinite, re-warming) applies and
its schedule is plotted. ``continued`` (the stage starts from an earlier stage) reaches that call
through ``schedules.stage_context``."""

from __future__ import annotations

from curation.registry import Registry
from training.pretrain import run_pretrain
from training.schedules import stage_context
from training.dpo import run_dpo
from training.rlvr import run_rlvr
from training.sft import run_sft

STAGES: Registry = Registry("stage kind")
STAGES.register("sft")(run_sft)
STAGES.register("pretrain")(run_pretrain)
STAGES.register("dpo")(run_dpo)
STAGES.register("rlvr")(run_rlvr)


def run_stage(stage, model, tokenizer, rows, stage_dir, *, seed: int, resume: bool = False, continued: bool = False):
    with stage_context(continued):
        return STAGES.get(stage.kind)(stage, model, tokenizer, rows, stage_dir, seed=seed, resume=resume)
