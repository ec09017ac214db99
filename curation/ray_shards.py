"""A mixture's rows as Parquet shards that Ray workers read themselves, and stage datasets that Ray
workers write (issue 16: "workers read the mixture's shards from shared storage"; "stage datasets
... one part per shard").

Why: ``ray.data.from_arrow(table)`` puts the driver's table into the object store, so on the Ray
engine every step shipped its whole input (every column of every row) from the driver, and the
driver held the rows twice (its table and the object store's copy on its node). Here the driver
writes a mixture's rows once, as Parquet files in the cache, and a step's Ray job reads them with
``ray.data.read_parquet`` (Ray Data's reader, one read task per file, as its authors intend it):
the driver sends only which rows are still in (a position per mixture row, in the object store
once per step, read zero-copy by every worker on a node) and gets back decision columns. The stage
dataset is written the same way: each worker writes its shard's kept rows as one part of
``datasets/<mixture>/``, and the driver never holds them.

Layout of a cache entry ``shards/<mixture key>/`` (content-addressed and written atomically like
every cache entry; on a multi-node cluster, the cache on shared storage, ``--cache`` /
``RECIPE_KIT_CACHE``, is what lets every node read it)::

    shards.json            {"format": 1, "rows": N, "files": [{"name", "start", "rows"}, ...]}
    part-00000.parquet     mixture rows [start, start + rows), every column plus ``_row`` (int64,
    ...                    the row's place in the mixture), SHARD_ROWS rows a file

What one process holds: a worker, one shard's columns and the position array (8 bytes a mixture
row, shared by the workers of a node); the driver, the rows' ids and the decisions (and, with
:attr:`Selection.store` set, the narrow columns the ledger and the card need: ``NARROW``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.stage_paths import PART, parts  # noqa: F401  (the stage dataset parts write_part makes)

ROW = "_row"
INDEX = "_index"
MANIFEST = "shards.json"
FORMAT = 1
SHARD_ROWS = 50_000
# what the driver keeps of a mixture once its shards are written: the ledger's (id, source) and the
# card's composition (kind, skill); every other column is read from the shards where it is needed
NARROW = ("id", "source", "kind", "skill")


class ShardStore:
    """A written shard folder (:func:`write`): its files and row count."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()  # absolute: a worker's working directory is not the driver's
        manifest = json.loads((self.folder / MANIFEST).read_text())
        self.rows: int = manifest["rows"]
        self.files: list[dict] = manifest["files"]

    @classmethod
    def of(cls, cache, key: str, describe: dict, table: pa.Table, shard_rows: int = SHARD_ROWS,
           order: np.ndarray | None = None) -> "ShardStore":
        """The shards of ``table`` (a mixture's rows, or its rows at ``order``; cache key ``key``),
        written unless the cache has them."""
        if not cache.has("shards", key):
            with cache.write("shards", key, describe) as tmp:
                write(table, tmp, shard_rows, order)
        return cls(cache.path("shards", key))

    @classmethod
    def cached(cls, cache, key: str) -> "ShardStore | None":
        return cls(cache.path("shards", key)) if cache.has("shards", key) else None


    def narrow(self) -> pa.Table:
        """The rows' ``NARROW`` columns, in order: what the driver keeps (a cached mixture on Ray is not
        assembled again from its sources)."""
        names = self.schema().names
        return read_files(self.paths(), [c for c in NARROW if c in names])

    def paths(self) -> list[str]:
        return [str(self.folder / f["name"]) for f in self.files]

    def schema(self) -> pa.Schema:
        schema = pq.read_schema(self.paths()[0])
        return schema.remove(schema.get_field_index(ROW))

    def dataset(self, selected: np.ndarray | None, columns: list[str] | None = None):
        """A Ray dataset of the selected rows (``selected``: mixture rows in the step's input order, None:
        all of them in order) with ``_index``, their place in that order: one read task per shard, in
        which a worker reads its file and keeps the selected rows.

        One task per shard, not ``ray.data.read_parquet``: Ray 2.60's Parquet reader packs small files
        into one read task (9 files of 300 rows came back as one block even with ``override_num_blocks``
        and ``target_min_block_size``), which would leave CPUs idle and tie a stage dataset's parts to
        Ray's packing instead of the shards."""
        import ray

        ref = None if selected is None else ray.put(positions(selected, self.rows))
        items = ray.data.from_items([{"path": p} for p in self.paths()], override_num_blocks=len(self.files))
        return items.map_batches(_read, fn_kwargs={"columns": columns, "positions": [ref]}, batch_format="pyarrow",
                                 batch_size=1)

    def take(self, selected: np.ndarray | None, columns: list[str] | None = None) -> pa.Table:
        """The selected rows (``columns``, default all), on the driver (a step with no distributed form,
        a few rows a step shows), reading only the files that hold them."""
        from curation.columns import take_rows

        want = None if columns is None else [*columns, ROW]
        if selected is None:
            return read_files(self.paths(), want).drop_columns([ROW])
        selected = np.asarray(selected, dtype=np.int64)
        starts = np.array([f["start"] for f in self.files], dtype=np.int64)
        file_of = np.searchsorted(starts, selected, side="right") - 1
        used = np.unique(file_of)
        if not len(used):
            schema = self.schema()
            return (schema if columns is None else pa.schema([schema.field(c) for c in columns])).empty_table()
        table = read_files([self.paths()[k] for k in used], want)
        offsets = np.zeros(self.rows + 1, dtype=np.int64)  # mixture row -> place in `table`
        place = np.concatenate([np.arange(self.files[k]["start"], self.files[k]["start"] + self.files[k]["rows"]) for k in used])
        offsets[place] = np.arange(len(place))
        return take_rows(table.drop_columns([ROW]), offsets[selected])


