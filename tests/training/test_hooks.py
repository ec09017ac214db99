"""The data-hooks layer and its methods on a tiny model: Skill-it rounds (and the pinned prefetch
lag), RS2 subsets, MeCo's format and cooldown, loss reweighting (properties and the neutral
setting against TRL's own loss), exposure accounting in the ledger and `recipe audit`, resume
making the same decisions, and bad input at validate."""

import json
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import tiny_recipe, train_recipe
from curation import ledger as ledger_mod

SMALL = {"batch_size": 8, "max_length": 48, "lr": 1e-3, "logging_steps": 1}


def _skill_recipe(**hook):
    r = tiny_recipe(eval={})
    r["sources"]["arith"]["skills"] = ["add", "sub", "mul"]
    r["sources"]["arith_val"] = {"generate": "arithmetic", "n": 18, "skills": ["add", "sub", "mul"], "max_operand": 9,
                                 "split": "test", "seed": 4}
    r["stages"] = [{"kind": "sft", "data": "sft", "max_steps": 8, "save_steps": 4, **SMALL,
                    "validation": {"data": "arith_val", "by": "skill"},
                    "hooks": [{"skill_it": {"graph": {"edges": [["add", "sub"], ["sub", "mul"]]}, "update_steps": 3, **hook}}]}]
    return r


@pytest.fixture(scope="module")
def skill_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("skillit")
    _, run, _ = train_recipe(tmp, _skill_recipe())
    return tmp, run / "stages" / "0-sft"


def _log(sdir, hook):
    return [json.loads(line) for line in (sdir / "hooks" / hook / "log.jsonl").read_text().splitlines()]


def test_skill_it_rounds_and_the_pinned_lag(skill_run):
    tmp, sdir = skill_run
    log = _log(sdir, "skill_it")
    assert [r["round"] for r in log] == [0, 1, 2]  # 8 steps, rounds of 3
    for rec in log:
        assert sum(rec["weights"].values()) == pytest.approx(1.0)
    # round 0: p ∝ exp(eta A 1); A from the edges: add -> sub -> mul (0.5 off the diagonal)
    a = np.array([[1, 0, 0.5], [0, 1, 0], [0, 0.5, 1]])  # rows/cols: add, mul, sub
    p0 = np.exp(0.5 * a.sum(1))
    assert [log[0]["weights"][s] for s in ("add", "mul", "sub")] == pytest.approx((p0 / p0.sum()).tolist())
    # round t+1 is drawn from the evaluation one step before its boundary (the dataloader fetches one
    # micro-batch ahead): rounds start after steps 3 and 6, their weights come from steps 2 and 5
    assert [r["from_eval_at_step"] for r in log] == [None, 2, 5]
    summary = json.loads((tmp / "run" / "manifest.json").read_text())["stages"][0]
    assert set(summary["extras"]["skill_it_weights"]) == {"add", "mul", "sub"}
    assert summary["exposure"]["consumed"] == 8 * 8


def test_the_first_update_trains_on_the_samplers_first_rows(skill_run, tiny_model_dir):
    """_get_train_sampler is private: pin that the trainer's first batch is the hook sampler's first indices."""
    from training.hooks.install import install_hooks
    from training.job import read_job

    tmp, sdir = skill_run
    job = read_job(sdir / "job.json")
    seen = {}

    def look(trainer, ctx):
        batch = next(iter(trainer.get_train_dataloader()))
        sampler = trainer._get_train_sampler()
        first = list(iter(sampler))[:8]
        ids = [trainer.train_dataset[i]["input_ids"] for i in first]
        got = [row[row != trainer.processing_class.pad_token_id].tolist() for row in batch["input_ids"]]
        seen["match"] = [g == i for g, i in zip(got, ids)]

    from training.job import run_job

    run_job(dict(job, stage_dir=str(tmp / "pin"), stage={**job["stage"], "max_steps": 1, "save_steps": None}),
            trainer_hooks=[look])
    assert seen["match"] and all(seen["match"])
    assert install_hooks  # the module under test


