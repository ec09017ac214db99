"""Text -> normalised tokens -> hashed n-grams ("shingles"), vectorised over many texts at once.

Shared by near-duplicate detection (``curation.minhash``) and decontamination
(``curation.steps.decontaminate``), so both see the same tokens for the same text.

Why our own code: MinHash libraries (datasketch, text-dedup) hash one shingle at a time in Python;
at a million rows that loop dominates. Here the per-text work is done by Arrow's C++ string
kernels and the n-gram hashing by numpy over all texts of a batch at once:

1. normalise: Unicode NFKC, lower-case; ``word`` tokens are maximal runs of letters, digits and
   ``_`` (punctuation and whitespace only separate tokens, so "5,000 apples!" -> ``5 000 apples``);
   ``char`` tokens are the characters of the text with whitespace runs collapsed to one space;
2. each distinct token is hashed once with xxHash3-64 (words) or mixed from its code point (chars);
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
import xxhash

Unit = Literal["word", "char"]

_U64 = np.uint64
# fixed multipliers (odd, random) for the n-gram linear hash: part of the hash definition, so
# they never change between runs (a change would need the steps' versions bumped).
_MULT = (np.random.default_rng(0x5EED_51A9).integers(0, 2**63, size=64, dtype=np.uint64) << _U64(1)) | _U64(1)
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


def tokenize(texts: Sequence[str], unit: Unit = "word") -> Tokens:
    """Hash every token of every text (see the module docstring for the normalisation)."""
    n = len(texts)
    if n == 0:
        return Tokens(np.zeros(0, np.uint64), np.zeros(0, np.int64))
    if unit == "word":
        lists = normalise_words(texts)
        flat = pc.list_flatten(lists)
        parents = pc.list_parent_indices(lists)
        nonempty = pc.not_equal(pc.utf8_length(flat), 0)
        flat = pc.filter(flat, nonempty)
        parents = pc.filter(parents, nonempty).to_numpy()
        counts = np.bincount(parents, minlength=n).astype(np.int64)
        enc = pc.dictionary_encode(flat).combine_chunks() if isinstance(flat, pa.ChunkedArray) else pc.dictionary_encode(flat)
        vocab = enc.dictionary.to_pylist()
        vocab_hash = np.fromiter((xxhash.xxh3_64_intdigest(w.encode("utf-8")) for w in vocab), dtype=np.uint64, count=len(vocab))
        hashes = vocab_hash[enc.indices.to_numpy(zero_copy_only=False)]
        return Tokens(hashes, counts)
    # characters: whitespace runs -> one space, trimmed, lower-cased, NFKC
    arr = pa.array(list(texts), pa.large_string())
    arr = pc.utf8_lower(pc.utf8_normalize(arr, form="NFKC"))
    arr = pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, r"\s+", " "))
    parts = [np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32) for t in arr.to_pylist()]
    counts = np.array([len(p) for p in parts], dtype=np.int64)
    codes = np.concatenate(parts).astype(np.uint64) if parts else np.zeros(0, np.uint64)
    return Tokens(fmix64(codes + _U64(0x9E3779B97F4A7C15)), counts)


def ngram_hashes(tokens: Tokens, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash every n-gram of every text. Returns ``(hashes uint64, owner int64)``, ``owner[k]`` =
    index of the text that shingle k belongs to; shingles of one text are contiguous, in order.

    A text with 1..n-1 tokens gives one shingle of all its tokens; a text with none gives none.
    """
    if n < 1 or n > len(_MULT):
        raise ValueError(f"n-gram size must be in 1..{len(_MULT)}, got {n}")
    counts, T = tokens.counts, tokens.hashes
    starts = tokens.starts
    per_text = np.where(counts >= n, counts - n + 1, np.minimum(counts, 1))
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), per_text)
    if len(owner) == 0:
        return np.zeros(0, np.uint64), owner
    # position of each shingle's first token: start of its text + its rank within the text
    first = np.concatenate([[0], np.cumsum(per_text)[:-1]])
    pos = starts[owner] + (np.arange(len(owner)) - first[owner])
    end = starts[owner] + counts[owner]  # one past the text's last token
    T = np.concatenate([T, np.zeros(n, np.uint64)])  # padding so pos + k never indexes out
    acc = T[pos] * _MULT[0]
    for k in range(1, n):
        idx = pos + k
        acc += np.where(idx < end, T[idx], _U64(0)) * _MULT[k]
    return fmix64(acc), owner
