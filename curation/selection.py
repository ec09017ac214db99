"""A mixture's rows as the chain of steps narrows them: one Arrow table and the indices still kept.

Why: materialising every step's kept rows (a ``filter`` of the whole table) held two copies of the
rows at each step's end (its input and its output) and copied every text once per step. A
:class:`Selection` is the mixture's table (``base``) and the kept rows' indices into it, in output
order (``None``: every row, in order). A step that only filters narrows the indices; a row-local step
decides over a :meth:`view`, whose shards (``slice``) are taken from ``base`` on demand (in this
process one at a time; for the worker pool, at most two per worker in flight), never a whole second
copy; a global step (dedup, ordering) gets the rows whole
(:meth:`table`, which from then on is the new ``base``). The stage dataset is written a row group at
a time (:meth:`write`), never as a second whole copy. On the 1M-row chain of
``benchmarks/curate_scale.py`` (exact_dedup, length, repetition, garbage) this is what keeps the
rows' Arrow bytes near one copy through the steps (the figures are in that benchmark's results).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.columns import take_rows


def _take(base: pa.Table, idx: np.ndarray) -> pa.Table:
    """``base``'s rows at ``idx``, from the slice of ``base`` they span (a shard's take or filter then
    touches only that range, not a mask of the whole table)."""
    if not len(idx):
        return base.slice(0, 0)
    lo, hi = int(idx.min()), int(idx.max())
    return take_rows(base.slice(lo, hi - lo + 1), idx - lo)


class Selection:
    """``base`` (an Arrow table) narrowed to ``indices`` (int64, output order; None: all of it)."""

    def __init__(self, base: pa.Table, indices: np.ndarray | None = None, carried: dict[str, np.ndarray] | None = None,
                 store=None):
        self.base = base
        # the rows as Parquet shards the Ray engine's workers read (curation.ray_shards.ShardStore), or None;
        # with a store, ``base`` may hold only some columns (ray_shards.NARROW) and indices count store rows
        self.store = store
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        # per-row values aligned with ``base`` that follow the rows as they narrow (the mixture's token counts)
        self.carried = dict(carried or {})

    def values(self, name: str) -> np.ndarray | None:
        """The selected rows' carried ``name`` values, in output order (None: nothing carried under it)."""
        values = self.carried.get(name)
        return values if values is None or self.indices is None else values[self.indices]

    @property
    def num_rows(self) -> int:
        return self.base.num_rows if self.indices is None else len(self.indices)

    def column(self, name: str) -> pa.ChunkedArray:
        """One column of the selected rows (a take of that column alone)."""
        col = self.base.column(name)
        return col if self.indices is None else take_rows(pa.table({name: col}), self.indices).column(name)

    def table(self) -> pa.Table:
        """The selected rows as one table; it becomes this selection's ``base`` (taken once). With a
        store, the rows are read from it and ``base`` stays (the store's rows are what indices count)."""
        if self.store is not None:
            return self.store.take(self.indices)
        if self.indices is not None:
            self.carried = {name: values[self.indices] for name, values in self.carried.items()}
            self.base, self.indices = take_rows(self.base, self.indices), None
        return self.base

    def view(self) -> "SelectionView":
        """What a row-local step decides over: ``num_rows`` and contiguous ``slice``s, each taken on demand."""
        return self.table() if self.indices is None or not len(self.indices) else SelectionView(self)

    def keep(self, kept: np.ndarray) -> "Selection":
        """The rows at ``kept`` (indices into this selection, in output order)."""
        kept = np.asarray(kept, dtype=np.int64)
        if self.indices is None:
            if len(kept) == self.base.num_rows and bool((np.diff(kept) > 0).all()):
                return Selection(self.base, carried=self.carried, store=self.store)
            return Selection(self.base, kept, self.carried, self.store)
        return Selection(self.base, self.indices[kept], self.carried, self.store)

    def in_store_order(self) -> bool:
        """Whether the selected rows are in their base (and store) order: each store shard's selected
        rows are then one contiguous run of the output."""
        return self.indices is None or bool((np.diff(self.indices) > 0).all())

    def write(self, path: Path, schema_metadata: dict | None, write_parquet, row_group_rows: int) -> None:
        """The selected rows as one Parquet file, a row group's take at a time (``write_parquet``'s
        options for a whole table when nothing is narrowed)."""
        if self.indices is None:
            table = self.base if schema_metadata is None else self.base.replace_schema_metadata(schema_metadata)
            write_parquet(table, path)
            return
        from curation.ledger import PARQUET_OPTIONS, dictionary_columns

        schema = self.base.schema if schema_metadata is None else self.base.schema.with_metadata(schema_metadata)
        first = _take(self.base, self.indices[:row_group_rows])
        with pq.ParquetWriter(path, schema, use_dictionary=dictionary_columns(first), **PARQUET_OPTIONS) as writer:
            for start in range(0, max(1, len(self.indices)), row_group_rows):
                chunk = first if start == 0 else _take(self.base, self.indices[start:start + row_group_rows])
                writer.write_table(chunk.replace_schema_metadata(schema.metadata), row_group_size=row_group_rows)


class SelectionView:
    """A :class:`Selection` as row-local deciding reads it: ``num_rows`` and ``slice(start, length)``."""

    def __init__(self, selection: Selection):
        self._selection = selection

    @property
    def num_rows(self) -> int:
        return self._selection.num_rows

    def slice(self, start: int, length: int | None = None) -> pa.Table:
        sel = self._selection
        end = sel.num_rows if length is None else min(sel.num_rows, start + length)
        return _take(sel.base, sel.indices[start:end])

    def column(self, name: str) -> pa.ChunkedArray:
        return self._selection.column(name)
