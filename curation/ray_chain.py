"""Consecutive row-local steps on Ray as ONE pass over the mixture's shards (issue 16).

Why: run one at a time, each row-local step is its own Ray Data job that reads every shard again,
and on this machine a job costs about 1.6 s at 1M rows beyond its work (``benchmarks/ray_engine.py``:
the four-step chain took 10.4 s on Ray against 3.6 s on the local engine). A row-local step's
decision of a row depends on that row alone (the ``row_local`` contract), so a worker can run a run
of such steps back to back on its shard: step 1 on the shard's rows, step 2 on the rows step 1 kept,
and so on, returning each step's decision columns tagged with the step. The driver then gives each
step the decisions of its own input, in order: a filter keeps order, so step k's input is step
k-1's kept rows in ``_index`` (step 1's input) order. The decisions, the ledger and the cache entries
are those of the steps run one by one (each still gets its own cache entry); only where the work
runs changes, as with any engine.

Which steps fuse (:func:`fusable`): row-local, not using the recipe's tokenizer, not reading
sources, holding no model (those run in an actor pool, one step at a time), with no distributed form
of their own; the pipeline fuses a run of two or more such steps whose cache entries are missing.

What one worker holds: one shard of every column and the chain's decisions for it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curation.steps.base import Decisions, Step

STEP = "_step"


def fusable(step: Step) -> bool:
    from curation.ray_dedup import DISTRIBUTED

    return (step.row_local and not step.uses_tokenizer and not type(step).reads_sources(step.params)
            and not type(step).model_refs(step.params) and step.name not in DISTRIBUTED)


def spec_of(step: Step) -> dict:
    """What a worker rebuilds the step from (as ``curation.ray_engine`` does for one step)."""
    return {"where": (type(step).__module__, type(step).__qualname__), "name": step.name,
            "params": step.params.model_dump(), "seed": step.ctx.seed, "payload": True}


def decide_chain(engine, steps: list[Step], rows) -> list[Decisions]:
    """Each of ``steps``' decisions, run back to back in one pass over ``rows`` (a
    :class:`~curation.selection.Selection` over a shard store): ``steps[k]``'s over the rows
    ``steps[k-1]`` kept, in order."""
    from curation.ray_engine import _decisions_of
    from curation.row_local import merge

    expect = engine.per_worker(len(rows.store.files))
    out = rows.store.dataset(rows.indices).map_batches(
        _decide_chain_shard, fn_kwargs={"specs": [{**spec_of(s), "expect": expect} for s in steps]},
        batch_format="pyarrow", batch_size=None)
    table = pa.concat_tables(list(out.iter_batches(batch_format="pyarrow", batch_size=None)))
    which = table.column(STEP).to_numpy()
    result, n = [], rows.num_rows
    for k, step in enumerate(steps):
        if not n:  # an earlier step kept nothing: the pipeline stops there, as it does step by step
            break
        part = table.filter(pa.array(which == k)).drop_columns([STEP])
        # step k's input is the rows kept so far, in _index (step 1's input) order
        index = part.column("_index").to_numpy()
        order = np.argsort(index, kind="stable")
        if len(index) != n or (len(index) > 1 and not (np.diff(index[order]) > 0).all()):
            raise RuntimeError(f"ray chain: {step.name} decided {len(index)} rows of its {n}, or one twice")
        decisions = merge([_decisions_of(part.take(pa.array(order)))])
        decisions.extras = step.summarise(decisions)
        result.append(decisions)
        n = int(np.count_nonzero(decisions.keep))
    engine.say(f"{', '.join(s.name for s in steps)}: one pass over the shards")
    return result


def _decide_chain_shard(batch: pa.Table, specs: list[dict]) -> pa.Table:
    from curation.ray_engine import _EMPTY_DECISIONS, _build_step, _decide_batch, _fault_for_tests

    _fault_for_tests()
    parts = []
    for k, spec in enumerate(specs):
        if not batch.num_rows:
            break
        decided = _decide_batch(_build_step(spec), batch, spec)
        parts.append(decided.append_column(STEP, pa.repeat(pa.scalar(k, pa.int8()), decided.num_rows)))
        batch = batch.filter(decided.column("keep"))
    if not parts:
        return _EMPTY_DECISIONS.append_column(STEP, pa.array([], pa.int8()))
    return pa.concat_tables(parts)
