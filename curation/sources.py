"""Sources -> canonical rows, with malformed records quarantined (never silently dropped).

Files and Hub datasets are read with ``datasets.load_dataset`` (the json, parquet and csv
builders; ``.gz`` is decompressed by ``datasets``). Our own code covers what the builders lack:
a JSON Lines file with a broken line or a type that changes between rows makes the ``json`` builder
abort the whole file (and so does a line of bytes that are not UTF-8), so that case falls back to a
line reader that decodes line by line, quarantines each bad line with its reason, line number and
raw text, and keeps every valid one.

Records are read from the builder's Arrow table a record batch at a time (``to_pylist`` per
batch, not row access to a ``datasets.Dataset``), mapped to canonical rows by the source's
format (per-record Python: the mapping is arbitrary user data), and the canonical rows go back to
Arrow every :data:`FLUSH_ROWS` rows, so a source never holds more than one batch of Python dicts.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import datasets

from curation.formats import DEFAULT_KIND, FORMATS
from curation.generators import GENERATORS
from curation.rows import MalformedRow, dataset_of, rows_to_table

LOADER_VERSION = "1"
FLUSH_ROWS = 50_000

_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".tsv": "csv"}


class SourceError(Exception):
    """A source that cannot be read, or that yields no valid row."""


class NoValidRows(SourceError):
    """Every record of a source was malformed. The message names the reasons (the missing fields
    among them) and shows one offending record; ``quarantine`` holds every record with its reason,
    which the runner writes to the run's ledger (``recipe audit R --reason missing_field``)."""

    def __init__(self, name: str, path: str, quarantine: list[dict], records: int):
        self.source, self.quarantine = name, quarantine
        reasons: dict[str, int] = {}
        for q in quarantine:
            reasons[q["reason"]] = reasons.get(q["reason"], 0) + 1
        why = ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])) or "the source is empty"
        text = f"source {name!r} ({path}) yields no valid row of its {records} records: {why}"
        missing = sorted({q["detail"] for q in quarantine if q["reason"] == "missing_field" and q.get("detail")})
        if missing:
            text += f". Missing field(s): {', '.join(missing)}: check the source's `fields` against the record's columns"
        if quarantine:
            q = quarantine[0]
            what = f"{q['reason']}: {q['detail']}" if q.get("detail") else q["reason"]
            text += f". First offending record (#{q['index']}, {what}): {(q.get('raw') or '')[:300]}"
        super().__init__(text)


@dataclass
class SourceResult:
    rows: datasets.Dataset
    quarantine: list[dict] = field(default_factory=list)  # {index, reason, detail, raw}
    stats: dict[str, Any] = field(default_factory=dict)


def _suffix(path: str) -> str:
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def is_local(path: str) -> bool:
    return os.path.exists(path) or path.startswith((".", "/", "~")) or _suffix(path) in _BUILDERS


def file_fingerprint(path: str) -> dict[str, Any]:
    """sha256 and size of a local file (or of every data file in a directory)."""
    p = Path(path).expanduser()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    digest = hashlib.sha256()
    size = 0
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        size += f.stat().st_size
    return {"sha256": digest.hexdigest(), "bytes": size, "files": len(files)}


def source_fingerprint(spec) -> dict[str, Any]:
    """What identifies a source's content: the file hash for local files, id+revision for Hub."""
    if getattr(spec, "generate", None):
        return {"generator": spec.generate}
    if looks_local(spec.path):
        if not Path(spec.path).expanduser().exists():
            raise SourceError(f"data file not found: {spec.path} (no such file or folder; a Hub id has the form owner/name)")
        return file_fingerprint(spec.path)
    return {"hub": spec.path, "name": spec.name, "split": spec.split, "revision": spec.revision}


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _tolerant_jsonl(path: str, label: str = "") -> Iterator[tuple[Any, Any, str | None, str]]:
    """(line number, record or None, error reason, raw line) for each non-blank line.

    Lines are decoded one at a time, so a line with bytes that are not UTF-8 is quarantined
    (``invalid_utf8``, raw text with U+FFFD in place of the bad bytes) and the rest of the file is kept.
    A ``.gz`` that ends early (``truncated_file``) or is not gzip at all (``not_gzip``) or is damaged
    (``corrupt_file``) keeps every line read before the break and records where it broke. ``label``
    prefixes the line number (a folder source: ``part-0001.jsonl:17``).
    """
    lineno, offset = 0, 0
    try:
        with _open_binary(path) as fh:
            for lineno, data in enumerate(fh, 1):
                offset += len(data)
                where = f"{label}{lineno}" if label else lineno
                try:
                    line = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield where, None, f"invalid_utf8:byte {exc.start} of the line", data.decode("utf-8", "replace")
                    continue
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield where, None, f"invalid_json:{exc.msg}", line
                    continue
                if not isinstance(rec, dict):
                    yield where, None, "not_an_object", line
                    continue
                yield where, rec, None, line
    except EOFError:
        yield (f"{label}{lineno + 1}" if label else lineno + 1), None, (
            f"truncated_file:{Path(path).name} ends before its gzip end-of-stream marker, after {offset} "
            f"decompressed bytes (line {lineno}); the lines before were kept"), ""
    except gzip.BadGzipFile as exc:
        code = "not_gzip" if lineno == 0 else "corrupt_file"
        yield (f"{label}{lineno + 1}" if label else lineno + 1), None, (
            f"{code}:{Path(path).name}: {exc} after {offset} decompressed bytes (line {lineno})"
            + ("; is it plain text named .gz?" if code == "not_gzip" else "")), ""
    except (zlib.error, OSError) as exc:
        yield (f"{label}{lineno + 1}" if label else lineno + 1), None, (
            f"corrupt_file:{Path(path).name}: {exc} after {offset} decompressed bytes (line {lineno})"), ""


