"""Text -> normalised tokens -> hashed n-grams ("shingles"), vectorised over many texts at once.

Shared by near-duplicate detection (``curation.minhash``) and decontamination
(``curation.steps.decontaminate``), so both see the same tokens for the same text.

Why our own code: MinHash libraries (datasketch, text-dedup) hash one shingle at a time in Python;
at a million rows that loop dominates. Here normalisation is done by Arrow's C++ string kernels,
ASCII texts are split into words by a byte table and other texts by Arrow's regex split, and
word and n-gram hashing run in numpy over all texts of a batch at once (or, with numba installed,
``recipe-kit[fast]``, as compiled loops for a large batch, ``curation.kernels``: the same values):

1. normalise: Unicode NFKC, lower-case; ``word`` tokens are maximal runs of letters, digits and
   ``_`` (punctuation and whitespace only separate tokens, so "5,000 apples!" -> ``5 000 apples``);
   ``char`` tokens are the characters of the text with whitespace runs collapsed to one space;
2. each word is hashed from its UTF-8 bytes (a polynomial hash mod 2^64 finished by fmix64, computed
   for all words at once), each character from its code point;
3. the hash of the n-gram starting at token i is ``fmix64(sum_k T[i+k] * M_k)`` (mod 2^64) with
   fixed random odd multipliers ``M_k`` -- a linear hash of the token hashes followed by the
   SplitMix64/MurmurHash3 finaliser, so distinct n-grams collide with probability ~2^-64.

A text with fewer than ``n`` tokens (but at least one) yields ONE shingle covering all of its
tokens, so very short rows still compare equal to their exact copies and unequal to others, and
are never silently ignored. A text with no tokens at all yields no shingles; callers decide what
that means (``minhash_dedup`` keeps such rows and counts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation import kernels

Unit = Literal["word", "char"]

_U64 = np.uint64
# fixed multipliers (odd, random) for the n-gram linear hash: part of the hash definition, so
# they never change between runs (a change would need the steps' versions bumped).
NGRAM_MULT = (np.random.default_rng(0x5EED_51A9).integers(0, 2**63, size=64, dtype=np.uint64) << _U64(1)) | _U64(1)
_WORD_SPLIT = r"[^\p{L}\p{N}_]+"


def fmix64(x: np.ndarray) -> np.ndarray:
    """The 64-bit finaliser of MurmurHash3 (avalanche: every input bit affects every output bit)."""
    x = x.copy()
    x ^= x >> _U64(33)
    x *= _U64(0xFF51AFD7ED558CCD)
    x ^= x >> _U64(33)
    x *= _U64(0xC4CEB9FE1A85EC53)
    x ^= x >> _U64(33)
    return x


@dataclass
class Tokens:
    """Token hashes of many texts, concatenated: text j owns ``hashes[starts[j]:starts[j]+counts[j]]``."""

    hashes: np.ndarray  # uint64
    counts: np.ndarray  # int64, tokens per text

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64) if len(self.counts) else self.counts


def normalise_words(texts: Sequence[str]) -> pa.ListArray:
    """NFKC, lower-case, split on anything but letters/digits/_ -> a list of words per text."""
    arr = pa.array(list(texts), pa.large_string())
    arr = pc.utf8_lower(pc.utf8_normalize(arr, form="NFKC"))
    return pc.split_pattern_regex(arr, _WORD_SPLIT)


_B = np.uint64(0x100000001B3)  # FNV-64 prime, the base of the per-word polynomial hash
# ASCII bytes that separate words (everything but [0-9A-Za-z_]) -> 0; other bytes kept
_LUT = np.arange(256, dtype=np.uint8)
_LUT[[c for c in range(128) if not (chr(c).isalnum() or c == 95)]] = 0


def utf8_buffers(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(bytes uint8, offsets int64) of a string array as one large_string array (cast before the
    chunks are combined, so text past 2 GiB needs no 32-bit offsets); null entries read as empty
    strings. ``offsets`` index ``bytes`` directly (they need not start at 0)."""
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    return _utf8(arr.fill_null(""))


