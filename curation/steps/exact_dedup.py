"""``exact_dedup``: drop rows whose normalised text equals an earlier row's.

Normalisation (configurable): Unicode NFKC, lower-case, whitespace collapsed. The first occurrence
is kept; every later one is dropped with ``duplicate_of:<id of the kept row>``. Copies made on
purpose by mixture upsampling (same base id, ``#k`` suffix) are not treated as duplicates.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from curation.rows import base_id, row_text
from curation.steps import STEPS
from curation.steps.base import Decisions, Step

_SPACE = re.compile(r"\s+")


def normalise(text: str, lower: bool = True) -> str:
    text = unicodedata.normalize("NFKC", text)
    if lower:
        text = text.lower()
    return _SPACE.sub(" ", text).strip()


class ExactDedupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: Literal["all", "prompt", "response"] = "all"
    lowercase: bool = True


@STEPS.register("exact_dedup")
class ExactDedup(Step):
    name = "exact_dedup"
    version = "1"
    Params = ExactDedupParams

    def decide(self, rows) -> Decisions:
        seen: dict[bytes, tuple[str, str]] = {}
        keep = np.ones(len(rows), dtype=bool)
        reason: list[str | None] = [None] * len(rows)
        for i, row in enumerate(rows):
            text = normalise(row_text(row, self.params.field), self.params.lowercase)
            digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
            base = base_id(row["id"])
            if digest in seen:
                first_id, first_base = seen[digest]
                if first_base != base:
                    keep[i] = False
                    reason[i] = f"duplicate_of:{first_id}"
            else:
                seen[digest] = (row["id"], base)
        return Decisions(keep=keep, reason=reason, extras={"unique_texts": len(seen)})
