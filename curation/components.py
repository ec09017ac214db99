"""Connected components of a pair graph by large-star / small-star rounds, one partition at a time.

Method: Kiveris, Lattanzi, Mirrokni, Rastogi & Vassilvitskii (2014), "Connected Components in
MapReduce and Beyond" (SoCC '14), Algorithms 1-3. The graph is an edge list; every round is a
group-by-node (a shuffle), so no process ever holds more than its share of the edges:

* **large-star** (grouped by node u, over both orientations of every edge): with
  ``m(u) = min(Gamma(u) + {u})``, emit ``(v, m(u))`` for every neighbour ``v > u``;
* **small-star** (grouped by the larger endpoint u of every edge): with ``N(u)`` the neighbours
  ``v < u`` and ``m(u) = min N(u)``, emit ``(v, m(u))`` for every ``v in N(u) + {u}``, ``v != m(u)``.

Alternating the two until neither changes anything leaves a forest of stars, each centred on its
component's smallest node (Theorem 1 of the paper; O(log^2 n) rounds, a handful in practice for
dedup graphs). A partition can tell on its own whether it changed the graph: large-star changes an
edge exactly when a node has a smaller AND a larger neighbour; small-star exactly when a node has
two or more smaller neighbours. So convergence is an OR of the partitions' flags (on Ray, one sum
over the flag column, computed on the cluster).

Why our own code: Ray Data has group-bys but no graph algorithms, and the local scipy
``connected_components`` needs the whole graph in one process. The functions here are vectorised
over a whole partition (numpy sorts, no per-node Python), the form ``Dataset.groupby(part)
.map_groups`` calls; :func:`components` runs the same rounds in-process (tests, and the reference).
Edges are int64 node pairs ``(a, b)`` with ``a < b``.
"""

from __future__ import annotations

import numpy as np


def _normalise(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges as (min, max), self-loops and duplicates removed."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    if not keep.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = np.unique(np.stack([lo[keep], hi[keep]], axis=1), axis=0)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


def _group_min(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct ``src``: (its position per edge, the minimum of its ``dst`` values)."""
    nodes, where = np.unique(src, return_inverse=True)
    low = np.full(len(nodes), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(low, where, dst)
    return where, low


def large_star(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """One partition of large-star: ``src`` are the partition's nodes, with every edge incident to
    them in both orientations. Returns the new edges (normalised) and whether anything changed."""
    if not len(src):
        return src, dst, False
    where, low = _group_min(src, dst)
    m = np.minimum(low[where], src)              # m(u) per edge, u = src
    up = dst > src
    new_a, new_b = _normalise(dst[up], m[up])
    changed = bool((m[up] < src[up]).any())     # a node with a smaller and a larger neighbour
    return new_a, new_b, changed


def small_star(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """One partition of small-star: every edge oriented from its larger endpoint ``src`` to its
    smaller ``dst`` (``dst < src``). Returns the new edges (normalised) and whether anything changed."""
    if not len(src):
        return src, dst, False
    src, dst = _normalise(dst, src)[::-1]       # duplicates out; src > dst
    where, m = _group_min(src, dst)
    mu = m[where]
    # (v, m(u)) for v in N(u) (v != m(u)) and (u, m(u))
    a = np.r_[dst, src]
    b = np.r_[mu, mu]
    new_a, new_b = _normalise(a, b)
    counts = np.bincount(where)
    return new_a, new_b, bool((counts > 1).any())  # a node with two smaller neighbours


def partition_of(node: np.ndarray, parts: int) -> np.ndarray:
    """The partition a node's group lives in (what the group-by hashes on)."""
    return (np.asarray(node, dtype=np.int64) % parts).astype(np.int64)


def components(n: int, u: np.ndarray, v: np.ndarray, parts: int = 4, max_rounds: int = 200) -> tuple[np.ndarray, int]:
    """(label per node, rounds): each node's label is its component's smallest node. The same rounds
    as the distributed form, every partition in this process."""
    a, b = _normalise(np.asarray(u, np.int64), np.asarray(v, np.int64))
    rounds = 0
    while len(a):
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
        # large-star: group by node over both orientations
        src, dst = np.r_[a, b], np.r_[b, a]
        a, b, changed_l = _by_partition(large_star, src, dst, parts)
        # small-star: group by the larger endpoint
        a, b, changed_s = _by_partition(small_star, b, a, parts)
        if not (changed_l or changed_s):
            break
    return labels_of_stars(n, a, b), rounds


def _by_partition(fn, src: np.ndarray, dst: np.ndarray, parts: int) -> tuple[np.ndarray, np.ndarray, bool]:
    part = partition_of(src, parts)
    out_a, out_b, changed = [], [], False
    for k in range(parts):
        sel = part == k
        x, y, c = fn(src[sel], dst[sel])
        out_a.append(x)
        out_b.append(y)
        changed |= c
    return _normalise(np.concatenate(out_a), np.concatenate(out_b)) + (changed,)


def labels_by_min(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The same labels (each component's smallest node) from scipy's components, in one process."""
    from curation.minhash import clusters

    if n == 0:
        return np.zeros(0, dtype=np.int64)
    labels = clusters(n, u, v)
    smallest = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n, dtype=np.int64))
    return smallest[labels]


def labels_of_stars(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Labels from a converged star forest: each leaf ``b`` points to its centre ``a``."""
    labels = np.arange(n, dtype=np.int64)
    if len(b) and len(np.unique(b)) != len(b):
        raise RuntimeError("connected components: a node has two centres (the rounds had not converged)")
    labels[b] = a
    return labels
