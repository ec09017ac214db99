"""The numba kernels behind :mod:`curation.kernels` (imported only when numba is installed and an input
is large enough). Each function names the numpy reference it reproduces bit for bit.

All arithmetic is on ``uint64`` (mod 2^64, as numpy's); loop indices are ``int64``. numba would turn
a mixed ``int64``/``uint64`` expression into float64, so every operand is cast explicitly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U = np.uint64
_B = _U(0x100000001B3)  # shingles._B
_GOLDEN = _U(0x9E3779B97F4A7C15)
_C1 = _U(0xFF51AFD7ED558CCD)
_C2 = _U(0xC4CEB9FE1A85EC53)
_S33 = _U(33)
_S31 = _U(31)
_S29 = _U(29)
_P31 = _U(2**31 - 1)  # minhash.MERSENNE_31
_EMPTY = _U(0xFFFFFFFF)  # minhash.EMPTY


@njit(cache=True, inline="always")
def _fmix64(x):
    """shingles.fmix64 of one value."""
    x ^= x >> _S33
    x *= _C1
    x ^= x >> _S33
    x *= _C2
    x ^= x >> _S33
    return x


@njit(cache=True, nogil=True)
def hash_slices(data, starts, lengths):
    """shingles._hash_words: each slice's bytes by Horner's rule in base _B (mod 2^64), then fmix64
    with the length mixed in."""
    n = starts.shape[0]
    out = np.empty(n, np.uint64)
    for i in range(n):
        s = starts[i]
        length = lengths[i]
        h = _U(0)
        for k in range(length):
            h = h * _B + _U(data[s + k])
        out[i] = _fmix64(h ^ (_U(length) * _GOLDEN))
    return out


@njit(cache=True, nogil=True)
def ascii_word_hashes(data, offsets, lut):
    """shingles._ascii_words then shingles._hash_words: the hash of every maximal run of word bytes
    (``lut[b] != 0``) of each text ``data[offsets[j]:offsets[j+1]]``, in order, and the count per text."""
    n = offsets.shape[0] - 1
    counts = np.zeros(n, np.int64)
    # a text of L bytes holds at most (L + 1) // 2 words (a byte each, a separator between two)
    out = np.empty((offsets[n] - offsets[0] + n) // 2 + 1, np.uint64)
    w = 0
    for j in range(n):
        h = _U(0)
        length = 0
        for p in range(offsets[j], offsets[j + 1]):
            b = data[p]
            if lut[b] != 0:
                h = h * _B + _U(b)
                length += 1
            elif length:
                out[w] = _fmix64(h ^ (_U(length) * _GOLDEN))
                w += 1
                counts[j] += 1
                h = _U(0)
                length = 0
        if length:
            out[w] = _fmix64(h ^ (_U(length) * _GOLDEN))
            w += 1
            counts[j] += 1
    return out[:w].copy(), counts


@njit(cache=True, inline="always")
def _permute_min(x, a, b, m):
    """minhash.MinHasher.signatures_from_shingles' permutation of one 31-bit key x, folded into the
    running minima m: (a_k x + b_k) folded twice modulo 2^31 - 1."""
    for k in range(a.shape[0]):
        v = x * a[k] + b[k]
        v = (v & _P31) + (v >> _S31)
        v = (v & _P31) + (v >> _S31)
        if v < m[k]:
            m[k] = v


@njit(cache=True, nogil=True)
def signatures_from_tokens(tokens, counts, ngram, mult, a, b):
    """shingles.ngram_hashes, then minhash.MinHasher.signatures_from_shingles, without the shingle
    array: each n-gram's hash is fmix64(sum_k T[i+k] * mult[k]) (a text with 1..ngram-1 tokens gives
    one shingle of all its tokens; a text with none gets EMPTY everywhere), its key ``(h >> 33) mod
    (2^31 - 1)``, and each permutation keeps its minimum over the text's keys."""
    n = counts.shape[0]
    nperm = a.shape[0]
    sig = np.empty((n, nperm), np.uint32)
    m = np.empty(nperm, np.uint64)
    start = 0
    for j in range(n):
        c = counts[j]
        for k in range(nperm):
            m[k] = _EMPTY
        if c > 0:
            windows = c - ngram + 1 if c >= ngram else 1
            width = ngram if c >= ngram else c
            for i in range(windows):
                acc = _U(0)
                for k in range(width):
                    acc += tokens[start + i + k] * mult[k]
                x = (_fmix64(acc) >> _S33) % _P31
                _permute_min(x, a, b, m)
        for k in range(nperm):
            sig[j, k] = np.uint32(m[k])
        start += c
    return sig


