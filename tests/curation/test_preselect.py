"""preselect: predictive strength, labels, the character budget, and the miniature end to end."""

import numpy as np
import pytest
from pydantic import ValidationError

from curation.rows import make_row, rows_to_dataset
from curation.steps.base import StepContext, StepError
from curation.steps.preselect import (PreSelect, PreSelectParams, contrastive_labels, predictive_strength,
                                      top_characters)
from tests.curation.preselect_miniature import build_models, pool


def test_predictive_strength_counts_concordant_pairs():
    scores = [10.0, 20.0, 30.0]  # model 2 best
    bpc = np.array([
        [3.0, 2.0, 1.0],  # losses fall as models improve: 3 of 3 pairs
        [1.0, 2.0, 3.0],  # reversed: 0
        [2.0, 1.0, 3.0],  # only (0, 1) matches: 1
        [1.0, 1.0, 1.0],  # ties never match: 0
    ])
    s, pairs = predictive_strength(bpc, scores)
    assert pairs == 3 and s.tolist() == [3, 0, 1, 0]
    s, pairs = predictive_strength(bpc, [10.0, 10.0, 30.0])  # the equal-score pair carries no order
    assert pairs == 2 and s.tolist() == [2, 0, 0, 0]


def test_labels_are_perfect_vs_equal_number_of_lowest():
    s = np.array([3, 0, 1, 3, 2, 0, 3])
    pos, neg = contrastive_labels(s, 3, seed=0)
    assert pos.tolist() == [0, 3, 6] and sorted(s[neg].tolist()) == [0, 0, 1]
    pos, neg = contrastive_labels(np.array([3, 3, 3, 0]), 3, seed=0)  # more positives than others: balanced
    assert len(pos) == len(neg) == 1 and neg.tolist() == [3]


def test_top_characters_keeps_best_until_budget():
    prob = np.array([0.9, 0.1, 0.8, 0.5])
    chars = np.array([10.0, 50.0, 30.0, 10.0])
    assert top_characters(prob, chars, 0.1).tolist() == [True, False, False, False]  # 10 of 100 chars
    assert top_characters(prob, chars, 0.2).tolist() == [True, False, True, False]  # the row crossing the budget stays
    assert top_characters(prob, chars, 1.0).all()


def test_params_need_models_of_different_scores():
    with pytest.raises(ValidationError, match="all equal"):
        PreSelectParams(models=[{"path": "a", "score": 1}, {"path": "b", "score": 1}])
    with pytest.raises(ValidationError):
        PreSelectParams(models=[{"path": "a", "score": 1}])
    with pytest.raises(ValidationError):
        PreSelectParams(models=[{"path": "a", "score": 1}, {"path": "b", "score": 2}], fraction=0)


def test_missing_scoring_model_is_a_step_error(tmp_path):
    ds = rows_to_dataset([make_row("text", "w", text=f"doc {i}") for i in range(4)])
    params = PreSelectParams(models=[{"path": str(tmp_path / "m1"), "score": 1}, {"path": str(tmp_path / "m2"), "score": 2}])
    with pytest.raises(StepError, match="cannot load scoring model"):
        PreSelect(params, StepContext(workdir=tmp_path / "work")).decide(ds)


@pytest.fixture
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only contend on a shared 2-core machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def miniature_models(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("preselect"), steps=(0, 5, 15, 40))


def test_miniature_end_to_end_keeps_the_predictive_documents(miniature_models, tmp_path, one_thread):
    scores = [m["score"] for m in miniature_models]
    assert scores == sorted(scores) and len(set(scores)) == 4  # longer training -> better "benchmark"
    docs = pool(n_good=40, n_noise=40)
    good = np.array([g for _, g in docs])
    ds = rows_to_dataset([make_row("text", "web", text=t) for t, _ in docs])
    params = PreSelectParams(models=[{"path": m["path"], "score": m["score"]} for m in miniature_models],
                             fraction=0.3, bucket=20000)
    d = PreSelect(params, StepContext(seed=0, workdir=tmp_path / "work")).decide(ds)
    ex = d.extras
    assert ex["pairs"] == 6 and ex["positives"] == ex["negatives"] > 0
    bpc = np.load(tmp_path / "work" / "bpc.npy")
    assert bpc.shape == (80, 4)
    assert (np.diff(bpc[good], axis=1) < 0).mean() > 0.9  # good docs: loss falls with every better model
    assert good[d.keep].mean() >= 0.9 and d.keep.sum() >= 5
    assert 0.3 <= ex["kept_char_fraction"] < 0.4
    assert d.score[d.keep].min() >= d.score[~d.keep].max()
    assert all(r == "preselect_outside_top_chars:0.3" for r, k in zip(d.reason, d.keep) if not k)
    assert (tmp_path / "work" / "preselect.bin").is_file()
    keys = PreSelect.cache_inputs(params)["models"]
    assert len(keys) == 4 and all(isinstance(k, list) for k in keys)
