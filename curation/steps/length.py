"""``length``: keep rows whose text length lies within bounds, in chars, words or tokens.

Tokens are counted with the recipe model's tokenizer (then the tokenizer is part of the cache key);
for chat rows the ``all`` field counts the whole conversation as plain text (no template tokens).
The score is the length, so the card can plot its distribution against the bounds.

Row-local and columnar: characters and words are counted by Arrow kernels over the row-text
column (``curation.columns``), tokens by the tokenizer's batch encoder; reasons are built for the
dropped rows only.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.columns import char_counts, text_column, word_counts
from curation.steps import STEPS
from curation.steps.base import Decisions, Step


class LengthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: Literal["all", "prompt", "response"] = "all"
    unit: Literal["chars", "words", "tokens"] = "chars"
    min: int = Field(0, ge=0)
    max: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _bounds(self):
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


@STEPS.register("length")
class Length(Step):
    name = "length"
    version = "1"
    Params = LengthParams
    row_local = True

    @property
    def uses_tokenizer(self) -> bool:  # type: ignore[override]
        return self.params.unit == "tokens"

    def decide_batch(self, table) -> Decisions:
        p = self.params
        lengths = measure(table, p.field, p.unit, self.ctx)
        keep, reason = bounds(lengths, p.min, p.max, "too_short", "too_long")
        return Decisions(keep=keep, score=lengths.astype(float), reason=reason,
                         extras={"unit": p.unit, "min": p.min, "max": p.max})


def measure(table, field: str, unit: str, ctx) -> np.ndarray:
    """Length of every row's ``field`` text in ``unit`` (chars, words, tokens of the recipe's tokenizer)."""
    texts = text_column(table, field)
    if unit == "chars":
        return char_counts(texts)
    if unit == "words":
        return word_counts(texts)
    tok = ctx.tokenizer()
    return np.array([len(ids) for ids in tok(texts.to_pylist(), add_special_tokens=False)["input_ids"]], dtype=np.int64)


def bounds(lengths: np.ndarray, lo: int, hi: int | None, short: str, long: str) -> tuple[np.ndarray, list]:
    """(keep, reasons) of lengths against [lo, hi]: ``<short>:<n><<lo>`` / ``<long>:<n>><hi>``."""
    keep = lengths >= lo
    if hi is not None:
        keep &= lengths <= hi
    reason: list[str | None] = [None] * len(lengths)
    for i in np.flatnonzero(~keep).tolist():
        n = int(lengths[i])
        reason[i] = f"{short}:{n}<{lo}" if n < lo else f"{long}:{n}>{hi}"
    return keep, reason
