"""The SFT stage: our stage config -> TRL ``SFTConfig`` -> ``SFTTrainer``.

Assistant-only loss relies on the chat template's ``{% generation %}`` markers (the tiny model's
template has them; for Hub models whose template lacks them, set ``assistant_only_loss: false``).
LoRA comes from PEFT (``peft: {name: lora, ...}``); with ``merge: true`` the adapter is merged so
the next stage starts from a plain model. CPU runs use ``use_cpu``; bf16 is used where a GPU
supports it.
"""

from __future__ import annotations

from pathlib import Path

from training import loss_reduction, schedules
from training.common import TrainResult, lora_config, resume_checkpoint, save_final, trainer_args
from training.stage_data import to_sft


def run_sft(stage, model, tokenizer, rows, stage_dir: Path, *, seed: int, resume: bool = False) -> TrainResult:
    from trl import SFTConfig, SFTTrainer

    train = to_sft(rows)
    args = SFTConfig(
        **trainer_args(stage, stage_dir, seed),
        max_length=stage.max_length,
        packing=stage.packing,
        assistant_only_loss=stage.assistant_only_loss,
        chat_template_path=stage.chat_template_path,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                         peft_config=lora_config(stage.peft, model))
    schedules.install(trainer, stage, stage_dir)
    loss_reduction.install(trainer, stage.loss_reduction)
    output = trainer.train(resume_from_checkpoint=resume_checkpoint(stage_dir) if resume else None)
    return save_final(trainer, tokenizer, stage, stage_dir, output)

