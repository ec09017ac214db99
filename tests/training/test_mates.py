"""MATES on a tiny model: rounds of probe -> fit -> predict -> select, probing that restores the model
and optimizer exactly, the official Gumbel rule, the ledger and audit records of every candidate,
resume replaying the rounds, and bad input at validate."""

import json
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import tiny_recipe, train_recipe
from curation import ledger as ledger_mod

MATES = {"select_every": 3, "warmup_steps": 3, "probes": 10, "ratio": 0.5, "influence": {"epochs": 1, "batch_size": 8}}


def _recipe(**hook):
    r = tiny_recipe(eval={})
    r["sources"]["arith_val"] = {"generate": "arithmetic", "n": 8, "skills": ["add", "sub"], "max_operand": 9,
                                 "split": "test", "seed": 4}
    r["stages"] = [{"kind": "sft", "data": "sft", "max_steps": 10, "save_steps": 5, "batch_size": 4, "max_length": 48,
                    "lr": 1e-3, "logging_steps": 1, "validation": {"data": "arith_val"},
                    "hooks": [{"mates": {**MATES, **hook}}]}]
    return r


@pytest.fixture(scope="module")
def mates_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mates")
    _, run, _ = train_recipe(tmp, _recipe())
    return tmp, run / "stages" / "0-sft"


def _log(sdir):
    return [json.loads(line) for line in (sdir / "hooks" / "mates" / "log.jsonl").read_text().splitlines()]


def test_rounds_probe_fit_and_select(mates_run):
    tmp, sdir = mates_run
    log = _log(sdir)
    # 10 steps: 3 warm-up steps on a random draw, then rounds at steps 3, 6, 9 (the last one step long),
    # each prepared one step before it starts (the dataloader fetches a batch ahead)
    assert [r["round"] for r in log] == [1, 2, 3]
    assert [r["step"] for r in log] == [2, 5, 8]
    sizes = [(10, 24, 12), (10, 24, 12), (8, 8, 4)]  # (probes, pool = round rows / 0.5, rows trained on)
    for rec, (probes, pool, selected) in zip(log, sizes):
        assert (rec["probes"], rec["pool"], rec["selected"]) == (probes, pool, selected)
        assert rec["label_std"] > 0  # a probe step changes the reference loss
        assert rec["seconds_per_probe"] > 0
    manifest = json.loads((tmp / "run" / "manifest.json").read_text())["stages"][0]
    assert manifest["exposure"]["consumed"] == 10 * 4
    assert len(manifest["extras"]["mates_spearman"]) == 3


def test_every_candidate_has_a_ledger_record(mates_run, cli):

    tmp, _ = mates_run
    led = [r for r in ledger_mod.read(tmp / "run" / "ledger").to_pylist() if r["step"].startswith("mates:")]
    by_round = {}
    for r in led:
        by_round.setdefault(r["step"], []).append(r)
    assert sorted(by_round) == ["mates:round1", "mates:round2", "mates:round3"]
    for step, recs in by_round.items():
        pool, kept = (8, 4) if step == "mates:round3" else (24, 12)
        assert len(recs) == pool and sum(r["decision"] == "keep" for r in recs) == kept
        assert all(r["reason_code"] == "mates_not_selected" for r in recs if r["decision"] != "keep")
        assert all(np.isfinite(r["score"]) for r in recs)
    dropped = next(r for r in led if r["decision"] != "keep")
    res = cli("audit", tmp / "run", dropped["row_id"])
    assert res.exit_code == 0 and "mates_not_selected" in res.output and "predicted influence" in res.output


