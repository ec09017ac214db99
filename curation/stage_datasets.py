"""The stage datasets a curation run commits: written from a :class:`~curation.selection.Selection` a
row group at a time, stamped with the run; read back on first use (:class:`StageDatasets`).

A stage dataset is one file, ``datasets/<mixture>.parquet``, or (written by Ray workers, a part per
shard: ``curation.ray_shards``) a folder ``datasets/<mixture>/`` of ``part-<first row>.parquet``
files whose rows, in name order, are the dataset's. :func:`stage_location` finds it and
:func:`stage_files` lists its files; every reader (training, the card, ``audit``, ``diff``) goes
through them (``curation.stage_paths``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import datasets

from curation import ledger as ledger_mod
from curation import run_commit
from curation.columns import table_of
from curation.files import atomic_path
from curation.rows import dataset_of
from curation.selection import Selection
from curation.stage_paths import read_stage


def write_rows(rows, path: Path, stamp: dict | None = None) -> Path:
    """A stage dataset as Parquet (a :class:`Selection`, a row group's take at a time, or a table),
    atomically, with the curation stamp in its schema metadata."""
    selection = rows if isinstance(rows, Selection) else Selection(table_of(rows))
    meta = None
    if stamp:
        meta = run_commit.stamp(selection.base.schema.empty_table(), stamp["recipe_hash"], stamp["curation_id"]).schema.metadata
    with atomic_path(path) as tmp:
        selection.write(tmp, meta, ledger_mod.write_parquet, ledger_mod.ROW_GROUP_ROWS)
    return path


class StageDatasets(Mapping):
    """Mixture name -> its stage dataset (a ``datasets.Dataset``), read from the committed Parquet file on
    first use: ``recipe curate`` never holds a second copy of the rows, ``recipe train`` reads what it trains on."""

    def __init__(self, paths: dict[str, Path]):
        self._paths = dict(paths)
        self._loaded: dict[str, datasets.Dataset] = {}

    def __getitem__(self, name: str) -> datasets.Dataset:
        if name not in self._loaded:
            self._loaded[name] = dataset_of(read_stage(self._paths[name]))  # KeyError for a name not curated
        return self._loaded[name]

    def __iter__(self):
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)
