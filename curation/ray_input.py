"""A step's input on the Ray engine (:class:`StepInput`): where its workers get the rows from.

Either a driver table, shipped to the workers through the object store in
:meth:`curation.ray_engine.RayEngine.shard_tables` shards (``engine.shards: false``, and steps built
outside the runner), or a :class:`~curation.selection.Selection` over a shard store
(:mod:`curation.ray_shards`), which the workers read themselves: the driver then holds the
selection's narrow columns and sends only which rows are in. Global steps' Ray forms
(``curation.ray_dedup`` and the modules it names) take one and ask it for what they need: ids
(:meth:`StepInput.column`), texts as a Ray dataset (:meth:`StepInput.texts`), a few rows
(:meth:`StepInput.rows_at`), or, with no distributed form, every row (:meth:`StepInput.table`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class StepInput:
    """A step's input on the Ray engine. Either a driver table, shipped to the workers through the
    object store in :meth:`RayEngine.shard_tables` shards, or a :class:`~curation.selection.Selection`
    with a shard store (``sharded``), which the workers read from the shards themselves: the driver
    then holds the selection's narrow columns and sends only which rows are in."""

    def __init__(self, engine, rows):
        from curation.selection import Selection

        self.engine = engine
        self.selection = rows if isinstance(rows, Selection) and rows.store is not None else None
        self._table = None if self.selection is not None else (rows.table() if isinstance(rows, Selection) else rows)

    @property
    def sharded(self) -> bool:
        return self.selection is not None

    @property
    def num_rows(self) -> int:
        return self.selection.num_rows if self.sharded else self._table.num_rows

    def column(self, name: str) -> pa.ChunkedArray:
        """A column the driver holds (``ray_shards.NARROW``: ids, sources) or any of the table's."""
        return self.selection.column(name) if self.sharded else self._table.column(name)

    def table(self) -> pa.Table:
        """Every row and column on the driver (a step, or a part of one, with no distributed form)."""
        if self._table is None:
            self._table = self.selection.table()
        return self._table

    def rows_at(self, index, columns: list[str] | None = None) -> pa.Table:
        """The rows at ``index`` (places in this input; ``columns``, default all): a few, read from their shards."""
        from curation.columns import take_rows

        index = np.asarray(index, dtype=np.int64)
        if self._table is not None:
            table = take_rows(self._table, index)
            return table if columns is None else table.select(columns)
        sel = self.selection
        return sel.store.take(index if sel.indices is None else sel.indices[index], columns)

    def dataset(self):
        """Every column of every row, with ``_index`` (place in this input), as a Ray dataset."""
        import ray

        if self.sharded:
            return self.selection.store.dataset(self.selection.indices)
        return ray.data.from_arrow(self.engine.shard_tables(self._table))

    def texts(self, field: str, ids: bool = False):
        """A Ray dataset of ``text`` (``columns.text_column`` of ``field``; with ``ids``, ``id`` too) and
        ``_index``: cut by the workers from their shards, or on the driver from its table."""
        import ray

        from curation.columns import text_column

        if self.sharded:
            return self.dataset().map_batches(_texts, fn_kwargs={"field": field, "ids": ids}, batch_format="pyarrow",
                                              batch_size=None)
        cols = {"id": self._table.column("id")} if ids else {}
        cols["text"] = text_column(self._table, field)
        return ray.data.from_arrow(self.engine.shard_tables(pa.table(cols)))


def _texts(batch: pa.Table, field: str, ids: bool) -> pa.Table:
    from curation.columns import text_column

    cols = {"_index": batch.column("_index")}
    if ids:
        cols["id"] = batch.column("id")
    cols["text"] = text_column(batch.drop_columns(["_index"]), field) if batch.num_rows else pa.array([], pa.string())
    return pa.table(cols)
