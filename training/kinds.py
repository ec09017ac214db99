"""Stage kinds by name: each is one file (``training/stages/<kind>.py``) holding its config model and
its runner, registered here when imported. Every module of ``training/stages/`` is imported, so adding
a kind is that one file plus a test; the recipe schema's ``stages:`` union (``recipe.schema``), the
key lists for "did you mean", the data checks and the model references all come from this registry.

A kind's runner is ``run(ctx: training.common.StageContext) -> TrainResult``: it turns the config
into its TRL config, builds the trainer on ``ctx.datasets["train"]`` (and ``ctx.eval_datasets``),
calls ``ctx.install(trainer)`` (the lr schedule, loss reduction and training-time hooks), trains and
saves. ``prepare`` (optional) is the kind's single-process data preparation, run by the stage loop
before the job starts, never inside a launched job (DPO's pairs from verifiable rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from curation.registry import Registry

def load_builtin_kinds() -> None:
    """Import every module of ``training.stages`` (each registers its kind), in a fixed order."""
    import importlib
    import pkgutil

    import training.stages as package

    first = ("sft", "pretrain", "dpo", "rlvr")  # the built-ins' order (error messages, docs)
    found = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    for name in [n for n in first if n in found] + [n for n in found if n not in first]:
        importlib.import_module(f"training.stages.{name}")


@dataclass(frozen=True)
class StageKind:
    name: str
    config: type  # a training.config.StageBase subclass with `kind: Literal[name]`
    run: Callable[..., Any]
    prepare: Callable[..., Any] | None = None


STAGE_KINDS: Registry[StageKind] = Registry("stage kind", builtins=load_builtin_kinds)


def register_kind(name: str, config: type, run: Callable[..., Any], prepare: Callable[..., Any] | None = None) -> StageKind:
    kind = StageKind(name, config, run, prepare)
    STAGE_KINDS.register(name)(kind)
    return kind


def stage_models() -> dict[str, type]:
    """kind name -> its config model."""
    return {name: STAGE_KINDS.get(name).config for name in STAGE_KINDS.names()}
