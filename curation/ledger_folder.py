"""The run ledger as a partitioned Parquet folder: one part per step, each part split by id bucket.

Why a folder (issue 16, item 4): a single ``ledger.parquet`` has one writer and every reader scans all
of it. ``benchmarks/ledger_lookup.py --rows 1000000`` measured the look-up of one id (what ``recipe
audit`` does), side by side: 0.363 s in the single file, 0.432 s in one part per step and shard
(the parts do not help a look-up by id), 0.037 s in this folder (9.9x); the price is the write (1.58 s
against 1.13 s at 5M records, 89.0 MB against 82.9) and a whole step's read back in order (0.15 s
against 0.06 s). So the
folder has both cuts: a *part* per ledger part the runner writes (the load's quarantine, each
mixture draw, each step's decisions, stage records), which the card reads alone when it needs one
step; and inside each part one file per *bucket* of the row id, so a look-up opens one file per part.
A distributed writer adds parts (one per shard and step) without touching the others.

Layout (``ledger/``)::

    index.json                  # format, the run stamp, and per part: its (dataset, step) pairs,
                                # record count, bucket count and files with their sizes
    00000-000.parquet           # part 0, bucket 0: ledger.SCHEMA plus ``record`` (int64, the
    00000-001.parquet           #   record's place in its part), zstd level 1
    ...

``bucket = h(base row id) mod buckets``: ``h`` is :func:`curation.shingles.hash_strings` (the
64-bit hash of the UTF-8 bytes the shingles use for words, vectorised over the Arrow buffers) of the id without its ``#k`` upsampling suffix,
so a row and its copies share a bucket; a part's ``buckets`` is a power of two sized so that one
bucket holds about :data:`RECORDS_PER_BUCKET` records (1 for small parts: one file). Reading
the whole ledger (:func:`read`) concatenates the parts in index order, each in ``record`` order: the
same table, record for record, as the single file held (the content fingerprint test reads it).

Each part is bucketed once, where it is made: a mixture's draw and a step's decisions are saved in
their cache entry already split (:func:`save_part`, ``decisions/`` with its ``part.json``), and a
run's folder copies those files as they are (``copy_file_range``) instead of reading, sorting and
re-encoding every record at the end of the run (at 1M rows and 4 steps that re-write was 4.3 s of a
40 s run). Copied files carry no run stamp (one cache file serves many runs); the run's stamp is in
``index.json``, which ``run.json`` commits with every file's size. Parts written here (the load's
quarantine, stage records, a cache entry from before ``decisions/``) are stamped in their footers too.

The folder is written beside its final place and swapped in (``files.atomic_folder``): a reader sees the
old folder, none, or the new one, never a mix; ``run.json`` commits ``ledger/index.json``, and
:func:`problems` checks every file the index lists (present, its size) for ``run_commit.check``.
Generic tools read it too: ``pyarrow.dataset.dataset("ledger/", format="parquet")`` (or DuckDB's
``read_parquet('ledger/*.parquet')``) gives every record, ``record`` restoring the order per part.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.shingles import hash_strings

CHUNK = 1 << 16  # ids hashed at a time

INDEX = "index.json"
PART_INDEX = "part.json"  # a cache entry's part (save_part)
FORMAT = 2  # 1 (stop 21): one bucket count for the folder; 2: one per part
FORMATS = (1, 2)
RECORDS_PER_BUCKET = 64 * 1024  # a bucket file of one part: ~0.5 MB of zstd records at 1M rows
MAX_BUCKETS = 256
ORDER = "record"


class FolderError(Exception):
    pass


def bucket_count(records: int) -> int:
    """A power of two, so that one part's bucket holds about RECORDS_PER_BUCKET records."""
    want = max(1, int(np.ceil(records / RECORDS_PER_BUCKET)))
    return min(MAX_BUCKETS, 1 << (want - 1).bit_length())


