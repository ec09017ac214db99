"""The launch path for real: `recipe train --gpus 2` on CPU prepares data once here, then runs the
stage on 2 torchrun ranks (MULTI_CPU, gloo) via training.launch_stage; the stage really is
data-parallel (2 x batch rows per step)."""

import json
import os
import subprocess
import sys

import yaml

from tests.conftest import ROOT, tiny_recipe


def test_two_process_cpu_stage(tmp_path):
    r = tiny_recipe(eval={})
    r["stages"][0].update(max_steps=4, batch_size=8, save_steps=2)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "recipe.cli", "train", str(path), "--out", str(out), "--gpus", "2"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    sdir = out / "stages" / "0-sft"
    result = json.loads((sdir / "result.json").read_text())
    assert result["world_size"] == 2
    rows = json.loads((out / "manifest.json").read_text())["stages"][0]["rows"]
    assert abs(result["metrics"]["epoch"] - 4 * 8 * 2 / rows) < 0.02
    manifest = json.loads((out / "manifest.json").read_text())
    cmd = manifest["stages"][0]["launch_command"]
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "2"] and cmd[-2] == "training.launch_stage"
    job = json.loads((sdir / "job.json").read_text())
    assert job["datasets"]["train"].endswith("datasets/sft.parquet") and job["stage"]["kind"] == "sft"
    assert (sdir / "final" / "model.safetensors").is_file() and (sdir / "lr_schedule.png").is_file()
    assert (sdir / "checkpoint-4" / "trainer_state.json").is_file()
    assert manifest["stages"][0]["status"] == "done"


def _train_on_two_ranks(recipe: dict, tmp_path, hook: str):
    """`recipe train --gpus 2` (2 CPU ranks, gloo) with every rank logging; (out, rank 0's and rank 1's hook log)."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
           "RECIPE_KIT_HOOK_LOG_ALL_RANKS": "1"}
    proc = subprocess.run([sys.executable, "-m", "recipe.cli", "train", str(path), "--out", str(out), "--gpus", "2"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    folder = out / "stages" / "0-sft" / "hooks" / hook
    logs = [[json.loads(line) for line in (folder / name).read_text().splitlines()] for name in ("log.jsonl", "log.rank1.jsonl")]
    return out, logs[0], logs[1]


def test_two_ranks_make_the_same_hook_decisions(tmp_path):
    """Under a 2-process launch every rank builds the same Skill-it sampler from the same seed and
    evaluations (and takes rank 0's weights): both ranks log the same rounds."""
    from tests.training.test_hooks import _skill_recipe

    r = _skill_recipe()
    r["stages"][0].update(max_steps=6, save_steps=None, batch_size=4)
    out, rank0, rank1 = _train_on_two_ranks(r, tmp_path, "skill_it")
    assert len(rank0) == 2 and [r["weights"] for r in rank0] == [r["weights"] for r in rank1]
    assert rank0[1]["from_eval_at_step"] == 2
    exposure = json.loads((out / "manifest.json").read_text())["stages"][0]["exposure"]
    assert exposure["consumed"] == 6 * 4 * 2  # steps x per-device batch x 2 ranks


def test_mates_probes_on_both_ranks_and_trains_on_one_selection(tmp_path):
    """2 ranks: each probes half of the candidates, rank 0 fits and selects, both train on its selection."""
    from tests.training.test_mates import _recipe

    r = _recipe()
    r["stages"][0].update(max_steps=6, save_steps=None)
    out, rank0, rank1 = _train_on_two_ranks(r, tmp_path, "mates")
    assert [x["round"] for x in rank0] == [x["round"] for x in rank1] == [1]
    assert rank0[0]["probes_per_rank"] == [5, 5] and rank1[0]["probed_here"] == 5
    assert rank0[0]["selected_sha"] == rank1[0]["selected_sha"]
    assert rank0[0]["selected"] == 3 * 4 * 2  # select_every x per-device batch x 2 ranks
    exposure = json.loads((out / "manifest.json").read_text())["stages"][0]["exposure"]
    assert exposure["consumed"] == 6 * 4 * 2
