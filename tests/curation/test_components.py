"""Connected components by large-star / small-star rounds (Kiveris et al. 2014), partition by
partition, against scipy's components: the distributed MinHash stage's clusters."""

from __future__ import annotations

import numpy as np
import pytest

from curation import components as cc
from curation.minhash import clusters


def _smallest_member_labels(n, u, v):
    labels = clusters(n, np.minimum(u, v), np.maximum(u, v))
    smallest = {}
    for i, label in enumerate(labels.tolist()):
        smallest.setdefault(label, i)
    return np.array([smallest[label] for label in labels.tolist()])


@pytest.mark.parametrize("seed", range(40))
def test_star_rounds_give_scipys_components_labelled_by_their_smallest_node(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    e = int(rng.integers(0, 500))
    u, v = rng.integers(0, n, e), rng.integers(0, n, e)  # self-loops and repeated edges included
    labels, _ = cc.components(n, u, v, parts=int(rng.integers(1, 7)))
    want = _smallest_member_labels(n, u, v)
    assert np.array_equal(labels, want)
    assert np.array_equal(cc.labels_by_min(n, np.minimum(u, v), np.maximum(u, v)), want)


def test_a_long_shuffled_chain_converges_in_a_few_rounds():
    n = 20_000
    order = np.random.default_rng(1).permutation(n)
    labels, rounds = cc.components(n, order[:-1], order[1:], parts=3)
    assert (labels == 0).all()
    assert rounds <= 2 * int(np.log2(n)) ** 1  # O(log n) in practice for a path


def test_each_partition_reports_whether_it_changed_the_graph():
    # star centred on 0: a fixed point of both
    a, b, changed = cc.large_star(np.array([0, 0, 1, 2]), np.array([1, 2, 0, 0]))
    assert not changed and sorted(zip(a, b)) == [(0, 1), (0, 2)]
    a, b, changed = cc.small_star(np.array([1, 2]), np.array([0, 0]))
    assert not changed and sorted(zip(a, b)) == [(0, 1), (0, 2)]
    # path 0-1-2: node 1 has a smaller and a larger neighbour (large-star moves 2 onto 0)
    a, b, changed = cc.large_star(np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1]))
    assert changed and sorted(zip(a, b)) == [(0, 1), (0, 2)]
    # node 2 with two smaller neighbours (small-star links 1 to the smaller, 0)
    a, b, changed = cc.small_star(np.array([2, 2]), np.array([0, 1]))
    assert changed and sorted(zip(a, b)) == [(0, 1), (0, 2)]


def test_a_star_forest_that_has_not_converged_is_refused():
    with pytest.raises(RuntimeError, match="two centres"):
        cc.labels_of_stars(3, np.array([0, 1]), np.array([2, 2]))
