"""A selection budget in rows: a row count (int) or a fraction of the pool (float), shared by the
budgeted selectors (``random_subset``, ``paser``) so the same recipe value means the same number of
rows in each of them.

* an ``int`` ``n >= 1`` is n rows (``1`` is one row; write ``1.0`` for the whole pool);
* a ``float`` ``0 < f <= 1`` is ``floor(f * N)`` rows of a pool of N (at least one row), with a
  1e-9 tolerance so ``0.29 * 100`` is 29 rows, not 28.

A row count larger than the pool is an error (:class:`BudgetError`, with the numbers), never a
silent "keep everything".
"""

from __future__ import annotations

import math
from typing import Annotated, Union

from pydantic import Field

Budget = Union[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0, le=1)]]
BUDGET_HELP = "rows to keep (an int, e.g. 2000) or a fraction of the pool (a float in (0, 1], e.g. 0.1)"


class BudgetError(ValueError):
    pass


def budget_rows(budget: int | float, pool: int, what: str = "budget") -> int:
    """The budget as a number of rows of a pool of ``pool`` rows."""
    if isinstance(budget, bool):
        raise BudgetError(f"{what}: give a row count or a fraction, not {budget!r}")
    if isinstance(budget, int):
        if budget > pool:
            raise BudgetError(f"{what}: {budget} rows is larger than the pool, which has {pool} rows after the earlier "
                              f"steps; give at most {pool} rows or a fraction (e.g. {what}: 0.1)")
        return budget
    return min(pool, max(1, int(math.floor(budget * pool + 1e-9)))) if pool else 0
