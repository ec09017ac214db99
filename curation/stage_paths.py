"""Where a run directory's stage datasets are, and how to read one: ``datasets/<mixture>.parquet``, or
a folder ``datasets/<mixture>/`` of parts ``part-<first row>.parquet`` written by Ray workers (a part
per shard, ``curation.ray_shards``) whose rows, in name order, are the dataset's. Training, the card,
``audit`` and ``diff`` read stage datasets only through these (no heavy imports: the card uses them).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

PART = "part-{:012d}.parquet"  # a part named by its first row's place in the dataset: name order is row order


def parts(folder: str | Path) -> list[Path]:
    """A stage dataset folder's parts, in row order (a writer's hidden temp files are not parts)."""
    return sorted(p for p in Path(folder).glob("part-*.parquet"))


def stage_location(out: str | Path, mixture: str) -> Path:
    """A run directory's stage dataset ``mixture``: its folder where there is one, else its file (which
    may not exist)."""
    folder = Path(out) / "datasets" / mixture
    return folder if folder.is_dir() else Path(out) / "datasets" / f"{mixture}.parquet"


def stage_files(path: str | Path) -> list[Path]:
    """The Parquet files of a stage dataset (a file, or a folder's parts in row order); none if absent."""
    path = Path(path)
    return parts(path) if path.is_dir() else [path] if path.is_file() else []


def read_stage(path: str | Path, columns: list[str] | None = None):
    """A stage dataset (file or folder) as one Arrow table, its parts in row order."""
    files = stage_files(path)
    if not files:
        raise FileNotFoundError(f"no stage dataset at {path}")
    # partitioning=None: a folder named like ``lr=0.1`` on the way is not a column of the rows
    return pq.read_table([str(f) for f in files], columns=columns, partitioning=None)