def shards_key(mixture_key: str, source_files: list[Path]) -> str:
    """A mixture's shards' cache key: its own key and its sources' cache files as they are now (size and
    modification time), so shards are never served for sources rebuilt since (an unpinned Hub
    source downloaded again), where a rebuilt mixture would check them."""
    import hashlib

    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in source_files]
    return hashlib.sha256(json.dumps([mixture_key, stats]).encode()).hexdigest()[:16]


def read_files(paths: list[str], columns: list[str] | None = None) -> pa.Table:
    """Parquet files as one table, in the given order. ``partitioning=None``: pyarrow would otherwise read
    a folder named like ``lr=0.1`` on the way to them as a column of every row."""
    return pq.read_table(paths, columns=columns, partitioning=None)


def check_visible(paths: list[str | Path], always: bool = False) -> None:
    """Refuse (``EngineError``, before any step runs on them) paths that a node of the cluster does not
    see: the shards and the run directory must be on storage every node mounts at the same path. One
    zero-CPU task per live node; on a one-node Ray (the driver's own machine) only with ``always``."""
    import socket

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from curation.engine import EngineError

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1 and not always:
        return

    @ray.remote(num_cpus=0)
    def missing_here(wanted: list[str]) -> tuple[str, list[str]]:
        return socket.gethostname(), [w for w in wanted if not os.path.exists(w)]

    wanted = [str(Path(p).resolve()) for p in paths]
    refs = [missing_here.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(wanted)
            for n in nodes]
    for host, missing in ray.get(refs, timeout=120):
        if missing:
            raise EngineError(f"node {host} does not see {missing[0]}: with engine.shards (the default) the cache and "
                              "the run directory must be on storage every node mounts at the same path (--cache-dir, "
                              "--out); or set engine.shards=false to ship the rows from the driver")


def write(table: pa.Table, folder: Path, shard_rows: int = SHARD_ROWS, order: np.ndarray | None = None) -> None:
    """``table`` (or its rows at ``order``, taken a shard at a time: never a whole reordered copy) as
    shard files in ``folder`` (a cache entry's temp folder) and their manifest."""
    from curation.columns import take_rows
    from curation.ledger import write_parquet

    n = table.num_rows if order is None else len(order)
    files = []
    for k, start in enumerate(range(0, max(n, 1), shard_rows)):
        part = table.slice(start, shard_rows) if order is None else take_rows(table, order[start:start + shard_rows])
        part = part.append_column(ROW, pa.array(np.arange(start, start + part.num_rows, dtype=np.int64)))
        name = f"part-{k:05d}.parquet"
        write_parquet(part, folder / name)
        files.append({"name": name, "start": start, "rows": part.num_rows})
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "rows": n, "files": files}))


def positions(selected: np.ndarray, rows: int) -> np.ndarray:
    """Per mixture row, its place in ``selected`` (-1: not selected); int32 while that holds it."""
    dtype = np.int32 if len(selected) < 2**31 else np.int64
    pos = np.full(rows, -1, dtype=dtype)
    pos[np.asarray(selected, dtype=np.int64)] = np.arange(len(selected), dtype=dtype)
    return pos


def _read(item: pa.Table, columns: list[str] | None, positions: list) -> pa.Table:
    """One shard, read by its worker: its selected rows' ``columns`` with ``_index`` (their place in the
    step's input) instead of ``_row``."""
    batch = read_files([item.column("path")[0].as_py()], None if columns is None else [*columns, ROW])
    rows = batch.column(ROW).to_numpy()
    batch = batch.drop_columns([ROW])
    if positions[0] is None:
        return batch.append_column(INDEX, pa.array(rows.astype(np.int64)))
    import ray

    pos = ray.get(positions[0])[rows]
    keep = pos >= 0
    if not keep.all():
        batch = batch.filter(pa.array(keep))
    return batch.append_column(INDEX, pa.array(pos[keep].astype(np.int64)))


def write_part(batch: pa.Table, folder: str, metadata: dict | None) -> pa.Table:
    """A worker's share of a stage dataset: its rows (in ``_index`` order) as one part named by the
    first one's place, written atomically (a retried task writes the same part again)."""
    from curation.files import atomic_path
    from curation.ledger import write_parquet
    from curation.ray_engine import _fault_for_tests

    _fault_for_tests()
    if not batch.num_rows:
        return pa.table({"file": pa.array([], pa.string()), "rows": pa.array([], pa.int64()),
                         "first": pa.array([], pa.int64()), "last": pa.array([], pa.int64())})
    index = batch.column(INDEX).to_numpy()
    if (np.diff(index) < 0).any():
        batch = batch.take(pa.array(np.argsort(index, kind="stable")))
        index = np.sort(index)
    table = batch.drop_columns([INDEX])
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    name = PART.format(int(index[0]))
    with atomic_path(Path(folder) / name) as tmp:
        write_parquet(table, tmp)
    return pa.table({"file": [name], "rows": pa.array([table.num_rows], pa.int64()),
                     "first": pa.array([int(index[0])], pa.int64()), "last": pa.array([int(index[-1])], pa.int64())})


def clean(folder: str | Path) -> None:
    """Remove what is not a part (a killed worker's temp file) from a folder about to be committed."""
    for p in Path(folder).iterdir():
        if not (p.name.startswith("part-") and p.name.endswith(".parquet")):
            os.unlink(p) if p.is_file() else None
