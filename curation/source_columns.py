"""Columnar loading of the commonest large source: a local file of ``kind: text`` rows mapped with
``fields`` (a text column, optionally skill and metadata columns), as pretraining pools are.

The general loader maps every record through the source's format in Python (the mapping is
arbitrary); this path does the same mapping over the builder's Arrow columns and must give the
same rows, ids, quarantine records and stats (a test compares the two on awkward text):

* ``missing_field`` where the text is null, ``empty_field`` where it is whitespace only (Python's
  ``str.strip`` whitespace, spelled out for RE2 by ``curation.columns``);
* ids: the sha256 of ``json.dumps([source, "text", text], sort_keys=True, ensure_ascii=False)``,
  the JSON string built by Arrow kernels (the escapes ``json.dumps`` makes: backslash, quote, tab,
  newline, carriage return) and rows with other control characters dumped in Python; the hash
  itself is per row (``hashlib``; Arrow has no sha256 kernel);
* metadata: ``json.dumps`` of the declared columns per row (only when metadata is declared).

Anything else (nested paths, column lists, non-text columns, folders, Hub sources) takes the
general loader. Why our own code: ``datasets.Dataset.map`` would run the same per-record Python
through its cache writer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.jsonl_text import BLANK as _BLANK, TextColumn
from curation.rows import ARROW_SCHEMA

_OTHER_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"  # escaped by json.dumps, but not by the kernels below
_SPECIAL = r'[\\"\x00-\x1f]'  # every character json.dumps escapes (ensure_ascii=False): backslash, quote, controls


def _plain(column: Any) -> bool:
    return isinstance(column, str) and "." not in column


def applies(spec, fmt_name: str, features) -> bool:
    """Whether a loaded file source can take the columnar path (``features``: the builder's
    ``datasets.Features``, or the Arrow schema of a file streamed by
    ``jsonl_text.read_text_column``)."""
    f = spec.fields or {}
    if fmt_name != "fields" or spec.kind != "text" or set(f) - {"text", "skill", "metadata"}:
        return False
    text, skill, meta = f.get("text", "text"), f.get("skill"), f.get("metadata")
    metas = [meta] if isinstance(meta, str) else (meta or [])
    if not _plain(text) or (skill is not None and not _plain(skill)) or not all(_plain(c) for c in metas):
        return False
    if isinstance(features, pa.Schema):  # a direct read: only the text column is mapped (see direct)
        return skill is None and not metas and (text not in features.names or features.field(text).type in (pa.string(), pa.large_string()))
    from datasets import Value

    def is_value(col):
        return col not in features or isinstance(features[col], Value)

    return (text not in features or (isinstance(features[text], Value) and features[text].dtype in ("string", "large_string"))) \
        and is_value(skill or "") and all(is_value(c) for c in metas)


def direct(spec) -> bool:
    """Whether a local JSON Lines source can skip the ``datasets`` builder (``jsonl_text.read_text_column``,
    0.4 s against 1.57 s for 1M rows here, and no copy into the Hugging Face cache): only its
    text is mapped, so no skill or metadata value depends on how a builder infers column types."""
    f = spec.fields or {}
    return not f.get("skill") and not f.get("metadata") and set(f) <= {"text"}


ID_CHUNK = 65536  # rows hashed at a time: the JSON payload strings of one chunk exist at once, not 1M


PARALLEL_MIN_ROWS = 200_000  # below this a forked helper costs more than half the hashing saves


def _hex_ids(source: str, text: pa.Array) -> list[str]:
    """The ids of ``text``'s rows (see the module docstring). Only the rows holding a character
    ``json.dumps`` escapes (one regex pass finds them: 0.5% of the rows of ``card_scale``'s pool) go
    through the five escaping kernels, each of which copies every string it is given (0.79 s of
    0.95 s for 500k rows here when all rows went through them); the others are joined as they are."""
    prefix = json.dumps([source, "text"], ensure_ascii=False)[:-1] + ', "'
    out: list[str] = []
    for start in range(0, len(text), ID_CHUNK):
        part = text.slice(start, ID_CHUNK)
        part = part.combine_chunks() if isinstance(part, pa.ChunkedArray) else part  # one ID_CHUNK: a small copy
        special = np.flatnonzero(np.asarray(pc.match_substring_regex(part, _SPECIAL), dtype=bool))
        escaped, odd, raw = part, np.zeros(0, dtype=np.int64), []
        if len(special):
            some = part.take(pa.array(special))
            fixed = some
            for old, new in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
                fixed = pc.replace_substring(fixed, old, new)
            mask = np.zeros(len(part), dtype=bool)
            mask[special] = True
            escaped = pc.replace_with_mask(part, pa.array(mask), fixed)
            odd_of_some = np.flatnonzero(np.asarray(pc.match_substring_regex(some, _OTHER_CONTROL), dtype=bool))
            odd, raw = special[odd_of_some], some.take(pa.array(odd_of_some)).to_pylist()
        payload = pc.binary_join_element_wise(prefix, escaped, '"]', "").to_pylist()
        for i, t in zip(odd.tolist(), raw):
            payload[i] = json.dumps([source, "text", t], sort_keys=True, ensure_ascii=False)
        out.extend(hashlib.sha256(p.encode("utf-8")).hexdigest()[:16] for p in payload)
    return out


def _fixed_width(hex_ids: bytes, n: int) -> pa.Array:
    """``n`` 16-character ids from their concatenated ASCII bytes, without a Python string each."""
    offsets = pa.py_buffer(np.arange(0, 16 * (n + 1), 16, dtype=np.int32).tobytes())
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(hex_ids))


def _ids(source: str, text: pa.Array) -> pa.Array:
    """The row ids of a text column. Python's ``hashlib`` holds the GIL on strings this short, so a
    large column is split in two and the second half hashed by a forked child process (it writes
    its ids into a shared anonymous map; only Arrow kernels, ``json`` and ``hashlib`` run there): 2.8 s
    -> ~1.5 s for 1M rows on 2 cores. Where fork is missing, fails, or the child does, it is hashed
    here: the ids are the same either way (a test)."""
    import mmap
    import os
    import warnings

    from curation.row_local import available_cpus

    n = len(text)
    if n < PARALLEL_MIN_ROWS or available_cpus() < 2 or not hasattr(os, "fork"):
        return pa.array(_hex_ids(source, text), pa.string())
    half = -(-n // 2 // ID_CHUNK) * ID_CHUNK
    shared = mmap.mmap(-1, 16 * (n - half))
    pid = None
    try:
        try:
            with warnings.catch_warnings():  # Python 3.12 warns on fork with threads; the child runs none of theirs
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            pid = None
        if pid == 0:  # the child: hash the second half, write it, leave without running the parent's exit handlers
            code = 1
            try:
                shared[:] = "".join(_hex_ids(source, text.slice(half))).encode("ascii")
                code = 0
            finally:
                os._exit(code)
        first = _fixed_width("".join(_hex_ids(source, text.slice(0, half))).encode("ascii"), half)
        ok = pid is not None and _child_succeeded(pid, CHILD_SECONDS_PER_ROW * (n - half) + 30)
        pid = None  # reaped
        second = _fixed_width(bytes(shared), n - half) if ok else pa.array(_hex_ids(source, text.slice(half)), pa.string())
    finally:
        if pid:  # the parent's half failed (an interrupt): do not leave the child behind
            _stop(pid)
        shared.close()
    return pa.concat_arrays([first, second])


CHILD_SECONDS_PER_ROW = 2e-5  # a child hashing well slower than this (10x the rate here) is taken as stuck


def _child_succeeded(pid: int, deadline_s: float) -> bool:
    """Wait for the hashing child up to ``deadline_s`` (a child stuck on a lock a parent's thread held
    at fork would otherwise hang the load); past it the child is killed and its half hashed here."""
    import os
    import time

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status == 0
        time.sleep(0.005)
    _stop(pid)
    return False


def _stop(pid: int) -> None:
    import os
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def load_text_rows(ds, spec, name: str) -> tuple[pa.Table, list[dict], int]:
    """(canonical rows with their ids not yet numbered, quarantine, records read) of a loaded file: a
    ``datasets.Dataset`` from its builder, or a ``jsonl_text.TextColumn`` streamed from the file."""
    from curation.sources import _raw

    f = spec.fields or {}
    col = f.get("text", "text")
    if isinstance(ds, TextColumn):  # streamed: the text field alone, one chunk, and the bad rows' records
        table, ds = pa.table({col: ds.text}), _TableRows(pa.table({col: ds.text}), ds.records)
    else:
        table = ds.data.table
    n = table.num_rows if spec.limit is None else min(spec.limit, table.num_rows)
    table = table.slice(0, n)
    if col in table.column_names:  # a streamed column is one chunk already, or one per 2 GiB of text (kept so)
        text = table.column(col).cast(pa.string())
        text = text.chunk(0) if text.num_chunks == 1 else text if isinstance(ds, _TableRows) else text.combine_chunks()
    else:
        text = pa.nulls(n, pa.string())
    missing = np.asarray(text.is_null(), dtype=bool)
    blank = ~missing & np.asarray(pc.match_substring_regex(text.fill_null(""), _BLANK), dtype=bool)
    bad = missing | blank
    quarantine = [{"index": int(i), "reason": "missing_field" if missing[i] else "empty_field",
                   "detail": col if missing[i] else "text", "raw": _raw(ds[int(i)])} for i in np.flatnonzero(bad)]
    keep = pa.array(~bad)
    if bad.any():
        text = text.filter(keep)
    k = len(text)
    if f.get("skill"):  # str() of the value, as the general mapping does (True -> "True", 1.0 -> "1.0")
        values = table.column(f["skill"]).filter(keep).to_pylist() if f["skill"] in table.column_names else [None] * k
        skill = pa.array([None if v is None else str(v) for v in values], pa.string())
    else:
        skill = pa.repeat(pa.scalar(spec.skill, pa.string()), k)
    meta = f.get("metadata")
    metas = [meta] if isinstance(meta, str) else (meta or [])
    if metas:
        values = {c: (ds.select_columns([c])[c][:n] if c in table.column_names else [None] * n) for c in metas}
        kept_idx = np.flatnonzero(~bad).tolist()
        metadata = pa.array([json.dumps({c: values[c][i] for c in metas}, sort_keys=True) for i in kept_idx], pa.string())
    else:
        metadata = pa.repeat(pa.scalar("{}", pa.string()), k)
    columns = {"id": _ids(name, text), "source": pa.repeat(pa.scalar(name, pa.string()), k),
               "kind": pa.repeat(pa.scalar("text", pa.string()), k), "skill": skill,
               "ground_truth": pa.nulls(k, pa.string()), "verifier": pa.nulls(k, pa.string()), "text": text,
               "metadata": metadata}
    arrays = [columns[field.name] if field.name in columns else pa.nulls(k, field.type) for field in ARROW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA), quarantine, n


class _TableRows:
    """What :func:`load_text_rows` asks of a dataset (a row as a dict, a column's first values), of a
    table; ``records``: rows kept whole where the table holds only some of their fields."""

    def __init__(self, table: pa.Table, records: dict[int, dict] | None = None):
        self.table, self.records = table, records or {}

    def __getitem__(self, i: int) -> dict:
        return self.records[i] if i in self.records else self.table.slice(i, 1).to_pylist()[0]

    def select_columns(self, cols: list[str]) -> dict:
        return {c: self.table.column(c).to_pylist() for c in cols}
