"""Compiled inner loops (numba) for the hashing that MinHash, exact dedup and the ledger's id buckets share.

Why our own code: the hashes are ours (``curation.shingles``, ``curation.minhash``: a word hash, an
n-gram hash, 31-bit universal permutations), and no library computes them; numpy computes them in
whole-array passes, one pass per byte position of the longest word, one per n-gram offset and
eight per permutation, each reading and writing arrays from memory. Here each is one loop that
keeps its values in registers. numba compiles the loops (``pip install 'recipe-kit[fast]'``;
``cache=True`` keeps the machine code beside this file, so a later process loads it in a fraction
of a second). Every kernel computes exactly what its numpy reference computes, bit for bit (the
references stay in ``shingles.py`` and ``minhash.py``; ``tests/curation/test_kernels.py``
compares them on awkward inputs), so the decisions and the cache keys are the same with or
without numba and no step version changes.

Measured (``python benchmarks/minhash_vs_rensa.py``, and the figures in
``benchmarks/results/minhash_vs_rensa.md``): the word split and hash of ASCII texts, the n-gram
hashes and the 128 permutations are where ``minhash_dedup``'s time went.

When they run: :func:`enabled` (numba importable, and ``RECIPE_KIT_KERNELS`` is not ``numpy``) and
the input is at least :data:`MIN_BYTES` / :data:`MIN_ITEMS` (below that, importing numba and
loading the machine code costs more than the numpy passes). ``RECIPE_KIT_KERNELS=numpy`` forces the
references, ``=numba`` forces the kernels at any size (tests).
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

ENV = "RECIPE_KIT_KERNELS"  # "numpy": never the kernels; "numba": at any size; unset: by size
MIN_BYTES = 1 << 20  # text bytes below which the numpy references run (numba's import + cache load ~0.4 s)
MIN_ITEMS = 20_000  # shingles / strings below which the numpy references run


def enabled() -> bool:
    """numba is installed and not switched off."""
    if os.environ.get(ENV, "") == "numpy":
        return False
    return _numba_available()


@lru_cache(maxsize=1)
def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def worth(items: int, nbytes: int = 0) -> bool:
    """Whether an input this size goes to the kernels."""
    if not enabled():
        return False
    if os.environ.get(ENV, "") == "numba":
        return True
    return items >= MIN_ITEMS or nbytes >= MIN_BYTES


@lru_cache(maxsize=1)
def compiled():
    """The compiled kernels (a namespace), built on first use."""
    from curation import _kernels_numba

    return _kernels_numba
