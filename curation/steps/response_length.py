"""``response_length``: keep rows whose response (assistant side) length lies within bounds.

A response-only specialisation of ``length`` (same counting: characters, whitespace-separated
words, or the recipe model's tokens), with its own reason codes so the data card can tell an
over-long answer from an over-long conversation:
``response_too_short:<n><<min>`` and ``response_too_long:<n>><max>``. The score is the length.
For preference rows the response is chosen + rejected (``curation.rows.row_text``); for verifiable
rows it is the ground truth.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.rows import row_texts
from curation.steps import STEPS
from curation.steps.base import Decisions, Step


class ResponseLengthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: Literal["chars", "words", "tokens"] = "words"
    min: int = Field(1, ge=0)
    max: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _bounds(self):
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


@STEPS.register("response_length")
class ResponseLength(Step):
    name = "response_length"
    version = "1"
    Params = ResponseLengthParams

    @property
    def uses_tokenizer(self) -> bool:  # type: ignore[override]
        return self.params.unit == "tokens"

    def decide(self, rows) -> Decisions:
        p = self.params
        texts = row_texts(rows, "response")
        if p.unit == "chars":
            lengths = np.array([len(t) for t in texts], dtype=np.int64)
        elif p.unit == "words":
            lengths = np.array([len(t.split()) for t in texts], dtype=np.int64)
        else:
            tok = self.ctx.tokenizer()
            lengths = np.array([len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]], dtype=np.int64)
        lengths = lengths.reshape(-1)
        keep = lengths >= p.min
        if p.max is not None:
            keep &= lengths <= p.max
        reason = [None if k else (f"response_too_short:{n}<{p.min}" if n < p.min else f"response_too_long:{n}>{p.max}")
                  for k, n in zip(keep.tolist(), lengths.tolist())]
        return Decisions(keep=keep, score=lengths.astype(float), reason=reason,
                         extras={"unit": p.unit, "min": p.min, "max": p.max})
