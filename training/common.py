"""What every stage shares: the context a kind's runner receives, HF ``TrainingArguments`` fields
from our stage config, LoRA config, checkpoint discovery for resume, and the atomic save of the
final model."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.models import bf16_available, has_gpu
from training.schedules import hf_scheduler_type


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]
    log_history: list[dict]


@dataclass
class StageContext:
    """Everything a stage kind's runner gets (``training.job.run_job`` builds it from a job file).

    ``train`` and ``validation`` hold canonical rows (``id``, ``skill``, ``metadata`` included); the
    kind converts them to its trainer's format with those columns kept. ``models`` maps a kind's
    ``extra_models`` keys (DPO's ``ref``) to resolved model directories (absent: ``previous``)."""

    stage: Any
    model: Any
    tokenizer: Any
    train: Any
    stage_dir: Path
    seed: int
    validation: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    continued: bool = False
    models: dict[str, str] = field(default_factory=dict)
    callbacks: list = field(default_factory=list)
    trainer_hooks: list = field(default_factory=list)  # fn(trainer, ctx), called once the trainer is built
    run_name: str = ""
    hook_inputs: dict = field(default_factory=dict)  # files the stage loop prepared for the stage's hooks

    def install(self, trainer) -> None:
        """What every kind installs on its (unchanged) TRL trainer: the lr schedule, the loss
        reduction (kinds that have one), the training-time data hooks (with the sampler and
        exposure accounting), then callbacks and trainer hooks."""
        from training import loss_reduction, schedules
        from training.hooks.install import install_hooks

        schedules.install(trainer, self.stage, self.stage_dir, continued=self.continued)
        reduction = getattr(self.stage, "loss_reduction", "mean")
        loss_reduction.install(trainer, reduction)
        install_hooks(trainer, self)
        for cb in self.callbacks:
            trainer.add_callback(cb)
        for hook in self.trainer_hooks:
            hook(trainer, self)

    def resume_from(self) -> str | None:
        return resume_checkpoint(self.stage_dir) if self.resume else None


def trainer_args(ctx: StageContext) -> dict[str, Any]:
    stage, stage_dir, seed = ctx.stage, Path(ctx.stage_dir), ctx.stage.effective_seed(ctx.seed)
    has_validation = bool(ctx.validation) and stage.validation is not None
    every = stage.validation.every if has_validation else None
    return dict(
        output_dir=str(stage_dir),
        num_train_epochs=stage.epochs,
        max_steps=stage.max_steps or -1,
        learning_rate=stage.lr,
        lr_scheduler_type=hf_scheduler_type(stage.lr_scheduler),  # wsd/infinite: see training.schedules.install
        warmup_steps=stage.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        per_device_train_batch_size=stage.batch_size,
        gradient_accumulation_steps=stage.grad_accum,
        weight_decay=stage.weight_decay,
        max_grad_norm=stage.max_grad_norm,
        logging_steps=stage.logging_steps,
        save_strategy="steps" if stage.save_steps else "no",
        save_steps=stage.save_steps or 500,
        seed=seed,
        data_seed=seed,
        use_cpu=not has_gpu(),
        bf16=bf16_available(),
        activation_checkpointing=stage.gradient_checkpointing,
        report_to=list(stage.report_to),
        run_name=ctx.run_name or stage_dir.name,
        dataloader_num_workers=0,
        save_only_model=False,
        eval_strategy=("steps" if every else "no") if has_validation else "no",
        eval_steps=every,
        per_device_eval_batch_size=stage.batch_size,
    )


def lora_config(spec, model=None):
    """PEFT ``LoraConfig`` for ``peft: {name: lora}``; None when ``model`` already carries an adapter
    (an unmerged LoRA stage before this one: the stage continues training that adapter)."""
    if spec is None:
        return None
    if model is not None:
        from accelerate.utils import is_peft_model

        if is_peft_model(model):
            return None
    from peft import LoraConfig

    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=spec.target_modules, task_type="CAUSAL_LM")


