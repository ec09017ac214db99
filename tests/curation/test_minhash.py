"""MinHash/LSH core (curation.minhash, curation.shingles) and the minhash_dedup step."""

import random

import numpy as np
import pytest

from curation.minhash import (MinHasher, band_keys, candidate_pairs, clusters, estimate_jaccard,
                              optimal_bands_rows)
from curation.rows import make_row, rows_to_dataset
from curation.shingles import ngram_hashes, tokenize
from curation.steps.base import StepContext, StepError
from curation.steps.minhash_dedup import MinHashDedup, MinHashDedupParams

WORDS = [f"w{i}" for i in range(3000)]


def _text(rng, n=120):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _edit(rng, text, frac):
    words = text.split()
    for k in rng.sample(range(len(words)), max(1, int(len(words) * frac))):
        words[k] = f"x{rng.randrange(10**9)}"
    return " ".join(words)


def _chat(u, a="ok", metadata=None):
    return make_row("chat", "s", messages=[{"role": "user", "content": u}, {"role": "assistant", "content": a}], metadata=metadata)


def _step(**kw):
    return MinHashDedup(MinHashDedupParams(**kw), StepContext(seed=0))


def test_optimal_bands_rows_matches_datasketch_objective():
    # values of datasketch's _optimal_param (weights 0.5/0.5), which text-dedup copies
    assert optimal_bands_rows(0.8, 128)[:2] == (9, 13)
    assert optimal_bands_rows(0.7, 256)[:2] == (25, 10)
    assert optimal_bands_rows(0.5, 128)[:2] == (25, 5)
    b, r, fp, fn = optimal_bands_rows(0.9, 64)
    assert (b, r) == (3, 21) and 0 < fp < 0.1 and 0 < fn < 0.1
    with pytest.raises(ValueError):
        optimal_bands_rows(0.0, 128)


def test_tokenize_normalises_case_punctuation_and_unicode():
    a = tokenize(["Hello, WORLD!  5,000 café"])
    b = tokenize(["hello world 5 000 CAFÉ"])
    assert a.counts.tolist() == [5] and np.array_equal(a.hashes, b.hashes)
    assert tokenize(["", "  ,, "]).counts.tolist() == [0, 0]


def test_short_texts_are_one_shingle_and_empty_texts_none():
    h, owner = ngram_hashes(tokenize(["a b c d e f", "a b", "", "a b"]), 5)
    assert owner.tolist() == [0, 0, 1, 3]  # 6 words -> 2 five-grams; 2 words -> 1 shingle; empty -> none
    assert h[2] == h[3]  # the same short text gives the same shingle


def test_signature_estimate_is_unbiased():
    rng = random.Random(0)
    base = [_text(rng) for _ in range(150)]
    edited = [_edit(rng, t, rng.uniform(0.02, 0.2)) for t in base]
    texts = base + edited
    sig = MinHasher(128, seed=3).signatures(texts)
    h, owner = ngram_hashes(tokenize(texts), 5)
    u, v = np.arange(150), np.arange(150) + 150
    true = np.array([len(set(h[owner == i]) & set(h[owner == j])) / len(set(h[owner == i]) | set(h[owner == j]))
                     for i, j in zip(u, v)])
    err = estimate_jaccard(sig, u, v) - true
    assert abs(err.mean()) < 0.01 and err.std() < 0.06  # theory: sd ~ sqrt(J(1-J)/128) <= 0.044


def test_lsh_finds_similar_pairs_and_clusters_transitively():
    rng = random.Random(1)
    a = _text(rng, 300)
    texts = [a, _edit(rng, a, 0.003), _text(rng), _text(rng)]
    texts.append(_edit(rng, texts[1], 0.003))  # chain: 0 ~ 1 ~ 4, one word changed each (J ~ 0.97)
    sig = MinHasher(128, seed=0).signatures(texts)
    b, r, _, _ = optimal_bands_rows(0.8, 128)
    u, v = candidate_pairs(band_keys(sig, b, r))
    labels = clusters(len(texts), u, v)
    assert labels[0] == labels[1] == labels[4]
    assert len({labels[0], labels[2], labels[3]}) == 3


def test_step_drops_near_duplicates_with_reason_and_score():
    rng = random.Random(2)
    originals = [_text(rng, 300) for _ in range(40)]
    # one word changed in 300 (J ~ 0.97): LSH misses such a pair with probability < 1e-4
    rows = [_chat(t) for t in originals] + [_chat(_edit(rng, t, 0.003)) for t in originals[:10]]
    ds = rows_to_dataset(rows)
    d = _step().decide(ds)
    assert d.keep[:40].all() and not d.keep[40:].any()
    for i in range(40, 50):
        assert d.reason[i] == f"near_duplicate_of:{ds[i - 40]['id']}"
        assert 0.85 < d.score[i] <= 1.0
    assert d.extras["bands"] == 9 and d.extras["rows"] == 13
    assert d.extras["cluster_size_histogram"] == {"2": 10} and d.extras["clusters"] == 10


