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


def test_count_larger_than_source_is_error():
    with pytest.raises(MixtureError, match="asks for 20 rows of source 'a', which has 10.*upsample"):
        mix("m", {"a": 20}, {"a": _ds("a", 10)}, seed=0)
