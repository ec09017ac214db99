"""Canonical rows as Arrow columns: a row's text, word and character counts, normalised text,
computed over a whole ``pyarrow`` table with ``pyarrow.compute`` kernels instead of per-row Python.

Why our own code: ``datasets`` and ``pyarrow`` give the kernels (flatten, join, regex counts,
``utf8_length``) but not our row kinds' text layout (``curation.rows.row_text``). Every function
here returns *exactly* what its per-row Python counterpart returns (tests compare them on
non-ASCII text and odd whitespace):

* :func:`text_column` == ``[row_text(r, field) for r in rows]``;
* :func:`word_counts` == ``[len(t.split()) for t in texts]`` (Python's whitespace is every
  character for which ``str.isspace()`` holds; RE2's ``\\s`` is ASCII only, so the class is spelled
  out);
* :func:`char_counts` == ``[len(t) for t in texts]`` (code points);
* :func:`normalised` == ``[exact_dedup.normalise(t, lower)]``: ASCII rows with Arrow kernels, the
  others (NFKC and Unicode lower-casing, where Arrow's utf8proc and Python's ``unicodedata`` may
  disagree on the Unicode version) in Python.

Work is done per record batch of at most :data:`BATCH_ROWS` rows, so no intermediate array needs
more than 32-bit offsets whatever the table's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BATCH_ROWS = 65_536

# every character Python treats as whitespace (str.isspace, hence str.split() and re's \s); all lie in
# the Basic Multilingual Plane, so the scan stops there (a test checks the whole range agrees)
PY_SPACE = "".join(chr(c) for c in range(0x10000) if chr(c).isspace())


def _re2_class(chars: str) -> str:
    return "".join(f"\\x{{{ord(c):x}}}" for c in chars)


# the same, as a byte table for the compiled kernels over ASCII text (curation.kernels): 1 where str.split() separates
ASCII_SPACE_BYTES = np.zeros(256, np.uint8)
ASCII_SPACE_BYTES[[ord(c) for c in PY_SPACE if ord(c) < 128]] = 1

SPACE_CLASS = _re2_class(PY_SPACE)
_WORD = f"[^{SPACE_CLASS}]+"
_ASCII_SPACE_RUN = "[" + _re2_class("".join(c for c in PY_SPACE if ord(c) < 128)) + "]+"


def table_of(rows: Any) -> pa.Table:
    """The Arrow table behind ``rows``: a ``pyarrow.Table`` as is, a ``datasets.Dataset`` without
    copying when it has no indices mapping (else the mapping is applied once, with ``take``)."""
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    table = rows.data.table if hasattr(rows.data, "table") else rows.data
    indices = getattr(rows, "_indices", None)
    if indices is not None:
        idx = indices.column(0) if hasattr(indices, "column") else indices.table.column(0)
        table = table.take(idx)
    return table


def batches(table: pa.Table, size: int = BATCH_ROWS):
    """``table`` as record batches of at most ``size`` rows (zero-copy slices)."""
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size)


def _concat_chunks(parts: list, typ=pa.string()) -> pa.ChunkedArray:
    chunks = [c for p in parts for c in (p.chunks if isinstance(p, pa.ChunkedArray) else [p])]
    return pa.chunked_array(chunks, type=typ)


def _contents(col: pa.ChunkedArray | pa.Array):
    """(parent row index, content, role) of every message of a list<struct<role, content>> column."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    flat = pc.list_flatten(col)
    parents = np.asarray(pc.list_parent_indices(col), dtype=np.int64)
    return parents, flat.field("content"), flat.field("role")


def _text_batch(t: pa.Table, field: str) -> pa.Array:
    n = t.num_rows
    kind = np.asarray(t.column("kind").fill_null("").to_numpy(zero_copy_only=False)).astype(str)
    pieces_row, pieces_rank, pieces_val = [], [], []

    def add(rows: np.ndarray, rank, values: pa.Array, kinds: tuple[str, ...]):
        mask = np.isin(kind[rows], kinds) if len(rows) else np.zeros(0, bool)
        if field == "prompt":
            mask &= np.asarray(rank) == 0
        elif field == "response":
            mask &= np.asarray(rank) > 0
        if not mask.any():
            return
        pieces_row.append(rows[mask])
        pieces_rank.append(np.broadcast_to(rank, rows.shape)[mask])
        pieces_val.append(values.filter(pa.array(mask)))

    if "messages" in t.column_names:
        parents, content, role = _contents(t.column("messages"))
        rank = np.asarray(pc.equal(role, "assistant").fill_null(False), dtype=np.int64)
        add(parents, rank, content, ("chat",))
    for col, rank in (("prompt", 0), ("chosen", 1), ("rejected", 2)):
        if col in t.column_names:
            parents, content, _ = _contents(t.column(col))
            kinds = ("preference", "verifiable") if col == "prompt" else ("preference",)
            add(parents, np.int64(rank), content, kinds)
    idx = np.arange(n, dtype=np.int64)
    if "ground_truth" in t.column_names:
        add(idx, np.int64(1), t.column("ground_truth").combine_chunks().fill_null(""), ("verifiable",))
    if "text" in t.column_names:
        # text rows are their text whatever the field
        text = t.column("text").combine_chunks().fill_null("")
        rows = idx[kind == "text"]
        if len(rows):
            pieces_row.append(rows)
            pieces_rank.append(np.zeros(len(rows), np.int64))
            pieces_val.append(text.filter(pa.array(kind == "text")))
    if not pieces_row:
        return pa.array([""] * n, pa.string())
    row = np.concatenate(pieces_row)
    order = np.argsort(row * 3 + np.concatenate(pieces_rank), kind="stable")
    values = pa.concat_arrays([v.cast(pa.string()) for v in pieces_val]).take(pa.array(order)).fill_null("")
    counts = np.bincount(row, minlength=n)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pc.binary_join(pa.ListArray.from_arrays(offsets, values), "\n")