def base_hashes(row_ids) -> np.ndarray:
    """:func:`hash_strings` of every id's base (the part before a ``#k`` upsampling suffix, cut by an
    Arrow kernel), as uint64: a row's bucket in a part of ``b`` buckets is this mod ``b``. The runner
    computes it once for a mixture's rows and carries it along the chain of steps."""
    row_ids = pa.chunked_array([row_ids]) if isinstance(row_ids, pa.Array) else row_ids
    n = len(row_ids)
    out = np.empty(n, dtype=np.uint64)
    ids = row_ids.combine_chunks() if n else row_ids
    for start in range(0, n, CHUNK):
        chunk = ids.slice(start, CHUNK)
        if pc.any(pc.match_substring(chunk, "#")).as_py():
            chunk = pc.replace_substring_regex(chunk, "#.*", "", max_replacements=1)
        out[start: start + len(chunk)] = hash_strings(chunk)
    return out


def buckets_of(row_ids, buckets: int, hashes: np.ndarray | None = None) -> np.ndarray:
    """The bucket of every id: its :func:`base_hashes` (or ``hashes``, computed before) mod ``buckets``."""
    n = len(row_ids)
    if buckets == 1 or n == 0:
        return np.zeros(n, dtype=np.int64)
    hashes = base_hashes(row_ids) if hashes is None else hashes
    if len(hashes) != n:
        raise ValueError(f"{len(hashes)} id hashes for {n} records: the hashes carried along the steps are misaligned")
    return (hashes % np.uint64(buckets)).astype(np.int64)


def bucket_of(row_id: str, buckets: int) -> int:
    return int(buckets_of(pa.array([row_id], pa.string()), buckets)[0])


def write_part(table: pa.Table, folder: Path, name: str, write_parquet, schema: pa.Schema | None = None,
               hashes: np.ndarray | None = None) -> dict:
    """One part's records (already in the ledger schema) as bucket files ``<name>-<b>.parquet`` in
    ``folder``, with the ``record`` column; returns the part's index entry (records, buckets, its
    (dataset, step) pairs, files and sizes). ``schema`` (the ledger schema plus ``record``, with the
    run stamp) defaults to the table's own plus ``record``, unstamped: a cache entry's part, linked
    into many runs' folders (:func:`write_folder`)."""
    n = table.num_rows
    buckets = bucket_count(n)
    out_schema = schema if schema is not None else table.schema.remove_metadata().append(pa.field(ORDER, pa.int64()))
    table = table.append_column(ORDER, pa.array(np.arange(n, dtype=np.int64))).cast(out_schema)
    b = buckets_of(table.column("row_id"), buckets, hashes)
    if buckets > 1:  # a radix sort of the small bucket numbers (numpy's stable sort of uint8/uint16)
        table = _sorted_by_bucket(table, np.argsort(b.astype(np.uint8 if buckets <= 256 else np.uint16), kind="stable"))
    sizes = np.bincount(b, minlength=buckets)
    pairs = table.select(["dataset", "step"]).group_by(["dataset", "step"]).aggregate([]).to_pylist()
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    jobs = [(f"{name}-{b:03d}.parquet", int(starts[b]), int(sizes[b])) for b in range(buckets) if sizes[b]]
    folder.mkdir(parents=True, exist_ok=True)

    def _write(job):
        fname, start, size = job
        write_parquet(table.slice(start, size), folder / fname)
        return fname, (folder / fname).stat().st_size

    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:  # Arrow writes without the GIL
        files = dict(pool.map(_write, jobs))
    return {"records": n, "buckets": buckets, "pairs": sorted([p["dataset"], p["step"]] for p in pairs), "files": files}


def read_part(folder: Path, columns: list[str] | None = None) -> pa.Table:
    """A part :func:`write_part` wrote into ``folder`` (with its :data:`PART_INDEX`), in record order; None
    for a part without records (the caller knows the schema)."""
    info = json.loads((Path(folder) / PART_INDEX).read_text())
    cols = None if columns is None else list(dict.fromkeys([*columns, ORDER]))
    table = _read_files(folder, list(info["files"]), cols, None)
    if table is None:  # an empty part: no file; its schema is the first file's a non-empty one would have
        return None
    table = table.take(_record_order(table.column(ORDER).to_numpy(), info["records"]))
    return table.drop_columns([ORDER]) if columns is None or ORDER not in columns else table


