"""The launch command of each shipped profile, multi-node pass-through, and the CPU torchrun path."""

import sys
from pathlib import Path

import pytest
import yaml

from recipe.schema import LaunchSpec
from training.launch import PROFILES, PROFILES_DIR, LaunchError, launch_command

PY = "/usr/bin/python3"


@pytest.mark.parametrize("profile", PROFILES)
def test_accelerate_command_per_profile(profile):
    spec = LaunchSpec(profile=profile, num_processes=8)
    cmd = launch_command(spec, "/run/stages/0-sft/job.json", gpu=True, python=PY)
    assert cmd == [PY, "-m", "accelerate.commands.launch", "--config_file", str(PROFILES_DIR / f"{profile}.yaml"),
                   "--num_processes", "8", "--num_machines", "1", "--machine_rank", "0",
                   "-m", "training.launch_stage", "/run/stages/0-sft/job.json"]


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_are_accelerate_configs_without_process_counts(profile):
    cfg = yaml.safe_load((PROFILES_DIR / f"{profile}.yaml").read_text())
    assert cfg["distributed_type"] == {"ddp": "MULTI_GPU", "fsdp2": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}[profile]
    for key in ("num_processes", "num_machines", "machine_rank", "main_process_ip", "main_process_port"):
        assert key not in cfg
    if profile == "fsdp2":
        assert cfg["fsdp_config"]["fsdp_version"] == 2 and cfg["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if profile.startswith("zero"):
        assert cfg["deepspeed_config"]["zero_stage"] == int(profile[-1])


def test_multi_node_options_pass_through():
    spec = LaunchSpec(profile="zero3", num_processes=16, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1",
                      main_process_port=29501, mixed_precision="bf16")
    cmd = launch_command(spec, "job.json", gpu=True, python=PY)
    assert cmd == [PY, "-m", "accelerate.commands.launch", "--config_file", str(PROFILES_DIR / "zero3.yaml"),
                   "--num_processes", "16", "--num_machines", "2", "--machine_rank", "1",
                   "--main_process_ip", "10.0.0.1", "--main_process_port", "29501", "--mixed_precision", "bf16",
                   "-m", "training.launch_stage", "job.json"]


def test_cpu_path_is_torchrun():
    cmd = launch_command(LaunchSpec(num_processes=2), "job.json", gpu=False, python=PY)
    assert cmd == [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1", "--node_rank", "0",
                   "--standalone", "-m", "training.launch_stage", "job.json"]
    multi = LaunchSpec(num_processes=4, num_machines=2, machine_rank=1, main_process_ip="h0", main_process_port=1234,
                       launcher="torchrun")
    assert launch_command(multi, "j", gpu=True, python=PY) == [
        PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "2", "--node_rank", "1",
        "--master_addr", "h0", "--master_port", "1234", "-m", "training.launch_stage", "j"]


def test_bad_launches_are_clear():
    with pytest.raises(LaunchError, match="needs GPUs"):
        launch_command(LaunchSpec(profile="fsdp2", num_processes=2), "j", gpu=False)
    with pytest.raises(LaunchError, match="--gpus N"):
        launch_command(LaunchSpec(), "j", gpu=True)
    with pytest.raises(ValueError, match="main_process_ip"):
        LaunchSpec(num_machines=2, num_processes=4)


def test_launch_stage_does_not_import_the_runner():
    import subprocess

    code = ("import sys, training.launch_stage, training.launch, training.job, training.stage_loop, training.kinds, recipe.schema; "
            "bad = [m for m in ('recipe.run', 'recipe.cli') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stdout + out.stderr