def test_keep_longest_and_highest_score():
    rng = random.Random(3)
    t = _text(rng, 200)
    longer = t + " extra"
    ds = rows_to_dataset([_chat(t, metadata={"q": 0.1}), _chat(longer, metadata={"q": 0.9}), _chat(_text(rng))])
    d = _step(keep="longest").decide(ds)
    assert d.keep.tolist() == [False, True, True] and d.reason[0] == f"near_duplicate_of:{ds[1]['id']}"
    d = _step(keep="highest_score", score_key="q").decide(ds)
    assert d.keep.tolist() == [False, True, True]
    d = _step(keep="first").decide(ds)
    assert d.keep.tolist() == [True, False, True]
    with pytest.raises(StepError, match="score_key"):
        _step(keep="highest_score", score_key="missing").decide(ds)


def test_verify_rejects_pairs_below_true_jaccard():
    rng = random.Random(4)
    t = _text(rng, 200)
    ds = rows_to_dataset([_chat(t), _chat(_edit(rng, t, 0.04))])  # true J ~ 0.66 on 5-grams
    forced = dict(bands=64, rows=2)  # very loose banding: almost any similar pair is a candidate
    loose = _step(**forced).decide(ds)
    assert loose.keep.tolist() == [True, False]
    strict = _step(verify=True, **forced).decide(ds)
    assert strict.keep.tolist() == [True, True] and strict.extras["pairs_rejected_by_verify"] == 1


def test_ngram_longer_than_every_row_compares_whole_rows():
    # rows shorter than n are one shingle each: exact copies (after normalisation) are found,
    # different short rows are kept, and nothing crashes or is silently dropped
    ds = rows_to_dataset([_chat("What is two plus two?"), _chat("what is TWO plus two"), _chat("What is three plus two?")])
    d = _step(ngram=50, field="prompt").decide(ds)
    assert d.keep.tolist() == [True, False, True]
    assert d.reason[1] == f"near_duplicate_of:{ds[0]['id']}" and d.score[1] == 1.0


def test_empty_field_rows_are_kept_and_counted():
    ds = rows_to_dataset([_chat("q1", "..."), _chat("q2", "!!!"), _chat("q3", "real answer here")])
    d = _step(field="response").decide(ds)
    assert d.keep.all() and d.extras["rows_without_tokens"] == 2


def test_upsampled_copies_share_one_decision():
    import datasets

    rng = random.Random(5)
    t = _text(rng, 300)
    ds = rows_to_dataset([_chat(t), _chat(_edit(rng, t, 0.003))])
    rows = [ds[0], dict(ds[0], id=ds[0]["id"] + "#1"), ds[1], dict(ds[1], id=ds[1]["id"] + "#1")]
    both = datasets.Dataset.from_list(rows, features=ds.features)
    d = _step().decide(both)
    assert d.keep.tolist() == [True, True, False, False]


def test_bad_params():
    from pydantic import ValidationError

    for bad in ({"threshold": 0}, {"threshold": 1.5}, {"bands": 10}, {"bands": 20, "rows": 10}, {"ngram": 0}):
        with pytest.raises(ValidationError):
            MinHashDedupParams(**bad)


@pytest.mark.parametrize("value", [0, 1.2, -0.1])
def test_threshold_outside_unit_interval_is_a_recipe_error(cli, write_recipe, value):
    from tests.conftest import tiny_recipe

    r = tiny_recipe()
    r["selection"]["sft"] = [{"exact_dedup": {}}, {"minhash_dedup": {"threshold": value}}]
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2, res.output
    assert "selection.sft[1].minhash_dedup.threshold" in res.output and "Traceback" not in res.output


def test_signatures_on_the_local_engines_workers_give_the_same_decisions(monkeypatch):
    """A long column's signatures are computed in shards on the local engine's worker pool
    (engine.map_column into one array): the decisions are those of one process."""
    from curation import row_local
    from curation.engine import LocalEngine

    rng = random.Random(5)
    originals = [_text(rng, 60) for _ in range(300)]
    rows = [_chat(t) for t in originals] + [_chat(_edit(rng, t, 0.01)) for t in originals[:80]]
    ds = rows_to_dataset(rows)
    alone = _step().decide(ds)
    monkeypatch.setattr(row_local, "MAP_MIN_ROWS", 50)
    monkeypatch.setenv("RECIPE_KIT_KERNELS", "numpy")  # with the compiled kernels the pass stays in this process
    engine = LocalEngine(workers=2)
    try:
        assert engine.spreads(len(rows))
        pooled = MinHashDedup(MinHashDedupParams(), StepContext(seed=0, engine=engine)).decide(ds)
    finally:
        engine.close()
    assert pooled.keep.tolist() == alone.keep.tolist() and pooled.reason == alone.reason
    assert np.allclose(pooled.score, alone.score) and pooled.extras == alone.extras
    assert not alone.keep.all()  # there were duplicates to find
