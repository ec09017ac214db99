"""The hook protocol: a training-time data method, shaped like a curation step.

A hook is a class with ``name``, ``version`` (in the stage's cache key), ``Params`` (pydantic,
``extra="forbid"``), ``stage_kinds`` and ``row_kinds`` it supports, ``needs_rows`` (per-row losses or
a per-row sampler: the stage must not pack rows into blocks), ``launchers`` (the launch profiles it
can run under), and any of:

* ``check(params, stage) -> str | None`` -- more checks at ``recipe validate`` (key path: the hook's);
* ``plan_cost(params, stage) -> str | None`` -- a costly cached preparation ``recipe plan`` lists;
* ``check_rows(params, rows, validation, stage) -> str | None`` -- data checks before any stage trains;
* ``prepare(rows, ctx) -> rows`` -- a transform of the stage's canonical rows, run once in the
  runner's process before the job (its drops are recorded in the ledger by the caller);
* ``sampler(trainer) -> torch Sampler`` -- the index stream of the trainer's dataset, epoch by epoch,
  a pure function of (seed, epoch, the hook's state), so every rank builds the same one and a resume
  replays it;
* ``compute_loss(trainer, model, inputs, ...)`` -- the loss of a micro-batch (a loss weighting);
* ``callbacks() -> [TrainerCallback]``;
* ``state() -> dict`` / ``load_state(dict)`` -- JSON state saved with every checkpoint
  (``checkpoint-N/hooks.json``) and restored by ``--resume``.

Every decision goes to ``stages/<stage>/hooks/<hook>/log.jsonl`` (``self.log``) with the global step;
``summary()`` reaches the manifest (and the card's plots).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HookError(RuntimeError):
    """A hook that cannot run on this stage or data (user-facing)."""


@dataclass
class HookContext:
    """What a hook gets: its stage, the stage's seed, where it writes, the job's extra inputs."""

    stage: Any
    seed: int
    stage_dir: Path
    validation: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)  # files the stage loop prepared for it
    run: Any = None  # in ``prepare`` only (the runner's process): the runner, to load models and rows


class Hook:
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = NoParams
    stage_kinds: ClassVar[frozenset[str]] = frozenset({"sft", "pretrain"})
    row_kinds: ClassVar[frozenset[str]] = frozenset({"chat", "verifiable", "preference", "text"})
    needs_rows: ClassVar[bool] = True
    launchers: ClassVar[frozenset[str]] = frozenset({"ddp", "fsdp2", "zero2", "zero3"})

    def __init__(self, params: BaseModel, ctx: HookContext):
        self.params = params
        self.ctx = ctx
        self.trainer = None
        self._log_path: Path | None = None

    # ------------------------------------------------------------------ protocol (all optional)
    @classmethod
    def check(cls, params: BaseModel, stage) -> str | None:
        return None

    @classmethod
    def prepare(cls, params: BaseModel, rows, ctx: HookContext):
        return rows

    @classmethod
    def check_rows(cls, params: BaseModel, rows, validation: dict, stage) -> str | None:
        """A problem with the stage's curated rows for this hook, found before any stage trains."""
        return None

    @classmethod
    def plan_cost(cls, params: BaseModel, stage) -> str | None:
        """A cached, costly preparation (e.g. a graph estimated by short runs): ``recipe plan`` lists it
        as a node (``ctx.inputs["cache_key"]`` in ``prepare``) with this description of its cost."""
        return None

    def sampler(self, trainer):
        return None

    compute_loss = None  # (trainer, model, inputs, return_outputs=False, num_items_in_batch=None) -> loss

    def callbacks(self) -> list:
        return []

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def summary(self) -> dict:
        return {}

    # ------------------------------------------------------------------ recording
    def log(self, record: dict) -> None:
        """One decision record; rank 0 writes it (every rank with RECIPE_KIT_HOOK_LOG_ALL_RANKS=1)."""
        rank = int(os.environ.get("RANK", "0"))
        if rank != 0 and not os.environ.get("RECIPE_KIT_HOOK_LOG_ALL_RANKS"):
            return
        folder = Path(self.ctx.stage_dir) / "hooks" / self.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ("log.jsonl" if rank == 0 else f"log.rank{rank}.jsonl")
        with open(path, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")


def world() -> tuple[int, int]:
    """(rank, world size) of this process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def broadcast(obj):
    """``obj`` as rank 0 has it, on every rank (a no-op on one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
