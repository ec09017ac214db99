"""The ``prune`` stage kind: magnitude-prune the model the stage starts from, with no data.

    stages:
      - {kind: prune, name: prune, sparsity: 0.5, modules: mlp}     # "prune 50% of MLP weights"
      - {kind: sft, data: paser, peft: {name: lora, r: 8, alpha: 16}} # "... then recover"

The stage's output (``stages/<i>-prune/final``) is the pruned model, so the next stage (a LoRA
recovery) starts from it, and every eval runs on it like on any stage's output (the card shows the
loss the pruning cost and what recovery won back). The pruning is ``curation.prune.magnitude_prune``
-- the same function a selection step uses to build a degraded copy in-process
(``paser``'s ``degraded: {prune: ...}``), so the step scores exactly the model this stage trains.

A prune stage reads no data (``data`` stays unset: the recipe checks, the plan and the stage loop
skip its data), trains nothing and takes no hooks: the training keys every other kind shares
(``lr``, ``epochs``, ``peft``, ``hooks``, ...) are refused when set, rather than silently ignored.

Note: a LoRA recovery stage with ``merge: true`` merges its low-rank update into every weight, so
the recovered model is dense again (the zeros are not kept); ``merge: false`` keeps the pruned base
and the adapter apart, as PASER's recovery saves it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from curation.prune import MODULE_CHOICES, Modules, magnitude_prune
from training.common import StageContext, TrainResult
from training.config import StageBase
from training.kinds import register_kind

_NOT_TRAINING = {"name", "from_", "data", "kind", "sparsity", "modules"}


class PruneStage(StageBase):
    """Per-matrix unstructured magnitude pruning (``curation.prune``) of the start model."""

    row_kinds: ClassVar[frozenset[str]] = frozenset()

    kind: Literal["prune"]
    data: str | None = Field(None, description="a prune stage reads no data: leave unset")
    sparsity: float = Field(0.5, gt=0, lt=1, description="share of each selected weight matrix set to zero")
    modules: Modules = Field("mlp", description=f"which linear layers: {', '.join(MODULE_CHOICES)}")

    @model_validator(mode="after")
    def _nothing_to_train(self):
        if self.data is not None:
            raise ValueError("a prune stage reads no data: remove `data` (the next stage names the recovery data)")
        set_keys = []
        for name, finfo in StageBase.model_fields.items():
            if name in _NOT_TRAINING:
                continue
            if getattr(self, name) != finfo.get_default(call_default_factory=True):
                set_keys.append(finfo.alias or name)
        if set_keys:
            raise ValueError(f"a prune stage trains nothing: {', '.join(sorted(set_keys))} "
                             f"{'does' if len(set_keys) == 1 else 'do'} not apply (it takes sparsity, modules, name, from)")
        return self


def run_prune(ctx: StageContext) -> TrainResult:
    stage = ctx.stage
    report = magnitude_prune(ctx.model, stage.sparsity, stage.modules)
    final = Path(ctx.stage_dir) / "final"
    if int(os.environ.get("RANK", "0")) == 0:  # under a launch every rank prunes the same; one writes
        tmp = Path(ctx.stage_dir) / "final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        ctx.model.save_pretrained(tmp)
        ctx.tokenizer.save_pretrained(tmp)
        (tmp / "prune.json").write_text(json.dumps(report, indent=1))
        (tmp / "train_log.json").write_text("[]")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    metrics = {"pruned_matrices": report["matrices"], "pruned_parameters": report["zeroed"],
               "achieved_sparsity": report["achieved_sparsity"], "num_tokens": 0}
    return TrainResult(final, metrics, [])


register_kind("prune", PruneStage, run_prune)
