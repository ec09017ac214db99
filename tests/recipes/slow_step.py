"""A curation step that sleeps before keeping every row (tests kill a run while it writes its entry)."""

import time

import numpy as np
from pydantic import BaseModel, ConfigDict

from curation.steps.base import Decisions, Step


class SlowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 30.0


class SlowKeepAll(Step):
    name = "slow_keep_all"
    version = "1"
    Params = SlowParams

    def decide(self, rows) -> Decisions:
        time.sleep(self.params.seconds)
        return Decisions(keep=np.ones(len(rows), dtype=bool), score=np.zeros(len(rows)), reason=[None] * len(rows))
