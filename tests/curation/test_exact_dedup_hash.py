"""exact_dedup's hash pass (curation.shingles.hash_strings) then exact comparison: the same decisions as grouping
the normalised texts themselves, even when every hash collides."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa

from curation.shingles import hash_strings
from curation.rows import make_row, rows_to_dataset
from curation.steps import exact_dedup
from curation.steps.base import StepContext
from curation.steps.exact_dedup import ExactDedup, normalise


def _rows(n: int = 3000):
    rng = random.Random(1)
    words = ["a", "B", "café", "CAFÉ", "x y", "ﬁ", "fi", "\u00a0", "zz"]
    texts = []
    for i in range(n):
        if texts and rng.random() < 0.2:
            t = rng.choice(texts)
            t = t.upper() if rng.random() < 0.3 else "  " + t.replace(" ", "\n ")  # the same once normalised
        else:
            t = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) + f" {rng.randint(0, 400)}"
        texts.append(t)
    rows = [make_row("text", "s", text=t) for t in texts]
    for k, r in enumerate(rows):
        r["id"] = f"s@{k}"
    return rows


def _expected(rows):
    seen, keep, reason = {}, [], []
    for r in rows:
        key = normalise(r["text"])
        if key in seen:
            keep.append(False)
            reason.append(f"duplicate_of:{seen[key]}")
        else:
            seen[key] = r["id"]
            keep.append(True)
            reason.append(None)
    return keep, reason, len(seen)


def _decide(rows, **params):
    step = ExactDedup(ExactDedup.Params(**params), StepContext(seed=0))
    return step.decide(rows_to_dataset(rows))


def test_hash_pass_matches_grouping_the_texts(monkeypatch):
    rows = _rows()
    keep, reason, distinct = _expected(rows)
    monkeypatch.setattr(exact_dedup, "SLICE_ROWS", 257)  # many slices, one ragged
    got = _decide(rows)
    assert list(got.keep) == keep and list(got.reason) == reason and got.extras["unique_texts"] == distinct
    assert 0 < sum(not k for k in keep) < len(rows)


def test_colliding_hashes_never_merge_different_texts(monkeypatch):
    rows = _rows(800)
    keep, reason, distinct = _expected(rows)
    monkeypatch.setenv("RECIPE_KIT_KERNELS", "numpy")  # every hash through hash_strings, patched here
    monkeypatch.setattr(exact_dedup, "hash_strings", lambda arr: np.zeros(len(arr), dtype=np.uint64))  # every row collides
    got = _decide(rows)
    assert list(got.keep) == keep and list(got.reason) == reason and got.extras["unique_texts"] == distinct


def test_hash_strings_is_stable_and_agrees_across_layouts():
    strings = ["", "a", "ab", "é", "東京", "x" * 300, "a#1"]
    plain, large = pa.array(strings, pa.string()), pa.array(strings, pa.large_string())
    h = hash_strings(plain)
    assert (h == hash_strings(large)).all() and len(set(h.tolist())) == len(strings)
    sliced = pa.array(["zz"] + strings, pa.string()).slice(1)
    assert (hash_strings(sliced) == h).all()
    same_length = pa.array(["ab", "cd", "ab"])  # equal strings, equal hashes, wherever they sit
    assert hash_strings(same_length)[0] == h[2] and hash_strings(same_length)[2] == h[2]
    # part of the ledger folder's layout: a change would misplace every written ledger's look-ups
    assert int(hash_strings(pa.array(["recipe-kit"]))[0]) == 3383153136370873239


def test_hash_pass_on_the_worker_pool_gives_the_same_decisions(monkeypatch):
    """The local engine cuts a long column's normalise-and-hash pass across its workers
    (engine.map_column): the decisions are those of one process."""
    from curation import row_local
    from curation.engine import LocalEngine

    rows = _rows()
    alone = ExactDedup(exact_dedup.ExactDedupParams(), StepContext(seed=0)).decide(rows_to_dataset(rows))
    monkeypatch.setattr(row_local, "MAP_MIN_ROWS", 100)
    monkeypatch.setenv("RECIPE_KIT_KERNELS", "numpy")  # with the compiled kernels the pass stays in this process
    engine = LocalEngine(workers=2)
    try:
        shards = engine.map_column(exact_dedup.normalised_hashes, pa.array([r["text"] for r in rows]), lower=True)
        assert len(shards) > 1  # it did run in shards
        pooled = ExactDedup(exact_dedup.ExactDedupParams(), StepContext(seed=0, engine=engine)).decide(rows_to_dataset(rows))
    finally:
        engine.close()
    assert pooled.keep.tolist() == alone.keep.tolist() and list(pooled.reason) == list(alone.reason)
    assert pooled.extras == alone.extras


def test_long_texts_hash_the_same_in_any_company_and_their_copies_are_found(monkeypatch):
    """A text past 32,767 bytes was hashed only up to the length of the first such text of its slice
    (shingles._hash_words), so its hash depended on its neighbours and a copy in another slice was
    missed. Every byte counts now."""
    monkeypatch.setenv("RECIPE_KIT_KERNELS", "numpy")  # the reference; tests/curation/test_kernels.py pins the kernel to it
    long_a, long_b = "a" * 40000 + " tail one", "a" * 40000 + " tail two"
    alone = hash_strings(pa.array([long_b]))
    assert hash_strings(pa.array(["b" * 33000, long_b]))[1] == alone[0]
    assert hash_strings(pa.array(["b" * 32767, long_b]))[1] == alone[0]  # the sort key's cap itself
    assert hash_strings(pa.array([long_b, "b" * 32767, "c" * 50000]))[0] == alone[0]
    assert hash_strings(pa.array([long_a, long_b]))[0] != alone[0]
    rows = [make_row("text", "s", text=t) for t in ["c" * 32767, long_b, "x", long_b]]
    monkeypatch.setattr(exact_dedup, "SLICE_ROWS", 2)  # the copies sit in different slices
    got = _decide(rows)
    assert got.keep.tolist() == [True, True, True, False]
