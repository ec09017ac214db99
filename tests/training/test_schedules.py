"""Schedule formulas at their key points (training/schedules.py; methods.md §8)."""

import math

import pytest
from pydantic import ValidationError

from recipe.schema import SFTStage
from training.schedules import make_scheduler, schedule_values


def stage(name, lr=1.0, warmup=0.1, **schedule):
    return SFTStage.model_validate({"kind": "sft", "data": "d", "lr": lr, "lr_scheduler": name,
                                    "warmup_ratio": warmup, "schedule": schedule})


def factor_at(st, total, warmup, t, continued=False):
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=st.lr)
    return make_scheduler(opt, st, total, warmup, continued=continued).lr_lambdas[0](t)


@pytest.mark.parametrize("decay", ["linear", "cosine", "1-sqrt"])
def test_wsd_phases(decay):
    st = stage("wsd", decay=decay, decay_ratio=0.2)
    T, W = 100, 10  # decay starts at S = 80
    assert factor_at(st, T, W, 0) == 0.0
    assert factor_at(st, T, W, 5) == pytest.approx(0.5)  # η_max·t/W
    assert factor_at(st, T, W, 10) == 1.0  # end of warm-up
    assert factor_at(st, T, W, 79) == 1.0  # still stable
    mid = factor_at(st, T, W, 90)  # p = 0.5
    expected = {"linear": 0.5, "cosine": 0.5, "1-sqrt": 1 - math.sqrt(0.5)}[decay]
    assert mid == pytest.approx(expected)
    assert factor_at(st, T, W, 100) == pytest.approx(0.0, abs=1e-12)  # final value η_min = 0


def test_wsd_1sqrt_shape_and_min_lr():
    st = stage("wsd", decay="1-sqrt", decay_ratio=0.5, min_lr_ratio=0.1)
    T, W = 200, 0
    for t in (100, 125, 150, 175):
        p = (t - 100) / 100
        assert factor_at(st, T, W, t) == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(p)))
    # 1-sqrt drops fastest at the start of the decay: below linear everywhere inside (0, 1)
    lin = stage("wsd", decay="linear", decay_ratio=0.5, min_lr_ratio=0.1)
    assert all(factor_at(st, T, W, t) < factor_at(lin, T, W, t) for t in range(101, 200))
    assert factor_at(st, T, W, 200) == pytest.approx(0.1)


def test_infinite_phases():
    st = stage("infinite", warmup=0.05, cooldown_ratio=0.15, constant_ratio=0.8, constant_lr_ratio=0.25,
               min_lr_ratio=0.01)
    T, W = 1000, 50  # cooldown 50..150, constant 150..800, anneal 800..1000
    f = lambda t: factor_at(st, T, W, t)  # noqa: E731
    assert f(25) == pytest.approx(0.5)
    assert f(50) == pytest.approx(1.0)  # end of warm-up: η_max
    assert f(100) == pytest.approx(0.25 + 0.75 / 2 * (1 + math.cos(math.pi * 0.5)))  # mid cooldown
    assert f(150) == pytest.approx(0.25)  # η_c reached
    assert f(500) == pytest.approx(0.25)
    assert f(900) == pytest.approx(0.25 * math.exp(-math.log(0.25 / 0.01) * 0.5))  # mid anneal (geometric mean)
    assert f(900) == pytest.approx(math.sqrt(0.25 * 0.01))
    assert f(1000) == pytest.approx(0.01)  # final: η_min


def test_infinite_continued_stage_stays_at_constant_then_anneals():
    st = stage("infinite", warmup=0.05, min_lr_ratio=0.01)
    vals = schedule_values(st, 100, 5, continued=True)  # default: no re-warm for infinite (Singh et al.)
    assert vals[0] == pytest.approx(0.25) and vals[79] == pytest.approx(0.25)
    assert vals[99] < 0.25 and factor_at(st, 100, 5, 100, continued=True) == pytest.approx(0.01)


def test_rewarm_starts_from_a_fraction_and_hf_shapes_are_kept():
    st = stage("cosine", warmup=0.1, rewarm=True, rewarm_from=0.2)
    fresh = schedule_values(st, 100, 10, continued=False)
    again = schedule_values(st, 100, 10, continued=True)
    assert fresh[0] == 0.0 and again[0] == pytest.approx(0.2)
    assert again[5] == pytest.approx(0.2 + 0.8 * 0.5)
    assert again[10:] == pytest.approx(fresh[10:])  # after the warm-up the HF cosine is untouched
    no = stage("linear", warmup=0.1, rewarm=False)
    assert schedule_values(no, 100, 10, continued=True)[0] == pytest.approx(1.0)  # no warm-up at all


def test_hf_native_schedules_match_transformers():
    import torch
    from transformers import get_scheduler

    for name in ("linear", "cosine", "constant_with_warmup"):
        st = stage(name)
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        ref = get_scheduler(name, opt, num_warmup_steps=10, num_training_steps=100)
        assert schedule_values(st, 100, 10) == pytest.approx([ref.lr_lambdas[0](t) for t in range(100)])


def test_bad_schedule_options_are_recipe_errors():
    with pytest.raises(ValidationError, match="min_lr_ratio"):
        stage("infinite", min_lr_ratio=0.5)
    with pytest.raises(ValidationError, match="constant_ratio"):
        stage("infinite", cooldown_ratio=0.9, constant_ratio=0.5)
    with pytest.raises(ValidationError):
        stage("wsd", decay="exp")


def test_schedule_and_launch_keys_get_paths_and_suggestions(cli, write_recipe):
    from tests.conftest import tiny_recipe

    r = tiny_recipe(launch={"profle": "ddp"})
    r["stages"][0].update(lr_scheduler="wsd", schedule={"decay_ration": 0.2})
    result = cli("validate", write_recipe(r))
    assert result.exit_code == 2, result.output
    assert "stages[0].schedule.decay_ration: unknown key" in result.output and "did you mean 'decay_ratio'" in result.output
    assert "launch.profle: unknown key" in result.output and "did you mean 'profile'" in result.output
    r = tiny_recipe()
    r["stages"][0].update(lr_scheduler="wsd_cosine")
    result = cli("validate", write_recipe(r))
    assert result.exit_code == 2 and "stages[0].lr_scheduler" in result.output and "Traceback" not in result.output
