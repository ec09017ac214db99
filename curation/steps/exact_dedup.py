"""``exact_dedup``: drop rows whose normalised text equals an earlier row's.

Normalisation (configurable): Unicode NFKC, lower-case, whitespace collapsed. The first occurrence
is kept; every later one is dropped with ``duplicate_of:<id of the kept row>``. Copies made on
purpose by mixture upsampling (same base id, ``#k`` suffix) are not treated as duplicates.

Columnar: the normalised texts are one Arrow column (``curation.columns.normalised``: ASCII rows
by Arrow kernels, the rest in Python), and ``pyarrow.compute.dictionary_encode`` gives every row
the code of its distinct text in one hash pass over the column; the first row of each code is the
one kept. Equality is of the texts themselves, so no hash collision can merge two rows. Memory:
the normalised column plus one int32 code per row.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from curation.columns import normalised, table_of, text_column
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
        table = table_of(rows)
        n = table.num_rows
        if not n:
            return Decisions(keep=np.zeros(0, bool), reason=[], extras={"unique_texts": 0})
        texts = normalised(text_column(table, self.params.field), self.params.lowercase, normalise)
        codes, distinct = _codes(texts)
        first = _first_of(codes, distinct)[codes]
        ids = table.column("id")
        dup = np.arange(n) != first
        if pc.any(pc.match_substring(ids, "#")).as_py():  # upsampled copies: not duplicates of their base row
            bases, _ = _codes(pc.replace_substring_regex(ids, "(?s)#.*", ""))
            dup &= bases != bases[first]
        reason: list[str | None] = [None] * n
        where = np.flatnonzero(dup)
        for i, kept_id in zip(where.tolist(), ids.take(pa.array(first[where])).to_pylist()):
            reason[i] = f"duplicate_of:{kept_id}"
        return Decisions(keep=~dup, reason=reason, extras={"unique_texts": distinct})


def _codes(strings) -> tuple[np.ndarray, int]:
    """(code of each string's distinct value, number of distinct values), one hash pass in Arrow."""
    encoded = pc.dictionary_encode(pa.chunked_array(strings.chunks).cast(pa.large_string()).combine_chunks())
    return np.asarray(encoded.indices, dtype=np.int64), len(encoded.dictionary)


def _first_of(codes: np.ndarray, distinct: int) -> np.ndarray:
    """The first row index holding each code (Arrow numbers codes in order of first appearance, so the
    first row of code k is where the running maximum of the codes first reaches k)."""
    seen = np.maximum.accumulate(codes)
    new = np.r_[True, seen[1:] > seen[:-1]]
    first = np.flatnonzero(new)
    assert len(first) == distinct, "dictionary codes are not in order of first appearance"
    return first