def save_part(table: pa.Table, folder: Path, write_parquet, hashes: np.ndarray | None = None) -> dict:
    """:func:`write_part` into a folder of its own (a cache entry's ``decisions/``) with its index
    :data:`PART_INDEX`, so a run links the files instead of re-writing the records. ``hashes``: the
    records' :func:`base_hashes`, when the caller has them."""
    info = write_part(table, Path(folder), "part", write_parquet, hashes=hashes)
    (Path(folder) / PART_INDEX).write_text(json.dumps(info))
    return info


def _copy(src: Path, dst: Path, size: int) -> None:
    """``src`` copied to ``dst`` (``copy_file_range`` on Linux: no re-encoding, about 0.1 s for the 50 MB
    of a 1M-row run's parts), after checking it still has the size its ``part.json`` recorded. A copy,
    not a hard link: a run's ledger file changed in place must not change the cache entry behind it."""
    if src.stat().st_size != size:
        raise FolderError(f"{src} changed after it was cached ({src.stat().st_size} bytes, recorded {size}); "
                          f"remove its cache entry {src.parent.parent} and re-run")
    shutil.copyfile(src, dst)


def write_folder(parts: list, folder: Path, schema: pa.Schema, conform, write_parquet) -> dict:
    """Write ``parts`` into ``folder`` (a fresh, empty temp folder) and its index; returns the index.
    A part is an Arrow table or a Parquet file (read, bucketed and written here, stamped), or a folder
    :func:`save_part` wrote (its bucket files copied as they are: a cached step's decisions are not
    read, sorted and encoded again). ``conform`` gives a part the ledger schema, ``write_parquet(table, path)`` writes one file
    (both ``curation.ledger``'s: this module does not import it, which imports this one)."""
    out_schema = schema.append(pa.field(ORDER, pa.int64()))
    index = {"format": FORMAT, "bucket": "fmix64(sum(utf8(base row id)[i] * 0x100000001B3**(i+1)) + len) mod buckets",
             "records": 0, "parts": []}
    folder.mkdir(parents=True, exist_ok=True)
    for part in parts:
        name = f"{len(index['parts']):05d}"
        if isinstance(part, (str, Path)) and Path(part).is_dir():
            info = json.loads((Path(part) / PART_INDEX).read_text())
            if not info["records"]:
                continue
            files = {}
            for fname, size in info["files"].items():
                target = f"{name}-{fname.rsplit('-', 1)[1]}"
                _copy(Path(part) / fname, folder / target, size)
                files[target] = size
            info = {**info, "files": files}
        else:
            table = pq.read_table(part) if isinstance(part, (str, Path)) else part
            if not table.num_rows:
                continue
            info = write_part(conform(table.replace_schema_metadata(None)), folder, name, write_parquet, out_schema)
        index["parts"].append({"name": name, **info})
        index["records"] += info["records"]
    for key, value in (schema.metadata or {}).items():  # the run stamp, readable without a Parquet footer
        index.setdefault("stamp", {})[key.decode()] = json.loads(value)
    (folder / INDEX).write_text(json.dumps(index, indent=1))
    return index


def part_buckets(index: dict, part: dict) -> int:
    """A part's bucket count: its own (format 2), or the folder's one count (format 1, stop 21)."""
    return int(part.get("buckets", index.get("buckets", 1)))


def _uniform(col: pa.ChunkedArray) -> bool:
    """All null, or one value throughout: any slice of it holds the same values as the sorted one's."""
    if col.null_count == len(col):
        return True
    if col.null_count:
        return False
    bounds = pc.min_max(col)
    return bounds["min"] == bounds["max"]


def _sorted_by_bucket(table: pa.Table, order: np.ndarray) -> pa.Table:
    """``table.take(order)``, taking only the columns that vary (a step's dataset, step, step_index and
    often source, detail, position and group are one value or null throughout: kept as they are)."""
    indices = pa.array(order)
    return pa.table({name: col if _uniform(col) else col.take(indices) for name, col in zip(table.column_names, table.columns)},
                    schema=table.schema)


