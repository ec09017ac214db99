"""The continued-pretraining stage: ``text`` rows -> causal-LM loss on every token, packed.

Why TRL ``SFTTrainer`` and not a hand-made packing collator: for a dataset with a ``text`` column
(TRL's "language modeling" format) SFTTrainer tokenises, appends EOS to every document, packs and
computes the loss on all tokens (``completion_only_loss`` and ``assistant_only_loss`` off), which
is exactly continued pretraining; it also gives us LoRA, resume and the launch profiles for free.
``packing_strategy: wrapped`` concatenates documents and cuts ``max_length`` blocks (GPT-style
pretraining, attention crosses document boundaries); ``bfd`` packs whole documents best-fit
(truncating overflow) and is padding-free, which only isolates documents with FlashAttention.
"""

from __future__ import annotations

from pathlib import Path

from training import loss_reduction, schedules
from training.common import TrainResult, lora_config, resume_checkpoint, save_final, trainer_args
from training.stage_data import to_text


def build_trainer(stage, model, tokenizer, rows, stage_dir: Path, *, seed: int):
    """The TRL trainer for a pretrain stage, its dataset tokenised and packed."""
    from trl import SFTConfig, SFTTrainer

    train = to_text(rows)
    args = SFTConfig(
        **trainer_args(stage, stage_dir, seed),
        dataset_text_field="text",
        max_length=stage.max_length,
        packing=stage.packing,
        packing_strategy=stage.packing_strategy,
        completion_only_loss=False,
        assistant_only_loss=False,
    )
    return SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                      peft_config=lora_config(stage.peft, model))


def run_pretrain(stage, model, tokenizer, rows, stage_dir: Path, *, seed: int, resume: bool = False) -> TrainResult:
    trainer = build_trainer(stage, model, tokenizer, rows, stage_dir, seed=seed)
    schedules.install(trainer, stage, stage_dir)
    loss_reduction.install(trainer, stage.loss_reduction)
    output = trainer.train(resume_from_checkpoint=resume_checkpoint(stage_dir) if resume else None)
    return save_final(trainer, tokenizer, stage, stage_dir, output)
