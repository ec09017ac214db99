"""``decontaminate`` on Ray Data: the eval side broadcast once, the training rows matched shard by shard.

The driver loads the benchmarks named in ``against`` and builds the step's :class:`Matcher` (the
eval items' n-gram index, or their exact-text digests) -- small: about 2 MB for GSM8K's 1,319 test
items -- and puts it in Ray's object store once; every ``map_batches`` task over a shard of the
training texts gets it from there (its numpy n-gram arrays read without a copy from the node's
object store; its Python parts, the item ids and exact-mode digests, deserialised per task) and returns,
per benchmark, each row's best overlap and matched eval item. The driver writes the decisions with
the step's own ``finish``, so they are the local ones: a row's match depends on its text and the
eval side only.

What one worker holds: the Matcher and one shard of texts (``ray_engine.SHARD_ROWS``) with its
n-gram hashes. Scale: linear in the training rows; the eval side is held whole in every worker,
which is what a benchmark suite allows (Tülu 3's whole eval suite is well under 100k items).
"""

from __future__ import annotations

import pyarrow as pa

from curation.steps.base import Decisions, Step


def decontaminate(engine, step: Step, inp) -> Decisions:
    """``inp``: a :class:`curation.ray_input.StepInput`; the workers cut the texts from their shards and
    the driver reads back only the few matched rows' texts the step shows (``examples``)."""
    import ray

    from curation.ray_engine import gathered
    from curation.rows import dataset_of

    n = inp.num_rows
    if not n:
        return step.decide(dataset_of(inp.table()))
    evals = step.eval_items()
    matcher = step.matcher(evals)
    names = matcher.names()
    ref = ray.put(matcher)
    out = inp.texts(step.params.field).map_batches(_match_shard, fn_kwargs={"matcher": [ref]}, batch_format="pyarrow", batch_size=None)
    result = gathered(out, n, "matches")
    best = {name: result.column(f"best_{k}").to_numpy() for k, name in enumerate(names)}
    best_item = {name: result.column(f"item_{k}").to_pylist() for k, name in enumerate(names)}
    engine.say(f"decontaminate: {len(names)} benchmark index(es) broadcast to the shard tasks")
    shown = _RowTexts(inp, step.params.field)
    return step.finish(inp.column("id").to_pylist(), shown, evals, best, best_item)


class _RowTexts:
    """``text_column(rows, field)[i]``, read for the rows the step shows, not held for every row."""

    def __init__(self, inp, field: str):
        self.inp, self.field = inp, field

    def __getitem__(self, i: int) -> str:
        from curation.columns import text_column

        return text_column(self.inp.rows_at([i]), self.field)[0].as_py()


def _match_shard(batch: pa.Table, matcher: list) -> pa.Table:
    import ray

    from curation.ray_engine import _fault_for_tests

    _fault_for_tests()
    m = ray.get(matcher[0])
    best, best_item = m.match(batch.column("text").to_pylist())
    cols = {"_index": batch.column("_index")}
    for k, name in enumerate(m.names()):
        cols[f"best_{k}"] = pa.array(best[name], pa.float64())
        cols[f"item_{k}"] = pa.array(best_item[name], pa.string())
    return pa.table(cols)