def test_resume_makes_the_same_decisions(skill_run):
    """Resumed from checkpoint-4, the run draws the same rounds with the same weights and ends where
    the uninterrupted run ended."""
    from safetensors.torch import load_file

    from training.job import read_job, run_job

    tmp, sdir = skill_run
    again = tmp / "resumed"
    shutil.copytree(sdir, again)
    shutil.rmtree(again / "final")
    shutil.rmtree(again / "checkpoint-8", ignore_errors=True)
    shutil.rmtree(again / "hooks")
    assert (again / "checkpoint-4" / "hooks.json").is_file()
    job = dict(read_job(sdir / "job.json"), stage_dir=str(again), resume=True)
    run_job(job)
    original, resumed = _log(sdir, "skill_it"), _log(again, "skill_it")
    assert [r["weights"] for r in resumed] == [r["weights"] for r in original if r["round"] >= 2]
    a, b = load_file(str(sdir / "final" / "model.safetensors")), load_file(str(again / "final" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    import pyarrow.parquet as pq

    ea, eb = (pq.read_table(d / "exposure.parquet").column("exposures").to_pylist() for d in (sdir, again))
    assert ea == eb  # the counts span the resume


def test_exposure_reaches_the_ledger_and_audit(skill_run, cli):

    tmp, _ = skill_run
    led = ledger_mod.read(tmp / "run" / "ledger").to_pylist()
    exp = [r for r in led if r["step"] == "exposure"]
    assert exp and sum(r["score"] for r in exp) == 64
    trained = next(r for r in exp if r["score"] > 0)
    res = cli("audit", tmp / "run", trained["row_id"])
    assert res.exit_code == 0 and "exposure" in res.output and "consumed" in res.output


def test_rs2_fresh_subsets(cli, write_recipe, tmp_path):
    import pyarrow.parquet as pq

    r = tiny_recipe(eval={})
    r["stages"][0].update({**SMALL, "max_steps": None, "epochs": 3, "hooks": [{"rs2": {"fraction": 0.25}}]})
    out = tmp_path / "run"
    assert cli("train", write_recipe(r), "--out", out).exit_code == 0
    sdir = out / "stages" / "0-sft"
    log = _log(sdir, "rs2")
    rows = len(pq.read_table(out / "datasets" / "sft.parquet"))
    size = rows // 4
    assert [e["rows"] for e in log] == [size] * 3
    counts = pq.read_table(sdir / "exposure.parquet").column("exposures").to_pylist()
    assert sum(counts) == 3 * size and max(counts) == 1  # without replacement: no row twice in 3 of 4 chunks


def test_rs2_indices_cover_the_pool_before_repeating():
    from training.hooks.rs2 import rs2_indices

    seen = np.concatenate([rs2_indices(100, 0.2, False, 0, e) for e in range(5)])
    assert sorted(seen.tolist()) == list(range(100))
    assert not np.array_equal(rs2_indices(100, 0.2, True, 0, 0), rs2_indices(100, 0.2, True, 0, 1))


def test_reweight_weights_properties():
    from training.hooks.reweight import sample_weights

    losses = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0, 3.1])
    for strategy in ("linupper", "quadratic", "extremes", "upper"):
        w = sample_weights(losses, strategy, 0.4, 1.0)
        assert float(w.sum()) == pytest.approx(1.0) and (w > 0).all()
        flat = sample_weights(losses, strategy, 1e9, 1.0)
        assert torch.allclose(flat, torch.full_like(flat, 1 / 6), atol=1e-6)  # r -> infinity: uniform
    lin = sample_weights(losses, "linupper", 0.4, 1.0)
    assert all(lin[i] <= lin[i + 1] + 1e-7 for i in range(5))  # never lowers a higher-loss sample's weight
    assert float(lin[-1]) == pytest.approx(float(lin[-2]), rel=1e-5)  # and saturates at the top
    ext = sample_weights(losses, "extremes", 0.4, 1.0)
    assert ext[0] > ext[2] and ext[-1] > ext[2]


