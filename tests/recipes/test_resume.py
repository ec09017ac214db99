"""Resume after a kill: a `recipe train` subprocess is SIGKILLed after its first checkpoint, then
`--resume` continues the unfinished stage from its last complete checkpoint (curation is served
from the cache, finished stages are not redone) and ends where an uninterrupted run ends. Also:
an incompatible recipe change is refused naming the changed keys; `--resume` with nothing to
resume is a clear error; a run killed while a curation step writes leaves no entry a later run
trusts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tiny_recipe

STEPS, EVERY = 60, 10


def _recipe(tmp: Path, **stage) -> Path:
    r = tiny_recipe(eval={})
    r["stages"] = [
        {"kind": "sft", "data": "sft", "max_steps": 4, "lr": 1e-3, "batch_size": 8, "max_length": 48, "logging_steps": 1},
        {"kind": "sft", "data": "sft", "max_steps": STEPS, "lr": 1e-3, "batch_size": 8, "max_length": 48,
         "logging_steps": 1, "save_steps": EVERY, "lr_scheduler": "cosine", "warmup_ratio": 0.1, **stage},
    ]
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _start(recipe: Path, out: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "recipe.cli", "train", str(recipe), "--out", str(out), *extra],
                            env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed:\n" + proc.stdout.read()[-3000:])
        time.sleep(0.02)
    proc.kill()
    pytest.fail("timed out waiting for the kill point")


def _final_weights(stage_final: Path):
    from safetensors.torch import load_file

    return load_file(str(stage_final / "model.safetensors"))


@pytest.fixture(scope="module")
def killed_and_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    recipe = _recipe(tmp)
    out = tmp / "killed"
    first_ckpt = out / "stages" / "1-sft" / f"checkpoint-{EVERY}" / "trainer_state.json"
    _kill_when(_start(recipe, out), first_ckpt.is_file)
    ref = subprocess.run([sys.executable, "-m", "recipe.cli", "train", str(recipe), "--out", str(tmp / "ref")],
                         env=_env(), cwd=ROOT, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    return tmp, recipe, out


def test_killed_run_state(killed_and_reference):
    _, _, out = killed_and_reference
    sdir = out / "stages" / "1-sft"
    assert not (sdir / "final").exists()
    assert json.loads((sdir / "stage.json").read_text())["status"] == "running"
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["done", "running"]


def test_incompatible_change_is_refused_with_the_keys(killed_and_reference, cli):
    _, recipe, out = killed_and_reference
    result = cli("train", recipe, "--out", out, "--resume", "stages.1.lr=5e-3", "stages.1.batch_size=4")
    assert result.exit_code == 1
    assert "cannot resume stage 1-sft" in result.output
    assert "stage.lr" in result.output and "stage.batch_size" in result.output
    assert "Traceback" not in result.output


def test_resume_continues_and_matches_uninterrupted(killed_and_reference):
    tmp, recipe, out = killed_and_reference
    sdir = out / "stages" / "1-sft"
    first_done = (out / "stages" / "0-sft" / "final" / "model.safetensors").stat().st_mtime
    ckpts = sorted(int(p.name.split("-")[1]) for p in sdir.glob("checkpoint-*") if (p / "trainer_state.json").is_file())
    proc = subprocess.run([sys.executable, "-m", "recipe.cli", "train", str(recipe), "--out", str(out), "--resume"],
                          env=_env(), cwd=ROOT, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "resuming" in log and "done (cached)" in log  # stage 0 not redone
    assert "cached" in log  # curation served from the cache
    assert (out / "stages" / "0-sft" / "final" / "model.safetensors").stat().st_mtime == first_done
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"][1]["status"] == "done"
    assert manifest["stages"][1]["resumed_from"].endswith(f"checkpoint-{ckpts[-1]}")
    # the resumed trainer continued the step count from the checkpoint
    history = json.loads((sdir / "final" / "train_log.json").read_text())
    steps = [r["step"] for r in history if "loss" in r]
    assert steps[-1] == STEPS
    # same data order and RNG: the weights end where the uninterrupted run's end
    import torch

    a, b = _final_weights(sdir / "final"), _final_weights(tmp / "ref" / "stages" / "1-sft" / "final")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5), name
    ref_hist = json.loads((tmp / "ref" / "stages" / "1-sft" / "final" / "train_log.json").read_text())
    ref_loss = {r["step"]: r["loss"] for r in ref_hist if "loss" in r}
    for r in history:
        if "loss" in r and r["step"] > ckpts[-1]:
            assert r["loss"] == pytest.approx(ref_loss[r["step"]], abs=1e-4)


def test_resume_with_nothing_to_resume(tmp_path, cli):
    recipe = _recipe(tmp_path)
    result = cli("train", recipe, "--out", tmp_path / "empty", "--resume")
    assert result.exit_code == 1
    assert "nothing to resume" in result.output and "Traceback" not in result.output


def _fake_checkpoint(path, state='{"global_step": 1}'):
    import torch
    from safetensors.torch import save_file

    path.mkdir()
    save_file({"w": torch.zeros(64, 64)}, str(path / "model.safetensors"))
    torch.save({"state": {0: {"exp_avg": torch.zeros(64, 64)}}}, path / "optimizer.pt")
    torch.save({"last_epoch": 1}, path / "scheduler.pt")
    (path / "trainer_state.json").write_text(state)


def _truncate(f, keep=0.5):
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * keep)])


def test_incomplete_checkpoint_is_not_trusted(tmp_path):
    from training.common import resume_checkpoint

    _fake_checkpoint(tmp_path / "checkpoint-10")
    _fake_checkpoint(tmp_path / "checkpoint-20", state='{"glob')  # cut short by a kill
    assert resume_checkpoint(tmp_path).endswith("checkpoint-10")


@pytest.mark.parametrize("damaged", ["optimizer.pt", "model.safetensors", "scheduler.pt"])
def test_corrupt_newest_checkpoint_falls_back_with_a_warning(tmp_path, damaged):
    from training.common import checkpoint_problem, resume_checkpoint

    for n in (10, 20, 30):
        _fake_checkpoint(tmp_path / f"checkpoint-{n}")
    _truncate(tmp_path / "checkpoint-30" / damaged)
    assert checkpoint_problem(tmp_path / "checkpoint-20") is None
    warnings = []
    assert resume_checkpoint(tmp_path, warn=warnings.append).endswith("checkpoint-20")
    assert len(warnings) == 1 and "checkpoint-30" in warnings[0] and damaged in warnings[0]


def test_kill_during_a_curation_step_leaves_no_trusted_entry(tmp_path):
    from recipe.cache import COMPLETE

    r = tiny_recipe(eval={}, stages=[])
    r["selection"] = {"sft": [{"tests.recipes.slow_step:SlowKeepAll": {"seconds": 30}}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    out = tmp_path / "out"
    step_dir = out / "cache" / "step"
    _kill_when(_start(path, out), lambda: step_dir.is_dir() and any(step_dir.glob("*.tmp-*/work")))
    assert not [p for p in step_dir.iterdir() if (p / COMPLETE).is_file()]  # nothing a later run trusts
    assert any(step_dir.glob("*.tmp-*"))
    from recipe.load import load_recipe
    from recipe.run import Runner

    runner = Runner(load_recipe(path), out=out)  # the same recipe again
    assert not any(step_dir.glob("*.tmp-*"))  # the leftover was swept
    assert [n.cached for n in runner.plan.of_kind("step")] == [False]  # and the step will run again