def ids_of(rows: Any) -> list[str]:
    """The ``id`` column as a Python list. (``Dataset["id"]`` is a lazy ``datasets.Column`` in
    datasets >= 4, and indexing one element of it costs a whole ``Dataset.__getitem__``: 24 of
    minhash_dedup's 34 s at 200k rows before this.)"""
    return table_of(rows).column("id").to_pylist()


def text_column(rows: Any, field: str = "all") -> pa.ChunkedArray:
    """``row_text(row, field)`` of every row, as an Arrow string column (see the module docstring)."""
    table = table_of(rows)
    if table.num_rows == 0:
        return pa.chunked_array([], type=pa.string())
    if "kind" not in table.column_names:
        raise ValueError("rows have no 'kind' column: not canonical rows")
    kinds = pc.unique(table.column("kind")).to_pylist()
    if kinds == ["text"]:  # text rows are their text, whatever the field: the column itself
        return table.column("text").fill_null("").cast(pa.string())
    return _concat_chunks([_text_batch(b, field) for b in batches(table)])


def char_counts(strings) -> np.ndarray:
    """``len(s)`` (code points) of every string."""
    return np.asarray(pc.utf8_length(strings).fill_null(0), dtype=np.int64)


_ASCII_SPACE_LUT = np.zeros(256, dtype=bool)
_ASCII_SPACE_LUT[[ord(c) for c in PY_SPACE if ord(c) < 128]] = True


def _ascii_word_counts(arr: pa.Array) -> np.ndarray:
    """Words of each string counted on its UTF-8 bytes: a word starts at a non-space byte after a space
    byte or at the string's start. Exact for ASCII strings (every other byte is not whitespace there)."""
    offsets_buf, data_buf = arr.buffers()[1], arr.buffers()[2]
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)[arr.offset:arr.offset + len(arr) + 1].astype(np.int64)
    if data_buf is None or offsets[-1] == offsets[0]:
        return np.zeros(len(arr), dtype=np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]]
    space = _ASCII_SPACE_LUT[data]
    starts = ~space
    starts[1:] &= space[:-1]
    begin = offsets[:-1] - offsets[0]
    nonempty = offsets[1:] > offsets[:-1]
    starts[begin[nonempty]] = ~space[begin[nonempty]]  # a string's first byte starts a word unless a space
    counts = np.zeros(len(arr), dtype=np.int64)
    if nonempty.any():  # per-string sums; empty strings lie between segments and count 0
        counts[nonempty] = np.add.reduceat(starts, begin[nonempty], dtype=np.int64)
    return counts


def word_counts(strings) -> np.ndarray:
    """``len(s.split())`` of every string (Python's whitespace, see the module docstring): ASCII strings
    by a byte scan, the others by an RE2 count of runs of non-whitespace."""
    strings = strings if isinstance(strings, pa.ChunkedArray) else pa.chunked_array([strings])
    out = []
    pieces = (big.slice(start, BATCH_ROWS) for big in strings.chunks for start in range(0, len(big), BATCH_ROWS))
    for piece in pieces:  # bounded temporaries: two byte-long masks per batch
        chunk = piece.fill_null("")
        counts = _ascii_word_counts(chunk)
        other = np.flatnonzero(~np.asarray(pc.string_is_ascii(chunk), dtype=bool))
        if len(other):
            counts[other] = np.asarray(pc.count_substring_regex(chunk.take(pa.array(other)), _WORD), dtype=np.int64)
        out.append(counts)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def normalised(strings, lower: bool = True, fallback=None) -> pa.ChunkedArray:
    """``fallback(s, lower)`` of every string (``exact_dedup.normalise``): ASCII strings through Arrow
    kernels (lower-case, whitespace runs to one space, trimmed), the rest through ``fallback``."""
    strings = strings if isinstance(strings, pa.ChunkedArray) else pa.chunked_array([strings])
    out = []
    for chunk in strings.chunks:
        fast = chunk.fill_null("")
        if lower:
            fast = pc.ascii_lower(fast)
        fast = pc.utf8_trim(pc.replace_substring_regex(fast, _ASCII_SPACE_RUN, " "), " ")
        ascii_mask = np.asarray(pc.string_is_ascii(chunk.fill_null("")), dtype=bool)
        if not ascii_mask.all():
            slow_idx = np.flatnonzero(~ascii_mask)
            slow = [fallback(s or "", lower) for s in chunk.take(pa.array(slow_idx)).to_pylist()]
            fast = pc.replace_with_mask(fast, pa.array(~ascii_mask), pa.array(slow, pa.string()))
        out.append(fast)
    return pa.chunked_array(out, type=pa.string())


def take_rows(table: pa.Table, indices) -> pa.Table:
    """``table.take(indices)``; when the indices increase (a step that only filters) a boolean ``filter``
    instead, which copies contiguous runs (0.36 s against 1.2 s for a ``take`` of 97% of 1M rows of
    text here), and the table itself when every row is kept in order."""
    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) and bool((np.diff(idx) > 0).all()):
        if len(idx) == table.num_rows:
            return table
        mask = np.zeros(table.num_rows, dtype=bool)
        mask[idx] = True
        return table.filter(pa.array(mask))
    return table.take(pa.array(idx))
