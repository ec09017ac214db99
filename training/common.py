"""What every stage shares: HF ``TrainingArguments`` fields from our stage config, LoRA config,
checkpoint discovery for resume, and the atomic save of the final model."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.models import bf16_available, has_gpu


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
        lr_scheduler_type=stage.lr_scheduler,
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


def lora_config(spec):
    if spec is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=spec.target_modules, task_type="CAUSAL_LM")


def resume_checkpoint(stage_dir: Path) -> str | None:
    checkpoints = sorted(Path(stage_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def save_final(trainer, tokenizer, stage, stage_dir: Path, output) -> TrainResult:
    """Save the trained model to ``<stage_dir>/final`` atomically (temp dir, then rename)."""
    final = Path(stage_dir) / "final"
    tmp = Path(stage_dir) / "final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model = trainer.model
    if stage.peft is not None and stage.merge:
        model = model.merge_and_unload()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    history = trainer.state.log_history
    (tmp / "train_log.json").write_text(json.dumps(history, indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return TrainResult(final, dict(output.metrics), history)
