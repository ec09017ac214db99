"""MinHash signatures and banded LSH, vectorised with numpy (the core of ``minhash_dedup``).

Method (Broder 1997, "On the resemblance and containment of documents"; banding as in Leskovec,
Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3.4):

* Each text is a set S of shingles (hashed n-grams, ``curation.shingles``), reduced to 31-bit
  integers x. Permutation k is the universal hash ``h_k(x) = (a_k x + b_k) mod p`` with the
  Mersenne prime ``p = 2^31 - 1`` and random ``a_k in [1, p)``, ``b_k in [0, p)`` (Carter & Wegman
  1979). The signature is ``sig_k(S) = min_{x in S} h_k(x)``, and ``P[sig_k(A) = sig_k(B)] ~ J(A, B)``
  (the Jaccard similarity), so the fraction of equal signature values estimates J.
* LSH splits the ``num_perm`` values into ``b`` bands of ``r`` rows; two texts become candidates
  when all r values of at least one band agree, which happens with probability
  ``1 - (1 - s^r)^b`` for Jaccard s. ``optimal_bands_rows`` picks (b, r) minimising
  ``w_fp * int_0^t P(s) ds + w_fn * int_t^1 (1 - P(s)) ds``, the same objective as datasketch's
  ``_optimal_param`` / text-dedup (integrals here by Simpson's rule on a fine grid, all (b, r)
  pairs at once, instead of ``scipy.integrate.quad`` per pair).
* Candidate pairs are linked per band (every member of a bucket to the bucket's first member) and
  clustered by connected components (``scipy.sparse.csgraph``) -- the same clusters a union-find
  over the pairs gives.

Why our own code and not datasketch: datasketch hashes shingles one at a time in Python (SHA-1)
and inserts one MinHash at a time into its index; here all shingles of a batch of texts are
permuted at once in uint64 arrays, which is several times faster (benchmarks/dedup_throughput.py).
With numba installed (``recipe-kit[fast]``), a large batch is shingled and permuted in one compiled
loop that never builds the shingle array, and band keys likewise (``curation.kernels``: the same
values; ``benchmarks/minhash_vs_rensa.py`` measures both against rensa).

Deviations, stated: shingles and hash values are 31-bit (datasketch: 32-bit with a 61-bit prime,
computed with uint64 overflow); two distinct shingles of one pair of texts collide with
probability ~2^-31 per permutation, which changes J estimates by far less than their sampling
error (1/sqrt(num_perm)). Signatures are stored as uint32 (4 bytes x num_perm per row; 512 MB for
1M rows at 128 permutations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation import kernels
from curation.shingles import NGRAM_MULT, Unit, check_ngram, ngram_hashes, tokenize

MERSENNE_31 = np.uint64(2**31 - 1)
EMPTY = np.uint32(0xFFFFFFFF)  # signature value of a text with no shingles (never a real value)
_S31 = np.uint64(31)


def collision_probability(s: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """P(candidate | Jaccard s) = 1 - (1 - s^r)^b."""
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands


def optimal_bands_rows(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5,
                       grid: int = 2001) -> tuple[int, int, float, float]:
    """(bands, rows, fp_area, fn_area) minimising ``fp_weight * FP + fn_weight * FN`` over b*r <= num_perm.

    FP = int_0^t P(s) ds and FN = int_t^1 (1 - P(s)) ds with P(s) = 1 - (1 - s^r)^b.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    from scipy.integrate import simpson  # imported here: most runs never tune bands

    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=np.float64)
    B, R = pairs[:, :1], pairs[:, 1:]
    lo = np.linspace(0.0, threshold, grid)
    fp = simpson(1.0 - (1.0 - lo[None, :] ** R) ** B, x=lo, axis=1)
    if threshold < 1.0:
        hi = np.linspace(threshold, 1.0, grid)
        fn = simpson((1.0 - hi[None, :] ** R) ** B, x=hi, axis=1)
    else:
        fn = np.zeros(len(pairs))
    err = fp_weight * fp + fn_weight * fn
    i = int(np.argmin(err))  # first minimum, in datasketch's (b, then r) order
    return int(pairs[i, 0]), int(pairs[i, 1]), float(fp[i]), float(fn[i])