def _utf8(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(bytes uint8, offsets int64) of a large_string array."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return data, offsets


def _hash_words(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Hash each byte slice ``data[s:s+len]``: polynomial (Horner, base ``_B``, mod 2^64) then fmix64
    with the length mixed in. Vectorised over words, looping over byte positions (longest first); the
    compiled kernel (``curation.kernels``) for a large input."""
    if kernels.use(12e-9 * (int(lengths.sum()) if len(lengths) else 0)):  # the loop below: 10-14 ns a byte here
        return kernels.compiled().hash_slices(data, np.asarray(starts, np.int64), np.asarray(lengths, np.int64))
    # longest first; a stable sort of 16-bit keys is a radix sort in numpy (linear time)
    order = np.argsort(-np.minimum(lengths, 32767).astype(np.int16), kind="stable")
    s, L = starts[order], lengths[order]
    h = np.zeros(len(s), np.uint64)
    if len(L) and L[0] >= 32767:  # the sort key was capped: order the few very long words (a prefix) exactly
        long = L >= 32767
        sub = np.argsort(-L[long], kind="stable")
        s[long], L[long], order[long] = s[long][sub], L[long][sub], order[long][sub]
    maxlen = int(L[0]) if len(L) else 0  # after that re-sort: the longest word, so every byte is hashed
    active = np.searchsorted(-L, -np.arange(1, maxlen + 1), side="right")  # words longer than k
    for k in range(maxlen):
        m = int(active[k])
        h[:m] = h[:m] * _B + data[s[:m] + k]
    out = np.empty_like(h)
    out[order] = fmix64(h ^ (L.astype(np.uint64) * _U64(0x9E3779B97F4A7C15)))
    return out


def hash_strings(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The 64-bit hash of each whole string: the word hash of step 2 over the string's UTF-8 bytes,
    vectorised over all strings (stable across processes and runs). Used where rows are grouped by
    a hash -- the ledger folder's id buckets, ``exact_dedup``'s first pass (which then compares the
    texts themselves, so a collision cannot merge two rows), Ray's exact_dedup partitions. Memory:
    a few arrays of one integer per string, besides the bytes themselves."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    arr = arr.cast(pa.large_string()) if arr.type != pa.large_string() else arr
    data, offsets = _utf8(arr)
    return _hash_words(data, offsets[:-1], np.diff(offsets))


def _ascii_words(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, lengths, owner) of the words of ASCII texts: maximal runs of [0-9A-Za-z_]."""
    word = _LUT[data] != 0
    n = len(data)
    row_start = np.zeros(n + 1, bool)
    row_start[offsets[:-1][offsets[:-1] < n]] = True
    prev = np.r_[False, word[:-1]] & ~row_start[:n]
    nxt = np.r_[word[1:], False] & ~row_start[1:]
    starts = np.flatnonzero(word & ~prev)
    ends = np.flatnonzero(word & ~nxt) + 1
    owner = np.searchsorted(offsets, starts, side="right") - 1
    return starts, ends - starts, owner


def _ascii_hashes(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, owner) of the words of ASCII texts, in order: :func:`_ascii_words` then
    :func:`_hash_words`, or both in one compiled pass for a large input (the same values)."""
    if kernels.use(40e-9 * (int(offsets[-1] - offsets[0]) if len(offsets) else 0)):  # the numpy passes: ~43 ns a byte
        hashes, counts = kernels.compiled().ascii_word_hashes(data, np.asarray(offsets, np.int64), _LUT)
        return hashes, np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    st, ln, own = _ascii_words(data, offsets)
    return _hash_words(data, st, ln), own


def tokenize(texts: Sequence[str], unit: Unit = "word") -> Tokens:
    """Hash every token of every text (see the module docstring for the normalisation).

    ASCII texts are split by a byte table (``[^0-9A-Za-z_]`` separates words, which is exactly what
    the Unicode pattern means for ASCII); other texts by the Unicode regex. Both hash a word's
    UTF-8 bytes the same way, so a word has one hash whichever path it took.
    """
    n = len(texts)
    if n == 0:
        return Tokens(np.zeros(0, np.uint64), np.zeros(0, np.int64))
    arr = pa.array(list(texts), pa.large_string())
    arr = pc.utf8_lower(pc.utf8_normalize(arr, form="NFKC"))
    if unit == "char":
        arr = pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, r"\s+", " "))
        parts = [np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32) for t in arr.to_pylist()]
        counts = np.array([len(p) for p in parts], dtype=np.int64)
        codes = np.concatenate(parts).astype(np.uint64) if parts else np.zeros(0, np.uint64)
        return Tokens(fmix64(codes + _U64(0x9E3779B97F4A7C15)), counts)
    ascii_rows = pc.string_is_ascii(arr).to_numpy(zero_copy_only=False)
    pieces = []  # (hashes, owner) per path
    if ascii_rows.all():
        pieces.append(_ascii_hashes(*_utf8(arr)))
    else:
        idx_a = np.flatnonzero(ascii_rows)
        if len(idx_a):
            sub = arr.take(pa.array(idx_a))
            hashes, own = _ascii_hashes(*_utf8(sub))
            pieces.append((hashes, idx_a[own]))
        idx_u = np.flatnonzero(~ascii_rows)
        lists = pc.split_pattern_regex(arr.take(pa.array(idx_u)), _WORD_SPLIT)
        flat = pc.list_flatten(lists)
        parents = pc.list_parent_indices(lists).to_numpy()
        flat = flat.combine_chunks() if isinstance(flat, pa.ChunkedArray) else flat
        data, offsets = _utf8(flat.cast(pa.large_string()))
        lengths = np.diff(offsets)
        keep = lengths > 0
        pieces.append((_hash_words(data, offsets[:-1][keep], lengths[keep]), idx_u[parents[keep]]))
    hashes = np.concatenate([h for h, _ in pieces])
    owner = np.concatenate([o for _, o in pieces])
    if len(pieces) > 1:
        order = np.argsort(owner, kind="stable")
        hashes, owner = hashes[order], owner[order]
    return Tokens(hashes, np.bincount(owner, minlength=n).astype(np.int64))


def check_ngram(n: int) -> None:
    if n < 1 or n > len(NGRAM_MULT):
        raise ValueError(f"n-gram size must be in 1..{len(NGRAM_MULT)}, got {n}")


def ngram_hashes(tokens: Tokens, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash every n-gram of every text. Returns ``(hashes uint64, owner int64)``, ``owner[k]`` =
    index of the text that shingle k belongs to; shingles of one text are contiguous, in order.

    A text with 1..n-1 tokens gives one shingle of all its tokens; a text with none gives none.
    """
    check_ngram(n)
    counts, T = tokens.counts, tokens.hashes
    N = len(T)
    if N == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    starts = tokens.starts
    # linear hash of the n tokens from every position (contiguous slices; positions whose window
    # would leave their text are discarded below)
    acc = T * NGRAM_MULT[0]
    for k in range(1, min(n, N)):
        acc[: N - k] += T[k:] * NGRAM_MULT[k]
    owner_tok = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    rank = np.arange(N, dtype=np.int64) - starts[owner_tok]
    sel = rank <= (counts - n)[owner_tok]
    short = np.flatnonzero((counts > 0) & (counts < n))
    if len(short):  # one shingle of all tokens, at the text's first position
        s0, c0 = starts[short], counts[short]
        val = T[s0] * NGRAM_MULT[0]
        for k in range(1, int(c0.max())):
            has = c0 > k
            val[has] += T[s0[has] + k] * NGRAM_MULT[k]
        acc[s0] = val
        sel[s0] = True
    return fmix64(acc[sel]), owner_tok[sel]
