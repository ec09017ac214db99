"""Training and launch (issue: trustworthy runs §4): a re-run never silently discards resumable
checkpoints; the stage key holds the global batch and a path model's content; eval of the base
model; reward totals gathered over ranks; tracking through transformers' report_to."""

import json

import pytest
import yaml

from tests.conftest import tiny_recipe


def _recipe(tmp_path, **stage):
    r = tiny_recipe(eval={})
    r["stages"][0].update({"max_steps": 4, "save_steps": 2, **stage})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


def test_rerun_with_checkpoints_refuses_then_restart_discards(cli, tmp_path):
    path, out = _recipe(tmp_path), tmp_path / "run"
    assert cli("train", path, "--out", out).exit_code == 0
    sdir = out / "stages" / "0-sft"
    marker = json.loads((sdir / "stage.json").read_text())
    marker["key"] = "an-older-key"  # as after a kill: the stage is not done, its checkpoints remain
    (sdir / "stage.json").write_text(json.dumps(marker))
    res = cli("train", path, "--out", out)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "resumable checkpoint" in res.output and "--resume" in res.output and "--restart" in res.output
    assert (sdir / "checkpoint-4").is_dir()  # nothing was deleted
    res = cli("train", path, "--out", out, "--restart")
    assert res.exit_code == 0, res.output
    assert json.loads((sdir / "stage.json").read_text())["status"] == "done"


def test_stage_key_holds_global_batch_and_model_content(tmp_path, tiny_model_dir):
    import shutil

    from recipe.cache import Cache
    from recipe.load import load_recipe
    from recipe.plan import make_plan

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    r = tiny_recipe(eval={})
    r["stages"][0]["from"] = str(model)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    loaded = load_recipe(path)

    def key(n=1):
        return make_plan(loaded, Cache(tmp_path / "c"), tmp_path / "o", num_processes=n).of_kind("stage")[0].key

    one, eight = key(1), key(8)
    assert one != eight and key(1) == one
    (model / "config.json").write_text((model / "config.json").read_text() + " ")  # the model changed, not its path
    assert key(1) != one


def test_base_model_is_always_available_to_eval():
    from eval.runner import model_available

    class Run:
        def model_dir_of(self, name):
            return "org/hub-model" if name == "base" else "/no/such/stage/final"

    assert model_available(Run(), "base") and not model_available(Run(), "0-sft")


def test_reward_totals_merge_over_ranks():
    from training.rewards import VerifiableReward

    ranks = []
    for completions in (["7", "8"], ["7", "7", "9"]):
        fn = VerifiableReward(reward=10.0)
        fn(prompts=[[]] * len(completions), completions=[[{"role": "assistant", "content": c}] for c in completions],
           ground_truth=["7"] * len(completions), verifier=["math"] * len(completions))
        ranks.append(fn.state())
    s = VerifiableReward.merge(ranks).summary()
    assert s["completions"] == 5 and s["by_verifier"]["math"]["pass_rate"] == 3 / 5


def test_report_to_tensorboard_offline(cli, tmp_path):
    pytest.importorskip("tensorboardX")
    path, out = _recipe(tmp_path, report_to=["tensorboard"], save_steps=None), tmp_path / "run"
    res = cli("train", path, "--out", out)
    assert res.exit_code == 0, res.output
    events = list((out / "stages" / "0-sft").rglob("events.out.tfevents*"))
    assert events, "no tensorboard event file"
    job = json.loads((out / "stages" / "0-sft" / "job.json").read_text())
    assert job["run_name"] == "t/0-sft"


def test_report_to_unknown_tracker(cli, write_recipe):
    r = tiny_recipe()
    r["stages"][0]["report_to"] = ["tensorbord"]
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "stages[0].report_to[0]" in res.output and "did you mean 'tensorboard'" in res.output