@dataclass
class MinHasher:
    """``num_perm`` universal hash functions, drawn from ``seed``.

    ``h_k(x)`` is computed as ``a_k x + b_k`` folded twice modulo the Mersenne prime, which leaves a
    value in [0, p] congruent to the residue; the residue 0 can come out as p. That is still one
    fixed injective function of x, so minima (and signature equality) follow one fixed order.
    """

    num_perm: int = 128
    seed: int = 1

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        p = int(MERSENNE_31)
        self.a = rng.integers(1, p, size=self.num_perm, dtype=np.uint64)
        self.b = rng.integers(0, p, size=self.num_perm, dtype=np.uint64)

    def signatures_from_shingles(self, hashes: np.ndarray, owner: np.ndarray, n_texts: int,
                                 chunk: int = 1 << 17) -> np.ndarray:
        """Signatures (n_texts, num_perm) uint32 of shingle hashes grouped by ``owner`` (contiguous).

        Texts without shingles get ``EMPTY`` everywhere. Works through the shingles in chunks of
        about ``chunk`` (cut at text boundaries) so every temporary stays in cache.
        """
        sig = np.full((n_texts, self.num_perm), EMPTY, dtype=np.uint32)
        if len(hashes) == 0:
            return sig
        # boundaries of each text's run of shingles
        run_start = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        run_owner = owner[run_start]
        if kernels.use(0.25e-6 * len(hashes)):  # the same values in one compiled pass (numpy: ~0.25 us a shingle)
            run_end = np.r_[run_start[1:], len(hashes)]
            sig[run_owner] = kernels.compiled().signatures_from_shingles(hashes, run_start, run_end, self.a, self.b)
            return sig
        x = (hashes >> np.uint64(33)) % MERSENNE_31  # 31-bit keys in [0, p)
        # cut the runs into chunks of ~chunk shingles
        cuts = np.searchsorted(run_start, np.arange(0, len(x), chunk), side="left")
        cuts = np.unique(np.r_[cuts, len(run_start)])
        p = MERSENNE_31
        for c0, c1 in zip(cuts[:-1], cuts[1:]):
            s0 = run_start[c0]
            s1 = run_start[c1] if c1 < len(run_start) else len(x)
            xs = x[s0:s1]
            starts = run_start[c0:c1] - s0
            block = np.empty((self.num_perm, c1 - c0), dtype=np.uint32)
            v = np.empty_like(xs)
            t = np.empty_like(xs)
            for k in range(self.num_perm):
                np.multiply(xs, self.a[k], out=v)
                v += self.b[k]                    # < 2^62: no overflow
                np.right_shift(v, _S31, out=t)    # v mod (2^31 - 1) by folding: hi * 2^31 + lo == hi + lo
                v &= p
                v += t
                np.right_shift(v, _S31, out=t)
                v &= p
                v += t                            # in [0, p]; p is the residue 0 (see the class docstring)
                block[k] = np.minimum.reduceat(v, starts)
            sig[run_owner[c0:c1]] = block.T
        return sig

    def signatures(self, texts: Sequence[str], ngram: int = 5, unit: Unit = "word", batch: int = 20000,
                   advance: Callable[[int], object] | None = None) -> np.ndarray:
        """Signatures of raw texts, tokenised and shingled in batches of ``batch`` texts (for a large
        batch, shingled and permuted in one compiled pass without the shingle array: the same values)."""
        check_ngram(ngram)
        sig = np.full((len(texts), self.num_perm), EMPTY, dtype=np.uint32)
        fast = kernels.use(8e-6 * len(texts))  # numpy: ~8 us a text of benchmarks/minhash_vs_rensa.py's (24 words)
        for i in range(0, len(texts), batch):
            part = texts[i:i + batch]
            tokens = tokenize(part, unit)
            if fast:
                sig[i:i + len(part)] = kernels.compiled().signatures_from_tokens(
                    tokens.hashes, tokens.counts, ngram, NGRAM_MULT[:ngram], self.a, self.b)
            else:
                h, owner = ngram_hashes(tokens, ngram)
                sig[i:i + len(part)] = self.signatures_from_shingles(h, owner, len(part))
            if advance is not None:
                advance(len(part))
        return sig


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 key per (text, band): a hash of the band's ``rows`` signature values."""
    if bands * rows > sig.shape[1]:
        raise ValueError(f"bands x rows = {bands * rows} exceeds the {sig.shape[1]} permutations")
    mult = (np.random.default_rng(0xBA7D).integers(0, 2**63, size=rows, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
    if kernels.use(1e-6 * sig.shape[0]):  # numpy: ~1 us a row at 9 x 13
        return kernels.compiled().band_keys(np.ascontiguousarray(sig), bands, rows, mult)
    keys = np.empty((sig.shape[0], bands), dtype=np.uint64)
    for j in range(bands):
        acc = np.full(sig.shape[0], np.uint64(j) + np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
        for r in range(rows):
            acc ^= sig[:, j * rows + r].astype(np.uint64) * mult[r]
            acc *= np.uint64(0xFF51AFD7ED558CCD)
            acc ^= acc >> np.uint64(29)
        keys[:, j] = acc
    return keys


def candidate_pairs(keys: np.ndarray, active: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (u, v), u < v, of texts sharing a bucket in some band; each bucket links its members
    to its lowest index (enough for clustering). ``active``: mask of texts that take part."""
    idx = np.arange(keys.shape[0]) if active is None else np.flatnonzero(active)
    us, vs = [], []
    for j in range(keys.shape[1]):
        k = keys[idx, j]
        order = np.lexsort((idx, k))  # by key, then by row index
        ks, members = k[order], idx[order]
        new = np.r_[True, ks[1:] != ks[:-1]]
        if new.all():
            continue
        head = members[np.maximum.accumulate(np.where(new, np.arange(len(ks)), 0))]
        dup = ~new
        us.append(head[dup])
        vs.append(members[dup])
    if not us:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = np.unique(np.stack([np.concatenate(us), np.concatenate(vs)], axis=1), axis=0)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


def estimate_jaccard(sig: np.ndarray, u: np.ndarray, v: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Fraction of equal signature values for each pair (the MinHash estimate of J)."""
    out = np.empty(len(u), dtype=np.float64)
    for i in range(0, len(u), chunk):
        out[i:i + chunk] = (sig[u[i:i + chunk]] == sig[v[i:i + chunk]]).mean(axis=1)
    return out


def clusters(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cluster label per text: connected components of the pair graph (what union-find yields)."""
    graph = coo_matrix((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels
