"""One execution path per stage: the job file a stage loop writes runs the same in-process and
launched; a trainer's dataset keeps `id`, `skill`, `metadata`; a stage receives named validation
sets (per skill) and the trainer logs `eval_<skill>_loss` for each; every kind is one file."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, tiny_recipe, train_recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("job")
    r = tiny_recipe(eval={})
    r["sources"]["arith_val"] = {"generate": "arithmetic", "n": 12, "skills": ["add", "sub"], "max_operand": 9,
                                 "split": "test", "seed": 5}
    r["stages"][0].update(max_steps=4, validation={"data": "arith_val", "by": "skill", "every": 2})
    _, run, _ = train_recipe(tmp, r)
    return tmp, run / "stages" / "0-sft"


def _weights(final):
    from safetensors.torch import load_file

    return load_file(str(final / "model.safetensors"))


def test_one_job_in_process_and_launched(trained):
    import torch

    from training.job import read_job, run_job, write_job

    tmp, sdir = trained
    job = read_job(sdir / "job.json")
    assert set(job["datasets"]["validation"]) == {"add", "sub"}
    a, b = dict(job, stage_dir=str(tmp / "a")), dict(job, stage_dir=str(tmp / "b"))
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    run_job(a)  # in-process
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "training.launch_stage", str(write_job(b, tmp / "b"))],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ra, rb = (json.loads((tmp / d / "result.json").read_text()) for d in ("a", "b"))
    assert ra["metrics"]["train_loss"] == pytest.approx(rb["metrics"]["train_loss"], rel=1e-6)
    wa, wb = _weights(tmp / "a" / "final"), _weights(tmp / "b" / "final")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_trainer_dataset_keeps_identity_and_gets_validation_sets(trained):
    from transformers import TrainerCallback

    from training.job import read_job, run_job

    tmp, sdir = trained
    seen = {}

    class Evaluated(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            seen.setdefault("metrics", set()).update(metrics or {})

    def look(trainer, ctx):
        seen["columns"] = trainer.train_dataset.column_names
        seen["eval_sets"] = sorted(trainer.eval_dataset)
        seen["skills"] = sorted(set(trainer.train_dataset["skill"]))
        seen["ids"] = trainer.train_dataset["id"][:3]

    job = dict(read_job(sdir / "job.json"), stage_dir=str(tmp / "c"))
    (tmp / "c").mkdir()
    run_job(job, callbacks=[Evaluated()], trainer_hooks=[look])
    assert {"id", "skill", "metadata", "input_ids"} <= set(seen["columns"])
    assert seen["skills"] == ["add", "sub"] and all(len(i) >= 16 for i in seen["ids"])
    assert seen["eval_sets"] == ["add", "sub"]
    assert {"eval_add_loss", "eval_sub_loss"} <= seen["metrics"]


def test_validation_by_skill_needs_skills(cli, write_recipe, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"q": f"what {i}?", "a": str(i)}) + "\n" for i in range(8)))
    r = tiny_recipe(eval={})
    r["sources"]["noskill"] = {"path": str(path), "kind": "chat", "fields": {"prompt": "q", "response": "a"}}
    r["stages"][0].update(validation={"data": "noskill", "by": "skill"})
    res = cli("train", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 1 and "validation.by: skill" in res.output and "have no skill" in res.output


def test_every_kind_is_one_file_in_training_stages():
    import pkgutil

    import training.stages as package
    from recipe.schema import stage_models

    modules = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    assert sorted(stage_models()) == modules
    for name, config in stage_models().items():
        assert config.__module__ == f"training.stages.{name}"
