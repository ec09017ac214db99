"""One text field of a local JSON Lines file, streamed through Arrow's JSON reader into one column.

Why our own code: ``pyarrow.json.read_json`` (what the ``datasets`` json builder calls) returns a
table of ~1 MiB chunks, and every later ``take`` (the mixture's shuffle) concatenates them, so the
rows' text existed twice at once: the reader's chunks and their concatenation (483 MB of Arrow at
the 1M-row load of ``benchmarks/curate_scale.py``, for 220 MB of text). Here
``pyarrow.json.open_json`` streams blocks (``BLOCK_SIZE``) and each block's text bytes are copied
into one buffer as they arrive, then the block is let go: the load holds the text once plus a few
blocks, and the column is a single chunk (Arrow has no kernel that concatenates into a buffer it
does not own, and ``ChunkedArray.combine_chunks`` needs every chunk alive until it is done).

The file's schema is the first block's (the streaming reader's rule); a later block with a field or
a type the first did not have raises in the reader, and :func:`read_text_column` then returns None,
as for bytes that are not UTF-8 or a file whose first block lacks the text field: the caller takes
the tolerant readers, which quarantine bad lines. A record longer than a block is read again with
larger blocks (``BLOCK_SIZES``, as ``datasets``' json builder retries). Whole records are kept only
for rows whose text is null or blank (their quarantine ``raw``). One difference from a whole-file
read remains: with ``limit:``, the stream stops there, so a quarantined record's ``raw`` shows the
fields of the rows read, not a field that first appears after the limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.columns import SPACE_CLASS

BLANK = f"^[{SPACE_CLASS}]*$"  # Python's str.strip whitespace only: the rows quarantined as empty_field
BLOCK_SIZE = 1 << 21  # 2 MiB: 1M rows here read in 0.4 s with ~80 MB of blocks in flight (1 MiB: 0.5 s; 4 MiB: 0.35 s, ~170 MB)
RETRY_BLOCK_SIZES = (1 << 26, 1 << 30)  # a record longer than a block: read again with these
MAX_CHUNK_BYTES = 2**31 - 1  # a string array's int32 offsets: past this the column gets another chunk


@dataclass
class TextColumn:
    schema: pa.Schema  # the file's fields (its first block's), for ``source_columns.applies``
    text: pa.ChunkedArray  # the field, one chunk (another per 2 GiB of text), null where a record lacks it
    records: dict[int, dict] = field(default_factory=dict)  # whole records of rows whose text is null or blank
    rows: int = 0


class _Concat:
    """String arrays appended into one preallocated buffer (its untouched pages cost no memory)."""

    def __init__(self, capacity: int):
        self.capacity = max(1, min(capacity, MAX_CHUNK_BYTES))
        self.chunks: list[pa.Array] = []
        self._start()

    def _start(self) -> None:
        self.data = np.empty(self.capacity, np.uint8)
        self.offsets, self.valid, self.pos, self.n = [np.zeros(1, np.int32)], [], 0, 0

    def append(self, col: pa.Array) -> None:
        offsets = np.frombuffer(col.buffers()[1], np.int32, len(col) + 1, offset=4 * col.offset)
        lo, hi = int(offsets[0]), int(offsets[-1])
        if self.pos + hi - lo > self.capacity:
            self.finish()
            if hi - lo > self.capacity:
                self.capacity = min(hi - lo, MAX_CHUNK_BYTES)
            self._start()
        if hi > lo:
            self.data[self.pos:self.pos + hi - lo] = np.frombuffer(col.buffers()[2], np.uint8, hi - lo, offset=lo)
        self.offsets.append((offsets[1:].astype(np.int64) - lo + self.pos).astype(np.int32))  # <= capacity < 2**31
        self.valid.append(np.asarray(col.is_valid(), dtype=bool))
        self.pos += hi - lo
        self.n += len(col)

    def finish(self) -> None:
        if not self.n:
            return
        valid = np.concatenate(self.valid)
        nulls = int(len(valid) - valid.sum())
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
        offsets = pa.py_buffer(np.concatenate(self.offsets))
        self.chunks.append(pa.StringArray.from_buffers(self.n, offsets, pa.py_buffer(self.data[:self.pos]), bitmap, nulls))
        self._start()


def read_text_column(path: str, text_field: str, limit: int | None = None) -> TextColumn | None:
    """``text_field`` of the JSON Lines file at ``path`` (its first ``limit`` records), or None where
    Arrow's streaming reader cannot read the file whole (see the module docstring)."""
    for block_size in (BLOCK_SIZE, *RETRY_BLOCK_SIZES):
        try:
            return _read(path, text_field, limit, block_size)
        except _LongRecord:
            continue
    return None


class _LongRecord(Exception):
    pass


def _read(path: str, text_field: str, limit: int | None, block_size: int) -> TextColumn | None:
    import pyarrow.json as paj

    try:
        reader = paj.open_json(path, read_options=paj.ReadOptions(block_size=block_size))
    except Exception as exc:  # noqa: BLE001 - an empty or unparsable file: the tolerant readers' case
        return _failed(exc)
    schema = reader.schema
    if text_field not in schema.names:  # every row would be quarantined whole: the tolerant readers say so
        return None
    if schema.field(text_field).type not in (pa.string(), pa.large_string()):
        return TextColumn(schema, pa.chunked_array([], pa.string()))  # source_columns.applies refuses it
    out, records, n = _Concat(os.path.getsize(path)), {}, 0
    try:
        for batch in reader:
            if limit is not None and n + batch.num_rows > limit:
                batch = batch.slice(0, max(0, limit - n))
            batch.validate(full=True)  # Arrow's JSON reader lets bytes that are not UTF-8 through
            col = batch.column(text_field).cast(pa.string())
            bad = np.flatnonzero(~np.asarray(col.is_valid(), dtype=bool)
                                 | np.asarray(pc.match_substring_regex(col.fill_null(""), BLANK), dtype=bool))
            for i in bad.tolist():
                records[n + i] = batch.slice(i, 1).to_pylist()[0]
            out.append(col)
            n += batch.num_rows
            del batch, col
            if limit is not None and n >= limit:
                break
    except Exception as exc:  # noqa: BLE001 - a later block the reader rejects (a new field, another type, bad bytes)
        return _failed(exc)
    out.finish()
    return TextColumn(schema, pa.chunked_array(out.chunks, pa.string()), records, n)


def _failed(exc: Exception) -> None:
    """None (the tolerant readers' case), or :class:`_LongRecord` where a record is longer than a block."""
    if "straddl" in str(exc) or "block size" in str(exc).lower():
        raise _LongRecord() from exc
    return None
