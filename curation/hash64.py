"""A 64-bit hash of every string of an Arrow array, vectorised in numpy over its buffers.

Why our own code: neither pyarrow nor numpy has a string hash kernel (pandas' ``hash_array`` walks
Python objects), and per-row ``hashlib``/``zlib.crc32`` cost a Python call per string. Used where
rows are grouped by a hash: the ledger folder's id buckets (``curation.ledger_folder``) and
``exact_dedup``'s first pass (which then compares the texts themselves, so a collision cannot merge
two rows). Measured on 1M 16-hex ids: 0.10 s, against 0.61 s for ``zlib.crc32`` per id.

The hash is stable across runs, processes and machines (it is part of the ledger folder's layout):
``fmix64(sum(b_i * P**(i+1) for i, b_i in enumerate(utf8)) + len) mod 2**64``, ``P`` the 64-bit FNV
prime, ``fmix64`` MurmurHash3's finaliser.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

CHUNK = 1 << 16  # strings hashed at a time by callers: one chunk's per-byte arrays (a few MB) at once


_P = np.uint64(0x100000001B3)  # the FNV-1 64-bit prime, here the base of a polynomial hash


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: every input bit moves every output bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


SLICE_BYTES = 1 << 20  # bytes hashed at once: the per-byte arrays and the power tables (8 B a byte each) stay near 10 MB


def hash64(ids: pa.Array) -> np.ndarray:
    """The 64-bit hash of every string of ``ids`` (see the module docstring), a slice of at most
    :data:`SLICE_BYTES` bytes at a time."""
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    n = len(ids)
    total = int(np.asarray(pa.compute.binary_length(ids).fill_null(0)).sum()) if n else 0
    if total <= SLICE_BYTES:
        return _hash_slice(ids)
    step = max(1, n * SLICE_BYTES // total)
    return np.concatenate([_hash_slice(ids.slice(start, step)) for start in range(0, n, step)])


_POWERS: dict[str, np.ndarray] = {}


def _powers(total: int) -> tuple[np.ndarray, np.ndarray]:
    """(P**1 .. P**total, P**-0 .. P**-(total-1)) mod 2**64 (P is odd, so it has an inverse), computed
    once up to SLICE_BYTES and kept (2 x 8 MB)."""
    size = max(total, SLICE_BYTES)
    if "up" not in _POWERS or len(_POWERS["up"]) < total:
        inverse = np.uint64(pow(int(_P), -1, 1 << 64))
        up = np.cumprod(np.full(size, _P, dtype=np.uint64))
        down = np.cumprod(np.r_[np.uint64(1), np.full(size - 1, inverse, dtype=np.uint64)])
        if size > SLICE_BYTES:  # one string longer than a slice: not kept
            return up, down
        _POWERS.update(up=up, down=down)
    return _POWERS["up"], _POWERS["down"]


def _hash_slice(ids: pa.Array) -> np.ndarray:
    """``fmix64(sum(byte_i * P**(i+1)) + len) mod 2**64`` of each string's UTF-8 bytes, vectorised over
    the Arrow buffers (no Python string per id): each byte times ``P`` to the power of its place in
    the whole buffer, summed per string (``reduceat``), times ``P**-start`` to make the powers the
    string's own."""
    wide = pa.types.is_large_string(ids.type) or pa.types.is_large_binary(ids.type)
    n = len(ids)
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int64 if wide else np.int32)[ids.offset: ids.offset + n + 1].astype(np.int64)
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    out = np.zeros(n, dtype=np.uint64)
    total = int(offsets[-1] - offsets[0])
    if total:
        data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]]
        up, down = _powers(total)
        with np.errstate(over="ignore"):
            terms = data.astype(np.uint64)
            terms *= up[:total]
            full = lengths > 0
            out[full] = np.add.reduceat(terms, starts[full]) * down[starts[full]]
    with np.errstate(over="ignore"):
        return _fmix64(out + lengths.astype(np.uint64))