@contextlib.contextmanager
def _quiet_datasets():
    level = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's message: datasets wraps a reader's error in "An error occurred while
    generating the dataset", which says nothing about the file."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


DATA_SUFFIXES = tuple(_BUILDERS)


def data_files(folder: Path) -> list[Path]:
    """The data files of a folder source (jsonl/json/parquet/csv/tsv, optionally .gz), sorted."""
    return sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")
                  and _suffix(str(f)) in DATA_SUFFIXES)


def _builder_dataset(path: str):
    """The file through its ``datasets`` builder; None for a JSON Lines file (``.gz`` too) the builder
    cannot parse (the line reader, which quarantines each bad line, takes it). Any other file that
    cannot be read is a :class:`SourceError` naming the file and the underlying error."""
    builder = _BUILDERS.get(_suffix(path))
    if builder is None:
        raise SourceError(f"{path}: unknown file type; use .jsonl, .json, .parquet or .csv (optionally .gz)")
    kwargs = {"delimiter": "\t"} if _suffix(path) == ".tsv" else {}
    try:
        with _quiet_datasets():  # a parse failure is expected here and handled below
            ds = datasets.load_dataset(builder, data_files=path, split="train", **kwargs)
            ds.data.table.validate(full=True)  # Arrow's JSON reader lets bytes that are not UTF-8 through
    except Exception as exc:  # datasets raises several types for bad rows
        if builder != "json" or _suffix(path) != ".jsonl":
            raise SourceError(f"{path}: cannot be read: {_root_cause(exc)}") from None
        return None
    return ds


def _read_file(path: str, label: str = "") -> Iterable[tuple[Any, Any, str | None, str]]:
    """Records of one local file: the ``datasets`` builder for speed, the line reader where it fails."""
    ds = _builder_dataset(path)
    return _tolerant_jsonl(path, label) if ds is None else _records_of(ds, label)


def _records_of(ds: datasets.Dataset, label: str = ""):
    """(index, record, None, "") of every row of a loaded dataset, read a batch at a time (``iter``
    decodes the builder's features, e.g. a ``Json`` column of mixed types, as row access does)."""
    i = 0
    for batch in ds.iter(batch_size=FLUSH_ROWS):
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys)):
            yield (f"{label}{i}" if label else i), dict(zip(keys, values)), None, ""
            i += 1


def looks_local(path: str) -> bool:
    """A path on this machine (existing or not), as opposed to a Hub id ``owner/name``: it exists, starts
    like a path, has a data-file suffix, has more than one ``/``, or its first part is a local folder."""
    if is_local(path):
        return True
    return path.count("/") > 1 or (("/" in path) and Path(path.split("/", 1)[0]).is_dir())


def _read_records(spec) -> Iterable[tuple[Any, Any, str | None, str]]:
    """(index, record or None, error, raw text of an unreadable record) for every record of a file,
    a folder of files, or a Hub source."""
    path = spec.path
    if looks_local(path):
        local = Path(path).expanduser()
        if not local.exists():
            raise SourceError(f"data file not found: {path} (no such file or folder; a Hub id has the form owner/name)")
        if local.is_dir():
            files = data_files(local)
            if not files:
                raise SourceError(f"{path}: the folder holds no data files (.jsonl, .json, .parquet, .csv, .tsv, "
                                  "optionally .gz)")
            return (item for f in files for item in _read_file(str(f), f"{f.relative_to(local)}:"))
        return _read_file(str(local))
    try:
        ds = datasets.load_dataset(path, spec.name, split=spec.split, revision=spec.revision)
    except Exception as exc:
        raise SourceError(
            f"{path}: cannot load from the Hub ({str(exc).splitlines()[0]}). Offline? Download it and give a local path."
        ) from None
    return _records_of(ds)


def _raw(record: Any) -> str:
    try:
        text = json.dumps(record, ensure_ascii=False, default=str)
    except TypeError:
        text = repr(record)
    return text[:2000]


