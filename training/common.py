"""What every stage shares: HF ``TrainingArguments`` fields from our stage config, LoRA config,
checkpoint discovery for resume, and the atomic save of the final model."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.models import bf16_available, has_gpu
from training.schedules import hf_scheduler_type


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]
    log_history: list[dict]


def trainer_args(stage, stage_dir: Path, seed: int) -> dict[str, Any]:
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
        seed=stage.seed if stage.seed is not None else seed,
        data_seed=stage.seed if stage.seed is not None else seed,
        use_cpu=not has_gpu(),
        bf16=bf16_available(),
        activation_checkpointing=stage.gradient_checkpointing,
        report_to=[],
        dataloader_num_workers=0,
        save_only_model=False,
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


def _complete_checkpoint(path: Path) -> bool:
    """HF's ``Trainer._save_checkpoint`` writes ``trainer_state.json`` last (after the weights,
    optimizer, scheduler and RNG states), so a checkpoint whose state file parses is complete; one
    cut short by a kill is skipped."""
    try:
        json.loads((path / "trainer_state.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def resume_checkpoint(stage_dir: Path) -> str | None:
    """The last complete ``checkpoint-N`` of a stage directory, or None."""
    checkpoints = sorted((p for p in Path(stage_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                         key=lambda p: int(p.name.split("-")[-1]))
    complete = [p for p in checkpoints if _complete_checkpoint(p)]
    return str(complete[-1]) if complete else None


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
