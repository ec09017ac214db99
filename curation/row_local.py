"""Row-local steps over Arrow tables, on one process or several, with the same decisions.

A row-local step (``Step.row_local``: a row's decision depends on that row alone) decides a
``pyarrow`` table through ``decide_batch``. The runner cuts the rows into contiguous shards, has
each decided, and concatenates the decisions in shard order; ``Step.summarise`` then computes the
step's card facts from the merged decisions. Because every row's decision depends on that row
alone, the result is the same on 1 or N processes (a test checks).

Shards go to worker processes when the step does per-row Python (``Step.per_row_python``: empty
turns; Gopher repetition without numba, since with it a compiled prefilter leaves the loop ~1% of
the rows, ``curation.kernels``), can be rebuilt in a worker from its options, and there are at least
``MIN_ROWS_PER_WORKER`` rows per worker. Vectorised steps (Arrow kernels: length, garbage) run in
this process: there a worker's start and the shard's transfer cost more than the kernels. One
:class:`WorkerPool` serves every step of a curation run, so workers start once.

Why our own code: ``datasets.Dataset.map(num_proc=N)`` would re-encode every shard through its
Arrow writer and cache files, and a step's output here is decisions, not rows.
``concurrent.futures`` with the ``spawn`` start method keeps workers clean of the parent's threads
(torch, Arrow); shards travel as Arrow IPC streams, decisions come back pickled.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from curation.steps.base import Decisions, Step, StepContext

MIN_ROWS_PER_WORKER = 20_000  # below this, starting a worker (about a second) costs more than it saves


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def can_parallelise(step: Step) -> bool:
    """A worker gets the step's class, options and seed only: no tokenizer, model or source loader."""
    return (step.row_local and step.parallel_ok and not step.uses_tokenizer
            and not type(step).model_refs(step.params) and not type(step).reads_sources(step.params))


def _warm(modules: list[str]) -> None:
    import importlib

    for m in modules:
        importlib.import_module(m)


class WorkerPool:
    """Worker processes shared by the row-local steps of one run, started at first use (``spawn``:
    fresh interpreters, none of the parent's threads), closed by :meth:`close`."""

    def __init__(self, workers: int | None = None):
        self.workers = available_cpus() if workers is None else max(1, workers)
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            import multiprocessing

            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            for _ in range(self.workers):  # start every worker now, importing what the shards need
                self._executor.submit(_warm, ["curation.steps.base", "curation.columns", "pyarrow.compute"])
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _payload(step: Step, shard: pa.Table) -> pa.Table:
    """What a worker needs of a shard: for a ``text_only`` step, its field's text as text rows (the same
    ``text_column``), else the shard."""
    if not step.text_only:
        return shard
    from curation.columns import text_column

    text = text_column(shard, step.params.field)
    return pa.table({"kind": pa.repeat(pa.scalar("text"), len(text)), "text": text})


def _step_class(where: tuple[str, str], step_name: str) -> type[Step]:
    """The step's class from its own module (not every built-in step's: a worker imports only what it
    runs), else from the registry."""
    import importlib

    try:
        return getattr(importlib.import_module(where[0]), where[1])
    except (ImportError, AttributeError):
        from curation.steps import STEPS

        return STEPS.get(step_name)


def _decide_shard(where: tuple[str, str], step_name: str, params: dict, seed: int, payload: bytes) -> Decisions:
    table = pa.ipc.open_stream(payload).read_all()
    cls = _step_class(where, step_name)
    return cls(cls.Params.model_validate(params), StepContext(seed=seed)).decide_batch(table)


def merge(parts: list[Decisions]) -> Decisions:
    """Shard decisions, concatenated in shard order."""
    if len(parts) == 1:
        return parts[0]
    scores = [p.score for p in parts]
    return Decisions(
        keep=np.concatenate([p.keep for p in parts]),
        score=None if any(s is None for s in scores) else np.concatenate(scores),
        reason=[r for p in parts for r in p.reason],
        extras=parts[0].extras,
    )


