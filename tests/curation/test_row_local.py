"""Row-local steps: the same decisions on one process or several, in shards or whole; and the
curation path never iterates a ``datasets.Dataset`` row by row."""

import numpy as np
import pytest

from curation import row_local
from curation.steps import STEPS
from curation.steps.base import StepContext
from tests.curation.test_columns import _rows

ROW_LOCAL = [("length", {"unit": "words", "min": 3, "max": 40}), ("response_length", {"unit": "chars", "min": 5}),
             ("garbage", {}), ("repetition", {"field": "all"}), ("empty_turns", {"check_truncation": True})]


def _step(name, params):
    cls = STEPS.get(name)
    return cls(cls.Params.model_validate(params), StepContext(seed=0))


def _same(a, b):
    assert a.keep.tolist() == b.keep.tolist()
    assert a.reason == b.reason
    assert (a.score is None) == (b.score is None)
    if a.score is not None:
        assert np.array_equal(a.score, b.score)
    assert a.extras == b.extras


@pytest.mark.parametrize("name,params", ROW_LOCAL)
def test_row_local_steps_are_registered_as_such(name, params):
    step = _step(name, params)
    assert step.row_local and row_local.can_parallelise(step)


def test_two_processes_give_the_decisions_of_one(monkeypatch):
    from curation.columns import table_of

    table = table_of(_rows(n=1200, seed=4))
    monkeypatch.setattr(row_local, "MIN_ROWS_PER_WORKER", 100)  # shard a small table over 2 workers
    pool = row_local.WorkerPool(2)  # one pool for every step, as a curation run has
    try:
        for name, params in ROW_LOCAL:
            whole = _step(name, params).decide(table)  # decide_batch of the whole table
            one = row_local.decide_table(_step(name, params), table, 1)
            two = row_local.decide_table(_step(name, params), table, pool)
            _same(whole, one)
            _same(whole, two)
            assert (~whole.keep).any(), name  # the rows exercise every step
        assert pool._executor is not None  # repetition and empty_turns went to the workers
    finally:
        pool.close()


def test_shards_cover_the_rows_in_order():
    for n in (0, 1, 7, 20_000, 123_457):
        spans = row_local.shards(n, 2)
        assert sum(k for _, k in spans) == n
        assert all(a == b + k for (a, _), (b, k) in zip(spans[1:], spans[:-1]))


def test_curate_never_iterates_a_dataset_row_by_row(tmp_path, cli, monkeypatch):
    import datasets
    import yaml

    from tests.curation import test_content_fingerprint as fp

    def refuse(self):
        raise AssertionError("row-by-row iteration over a datasets.Dataset in the curation path")

    fp.write_sources(tmp_path)
    recipe = fp.recipe(tmp_path)
    recipe["selection"]["pre"] = [s for s in recipe["selection"]["pre"] if "minhash_dedup" not in s]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    monkeypatch.setattr(datasets.Dataset, "__iter__", refuse)
    res = cli("curate", path, "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