def read_index(folder: Path) -> dict:
    path = Path(folder) / INDEX
    if not path.is_file():
        raise FolderError(f"the ledger folder {folder} has no {INDEX} (an unfinished write)")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FolderError(f"{path} is unreadable ({exc})") from None
    if index.get("format") not in FORMATS or not isinstance(index.get("parts"), list):
        raise FolderError(f"{path} is not a ledger index of format {FORMATS}; re-run `recipe curate` with this version")
    return index


def problems(folder: Path, curation_id: str | None) -> list[str]:
    """What disagrees in a committed ledger folder: its index's run, a listed file missing or resized."""
    try:
        index = read_index(folder)
    except FolderError as exc:
        return [str(exc)]
    bad = []
    got = ((index.get("stamp") or {}).get("recipe_kit.run") or {}).get("curation_id")
    if curation_id is not None and got != curation_id:
        bad.append(f"{Path(folder).name}/{INDEX} (from curation {got}, not {curation_id})")
    for part in index["parts"]:
        for fname, size in part["files"].items():
            path = Path(folder) / fname
            if not path.is_file():
                bad.append(f"{Path(folder).name}/{fname} (missing)")
            elif path.stat().st_size != size:
                bad.append(f"{Path(folder).name}/{fname} (changed after the commit: {path.stat().st_size} bytes, committed {size})")
    return bad


def _read_files(folder: Path, names: list[str], columns, filter) -> pa.Table | None:
    tables = []
    for fname in names:
        try:
            tables.append(pq.read_table(Path(folder) / fname, columns=columns, filters=filter))
        except Exception as exc:  # noqa: BLE001 - a damaged part: the reader's message
            raise FolderError(f"{Path(folder) / fname} is unreadable ({str(exc).splitlines()[0]})") from None
    return pa.concat_tables(tables) if tables else None


def _record_order(record: np.ndarray, part_records: int) -> np.ndarray:
    """Indices that put records back in their part's order: the inverse permutation in one scatter when
    the whole part was read (``record`` is then a permutation of 0..n-1), else a sort."""
    n = len(record)
    if n == part_records:
        inverse = np.empty(n, dtype=np.int64)
        inverse[record] = np.arange(n, dtype=np.int64)
        return inverse
    return np.argsort(record, kind="stable")


def read(folder: Path, columns: list[str] | None = None, pairs=None, ids=None, filter=None) -> list[pa.Table]:
    """The parts' records in ledger order (one table per part read): all parts, or those holding one of
    ``pairs`` ((dataset, step or None)); all buckets, or only the buckets of ``ids``; rows matching ``filter``."""
    index = read_index(folder)
    cols = None if columns is None else list(dict.fromkeys([*columns, ORDER]))
    out = []
    for part in index["parts"]:
        if pairs is not None and not any(d == pd and (s is None or s == ps) for d, s in pairs for pd, ps in part["pairs"]):
            continue
        wanted = None if ids is None else {bucket_of(i, part_buckets(index, part)) for i in ids}
        names = [f for f in part["files"] if wanted is None or int(f.rsplit("-", 1)[1].split(".")[0]) in wanted]
        table = _read_files(folder, names, cols, filter)
        if table is None or not table.num_rows:
            continue
        table = table.take(_record_order(table.column(ORDER).to_numpy(), part["records"]))
        out.append(table.drop_columns([ORDER]) if columns is None or ORDER not in columns else table)
    return out


def records_of(folder: Path, ids: list[str], columns: list[str] | None = None) -> list[pa.Table]:
    """Every record of ``ids`` and of their ``#k`` copies, opening only their buckets' files."""
    return read(folder, columns, ids=ids, filter=id_filter(ids))


def id_filter(ids: list[str]) -> pc.Expression:
    """Records of ``ids`` or of their upsampled copies ``<id>#k``."""
    rid = pc.field("row_id")
    expr = None
    for i in ids:
        e = (rid == i) | pc.starts_with(rid, pattern=i + "#")
        expr = e if expr is None else expr | e
    return expr