def load_source(name: str, spec, *, seed: int = 0, progress=None) -> SourceResult:
    """Read one source into canonical rows; malformed records go to the quarantine list."""
    if getattr(spec, "generate", None):
        gen = GENERATORS.get(spec.generate)
        params = gen.Params.model_validate(spec.model_extra or {})
        try:
            generated = gen(params, source=name, split=spec.split, seed=seed)
        except ValueError as exc:
            raise SourceError(f"source {name!r}: {exc}") from None
        if not generated:
            raise SourceError(f"source {name!r}: generator {spec.generate!r} produced no rows")
        rows = _Rows()
        for row in generated:
            rows.append(row)
        return SourceResult(dataset_of(rows.table()), [], {"records": len(rows), "valid": len(rows), "quarantined": 0})

    fmt_name = spec.format or "fields"
    fmt = FORMATS.get(fmt_name)
    mapped = spec.model_copy(update={"kind": spec.kind or DEFAULT_KIND.get(fmt_name)})
    columnar = _columnar(name, mapped, fmt_name)
    if columnar is not None:
        table, quarantine, n = columnar
        if progress is not None:
            progress(n)
        if not table.num_rows:
            raise NoValidRows(name, spec.path, quarantine, n)
        return SourceResult(dataset_of(number_repeated_ids(table)), quarantine,
                            {"records": n, "valid": table.num_rows, "quarantined": len(quarantine)})
    view = _SpecView(mapped, name)
    rows, quarantine, n = _Rows(), [], 0
    for index, record, error, raw in _read_records(spec):
        if spec.limit is not None and n >= spec.limit:
            break
        n += 1
        if error:
            code, _, detail = error.partition(":")
            quarantine.append({"index": index, "reason": code, "detail": detail, "raw": raw.rstrip("\n")[:2000]})
            continue
        try:
            rows.append(fmt(record, view))
        except MalformedRow as exc:
            quarantine.append({"index": index, "reason": exc.reason, "detail": exc.detail, "raw": _raw(record)})
        if progress is not None:
            progress(1)
    if not rows:
        raise NoValidRows(name, spec.path, quarantine, n)
    stats = {"records": n, "valid": len(rows), "quarantined": len(quarantine)}
    return SourceResult(dataset_of(rows.table()), quarantine, stats)


def _columnar(name: str, spec, fmt_name: str):
    """``source_columns.load_text_rows`` of a single local file it applies to, else None."""
    from curation import source_columns

    if not looks_local(spec.path) or spec.kind != "text" or fmt_name != "fields":
        return None
    local = Path(spec.path).expanduser()
    if not local.is_file():
        return None
    if _suffix(str(local)) == ".jsonl" and not str(local).endswith(".gz") and source_columns.direct(spec):
        from curation.jsonl_text import read_text_column

        column = read_text_column(str(local), (spec.fields or {}).get("text", "text"), spec.limit)
        if column is not None and source_columns.applies(spec, fmt_name, column.schema):
            return source_columns.load_text_rows(column, spec, name)
    ds = _builder_dataset(str(local))
    if ds is None or not source_columns.applies(spec, fmt_name, ds.features):
        return None
    return source_columns.load_text_rows(ds, spec, name)


def number_repeated_ids(table):
    """Repeated ids get their occurrence number (``curation.rows.disambiguate_ids``: ``<id>.1`` for
    the second identical record), computed over the id column rather than a dict of every id."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not table.num_rows:
        return table
    codes = np.asarray(pc.dictionary_encode(table.column("id").combine_chunks()).indices, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    repeated = np.flatnonzero(rank)
    if not len(repeated):
        return table
    ids = table.column("id").combine_chunks()  # only the repeats get a new string: ".k" joined, then scattered
    suffixed = pc.binary_join_element_wise(ids.take(pa.array(repeated)), pa.array(rank[repeated].astype(str)), ".")
    mask = np.zeros(len(codes), dtype=bool)
    mask[repeated] = True
    renamed = pc.replace_with_mask(ids, pa.array(mask), suffixed)
    return table.set_column(table.schema.get_field_index("id"), table.schema.field("id"), renamed)


class _Rows:
    """Canonical rows, turned into Arrow every ``FLUSH_ROWS`` rows; :meth:`table` numbers repeated ids."""

    def __init__(self):
        self._pending: list[dict] = []
        self._tables: list = []
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, row: dict) -> None:
        self._pending.append(row)
        self._n += 1
        if len(self._pending) >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._tables.append(rows_to_table(self._pending))
            self._pending = []

    def table(self):
        import pyarrow as pa

        self._flush()
        return number_repeated_ids(pa.concat_tables(self._tables) if self._tables else rows_to_table([]))


class _SpecView:
    """The source spec as formats see it: its fields plus the source name."""

    def __init__(self, spec, name: str):
        self._spec, self.name = spec, name

    def __getattr__(self, item):
        return getattr(self._spec, item)
