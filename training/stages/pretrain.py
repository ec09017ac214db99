"""The ``pretrain`` stage kind (continued pretraining): ``text`` rows -> causal-LM loss on every token.

Why TRL ``SFTTrainer`` and not a hand-made packing collator: for a dataset with a ``text`` column
(TRL's "language modeling" format) SFTTrainer tokenises, appends EOS to every document, packs and
computes the loss on all tokens (``completion_only_loss`` and ``assistant_only_loss`` off), which
is exactly continued pretraining; it also gives us LoRA, resume and the launch profiles for free.
``packing_strategy: wrapped`` concatenates documents and cuts ``max_length`` blocks (GPT-style
pretraining, attention crosses document boundaries); ``bfd`` packs whole documents best-fit
(truncating overflow) and is padding-free, which only isolates documents with FlashAttention.
Without packing each document is one (truncated) sequence, and ``id``, ``skill`` and ``metadata``
stay in the trainer's dataset.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from training.common import StageContext, TrainResult, lora_config, save_final, trainer_args
from training.config import LOSS_REDUCTION, StageBase
from training.kinds import register_kind
from training.stage_data import StageDataError, require_kinds


class PretrainStage(StageBase):
    """Continued pretraining: causal-LM loss on every token of ``text`` rows, documents packed into
    ``max_length`` blocks (``wrapped``: concatenated with EOS and cut, as in GPT-style pretraining;
    ``bfd``: best-fit packing without cutting documents)."""

    row_kinds: ClassVar[frozenset[str]] = frozenset({"text"})

    kind: Literal["pretrain"]
    loss_reduction: Literal["mean", "sum"] = LOSS_REDUCTION
    packing: bool = True
    packing_strategy: Literal["wrapped", "bfd"] = "wrapped"

    def row_kinds_hint(self, bad: set[str]) -> str:
        return " (use a `kind: sft` stage for chat/verifiable data, or a source with `kind: text`)"

    def check_rows(self, rows) -> None:
        require_kinds(self, rows)
        if all(not t for t in rows["text"]):
            raise StageDataError(f"dataset {self.data!r}: every text row is empty")


def to_text(rows):
    """Text rows -> a ``text`` column (+ ``id``, ``skill``, ``metadata``); empty texts dropped."""
    kinds = set(rows["kind"])
    if kinds - {"text"}:
        raise StageDataError(f"a pretrain stage needs text rows; this dataset has {sorted(kinds - {'text'})} rows "
                             "(use a `kind: sft` stage for chat/verifiable data, or a source with `kind: text`)")
    empty = sum(1 for t in rows["text"] if not t)
    if empty == len(rows):
        raise StageDataError("every text row of this dataset is empty")
    rows = rows.filter(lambda r: bool(r["text"]), desc="drop empty text") if empty else rows
    return rows.select_columns(["text", "id", "skill", "metadata"])


def build_trainer(ctx: StageContext):
    """The TRL trainer for a pretrain stage, its dataset tokenised (and packed)."""
    from trl import SFTConfig, SFTTrainer

    stage = ctx.stage
    args = SFTConfig(
        **trainer_args(ctx),
        dataset_text_field="text",
        max_length=stage.max_length,
        packing=stage.packing,
        packing_strategy=stage.packing_strategy,
        completion_only_loss=False,
        assistant_only_loss=False,
    )
    evals = {name: to_text(rows) for name, rows in ctx.validation.items()} or None
    return SFTTrainer(model=ctx.model, args=args, train_dataset=to_text(ctx.train), eval_dataset=evals,
                      processing_class=ctx.tokenizer, peft_config=lora_config(stage.peft, ctx.model))


def run_pretrain(ctx: StageContext) -> TrainResult:
    trainer = build_trainer(ctx)
    ctx.install(trainer)
    output = trainer.train(resume_from_checkpoint=ctx.resume_from())
    return save_final(trainer, ctx.tokenizer, ctx.stage, ctx.stage_dir, output)


register_kind("pretrain", PretrainStage, run_pretrain)
