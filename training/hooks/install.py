"""Wire a stage's hooks into its (unchanged) TRL trainer: one ``install_hooks(trainer, ctx)`` call.

1. **Sampler.** The trainer's ``_get_train_sampler`` (private in transformers; its signature is
   checked here, and ``tests/training/test_hooks.py`` pins that the first update's rows are the
   sampler's first indices) returns the sampler hook's stream, or ``EpochShuffle`` (a per-epoch
   seeded permutation, the stock ``RandomSampler``'s distribution) when no hook chooses rows. At
   most one hook may choose rows. Packed stages keep TRL's own sampler (a block holds many rows).
2. **Loss.** A hook's ``compute_loss`` replaces the trainer's (a documented override point); at most one.
3. **Callbacks** of every hook, then one that keeps the hooks' state: written into
   ``checkpoint-N/hooks.json`` before the checkpoint's ``trainer_state.json`` (so a checkpoint is
   complete only with it), read back from the checkpoint a resume starts from; it also records epoch
   starts for exposure, and at the end writes exposure and each hook's summary
   (``<stage_dir>/hooks/summary.json``, which the stage loop puts in the manifest for the card).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from training.hooks import HOOKS
from training.hooks.base import Hook, HookContext, HookError
from training.hooks.exposure import ExposureRecorder
from training.hooks.samplers import EpochShuffle

HOOKS_FILE = "hooks.json"


def hook_entries(stage) -> list[tuple[str, dict]]:
    out = []
    for item in getattr(stage, "hooks", None) or []:
        (name, options), = item.items()
        out.append((name, dict(options or {})))
    return out


def build_hooks(stage, ctx) -> list:
    hctx = HookContext(stage=stage, seed=stage.effective_seed(ctx.seed), stage_dir=Path(ctx.stage_dir),
                       validation=ctx.validation, inputs=getattr(ctx, "hook_inputs", {}) or {})
    hooks = []
    for name, options in hook_entries(stage):
        cls = HOOKS.get(name)
        hooks.append(cls(cls.Params.model_validate(options), hctx))
    return hooks


def _overrides(hook, attr: str) -> bool:
    return getattr(type(hook), attr) is not getattr(Hook, attr)


def _patch_sampler(trainer, sampler) -> None:
    params = list(inspect.signature(type(trainer)._get_train_sampler).parameters)
    if params[0] != "self" or len(params) > 2:
        raise HookError(f"{type(trainer).__name__}._get_train_sampler{inspect.signature(type(trainer)._get_train_sampler)}: "
                        "an unexpected signature (transformers changed it?); the hooks' sampler cannot be installed")

    def _get_train_sampler(*args, **kwargs):
        return sampler

    trainer._get_train_sampler = _get_train_sampler


def install_hooks(trainer, ctx) -> list:
    from transformers import TrainerCallback

    stage = ctx.stage
    hooks = build_hooks(stage, ctx)
    for h in hooks:
        h.trainer = trainer
    resume_from = ctx.resume_from()
    state = {}
    if resume_from and (Path(resume_from) / HOOKS_FILE).is_file():
        state = json.loads((Path(resume_from) / HOOKS_FILE).read_text())
    for h in hooks:
        h.load_state(state.get(h.name, {}))

    choosers = [h for h in hooks if _overrides(h, "sampler")]
    if len(choosers) > 1:
        raise HookError(f"hooks {[h.name for h in choosers]} all choose the rows; a stage takes one sampler hook")
    packed = bool(getattr(stage, "packing", False))
    exposure = None
    if not packed and stage.kind in ("sft", "pretrain", "dpo"):
        n, seed = len(trainer.train_dataset), stage.effective_seed(ctx.seed)
        sampler = choosers[0].sampler(trainer) if choosers else EpochShuffle(n, seed)
        _patch_sampler(trainer, sampler)
        exposure = ExposureRecorder(sampler, stage.name or Path(ctx.stage_dir).name, ctx.stage_dir)
        exposure.load_state(state.get("_exposure", {}))
    elif choosers:
        raise HookError(f"hook {choosers[0].name!r} chooses rows, which a {'packed ' if packed else ''}{stage.kind} stage "
                        "does not take")

    losses = [h for h in hooks if h.compute_loss is not None]
    if len(losses) > 1:
        raise HookError(f"hooks {[h.name for h in losses]} all weight the loss; a stage takes one")
    if losses:
        hook = losses[0]
        trainer.compute_loss = lambda model, inputs, return_outputs=False, num_items_in_batch=None: hook.compute_loss(
            trainer, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        trainer.loss_is_scaled_for_ga = False  # a per-micro-batch loss: the Trainer divides it by the accumulation
    for h in hooks:
        for cb in h.callbacks():
            trainer.add_callback(cb)

    class HookState(TrainerCallback):
        """Hook state into each checkpoint (before trainer_state.json), exposure, summaries."""

        def on_step_end(self, args, st, control, **kwargs):
            if control.should_save and trainer.is_world_process_zero():
                ckpt = Path(args.output_dir) / f"checkpoint-{st.global_step}"
                ckpt.mkdir(parents=True, exist_ok=True)
                record = {h.name: h.state() for h in hooks}
                if exposure is not None:
                    record["_exposure"] = exposure.state()
                (ckpt / HOOKS_FILE).write_text(json.dumps(record, default=float))
            return control

        def on_epoch_begin(self, args, st, control, **kwargs):
            if exposure is not None:
                exposure.on_epoch_begin(st)

        def on_train_end(self, args, st, control, **kwargs):
            summary = {h.name: h.summary() for h in hooks}
            if exposure is not None:
                summary["_exposure"] = exposure.write(trainer)
            if trainer.is_world_process_zero():
                folder = Path(ctx.stage_dir) / "hooks"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "summary.json").write_text(json.dumps(summary, indent=1, default=float))

    trainer.add_callback(HookState())
    return hooks