def test_probing_restores_model_and_optimizer(mates_run):
    """A probe is one optimizer step in place; afterwards weights, moments and step counts are as before."""
    from training.hooks.base import HookContext
    from training.hooks.mates import Mates, MatesParams
    from training.job import read_job, run_job

    tmp, sdir = mates_run
    job = read_job(sdir / "job.json")
    seen = {}

    def probe(trainer, ctx):
        from transformers import TrainerCallback

        class AtStep2(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step != 2:
                    return
                hook = Mates(MatesParams(**MATES), HookContext(stage=ctx.stage, seed=0, stage_dir=tmp / "probe",
                                                               validation=ctx.validation))
                hook.trainer = trainer
                opt = trainer.optimizer.optimizer
                w0 = [p.detach().clone() for p in trainer.model.parameters()]
                s0 = {k: {n: v.clone() if torch.is_tensor(v) else v for n, v in st.items()} for k, st in opt.state.items()}
                labels, before = hook._probe(np.arange(3))
                seen["labels"], seen["before"] = labels, before
                seen["weights"] = all(torch.equal(a, b) for a, b in zip(w0, trainer.model.parameters()))
                seen["optimizer"] = all(torch.equal(v, s0[k][n]) if torch.is_tensor(v) else v == s0[k][n]
                                        for k, st in opt.state.items() for n, v in st.items())
                seen["grads"] = all(p.grad is None for p in trainer.model.parameters())

        trainer.add_callback(AtStep2())

    stage = {**job["stage"], "max_steps": 3, "save_steps": None, "hooks": []}
    run_job(dict(job, stage=stage, stage_dir=str(tmp / "probe-run")), trainer_hooks=[probe])
    assert seen["weights"] and seen["optimizer"] and seen["grads"]
    assert len(set(seen["labels"])) > 1 and all(x != seen["before"] for x in seen["labels"])


def test_gumbel_rule_is_the_official_one():
    from training.mates_rounds import gumbel_select
    from training.hooks.samplers import rng

    pred = np.linspace(-1, 1, 50)
    got = gumbel_select(pred, 10, 0.5, seed=3, round_=1)
    s = pred / 0.5 + rng(3, 4242, 1).gumbel(size=50)
    assert got.tolist() == sorted(np.argsort(s)[:10].tolist())  # the k smallest pred/tau + G
    cold = gumbel_select(pred, 10, 1e-6, seed=3, round_=1)  # tau -> 0: the k smallest predictions
    assert cold.tolist() == list(range(10))


def test_resume_replays_the_chosen_rounds(mates_run):
    from safetensors.torch import load_file

    from training.job import read_job, run_job

    tmp, sdir = mates_run
    again = tmp / "resumed"
    shutil.copytree(sdir, again)
    shutil.rmtree(again / "final")
    shutil.rmtree(again / "checkpoint-10", ignore_errors=True)
    shutil.rmtree(again / "hooks")  # nothing but the checkpoint's hook state carries round 1
    state = json.loads((again / "checkpoint-5" / "hooks.json").read_text())["mates"]
    assert sorted(state["rounds"]) == ["1"]
    run_job(dict(read_job(sdir / "job.json"), stage_dir=str(again), resume=True))
    original, resumed = _log(sdir), _log(again)
    assert [r["round"] for r in resumed] == [2, 3]
    strip = lambda r: {k: v for k, v in r.items() if "seconds" not in k}  # noqa: E731
    assert [strip(r) for r in resumed] == [strip(r) for r in original if r["round"] >= 2]
    a, b = load_file(str(sdir / "final" / "model.safetensors")), load_file(str(again / "final" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("over,hook,message", [
    ({}, {"select_every": 10}, "select_every 10 is not below the stage's max_steps 10"),
    ({"validation": None}, {}, "needs a reference set"),
    ({"kind": "dpo", "pairs": {"rejected": "perturb"}}, {}, "runs on pretrain, sft stages, not dpo"),
])
def test_bad_options_at_validate(cli, write_recipe, over, hook, message):
    r = _recipe(**hook)
    r["stages"][0].update(over)
    if r["stages"][0].get("validation") is None:
        r["stages"][0].pop("validation")
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "stages[0]" in res.output and message in res.output, res.output


def test_launch_profile_it_cannot_probe_in(cli, write_recipe):
    r = _recipe()
    r["launch"] = {"profile": "fsdp2"}
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "hook 'mates'" in res.output and "runs under ddp, not fsdp2" in res.output, res.output


def test_reference_set_with_no_rows(cli, write_recipe, tmp_path):
    r = _recipe(reference="nope")
    res = cli("train", write_recipe(r), "--out", tmp_path / "a")
    assert res.exit_code == 1 and "'nope' is not one of the stage's validation sets" in res.output
    assert "Traceback" not in res.output
    r = _recipe()
    r["mixtures"]["val"] = {"arith_val": 1.0}
    r["selection"]["val"] = [{"length": {"unit": "chars", "max": 1}}]  # drops every validation row
    r["stages"][0]["validation"] = {"data": "val"}
    res = cli("train", write_recipe(r), "--out", tmp_path / "b")  # caught in curation, before any stage
    assert res.exit_code == 1 and "selection.val[0] (length): dropped all 8 rows" in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "b" / "stages").exists()
    # and the hook's own check, for a validation set that reaches it empty
    import datasets

    from recipe.schema import Recipe
    from training.hooks.mates import Mates, MatesParams

    stage = Recipe.model_validate(_recipe()).stages[0]
    empty = datasets.Dataset.from_dict({"id": [], "text": []})
    rows = datasets.Dataset.from_dict({"id": [str(i) for i in range(50)]})
    assert "has no rows" in Mates.check_rows(MatesParams(**MATES), rows, {"validation": empty}, stage)
