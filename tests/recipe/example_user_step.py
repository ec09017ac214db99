"""A user's own curation step, referenced from a recipe by dotted path (tests only)."""

import numpy as np
from pydantic import BaseModel, ConfigDict

from curation.steps.base import Decisions, Step


class EveryNthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = 2


class KeepEveryNth(Step):
    name = "keep_every_nth"
    version = "1"
    Params = EveryNthParams

    def decide(self, rows) -> Decisions:
        idx = np.arange(len(rows))
        keep = idx % self.params.n == 0
        return Decisions(keep=keep, score=idx.astype(float), reason=[None if k else "not_nth" for k in keep])
