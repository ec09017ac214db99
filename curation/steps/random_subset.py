"""``random_subset``: a seeded uniform random sample of the rows, of a fixed budget.

The baseline every budgeted selector is measured against (PASER, quality top-k, ...): the same
number of rows (``budget``: a row count or a fraction of the pool, ``curation.budget``), drawn
uniformly without replacement with the recipe seed (or ``seed``). Dropped rows get
``random_subset_not_drawn``; the score is the row's position in the seeded permutation (lower =
drawn earlier), so a smaller budget with the same seed keeps a subset of a larger one's rows.

Why our own code: ``datasets.Dataset.shuffle().select()`` samples, but a step must decide per row
and give every dropped row a reason for the ledger.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curation.budget import BUDGET_HELP, Budget, BudgetError, budget_rows
from curation.steps import STEPS
from curation.steps.base import Decisions, Step, StepError


class RandomSubsetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budget: Budget = Field(description=BUDGET_HELP)
    seed: int | None = Field(None, description="defaults to the recipe seed")


@STEPS.register("random_subset")
class RandomSubset(Step):
    name = "random_subset"
    version = "1"
    Params = RandomSubsetParams

    def decide(self, rows) -> Decisions:
        n = len(rows)
        try:
            k = budget_rows(self.params.budget, n)
        except BudgetError as exc:
            raise StepError(f"random_subset: {exc}") from None
        seed = self.params.seed if self.params.seed is not None else self.ctx.seed
        order = np.random.default_rng(seed).permutation(n)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        keep = rank < k
        reason = [None if kept else "random_subset_not_drawn" for kept in keep]
        return Decisions(keep=keep, score=rank.astype(np.float64), reason=reason,
                         extras={"budget": int(k), "pool": n, "seed": seed})
