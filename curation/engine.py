"""Execution engines for curation: where a step's decisions are computed, never what they are.

``local`` (the default) runs every step in this process, with row-local steps' per-row Python on a
:class:`~curation.row_local.WorkerPool`. ``ray`` (``curation.ray_engine``, the optional extra
``recipe-kit[distributed]``) runs row-local steps as Ray Data ``map_batches`` and the dedup steps
with their distributed algorithms. A step's decisions do not depend on the engine, so the engine is
in no cache key (nor in the recipe hash): a run on Ray is served from a local run's cache, and back.

An engine offers the pipeline and the steps three calls::

    decide(step, table, on_shard) -> Decisions   # a step's decisions over a pyarrow table
    map_texts(fn, texts, **kwargs) -> list        # fn(chunk, **kwargs) per chunk of texts, in order
    map_column(fn, column, **kwargs) -> list      # fn(shard, **kwargs) per shard of an Arrow column, in order

Global steps with a data-parallel inner loop run it where the engine runs work: MinHash signatures
through ``map_texts`` on Ray and through ``map_column`` on the local engine, exact dedup's
normalise-and-hash pass through ``map_column`` (the local engine spreads a long column over its
worker pool, ``spreads(n)`` says whether it will); with no engine (a step built outside the
runner) the loop runs in the step's process.
"""

from __future__ import annotations

from typing import Any, Callable

import pyarrow as pa

from curation.steps.base import Decisions, Step

ENGINES = ("local", "ray")


class EngineError(Exception):
    """An engine that cannot start (its extra is missing, its cluster unreachable): said before any step runs."""


class LocalEngine:
    """Every step in this process; row-local per-row-Python steps on a worker pool (``--workers``)."""

    name = "local"

    def __init__(self, workers: int | None = None):
        from curation.row_local import WorkerPool

        self.pool = WorkerPool(workers)

    def decide(self, step: Step, table: pa.Table, on_shard: Callable[[int], Any] | None = None) -> Decisions:
        from curation.row_local import decide_table
        from curation.rows import dataset_of

        if step.row_local:
            return decide_table(step, table, self.pool, on_shard=on_shard)
        return step.decide(dataset_of(table))

    def map_texts(self, fn: Callable, texts: list[str], **kwargs) -> list:
        return [fn(texts, **kwargs)]

    def map_column(self, fn: Callable, column, **kwargs) -> list:
        from curation.row_local import map_column

        return map_column(fn, column, self.pool, **kwargs)

    def spreads(self, n: int) -> bool:
        """Whether :meth:`map_column` of ``n`` rows runs on the worker pool (else here, in one call)."""
        from curation.row_local import spreads

        return spreads(self.pool, n)

    def describe(self) -> str:
        return f"local ({self.pool.workers} worker processes for row-local steps)"

    def close(self) -> None:
        self.pool.close()


def make_engine(name: str = "local", *, address: str | None = None, num_cpus: int | None = None,
                workers: int | None = None, console=None, shards: bool = True):
    """The engine ``name``: ``local`` or ``ray`` (``address``: a running cluster, ``auto`` or
    ``host:port``; none starts a local Ray with ``num_cpus``; ``shards``: its workers read the rows
    from Parquet shards, ``curation.ray_shards``, else the driver ships them)."""
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        import importlib

        try:
            importlib.import_module("ray.data")
        except ImportError as exc:
            raise EngineError("engine: ray needs Ray Data, which is not installed; install it with "
                              "pip install 'recipe-kit[distributed]'   (or: pip install 'ray[data]')") from exc
        from curation.ray_engine import RayEngine

        return RayEngine(address=address, num_cpus=num_cpus, console=console, shards=shards)
    raise EngineError(f"engine {name!r} is not one of {', '.join(ENGINES)}")
