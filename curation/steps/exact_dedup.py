"""``exact_dedup``: drop rows whose normalised text equals an earlier row's.

Normalisation (configurable): Unicode NFKC, lower-case, whitespace collapsed. The first occurrence
is kept; every later one is dropped with ``duplicate_of:<id of the kept row>``. Copies made on
purpose by mixture upsampling (same base id, ``#k`` suffix) are not treated as duplicates.

Columnar, in two passes so that the normalised column never exists whole: (1) the texts are
normalised a slice at a time (``curation.columns.normalised``: ASCII rows by Arrow kernels, the rest
in Python) and each slice is reduced to one 64-bit hash per row (``curation.shingles.hash_strings``), so rows with a
unique hash are unique texts; (2) only the rows whose hash is shared (the duplicates, their first
rows and any hash collision) are normalised again and grouped by their text itself with
``pyarrow.compute.dictionary_encode``; the first row of each text is the one kept. Equality is of
the texts themselves, so no hash collision can merge two rows (a test makes every hash collide).
Pass (1) is row-local: with numba (``recipe-kit[fast]``) its ASCII rows are normalised and hashed
in one compiled loop that never builds their normalised text (``curation.kernels``, the same hashes:
a test), here; without it, under the local engine, a long column's shards are normalised and hashed
on its worker pool (``engine.map_column``; the same hashes in the same order, a test). Pass (2)
runs here.
Memory: 16 bytes a row plus one slice's normalised texts and the shared-hash rows'. On 1M rows with
3% duplicates (``python benchmarks/exact_dedup_memory.py --rows 1000000``) the step adds 127 MB
over the loaded rows where grouping the whole normalised column (held whole, with its dictionary)
added 643 MB, in about the same time (6.22 s against 6.07 s; run to run, ±1 s on this machine).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from curation import kernels
from curation.columns import ASCII_SPACE_BYTES, normalised, table_of, text_column
from curation.shingles import hash_strings, utf8_buffers
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
    version = "2"  # 2: a text past 32,767 bytes is hashed whole (shingles._hash_words), so its copies are found
    Params = ExactDedupParams

    def decide(self, rows) -> Decisions:
        table = table_of(rows)
        n = table.num_rows
        if not n:
            return Decisions(keep=np.zeros(0, bool), reason=[], extras={"unique_texts": 0})
        first, distinct = _first_rows(text_column(table, self.params.field), self.params.lowercase, self.ctx.engine)
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


SLICE_ROWS = 16384  # rows normalised and hashed at a time


def normalised_hashes(texts, lower: bool) -> np.ndarray:
    """The 64-bit hash of every text's normalised form, a slice at a time (pass 1; row-local, so the
    engine may run it on shards in its workers: ``engine.map_column``)."""
    texts = texts if isinstance(texts, pa.ChunkedArray) else pa.chunked_array([texts])
    n = len(texts)
    hashes = np.empty(n, dtype=np.uint64)
    fast = kernels.use(23e-9 * texts.nbytes)  # the numpy pass: ~23 ns a byte of text here
    for start in range(0, n, SLICE_ROWS):
        part = texts.slice(start, SLICE_ROWS)
        hashes[start: start + len(part)] = _slice_hashes(part, lower) if fast else \
            hash_strings(normalised(part, lower, normalise).combine_chunks())
    return hashes


def _slice_hashes(part: pa.ChunkedArray, lower: bool) -> np.ndarray:
    """hash_strings(normalised(part)): the ASCII rows normalised and hashed in one compiled pass that
    never builds their normalised text (``curation.kernels``; the same values), the others normalised
    in Python as :func:`curation.columns.normalised` does."""
    data, offsets = utf8_buffers(part)
    ascii_rows = np.asarray(pc.string_is_ascii(part.fill_null("")), dtype=bool)
    out = np.empty(len(part), np.uint64)
    fast = np.flatnonzero(ascii_rows)
    out[fast] = kernels.compiled().normalised_ascii_hashes(data, offsets, fast, lower, ASCII_SPACE_BYTES)
    slow = np.flatnonzero(~ascii_rows)
    if len(slow):
        out[slow] = hash_strings(pa.array([normalise(s or "", lower) for s in part.take(pa.array(slow)).to_pylist()], pa.string()))
    return out


def _first_rows(texts: pa.ChunkedArray, lower: bool, engine=None) -> tuple[np.ndarray, int]:
    """(for every row, the first row whose normalised text equals its own; the number of distinct texts).
    Pass 1 runs through ``engine.map_column`` when there is an engine (the local one's worker pool
    hashes a long column's shards on every CPU: the same hashes, in order)."""
    n = len(texts)
    # with the compiled kernel the pass is faster here than a shard's trip to a worker and back (1M rows,
    # 2 CPUs: 0.8 s here against 2.0-2.5 s on the pool), so the pool takes it only without numba
    if engine is not None and hasattr(engine, "map_column") and not kernels.enabled():
        hashes = np.concatenate(engine.map_column(normalised_hashes, texts, lower=lower)) if n else np.zeros(0, np.uint64)
    else:
        hashes = normalised_hashes(texts, lower)
    _, first_of_hash, inverse, counts = np.unique(hashes, return_index=True, return_inverse=True, return_counts=True)
    first = first_of_hash[inverse]
    shared = np.flatnonzero(counts[inverse] > 1)  # in row order: every row of a repeated text is here
    if not len(shared):
        return first, n
    codes, distinct = _codes(normalised(texts.take(pa.array(shared)), lower, normalise))
    first[shared] = shared[_first_of(codes, distinct)[codes]]
    return first, n - len(shared) + distinct


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
