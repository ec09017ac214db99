"""The command that runs one stage on several processes: ``accelerate launch`` with a shipped
profile, or ``torchrun`` for the CPU path.

Profiles are accelerate config files in ``training/launch_profiles/`` (ddp, fsdp2, zero2, zero3;
TRL's ``accelerate_configs`` without the process counts), so the same file serves any GPU count:
``--num_processes`` (total over machines), ``--num_machines``, ``--machine_rank``,
``--main_process_ip``/``--main_process_port`` and ``--mixed_precision`` go on the command line.

Why a torchrun path: on a CPU-only machine ``accelerate launch --cpu --num_processes 2`` (and a
MULTI_CPU config file) start ONE process (accelerate 1.15, measured in machine-notes.md), while
``torchrun --nproc_per_node 2`` starts two ranks that accelerate reads as
``DistributedType.MULTI_CPU`` (gloo), and the HF Trainer then runs data-parallel over them. So
``launcher: auto`` uses accelerate when a GPU is visible and torchrun otherwise; on CPU only the
``ddp`` profile means something (FSDP/DeepSpeed need GPUs), which :func:`launch_command` enforces.

The launched processes run ``python -m training.launch_stage JOB.json``: the runner prepared the
data and the start model beforehand and wrote everything the stage needs into the job file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from training.config import Strict

PROFILES_DIR = Path(__file__).resolve().parent / "launch_profiles"
PROFILES = ("ddp", "fsdp2", "zero2", "zero3")
ENTRY = "training.launch_stage"


class LaunchError(ValueError):
    """A launch that cannot work as configured (user-facing)."""


class LaunchSpec(Strict):
    """Run each stage under ``accelerate launch`` with a shipped profile (training/launch_profiles/).

    ``num_processes`` is the total over all machines (``--gpus N`` on the command line sets it);
    the multi-node keys pass through to ``accelerate launch``. ``launcher: torchrun`` runs the
    stage with ``torchrun`` instead (the CPU multi-process path; ``auto`` picks it when no GPU is
    visible)."""

    profile: Literal["ddp", "fsdp2", "zero2", "zero3"] = "ddp"
    num_processes: int | None = Field(None, ge=1)
    num_machines: int = Field(1, ge=1)
    machine_rank: int = Field(0, ge=0)
    main_process_ip: str | None = None
    main_process_port: int | None = Field(None, ge=1, le=65535)
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None
    launcher: Literal["auto", "accelerate", "torchrun"] = "auto"

    @model_validator(mode="after")
    def _multi_node(self):
        if self.num_machines > 1 and not self.main_process_ip:
            raise ValueError("a multi-machine launch (num_machines > 1) needs `main_process_ip`")
        if self.machine_rank >= self.num_machines:
            raise ValueError(f"machine_rank {self.machine_rank} must be below num_machines {self.num_machines}")
        return self


def resolve_launch(spec: LaunchSpec | None, gpus: int | None) -> LaunchSpec | None:
    """The launch to use, or None for in-process: ``--gpus N`` overrides ``launch.num_processes``; a
    launch block without a count uses every visible GPU (in-process on a CPU-only machine)."""
    if gpus is None and spec is None:
        return None
    spec = (spec or LaunchSpec()).model_copy()
    if gpus is not None:
        spec.num_processes = gpus
    if not spec.num_processes:
        from training.models import has_gpu

        if not has_gpu():
            return None
        import torch

        spec.num_processes = torch.cuda.device_count() * spec.num_machines
    if spec.num_processes == 1 and spec.num_machines == 1:
        return None
    return spec


def profile_path(profile: str) -> Path:
    if profile not in PROFILES:
        raise LaunchError(f"unknown launch profile {profile!r}; shipped: {', '.join(PROFILES)}")
    return PROFILES_DIR / f"{profile}.yaml"


def resolve_launcher(launcher: str, gpu: bool) -> str:
    if launcher == "auto":
        return "accelerate" if gpu else "torchrun"
    return launcher


def launch_command(launch, job_path: str | Path, *, gpu: bool, python: str | None = None) -> list[str]:
    """The argv that runs the stage described by ``job_path`` under ``launch`` (a ``LaunchSpec``).

    ``launch.num_processes`` must be set (``--gpus N`` sets it) and is the total over all machines."""
    python = python or sys.executable
    n = launch.num_processes
    if not n:
        raise LaunchError("launch.num_processes is not set; give `--gpus N` or `launch: {num_processes: N}`")
    launcher = resolve_launcher(launch.launcher, gpu)
    if launcher == "accelerate":
        cmd = [python, "-m", "accelerate.commands.launch", "--config_file", str(profile_path(launch.profile)),
               "--num_processes", str(n), "--num_machines", str(launch.num_machines),
               "--machine_rank", str(launch.machine_rank)]
        if launch.main_process_ip:
            cmd += ["--main_process_ip", launch.main_process_ip]
        if launch.main_process_port:
            cmd += ["--main_process_port", str(launch.main_process_port)]
        if launch.mixed_precision:
            cmd += ["--mixed_precision", launch.mixed_precision]
        elif not gpu:
            cmd += ["--mixed_precision", "no"]
        return cmd + ["-m", ENTRY, str(job_path)]
    if launch.profile != "ddp":
        raise LaunchError(f"launch profile {launch.profile!r} needs GPUs (accelerate launch); the torchrun path "
                          "runs plain data-parallel only: use `launch.profile: ddp`")
    if n % launch.num_machines:
        raise LaunchError(f"num_processes {n} is not a multiple of num_machines {launch.num_machines}")
    cmd = [python, "-m", "torch.distributed.run", "--nproc_per_node", str(n // launch.num_machines),
           "--nnodes", str(launch.num_machines), "--node_rank", str(launch.machine_rank)]
    if launch.main_process_ip:
        cmd += ["--master_addr", launch.main_process_ip]
    if launch.main_process_port:
        cmd += ["--master_port", str(launch.main_process_port)]
    elif launch.num_machines == 1:
        cmd += ["--standalone"]
    return cmd + ["-m", ENTRY, str(job_path)]
