"""The Ray engine: curation steps as Ray Data jobs, with the local engine's decisions (issue 16).

Ray Data (``ray[data]``, the extra ``recipe-kit[distributed]``) already does what this needs:
block-parallel ``map_batches`` over pyarrow batches, task retries when a worker dies, actor pools,
and a hash-partitioned ``groupby``. This module only maps our step protocol onto it:

* **row-local steps** (``Step.row_local``: length, response_length, repetition, empty_turns,
  garbage, and user steps that declare themselves row-local) run as ``map_batches`` over shards of
  the step's input, ``batch_format="pyarrow"``, one shard per batch. A shard's worker rebuilds the
  step from its class, options and seed (as ``curation.row_local`` does for processes) and returns
  decision columns ``_index, keep, score, reason``; the driver puts them back in row order. A step
  never drops rows itself. A ``text_only`` step's workers receive only its text column. A row-local
  step that holds a model (``Step.model_refs``: a fastText classifier, an encoder) runs in an
  **actor pool**, each actor loading the model once (the model paths are resolved on the driver).
  One that needs the recipe's tokenizer runs on the driver, and says so.
* **global steps** with a distributed form (``curation.ray_dedup``: ``exact_dedup`` by hash
  partitioning; ``minhash_dedup``'s signatures through :meth:`map_texts`) run it; any other global
  step runs on the driver, said on the console.

Where the rows come from (``engine.shards``, default true): the pipeline writes each mixture's rows
once as Parquet shards in the cache (:mod:`curation.ray_shards`) and keeps only their narrow columns
(ids, sources, kinds, skills); a step's input is then a :class:`~curation.selection.Selection` over
the shards, and its workers read their shard themselves, told which rows are in by a position array
put once per step (:class:`curation.ray_input.StepInput`). The stage datasets are written by the workers too, a part
per shard (:meth:`RayEngine.write_stage`). With ``engine.shards: false`` (a cluster whose nodes do not
share the cache's storage) the driver holds the step's input table, as the local engine does, and
ships it through Ray's object store.

What one worker holds: one shard (``SHARD_ROWS`` rows of the step's columns) and its decisions.
What the driver holds: the rows' narrow columns and the decisions (with ``shards: false``, the
step's input table), plus what a global step's algorithm keeps there (each module says).

Faults: Ray's defaults retry a task whose worker died (a task's ``max_retries``, 3) and restart a
dead actor (Ray Data's actor pools: ``max_restarts=-1``, ``max_task_retries=-1``); a shard's
decisions depend only on the shard, so a retried shard gives the same records, and nothing reaches
the cache until the whole step has its decisions (the cache entry is written by the pipeline, in a
temporary folder renamed at the end).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from curation.engine import EngineError
from curation.ray_shards import SHARD_ROWS  # rows per shard (a block): a few per CPU at 1M rows
from curation.steps.base import Decisions, Step, StepContext
CONNECT_TIMEOUT_S = 5.0
# Ray Data's group-by shuffle. The default hash shuffle (SHUFFLE_V2) starts aggregator actors for
# every group-by: 5.8 s for the first and 2.0 s for later ones on 16k rows here, against 0.29 and
# 0.16 s for the pull-based sort shuffle (Ray 2.60, 2 CPUs). MinHash's components take two group-bys a
# round, so the fixed cost decides; the sort shuffle spills to disk like any Ray Data shuffle.
SHUFFLE = "sort_shuffle_pull_based"
FAULT_ENV = "RECIPE_KIT_RAY_FAULT_ONCE"  # tests: a folder (see _fault_for_tests)


def _reachable(address: str) -> None:
    """Refuse an address whose host:port does not answer within seconds (ray.init would wait much
    longer before failing)."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"--ray-address {address!r} is not host:port (or `auto` for the cluster `ray start` made here)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise EngineError(f"cannot reach a Ray cluster at {address} ({exc}); start one with `ray start --head` "
                          f"and pass the address it prints, or leave --ray-address out to start Ray here") from None


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, console=None, shards: bool = True):
        import logging

        import ray

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-job progress lines, not ours
        # and its note that progress bars are off (we turn them off: the console shows ours)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        self.console = console
        self.shards = shards  # the pipeline writes each mixture's shards for the workers (shard_store)
        self._own = False
        if not ray.is_initialized():
            if address and address != "auto":
                _reachable(address)
            try:
                ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError) as exc:
                raise EngineError(f"could not start or join Ray ({exc}); check --ray-address") from None
            self._own = True
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.shuffle_strategy = SHUFFLE
        ctx.enable_progress_bars = False
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def describe(self) -> str:
        import ray

        rows = "workers read Parquet shards" if self.shards else "the driver ships the rows"
        return f"ray ({self.cpus} CPUs, {len(ray.nodes())} node(s); {rows})"

    def close(self) -> None:
        import ray

        if self._own and ray.is_initialized():
            ray.shutdown()

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"  [cyan]ray[/]: {text}")

    # ------------------------------------------------------------------ steps
    def decide(self, step: Step, rows, on_shard: Callable[[int], Any] | None = None) -> Decisions:
        """``step``'s decisions over ``rows``: a table (shipped to the workers through the object store),
        or a :class:`~curation.selection.Selection` with a shard store (read by the workers)."""
        from curation import ray_dedup
        from curation.rows import dataset_of

        from curation.ray_input import StepInput

        inp = StepInput(self, rows)
        distributed = ray_dedup.DISTRIBUTED.get(step.name)
        if distributed is not None:
            return distributed(self, step, inp)
        if step.row_local and not step.uses_tokenizer and not type(step).reads_sources(step.params):
            return self._row_local(step, inp, on_shard)
        why = "uses the recipe's tokenizer" if step.uses_tokenizer else "has no distributed form"
        self.say(f"{step.name} {why}: it runs on the driver")
        return step.decide(dataset_of(inp.table()))

    def per_worker(self, shards: int) -> int:
        """About how many of a job's ``shards`` one worker process takes (``kernels.expect``)."""
        return max(1, -(-shards // self.cpus))

    def decide_chain(self, steps: list[Step], rows) -> list[Decisions]:
        """A run of row-local steps over a sharded selection, in one pass (:mod:`curation.ray_chain`)."""
        from curation.ray_chain import decide_chain

        return decide_chain(self, steps, rows)

    def shard_store(self, cache, key: str, describe: dict, table: pa.Table | None = None, order: np.ndarray | None = None):
        """A mixture's rows (``table``, or its rows at ``order``) as shards the workers read
        (``curation.ray_shards``), written once per key (``table`` None: only if the cache has them, else None)."""
        from curation.ray_shards import ShardStore, check_visible

        store = ShardStore.of(cache, key, describe, table, order=order) if table is not None else ShardStore.cached(cache, key)
        if store is not None:
            check_visible([store.folder])
        return store

    def shard_tables(self, table: pa.Table, rows: int = SHARD_ROWS) -> list[pa.Table]:
        """``table`` with an ``_index`` column, cut into shards: at least one per CPU when it is large
        enough for that to pay."""
        n = table.num_rows
        count = max(1, min(max(self.cpus, -(-n // rows)), n // 1000 or 1))
        bounds = np.linspace(0, n, count + 1).astype(int)
        indexed = table.append_column("_index", pa.array(np.arange(n, dtype=np.int64)))
        return [indexed.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def _row_local(self, step: Step, inp, on_shard) -> Decisions:
        import ray

        from curation.row_local import _payload, merge

        n = inp.num_rows
        if not n:
            return step.decide_batch(inp.table())
        # sharded: each worker cuts its own payload from the shard it read; else the driver's shards carry it
        shards = None if inp.sharded else self.shard_tables(_payload(step, inp.table()))
        spec = {"where": (type(step).__module__, type(step).__qualname__), "name": step.name,
                "params": step.params.model_dump(), "seed": step.ctx.seed, "payload": inp.sharded,
                "expect": self.per_worker(len(inp.selection.store.files) if inp.sharded else len(shards))}
        ds = inp.dataset() if inp.sharded else ray.data.from_arrow(shards)
        refs = type(step).model_refs(step.params)
        if refs:  # one model load per actor, not per shard
            models = {r: str(step.ctx.model(r)) for r in refs}
            out = ds.map_batches(_StepActor, fn_constructor_kwargs={"spec": spec, "models": models},
                                 batch_format="pyarrow", batch_size=None, compute=ray.data.ActorPoolStrategy(size=self.cpus))
            self.say(f"{step.name} holds a model: an actor pool of {self.cpus}")
        else:
            out = ds.map_batches(_decide_shard, fn_kwargs={"spec": spec}, batch_format="pyarrow", batch_size=None)
        parts = []
        for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
            parts.append(batch)
            if on_shard:
                on_shard(batch.num_rows)
        ordered = _in_order(parts, n)[0]
        merged = merge([_decisions_of(ordered)])
        merged.extras = step.summarise(merged)
        return merged

    def write_stage(self, rows, folder: Path, metadata: dict | None) -> list[str]:
        """A stage dataset as parts of ``folder`` (a fresh temp folder), each written by the worker that
        read its shard (rows in store order), or by the driver in one part (a step reordered the rows,
        or no store); the parts' names, in row order."""
        from curation import ray_shards
        from curation.ledger import write_parquet

        sel = rows
        folder = Path(folder).resolve()  # absolute: a worker's working directory is not the driver's
        if sel.store is not None and sel.in_store_order() and sel.num_rows:
            ray_shards.check_visible([folder])
            out = sel.store.dataset(sel.indices).map_batches(
                ray_shards.write_part, fn_kwargs={"folder": str(folder), "metadata": metadata},
                batch_format="pyarrow", batch_size=None)
            written = pa.concat_tables(list(out.iter_batches(batch_format="pyarrow", batch_size=None)))
            written = written.take(pa.array(np.argsort(written.column("first").to_numpy(), kind="stable")))
            first, last = written.column("first").to_numpy(), written.column("last").to_numpy()
            rows_written = written.column("rows").to_numpy()
            # every row once, each part one run of the dataset's rows (name order is row order)
            contiguous = bool((last - first + 1 == rows_written).all() and (first[1:] == last[:-1] + 1).all())
            if not len(first) or first[0] != 0 or last[-1] != sel.num_rows - 1 or not contiguous:
                raise RuntimeError(f"ray wrote {int(rows_written.sum())} rows in parts that do not make the "
                                   f"{sel.num_rows}-row stage dataset in order")
            ray_shards.clean(folder)
            names = [p.name for p in ray_shards.parts(folder)]
            if names != written.column("file").to_pylist():
                raise RuntimeError(f"the stage dataset's folder holds {len(names)} parts, the workers wrote "
                                   f"{written.num_rows}: a worker that does not see {folder}?")
            self.say(f"stage dataset written by the workers: {written.num_rows} part(s)")
            return names
        table = sel.table()
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        name = ray_shards.PART.format(0)
        write_parquet(table, Path(folder) / name)
        if sel.store is not None and sel.num_rows:
            self.say("a step reordered the rows: the stage dataset is written by the driver, in one part")
        return [name]

    # ------------------------------------------------------------------ data-parallel loops
    def map_column(self, fn: Callable, column, **kwargs) -> list:
        """In this process: the steps that call it (exact dedup) have their own algorithm under Ray."""
        return [fn(column, **kwargs)]

    def map_texts(self, fn: Callable, texts: list[str], **kwargs) -> np.ndarray:
        """``fn(chunk, **kwargs)`` (an array with one row per text) over shards of ``texts`` as Ray
        tasks, concatenated in text order."""
        import ray

        n = len(texts)
        if not n:
            return fn(texts, **kwargs)
        ds = ray.data.from_arrow(self.shard_tables(pa.table({"text": pa.array(texts, pa.large_string())})))
        out = ds.map_batches(_map_chunk, fn_kwargs={"fn": fn, "kwargs": kwargs}, batch_format="numpy", batch_size=None)
        chunks = list(out.iter_batches(batch_format="numpy", batch_size=None))
        index = np.concatenate([c["_index"] for c in chunks])
        values = np.concatenate([c["value"] for c in chunks])
        if len(index) != n or not np.array_equal(np.sort(index), np.arange(n)):
            raise RuntimeError(f"ray map over {n} texts returned {len(index)} rows")
        return values[np.argsort(index, kind="stable")]


# ---------------------------------------------------------------------- worker side
def _fault_for_tests() -> None:
    """Tests only: with ``$RECIPE_KIT_RAY_FAULT_ONCE`` a folder holding ``armed``, the first shard to
    create ``fired`` there kills its own worker process, as an OOM kill or a lost node would."""
    folder = os.environ.get(FAULT_ENV)
    if not folder or not os.path.exists(os.path.join(folder, "armed")):
        return
    try:
        fd = os.open(os.path.join(folder, "fired"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)


def _build_step(spec: dict, models: dict[str, str] | None = None) -> Step:
    from curation import kernels
    from curation.row_local import _step_class

    kernels.expect(spec.get("expect", 1))  # this worker's share of the step's shards
    cls = _step_class(spec["where"], spec["name"])
    ctx = StepContext(seed=spec["seed"], model_loader=(models or {}).get if models else None)
    return cls(cls.Params.model_validate(spec["params"]), ctx)


def _decisions_table(index: pa.Array, d: Decisions) -> pa.Table:
    import json

    extras = [None] * len(d.keep)  # the shard's extras (JSON) on its first row, as merge takes the first shard's
    if extras:
        extras[0] = json.dumps(d.extras, default=str)
    return pa.table({"extras": pa.array(extras, pa.string()), "_index": index, "keep": pa.array(d.keep, pa.bool_()),
                     "score": pa.array(d.score, pa.float64()) if d.score is not None else pa.nulls(len(d.keep), pa.float64()),
                     "has_score": pa.repeat(pa.scalar(d.score is not None), len(d.keep)),
                     "reason": pa.array(d.reason, pa.string())})


def _decide_batch(step: Step, batch: pa.Table, spec: dict) -> pa.Table:
    """A shard's decision columns (a shard read by the worker is cut to the step's payload here)."""
    from curation.row_local import _payload

    index = batch.column("_index").combine_chunks()
    rows = batch.drop_columns(["_index"])
    return _decisions_table(index, step.decide_batch(_payload(step, rows) if spec.get("payload") else rows))


def _decide_shard(batch: pa.Table, spec: dict) -> pa.Table:
    _fault_for_tests()
    if not batch.num_rows:
        return _EMPTY_DECISIONS
    return _decide_batch(_build_step(spec), batch, spec)


class _StepActor:
    """A row-local step holding a model, built once per actor."""

    def __init__(self, spec: dict, models: dict[str, str]):
        self.spec = spec
        self.step = _build_step(spec, models)

    def __call__(self, batch: pa.Table) -> pa.Table:
        _fault_for_tests()
        if not batch.num_rows:
            return _EMPTY_DECISIONS
        return _decide_batch(self.step, batch, self.spec)


_EMPTY_DECISIONS = pa.schema([("extras", pa.string()), ("_index", pa.int64()), ("keep", pa.bool_()), ("score", pa.float64()),
                               ("has_score", pa.bool_()), ("reason", pa.string())]).empty_table()


def _map_chunk(batch: dict[str, np.ndarray], fn: Callable, kwargs: dict) -> dict[str, np.ndarray]:
    _fault_for_tests()
    return {"_index": batch["_index"], "value": np.asarray(fn(batch["text"].tolist(), **kwargs))}


def _in_order(parts: list[pa.Table], n: int, what: str = "decisions") -> list[pa.Table]:
    table = pa.concat_tables(parts)
    index = table.column("_index").to_numpy()
    if len(index) != n or not np.array_equal(np.sort(index), np.arange(n)):
        raise RuntimeError(f"ray returned {len(index)} {what} for {n} rows")
    return [table.take(pa.array(np.argsort(index, kind="stable")))]


def gathered(ds, n: int, what: str = "rows") -> pa.Table:
    """Every block of a Ray dataset with an ``_index`` column, on the driver, in ``_index`` order,
    checked to hold each of the ``n`` rows once (a lost or repeated shard is an error, never a gap)."""
    return _in_order(list(ds.iter_batches(batch_format="pyarrow", batch_size=None)), n, what)[0]


def _decisions_of(t: pa.Table) -> Decisions:
    """Decisions of the rows of ``t`` (in index order); extras from the first row's shard, which is the
    first shard (``curation.row_local.merge`` does the same)."""
    import json

    has_score = t.num_rows and t.column("has_score")[0].as_py()
    first = t.column("extras")[0].as_py() if t.num_rows else None
    return Decisions(keep=t.column("keep").to_numpy(zero_copy_only=False),
                     score=t.column("score").to_numpy(zero_copy_only=False) if has_score else None,
                     reason=t.column("reason").to_pylist(), extras=json.loads(first) if first else {})
