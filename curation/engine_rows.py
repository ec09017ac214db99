"""Where a mixture's rows live for the engine that runs its steps, and the form its stage dataset is
written in: on the local engine (and Ray with ``engine.shards: false``) one Arrow table in this
process and ``datasets/<mixture>.parquet``; on Ray with shards (``curation.ray_shards``), Parquet
shards in the cache the workers read, the narrow columns here, and ``datasets/<mixture>/`` written
by the workers a part per shard. The pipeline asks this module, not the engine's type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from curation import run_commit
from curation.columns import take_rows
from curation.files import atomic_folder, remove_path
from curation.selection import Selection
from curation.stage_datasets import write_rows


def uses_shards(engine) -> bool:
    return bool(getattr(engine, "shards", False))


def selection(engine, cache, node, table: pa.Table, carried: dict, source_files: list[Path], store=None,
              order: np.ndarray | None = None) -> Selection:
    """The mixture's rows as the steps narrow them. With shards, the rows are written once as shards
    in the cache (``store``: already there, and ``table`` its narrow columns; ``order``: ``table``'s
    rows in mixed order, taken a shard at a time) and only their narrow columns (ids, sources, kinds,
    skills) stay here: every step's workers read the rest themselves."""
    if not uses_shards(engine):
        return Selection(table if order is None else take_rows(table, order), carried=carried)
    from curation.ray_shards import NARROW, shards_key

    if store is None:
        store = engine.shard_store(cache, shards_key(node.key, source_files), {**node.describe, "of": "shards"}, table, order)
    narrow = table.select([c for c in NARROW if c in table.column_names])
    return Selection(narrow if order is None else take_rows(narrow, order), carried=carried, store=store)


def cached_shards(engine, cache, node, source_files: list[Path]):
    """A cached mixture's shards, where the engine reads shards and the cache has them; else None."""
    if not uses_shards(engine):
        return None
    from curation.ray_shards import shards_key

    return engine.shard_store(cache, shards_key(node.key, source_files), node.describe)


def write_dataset(engine, out: Path, mix_name: str, rows: Selection, stamp: dict) -> list[str]:
    """A stage dataset into the run directory: ``datasets/<mixture>.parquet``, or, where the rows are in
    a shard store, ``datasets/<mixture>/`` with a part per shard written by the workers; the other
    form, left by an earlier run, is removed first (the run is uncommitted then: a failure leaves it
    so, and ``run_commit.check`` names a form it does not list). The files to commit."""
    file, folder = out / f"datasets/{mix_name}.parquet", out / f"datasets/{mix_name}"
    if rows.store is None:
        remove_path(folder)
        write_rows(rows, file, stamp)
        return [f"datasets/{mix_name}.parquet"]
    remove_path(file)
    meta = dict(run_commit.stamp(pa.table({}), stamp["recipe_hash"], stamp["curation_id"]).schema.metadata)
    with atomic_folder(folder) as tmp:
        names = engine.write_stage(rows, tmp, meta)
    return [f"datasets/{mix_name}/{n}" for n in names]


def fused_decisions(engine, cache, nodes: list, rows: Selection, seed: int) -> dict:
    """Where the engine decides runs of row-local steps in one pass (Ray with shards:
    ``curation.ray_chain``) and ``nodes`` (the mixture's next steps) start with two or more such steps
    not in the cache: their decisions, ``{node key: (decisions, seconds)}`` (the pass's seconds shared
    out evenly); else ``{}``, and each step runs alone."""
    if not hasattr(engine, "decide_chain") or rows.store is None:
        return {}
    import time

    from curation.ray_chain import fusable
    from curation.steps import STEPS
    from curation.steps.base import StepContext

    run = []
    for node in nodes:
        if cache.has("step", node.key):
            break
        cls = STEPS.get(node.extra["step"])
        step = cls(cls.Params.model_validate(node.describe["params"]), StepContext(seed=seed))
        if not fusable(step):
            break
        run.append((node, step))
    if len(run) < 2:
        return {}
    started = time.perf_counter()
    decided = engine.decide_chain([step for _, step in run], rows)
    seconds = round((time.perf_counter() - started) / len(run), 3)
    return {node.key: (d, seconds) for (node, _), d in zip(run, decided)}
