"""``length``: keep rows whose text length lies within bounds, in chars, words or tokens.

Tokens are counted with the recipe model's tokenizer (then the tokenizer is part of the cache key);
for chat rows the ``all`` field counts the whole conversation as plain text (no template tokens).
The score is the length, so the card can plot its distribution against the bounds.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.rows import row_text
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

    @property
    def uses_tokenizer(self) -> bool:  # type: ignore[override]
        return self.params.unit == "tokens"

    def decide(self, rows) -> Decisions:
        p = self.params
        texts = [row_text(r, p.field) for r in rows]
        if p.unit == "chars":
            lengths = np.array([len(t) for t in texts])
        elif p.unit == "words":
            lengths = np.array([len(t.split()) for t in texts])
        else:
            tok = self.ctx.tokenizer()
            lengths = np.array([len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]])
        keep = lengths >= p.min
        if p.max is not None:
            keep &= lengths <= p.max
        reason = [None if k else (f"too_short:{n}<{p.min}" if n < p.min else f"too_long:{n}>{p.max}") for k, n in zip(keep, lengths)]
        return Decisions(keep=keep, score=lengths.astype(float), reason=reason,
                         extras={"unit": p.unit, "min": p.min, "max": p.max})
