"""``rs2``: Repeated Sampling of Random Subsets (Okanovic et al. 2023, "Repeated Random Sampling for
Minimizing the Time-to-Accuracy of Learning", Algorithm 1).

Each epoch the trainer sees a fresh random ``fraction`` of the stage dataset, so an epoch costs
``fraction`` of a full one and, over epochs, the whole pool is visited -- the cheap baseline the
paper shows most static data selectors fail to beat at an equal budget. ``replace: false`` (the
paper's RS2 without replacement): the pool is permuted once per pass and consumed in consecutive
chunks of ``fraction x N`` rows, epoch after epoch, so no row repeats before every row was seen;
``replace: true``: every epoch draws its subset independently. Each epoch's subset is a pure
function of (seed, epoch), so ranks agree and a resume replays it; it is logged per epoch.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from training.hooks import HOOKS
from training.hooks.base import Hook
from training.hooks.samplers import FunctionSampler, rng


class RS2Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fraction: float = Field(0.1, gt=0, le=1, description="share of the dataset seen per epoch")
    replace: bool = Field(False, description="draw each epoch's subset independently (else: without replacement)")


def rs2_indices(n: int, fraction: float, replace: bool, seed: int, epoch: int) -> np.ndarray:
    size = max(1, int(math.floor(fraction * n)))
    if replace:
        return rng(seed, epoch).choice(n, size=size, replace=False)
    per_pass = max(1, n // size)  # whole chunks per permutation of the pool
    p, k = divmod(epoch, per_pass)
    order = rng(seed, 1_000_003 + p).permutation(n)
    return order[k * size:(k + 1) * size]


@HOOKS.register("rs2")
class RS2(Hook):
    name = "rs2"
    Params = RS2Params
    stage_kinds = frozenset({"sft", "pretrain", "dpo"})

    def sampler(self, trainer):
        n, p, seed = len(trainer.train_dataset), self.params, self.ctx.seed
        self._n = n

        def epoch_indices(epoch: int):
            idx = rs2_indices(n, p.fraction, p.replace, seed, epoch)
            if getattr(self, "_logged", -1) < epoch:
                self._logged = epoch
                self.log({"epoch": epoch, "rows": int(len(idx)), "first": idx[:5].tolist()})
            return idx

        return FunctionSampler(n, seed, epoch_indices, length=lambda e: max(1, int(math.floor(p.fraction * n))))

    def summary(self) -> dict:
        return {"fraction": self.params.fraction, "replace": self.params.replace}
