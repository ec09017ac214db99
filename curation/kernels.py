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
without numba. (Writing them found a flaw in the numpy word hash past 32,767 bytes, fixed there:
that fix, not the kernels, is why exact_dedup, minhash_dedup and decontaminate changed version.)

Measured (``python benchmarks/minhash_vs_rensa.py``, and the figures in
``benchmarks/results/minhash_vs_rensa.md``): the word split and hash of ASCII texts, the n-gram
hashes and the 128 permutations are where ``minhash_dedup``'s time went.

When they run: numba is installed and not switched off (``RECIPE_KIT_KERNELS=numpy`` forces the
references, ``=numba`` the kernels at any size: tests), and either the kernels have started in this
process already or the input is large enough to pay for their start: numba's import and the load of
the cached machine code, :data:`START_SECONDS` once per process (0.47 s here, the ``kernels_start``
line of ``benchmarks/minhash_vs_rensa.md``) and about 100 MB of resident memory (LLVM). Each caller
passes :func:`use` what the numpy reference would take on its input, from the reference's rate
measured here (stated where it calls); below the start's cost the reference runs and numba is never
imported (a 100k-row curation of ``benchmarks/curate_scale.py`` does not start it). A Ray worker
is told how many shards of a step it can expect (:func:`expect`), since it keeps its process, and
with it the started kernels, from shard to shard.
"""

from __future__ import annotations

import os
from functools import lru_cache

ENV = "RECIPE_KIT_KERNELS"  # "numpy": never the kernels; "numba": at any size; unset: when they pay
START_SECONDS = 0.5  # what starting the kernels costs a process (measured 0.47 s: see the module docstring)


def enabled() -> bool:
    """numba is installed and not switched off."""
    if os.environ.get(ENV, "") == "numpy":
        return False
    return _numba_available()


@lru_cache(maxsize=1)
def _numba_available() -> bool:
    """Installed: found, not imported (importing numba alone costs 0.2 s and 55 MB)."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


_expected = 1.0  # how many inputs like each one it is given this process expects (expect())


def expect(inputs: float) -> None:
    """Tell :func:`use` that this process will see about ``inputs`` inputs like each one it is given
    (a Ray worker with several shards of a step to go): the start is weighed against all of them,
    not one shard's worth of work."""
    global _expected
    _expected = max(1.0, float(inputs))


def use(numpy_seconds: float) -> bool:
    """Whether an input goes to the kernels (starting them if it does): ``numpy_seconds`` is what the
    numpy reference would take on it (times the inputs :func:`expect` announced)."""
    if not enabled():
        return False
    if (os.environ.get(ENV, "") == "numba" or compiled.cache_info().currsize
            or numpy_seconds * _expected >= START_SECONDS):
        compiled()
        return True
    return False


@lru_cache(maxsize=1)
def compiled():
    """The compiled kernels (a namespace), built on first use."""
    from curation import _kernels_numba

    return _kernels_numba