def shards(n: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous (start, length) shards, a few per worker so a slow shard does not idle the rest."""
    count = max(1, min(workers * 4, n // max(1, MIN_ROWS_PER_WORKER // 4)))
    bounds = np.linspace(0, n, count + 1).astype(int)
    return [(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def decide_table(step: Step, table: pa.Table, pool: WorkerPool | int | None = None, on_shard: Any = None) -> Decisions:
    """``step``'s decisions over ``table``, in shards: on ``pool``'s processes (a :class:`WorkerPool`, or a
    number of workers for a pool of this call only; default every CPU) when the module docstring's
    conditions hold, else in this process. ``on_shard(rows)`` reports progress."""
    own = not isinstance(pool, WorkerPool)
    pool = WorkerPool(pool) if own else pool
    workers = min(pool.workers, max(1, table.num_rows // MIN_ROWS_PER_WORKER))
    parts: list[Decisions] = []
    try:
        if workers > 1 and step.per_row_python and can_parallelise(step):
            spans = shards(table.num_rows, workers)
            executor = pool.executor()
            args = ((type(step).__module__, type(step).__qualname__), step.name, step.params.model_dump(), step.ctx.seed)
            futures: list = []
            for i, (a, k) in enumerate(spans):  # at most two shards per worker in flight: bounded memory
                futures.append(executor.submit(_decide_shard, *args, _to_ipc(_payload(step, table.slice(a, k)))))
                while len(futures) - len(parts) > 2 * workers or (i == len(spans) - 1 and len(parts) < len(futures)):
                    parts.append(futures[len(parts)].result())
                    if on_shard:
                        on_shard(spans[len(parts) - 1][1])
    finally:
        if own:
            pool.close()
    if not parts:
        for a, k in shards(table.num_rows, 1):
            parts.append(step.decide_batch(table.slice(a, k)))
            if on_shard:
                on_shard(k)
    if not parts:
        parts = [step.decide_batch(table)]
    merged = merge(parts)
    merged.extras = step.summarise(merged)
    return merged


MAP_MIN_ROWS = 200_000  # a column this long is worth cutting across workers (a cold pool starts in about a second)
MAP_SHARDS_PER_WORKER = 8  # with at most two in flight per worker: bounded transfers, steady progress


def _map_shard(where: tuple[str, str], payload: bytes, kwargs: dict):
    import importlib

    column = pa.ipc.open_stream(payload).read_all().column(0)
    return getattr(importlib.import_module(where[0]), where[1])(column, **kwargs)


def spreads(pool: "WorkerPool | None", n: int, min_rows: int | None = None) -> bool:
    """Whether :func:`map_column` cuts a column of ``n`` rows across ``pool``'s workers."""
    return pool is not None and pool.workers > 1 and n >= (MAP_MIN_ROWS if min_rows is None else min_rows)


def map_column(fn, column, pool: "WorkerPool | None", min_rows: int | None = None, into: np.ndarray | None = None,
               progress=None, **kwargs) -> list:
    """``fn(shard, **kwargs)`` over contiguous shards of an Arrow ``column``, in order: on ``pool``'s
    processes when :func:`spreads` says so, else one call here. ``fn`` is a module-level function (a
    worker imports it by name); results come back pickled. With ``into`` (an array of one row per
    value) each shard's result is copied into its rows as it arrives and ``[into]`` is returned, so
    the shards' results never exist all at once; ``progress(k)`` is told each finished shard's rows.
    The row-local inner loop of a global step (exact dedup's hashes, MinHash signatures) runs here."""
    n = len(column)
    if not spreads(pool, n, min_rows):
        result = fn(column, **kwargs)
        if progress:
            progress(n)
        if into is not None:
            into[:] = result
            return [into]
        return [result]
    bounds = np.linspace(0, n, MAP_SHARDS_PER_WORKER * pool.workers + 1).astype(int)
    spans = [(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    executor = pool.executor()
    where = (fn.__module__, fn.__qualname__)
    futures: list = []
    results: list = []

    def collect() -> None:
        a, k = spans[len(results)]
        result = futures[len(results)].result()
        futures[len(results)] = None  # the future holds its result: let it go
        if into is not None:
            into[a:a + k] = result
            result = None
        results.append(result)
        if progress:
            progress(k)

    for i, (a, k) in enumerate(spans):  # at most two shards per worker in flight: bounded memory
        futures.append(executor.submit(_map_shard, where, _to_ipc(pa.table({"c": column.slice(a, k)})), kwargs))
        while len(futures) - len(results) > 2 * pool.workers or (i == len(spans) - 1 and len(results) < len(futures)):
            collect()
    return [into] if into is not None else results
