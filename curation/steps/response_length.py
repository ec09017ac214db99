"""``response_length``: keep rows whose response (assistant side) length lies within bounds.

A response-only specialisation of ``length`` (same counting: characters, whitespace-separated
words, or the recipe model's tokens), with its own reason codes so the data card can tell an
over-long answer from an over-long conversation:
``response_too_short:<n><<min>`` and ``response_too_long:<n>><max>``. The score is the length.
For preference rows the response is chosen + rejected (``curation.rows.row_text``); for verifiable
rows it is the ground truth. Row-local and columnar, as ``length``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.steps import STEPS
from curation.steps.base import Decisions, Step
from curation.steps.length import bounds, measure


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
    row_local = True

    @property
    def uses_tokenizer(self) -> bool:  # type: ignore[override]
        return self.params.unit == "tokens"

    def decide_batch(self, table) -> Decisions:
        p = self.params
        lengths = measure(table, "response", p.unit, self.ctx)
        keep, reason = bounds(lengths, p.min, p.max, "response_too_short", "response_too_long")
        return Decisions(keep=keep, score=lengths.astype(float), reason=reason,
                         extras={"unit": p.unit, "min": p.min, "max": p.max})