def test_reweight_neutral_setting_is_trls_loss(tiny_model_dir, tmp_path):
    """Uniform weights (r -> infinity) give the token-mean loss TRL computes, to 1e-6."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from training.hooks.base import HookContext
    from training.hooks.reweight import Reweight, ReweightParams

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = [{"messages": [{"role": "user", "content": f"What is {a} + {a}?"}, {"role": "assistant", "content": str(2 * a) * (a % 3 + 1)}]}
            for a in range(6)]
    trainer = SFTTrainer(model=model, args=SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=6, use_cpu=True,
                                                     report_to=[], max_length=64, shuffle_dataset=False),
                         train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model.train()
    trl_loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=None)
    hook = Reweight(ReweightParams(r=1e9), HookContext(stage=None, seed=0, stage_dir=tmp_path))
    ours = hook.compute_loss(trainer, model, dict(batch))
    assert float(ours) == pytest.approx(float(trl_loss), abs=1e-6)
    hot = Reweight(ReweightParams(r=0.05, strategy="linupper"), HookContext(stage=None, seed=0, stage_dir=tmp_path))
    assert float(hot.compute_loss(trainer, model, dict(batch))) > float(trl_loss)  # weight moved to high-loss rows


def test_meco_format_masks_the_metadata(tiny_model_dir):
    from curation.rows import make_row, rows_to_dataset
    from training.hooks.meco import MeCoParams, host, prefix_of
    from training.stages.pretrain import to_text

    assert host("https://en.wikipedia.org/wiki/Paris") == "en.wikipedia.org" and host("http://a.b.c") == "a.b.c"
    meta = json.dumps({"url": "https://en.wikipedia.org/wiki/Paris"})
    assert prefix_of(meta, MeCoParams()) == "URL: en.wikipedia.org\n\n"
    row = make_row("text", "web", text="Paris is a city.", metadata={"url": "https://x.org/p", "meco_prefix": "URL: x.org\n\n"})
    converted = to_text(rows_to_dataset([row]))
    assert converted[0]["prompt"] == "URL: x.org\n\n" and converted[0]["completion"] == "Paris is a city."


def test_meco_stage_end_to_end_with_its_cooldown(cli, write_recipe, tmp_path):
    import pyarrow.parquet as pq

    r = tiny_recipe(eval={})
    r["sources"] = {"web": {"generate": "web_text", "n": 60, "split": "train"}}
    r["mixtures"] = {"cpt": {"web": 1.0}}
    r["selection"] = {}
    r["stages"] = [{"kind": "pretrain", "data": "cpt", "packing": False, "max_steps": 10, "batch_size": 4, "max_length": 64,
                    "lr": 1e-3, "hooks": [{"meco": {"cooldown": 0.2}}]}]
    out = tmp_path / "run"
    res = cli("train", write_recipe(r), "--out", out)
    assert res.exit_code == 0, res.output
    sdir = out / "stages" / "0-pretrain"
    (rec,) = _log(sdir, "meco")
    assert rec["cooldown_from_step"] == 8 and rec["documents"] == 60
    counts = pq.read_table(sdir / "exposure.parquet").column("exposures").to_pylist()
    assert sum(counts[:60]) == 8 * 4 and sum(counts[60:]) == 2 * 4  # 80% with metadata, the last 20% plain


@pytest.mark.parametrize("stage_over,hook,message", [
    ({}, {"skill_it": {"graph": {"edges": [["add", "sub"]]}}}, "needs validation sets per skill"),
    ({"kind": "dpo"}, {"reweight": {}}, "runs on pretrain, sft stages, not dpo"),
    ({}, {"reweight": {"strategy": "middle"}}, "reweight.strategy"),
    ({}, {"reweight": {"r": 0}}, "reweight.r"),
    ({"kind": "pretrain"}, {"meco": {"cooldown": 1.0}}, "meco.cooldown"),
    ({}, {"meco": {}}, "runs on pretrain stages, not sft"),
    ({"kind": "pretrain", "packing": True}, {"rs2": {}}, "packing: true packs rows"),
    ({}, {"skill_ti": {}}, "did you mean 'skill_it'"),
])
def test_hook_errors_at_validate(cli, write_recipe, stage_over, hook, message, tmp_path):
    r = tiny_recipe()
    if stage_over.get("kind") == "pretrain":
        r["sources"]["notes"] = {"path": str(tmp_path / "n.jsonl"), "kind": "text", "fields": {"text": "t"}}
        r["mixtures"]["sft"] = {"notes": 1.0}
    if stage_over.get("kind") == "dpo":
        r["stages"][0]["pairs"] = {"rejected": "perturb"}
    r["stages"][0].update({**stage_over, "hooks": [hook]})
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "stages[0]" in res.output and message in res.output, res.output


def test_skill_it_bad_data(cli, write_recipe, tmp_path):
    r = _skill_recipe()
    r["stages"][0]["hooks"][0]["skill_it"]["graph"] = {"matrix": [[1, 0], [0, 1]], "skills": ["add", "sub"]}
    res = cli("train", write_recipe(r), "--out", tmp_path / "a")
    assert res.exit_code == 1 and "graph's training skills ['add', 'sub'] are not the data's ['add', 'mul', 'sub']" in res.output
    r = _skill_recipe()
    r["sources"]["noskill"] = {"path": str(tmp_path / "q.jsonl"), "kind": "chat", "fields": {"prompt": "q", "response": "a"}}
    (tmp_path / "q.jsonl").write_text("".join(json.dumps({"q": f"say {i}", "a": str(i)}) + "\n" for i in range(5)))
    r["mixtures"]["sft"]["noskill"] = 1.0
    res = cli("train", write_recipe(r), "--out", tmp_path / "b")
    assert res.exit_code == 1 and "have no skill" in res.output and "Traceback" not in res.output
    r = _skill_recipe()
    r["sources"]["arith_val"]["skills"] = ["add", "sub"]  # no validation rows for mul
    res = cli("train", write_recipe(r), "--out", tmp_path / "c")
    assert res.exit_code == 1 and "evaluation skills" in res.output and "Traceback" not in res.output


def test_meco_without_the_metadata_field(cli, write_recipe, tmp_path):
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"t": f"doc {i} text here"}) + "\n" for i in range(8)))
    r = tiny_recipe(eval={}, selection={})
    r["sources"] = {"notes": {"path": str(tmp_path / "t.jsonl"), "kind": "text", "fields": {"text": "t"}}}
    r["mixtures"] = {"cpt": {"notes": 1.0}}
    r["stages"] = [{"kind": "pretrain", "data": "cpt", "packing": False, "max_steps": 2, "batch_size": 4, "max_length": 32,
                    "hooks": [{"meco": {}}]}]
    res = cli("train", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 1 and "no row of dataset 'cpt' has the metadata key 'url'" in res.output