def checkpoint_problem(path: Path) -> str | None:
    """Why a ``checkpoint-N`` cannot be resumed from (None: it can).

    HF's ``Trainer._save_checkpoint`` writes ``trainer_state.json`` last, so a checkpoint cut short by
    a kill lacks it or has it unparsable. A checkpoint can also be damaged after the fact (a full disk,
    a copy cut short): its weights (safetensors headers and sizes) and its optimizer, scheduler and
    RNG files (torch archives) are opened too, without loading the tensors."""
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return "trainer_state.json is missing or unreadable (the save was cut short)"
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("pytorch_model*.bin"))
    if not weights:
        return "no model weights"
    for f in weights:
        problem = _safetensors_problem(f) if f.suffix == ".safetensors" else _torch_problem(f)
        if problem:
            return f"{f.name}: {problem}"
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        f = path / name
        if f.is_file():
            problem = _torch_problem(f)
            if problem:
                return f"{name}: {problem}"
    return None


def _safetensors_problem(f: Path) -> str | None:
    import struct

    try:
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if f.stat().st_size != 8 + n + end:
            return f"truncated ({f.stat().st_size} bytes, its header describes {8 + n + end})"
    except (OSError, ValueError, struct.error, KeyError, TypeError):
        return "not a readable safetensors file"
    return None


def _torch_problem(f: Path) -> str | None:
    import zipfile

    try:  # torch.save's format is a zip: a truncated archive has no readable central directory
        with zipfile.ZipFile(f) as z:
            end = max((i.header_offset + i.compress_size for i in z.infolist()), default=0)
        size = f.stat().st_size
        return f"truncated ({size} bytes, its entries reach byte {end})" if end > size else None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        return f"not a readable torch archive ({type(exc).__name__})"


def resume_checkpoint(stage_dir: Path, warn=None) -> str | None:
    """The newest ``checkpoint-N`` of a stage directory that can be resumed from, or None. Newer ones
    that cannot are skipped, each with a warning through ``warn`` (default: a Python warning)."""
    checkpoints = sorted((p for p in Path(stage_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                         key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for p in checkpoints:
        problem = checkpoint_problem(p)
        if problem is None:
            return str(p)
        message = f"skipping {p}: {problem}; falling back to an earlier checkpoint"
        if warn is not None:
            warn(message)
        else:
            import warnings

            warnings.warn(message, stacklevel=2)
    return None


def save_final(trainer, tokenizer, stage, stage_dir: Path, output) -> TrainResult:
    """Save the trained model to ``<stage_dir>/final`` atomically (temp dir, then rename).

    With LoRA, ``merge: true`` merges the adapter into the weights (the next stage starts from a
    plain model); ``merge: false`` saves the adapter alone (``adapter_config.json`` names the base),
    and ``training.models.load_model`` loads base + adapter for the next stage. Under a multi-process
    launch every rank joins the save (``Trainer.save_model`` gathers FSDP/ZeRO-3 shards) and the main
    process writes and renames."""
    from accelerate.utils import is_peft_model

    final = Path(stage_dir) / "final"
    tmp = Path(stage_dir) / "final.tmp"
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft_model(model) and stage.merge:
        if main:
            model.merge_and_unload().save_pretrained(tmp)
    else:
        trainer.save_model(str(tmp))
    history = trainer.state.log_history
    if main:
        tokenizer.save_pretrained(tmp)
        (tmp / "train_log.json").write_text(json.dumps(history, indent=1))
        for extra in ("training_args.bin",):
            (tmp / extra).unlink(missing_ok=True)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    trainer.accelerator.wait_for_everyone()
    return TrainResult(final, {**output.metrics, "num_tokens": tokens_processed(trainer)}, history)


def tokens_processed(trainer) -> int:
    """Tokens the stage processed (non-padding, all ranks), for the card's "uses" section.

    TRL counts them itself but only logs the running total at logging steps: SFT and DPO keep it in
    ``_total_train_tokens`` (reset by a resume, so the logged history and the trainer state, which
    a resume restores, are consulted too), GRPO in ``state.num_input_tokens_seen``."""
    logged = [h["num_tokens"] for h in trainer.state.log_history if isinstance(h.get("num_tokens"), (int, float))]
    return int(max([getattr(trainer, "_total_train_tokens", 0) or 0, trainer.state.num_input_tokens_seen or 0,
                    *logged]))