@njit(cache=True, nogil=True)
def signatures_from_shingles(hashes, run_start, run_end, a, b):
    """minhash.MinHasher.signatures_from_shingles over runs of shingle hashes (one run per text that
    has shingles): one signature row per run."""
    runs = run_start.shape[0]
    nperm = a.shape[0]
    sig = np.empty((runs, nperm), np.uint32)
    m = np.empty(nperm, np.uint64)
    for r in range(runs):
        for k in range(nperm):
            m[k] = _EMPTY
        for i in range(run_start[r], run_end[r]):
            _permute_min((hashes[i] >> _S33) % _P31, a, b, m)
        for k in range(nperm):
            sig[r, k] = np.uint32(m[k])
    return sig


@njit(cache=True, nogil=True)
def band_keys(sig, bands, rows, mult):
    """minhash.band_keys: per (text, band), acc = j + golden, then for each of the band's rows
    acc ^= value * mult[r]; acc *= C1; acc ^= acc >> 29."""
    n = sig.shape[0]
    keys = np.empty((n, bands), np.uint64)
    for i in range(n):
        for j in range(bands):
            acc = _U(j) + _GOLDEN
            for r in range(rows):
                acc ^= _U(sig[i, j * rows + r]) * mult[r]
                acc *= _C1
                acc ^= acc >> _S29
            keys[i, j] = acc
    return keys


@njit(cache=True, nogil=True)
def normalised_ascii_hashes(data, offsets, rows, lower, space):
    """columns.normalised (ASCII rows: lower-cased when ``lower``, every run of whitespace bytes
    (``space[b] != 0``) one space, leading and trailing ones dropped) then shingles.hash_strings,
    without the normalised text: the hash of rows[i]'s normalised bytes, for each i."""
    out = np.empty(rows.shape[0], np.uint64)
    for i in range(rows.shape[0]):
        j = rows[i]
        h = _U(0)
        length = 0
        gap = False
        for p in range(offsets[j], offsets[j + 1]):
            b = data[p]
            if space[b] != 0:
                gap = length > 0
                continue
            if gap:
                h = h * _B + _U(32)
                length += 1
                gap = False
            if lower and b >= 65 and b <= 90:
                b += 32
            h = h * _B + _U(b)
            length += 1
        out[i] = _fmix64(h ^ (_U(length) * _GOLDEN))
    return out


@njit(cache=True, nogil=True)
def ascii_gram_repeats(data, offsets, rows, space, mult):
    """For each ASCII text ``rows[i]``: how many words ``str.split()`` gives (runs of bytes with
    ``space[b] == 0``) and whether two of its word n-grams (n = ``len(mult)``; consecutive words)
    share a hash (each word hashed as shingles._hash_words, an n-gram as fmix64(sum_k w[i+k] *
    mult[k])). n-grams whose hashes all differ all differ, so False is exact; True may be a
    collision (the caller then looks at the words themselves)."""
    n = rows.shape[0]
    g = mult.shape[0]
    counts = np.zeros(n, np.int64)
    repeated = np.zeros(n, np.bool_)
    buf = np.empty(256, np.uint64)
    table = np.empty(512, np.uint64)  # a hash set of the row's n-gram hashes, cleared per row
    for i in range(n):
        j = rows[i]
        end = offsets[j + 1]
        w = 0
        h = _U(0)
        length = 0
        for p in range(offsets[j], end + 1):  # the position past the end ends the last word
            if p < end and space[data[p]] == 0:
                h = h * _B + _U(data[p])
                length += 1
            elif length:
                if w == buf.shape[0]:
                    grown = np.empty(2 * w, np.uint64)
                    grown[:w] = buf[:w]
                    buf = grown
                buf[w] = _fmix64(h ^ (_U(length) * _GOLDEN))
                w += 1
                h = _U(0)
                length = 0
        counts[i] = w
        grams = w - g + 1
        if grams > 1:
            size = 64
            while size < 2 * grams:
                size *= 2
            if table.shape[0] < size:
                table = np.empty(size, np.uint64)
            table[:size] = 0
            mask = _U(size - 1)
            for k in range(grams):
                acc = _U(0)
                for m in range(g):
                    acc += buf[k + m] * mult[m]
                key = _fmix64(acc) | _U(1)  # 0 marks an empty slot; a key's low bit lost only adds collisions
                slot = key & mask
                while table[slot] != 0 and table[slot] != key:  # open addressing, linear probing
                    slot = (slot + _U(1)) & mask
                if table[slot] == key:
                    repeated[i] = True
                    break
                table[slot] = key
    return counts, repeated
