"""Mixture shares: fraction, upsampling, count; errors; outcome table."""

import pytest

from curation.mixture import MixtureError, Share, mix
from curation.rows import make_row, rows_to_dataset


def _ds(name, n):
    return rows_to_dataset([make_row("text", name, text=f"{name} doc {i}") for i in range(n)])


def test_share_parsing():
    assert Share.parse(0.5) == Share("fraction", 0.5)
    assert Share.parse(1.0) == Share("fraction", 1.0)
    assert Share.parse(2.0) == Share("upsample", 2.0)
    assert Share.parse(1000) == Share("count", 1000)
    assert Share.parse({"upsample": 1.5}) == Share("upsample", 1.5)


def test_fraction_upsample_count_and_table():
    sources = {"a": _ds("a", 100), "b": _ds("b", 10), "c": _ds("c", 50)}
    res = mix("m", {"a": 0.5, "b": 2.5, "c": 20}, sources, seed=0)
    by = {t["source"]: t for t in res.table}
    assert by["a"]["observed_rows"] == 50 and by["b"]["observed_rows"] == 25 and by["c"]["observed_rows"] == 20
    assert len(res.rows) == 95
    ids = res.rows["id"]
    assert len(set(ids)) == len(ids)  # upsampled copies get distinct ids
    assert sum("#" in i for i in ids) == 15
    assert abs(sum(t["observed_ratio"] for t in res.table) - 1) < 1e-9
    assert sum(res.ledger["a"]["copies"]) == 50 and max(res.ledger["b"]["copies"]) == 3


def test_seeded():
    sources = {"a": _ds("a", 100)}
    assert mix("m", {"a": 0.3}, sources, seed=1).rows["id"] == mix("m", {"a": 0.3}, sources, seed=1).rows["id"]
    assert mix("m", {"a": 0.3}, sources, seed=1).rows["id"] != mix("m", {"a": 0.3}, sources, seed=2).rows["id"]


def test_unshuffled_draws_with_their_order_are_the_mixed_rows_and_shards_take_them_in_order(tmp_path):
    """``shuffled=False`` (the Ray engine's draw) leaves the draws and gives the shuffle as ``order``; the
    shards written from them a shard at a time hold the mixed rows, in order."""
    import numpy as np
    import pyarrow.parquet as pq

    from curation import ray_shards
    from curation.columns import take_rows

    sources = {"a": _ds("a", 100), "b": _ds("b", 10), "c": _ds("c", 50)}
    want = mix("m", {"a": 0.5, "b": 2.5, "c": 20}, sources, seed=3)
    got = mix("m", {"a": 0.5, "b": 2.5, "c": 20}, sources, seed=3, shuffled=False)
    assert want.order is None and got.order is not None
    assert take_rows(got.arrow, got.order).equals(want.arrow)
    assert np.array_equal(got.row_tokens, want.row_tokens)
    ray_shards.write(got.arrow, tmp_path, shard_rows=7, order=got.order)
    store = ray_shards.ShardStore(tmp_path)
    assert len(store.files) == 14 and store.take(None).equals(want.arrow)
    assert store.narrow().equals(want.arrow.select(["id", "source", "kind", "skill"]))
    assert pq.read_table(store.paths()[1]).column("_row").to_pylist() == list(range(7, 14))


def test_count_larger_than_source_is_error():
    with pytest.raises(MixtureError, match="asks for 20 rows of source 'a', which has 10.*upsample"):
        mix("m", {"a": 20}, {"a": _ds("a", 10)}, seed=0)


def _texts(n, words, source):
    from curation.rows import make_row, rows_to_dataset

    return rows_to_dataset([make_row("text", source, text=" ".join([f"w{i}"] * words)) for i in range(n)])


def test_token_mixture_hits_its_shares_within_the_caps():
    """OLMo-core style: {tokens: share, max_repetition: cap}; the total is the largest mix every cap allows."""
    from curation.mixture import mix
    from recipe.schema import MixShare

    sources = {"web": _texts(100, 10, "web"), "math": _texts(20, 10, "math")}  # 1000 and 200 tokens
    entries = {"web": MixShare(tokens=0.6), "math": MixShare(tokens=0.4, max_repetition=2.0)}
    res = mix("mid", entries, sources, seed=0)
    by = {t["source"]: t for t in res.table}
    # math caps it: 200 tokens x 2 passes = 400 = 0.4 T -> T = 1000; web gives 600 of its 1000
    assert by["math"]["target_tokens"] == 400 and by["web"]["target_tokens"] == 600
    assert by["math"]["observed_tokens"] == 400 and 600 <= by["web"]["observed_tokens"] <= 610
    assert by["math"]["repetitions"] == 2.0 and by["web"]["target_token_ratio"] == pytest.approx(0.6)
    ids = res.rows["id"]
    assert len(set(ids)) == len(ids) and any("#1" in i for i in ids)  # repeated rows stay distinct and traceable


def test_token_mixture_too_small_a_source_is_an_error():
    from curation.mixture import MixtureError, mix
    from recipe.schema import MixShare

    sources = {"web": _texts(100, 10, "web"), "math": _texts(20, 10, "math")}
    with pytest.raises(MixtureError, match="needs 1500 tokens of source 'math', which has 200"):
        mix("mid", {"web": MixShare(tokens=1000), "math": MixShare(tokens=1500, max_repetition=2.0)}, sources, seed=0)


@pytest.mark.parametrize("entries,message", [
    ({"a": {"tokens": 0.5}, "b": {"tokens": 0.4}}, "token shares sum to 0.9"),
    ({"a": {"tokens": 0.5}, "b": 1.0}, "do not mix it with row shares"),
    ({"a": {"fraction": 0.5, "max_repetition": 2.0}}, "max_repetition applies to a `tokens` entry"),
])
def test_token_mixture_errors_at_validate(cli, write_recipe, entries, message):
    from tests.conftest import tiny_recipe

    r = tiny_recipe(stages=[], eval={})
    r["sources"]["a"] = r["sources"]["arith"]
    r["sources"]["b"] = r["sources"]["arith_test"]
    r["mixtures"] = {"sft": entries}
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "mixtures.sft" in res.output and message in res.output, res.output


def test_a_cached_draw_is_never_applied_to_other_rows(tmp_path, write_recipe, cli):
    """A mixture's cache entry keeps each source's copy counts with its row count and id digest: a source
    entry that now holds other rows (a Hub source without a pinned revision that changed) is a clear
    error naming the fix, not a misaligned draw."""
    import json

    import pyarrow.parquet as pq

    from curation.ledger import write_parquet
    from tests.curation.card.conftest import card_recipe

    path = write_recipe(card_recipe(tmp_path))
    cache = tmp_path / "cache"
    assert cli("curate", path, "--out", tmp_path / "a", "--cache-dir", cache).exit_code == 0
    drawn = json.loads(next(cache.rglob("sources.json")).read_text())
    assert all({"source", "rows", "ids"} <= set(d) for d in drawn)
    record = json.loads((tmp_path / "a" / "curation.json").read_text())
    rows_path = record["sources"][drawn[0]["source"]]["rows_path"]
    table = pq.read_table(rows_path)
    write_parquet(table.slice(1), rows_path)  # the source entry now holds other rows
    res = cli("curate", path, "--out", tmp_path / "b", "--cache-dir", cache)
    assert res.exit_code == 1 and "no longer holds" in res.output and "revision" in res.output
    assert "Traceback" not in res.output
