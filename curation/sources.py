"""Sources -> canonical rows, with malformed records quarantined (never silently dropped).

Files and Hub datasets are read with ``datasets.load_dataset`` (the json, parquet and csv
builders; ``.gz`` is decompressed by ``datasets``). Our own code covers what the builders lack:
a JSON Lines file with a broken line or a type that changes between rows makes the ``json`` builder
abort the whole file (and so does a line of bytes that are not UTF-8), so that case falls back to a
line reader that decodes line by line, quarantines each bad line with its reason, line number and
raw text, and keeps every valid one.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import datasets

from curation.formats import DEFAULT_KIND, FORMATS
from curation.generators import GENERATORS
from curation.rows import MalformedRow, rows_to_dataset

LOADER_VERSION = "1"

_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".tsv": "csv"}


class SourceError(Exception):
    """A source that cannot be read, or that yields no valid row."""


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
    if is_local(spec.path):
        if not Path(spec.path).expanduser().exists():
            raise SourceError(f"data file not found: {spec.path}")
        return file_fingerprint(spec.path)
    return {"hub": spec.path, "name": spec.name, "split": spec.split, "revision": spec.revision}


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _tolerant_jsonl(path: str) -> Iterator[tuple[int, Any, str | None, str]]:
    """(line number, record or None, error reason, raw line) for each non-blank line.

    Lines are decoded one at a time, so a line with bytes that are not UTF-8 is quarantined
    (``invalid_utf8``, raw text with U+FFFD in place of the bad bytes) and the rest of the file is kept.
    """
    with _open_binary(path) as fh:
        for lineno, data in enumerate(fh, 1):
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, None, f"invalid_utf8:byte {exc.start} of the line", data.decode("utf-8", "replace")
                continue
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, None, f"invalid_json:{exc.msg}", line
                continue
            if not isinstance(rec, dict):
                yield lineno, None, "not_an_object", line
                continue
            yield lineno, rec, None, line


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


def _read_records(spec) -> Iterable[tuple[int, Any, str | None, str]]:
    """(index, record or None, error, raw text of an unreadable record) for every record of a file or Hub source."""
    path = spec.path
    if is_local(path):
        local = str(Path(path).expanduser())
        if Path(local).is_dir():
            ds = datasets.load_dataset(local, split=spec.split)
            return ((i, r, None, "") for i, r in enumerate(ds))
        builder = _BUILDERS.get(_suffix(local))
        if builder is None:
            raise SourceError(f"{path}: unknown file type; use .jsonl, .json, .parquet or .csv (optionally .gz)")
        kwargs = {"delimiter": "\t"} if _suffix(local) == ".tsv" else {}
        try:
            with _quiet_datasets():  # a parse failure is expected here and handled below
                ds = datasets.load_dataset(builder, data_files=local, split="train", **kwargs)
                ds.data.table.validate(full=True)  # Arrow's JSON reader lets bytes that are not UTF-8 through
            return ((i, r, None, "") for i, r in enumerate(ds))
        except Exception as exc:  # datasets raises several types for bad rows
            if builder != "json" or _suffix(local) != ".jsonl":
                raise SourceError(f"{path}: cannot be read: {_root_cause(exc)}") from None
            return _tolerant_jsonl(local)
    try:
        ds = datasets.load_dataset(path, spec.name, split=spec.split, revision=spec.revision)
    except Exception as exc:
        raise SourceError(
            f"{path}: cannot load from the Hub ({str(exc).splitlines()[0]}). Offline? Download it and give a local path."
        ) from None
    return ((i, r, None, "") for i, r in enumerate(ds))


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
            rows = gen(params, source=name, split=spec.split, seed=seed)
        except ValueError as exc:
            raise SourceError(f"source {name!r}: {exc}") from None
        if not rows:
            raise SourceError(f"source {name!r}: generator {spec.generate!r} produced no rows")
        return SourceResult(rows_to_dataset(rows), [], {"records": len(rows), "valid": len(rows), "quarantined": 0})

    fmt_name = spec.format or "fields"
    fmt = FORMATS.get(fmt_name)
    mapped = spec.model_copy(update={"kind": spec.kind or DEFAULT_KIND.get(fmt_name)})
    view = _SpecView(mapped, name)
    rows, quarantine, n = [], [], 0
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
        reasons: dict[str, int] = {}
        for q in quarantine:
            reasons[q["reason"]] = reasons.get(q["reason"], 0) + 1
        why = ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])) or "the source is empty"
        raise SourceError(f"source {name!r} ({spec.path}) yields no valid row: {why}")
    stats = {"records": n, "valid": len(rows), "quarantined": len(quarantine)}
    return SourceResult(rows_to_dataset(rows), quarantine, stats)


class _SpecView:
    """The source spec as formats see it: its fields plus the source name."""

    def __init__(self, spec, name: str):
        self._spec, self.name = spec, name

    def __getattr__(self, item):
        return getattr(self._spec, item)
