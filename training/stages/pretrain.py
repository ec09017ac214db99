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

Document order (``order``): ``dataset`` (default) packs the documents in the curated dataset's
order -- TRL's ``shuffle_dataset`` stays off, so ``wrapped`` packing concatenates them as they come
and only the finished windows are shuffled by the trainer's sampler: documents are never moved
between windows. That is what an ordering step needs (``iclm``: related documents next to each other
share a window). ``shuffle`` shuffles the documents (seeded) before packing (TRL's
``shuffle_dataset``): random packing of the same documents, ICLM's baseline. An unordered dataset is
already in the mixture's seeded random order, so ``dataset`` is random packing there too.
``recipe validate`` refuses ``packing_strategy: bfd`` (it regroups documents by length) and
``packing: false`` on the dataset of an ordering step unless ``order: shuffle`` says the order may go.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

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
    order: Literal["dataset", "shuffle"] = Field("dataset", description="dataset: pack documents in the curated order "
                                                 "(an iclm order is kept; windows are shuffled, documents never move "
                                                 "between them); shuffle: shuffle documents before packing")

    def row_kinds_hint(self, bad: set[str]) -> str:
        return " (use a `kind: sft` stage for chat/verifiable data, or a source with `kind: text`)"

    def check_rows(self, rows) -> None:
        require_kinds(self, rows)
        if all(not t for t in rows["text"]):
            raise StageDataError(f"dataset {self.data!r}: every text row is empty")


def to_text(rows):
    """Text rows -> a ``text`` column (+ ``id``, ``source``, ``skill``, ``metadata``); empty texts dropped.

    Rows a ``meco`` hook prepared (``metadata.meco_prefix``) become TRL's prompt-completion form
    instead -- ``prompt`` = the metadata prefix (context, never a target), ``completion`` = the
    document -- so TRL masks the prefix's labels and appends EOS to the document."""
    import json

    kinds = set(rows["kind"])
    if kinds - {"text"}:
        raise StageDataError(f"a pretrain stage needs text rows; this dataset has {sorted(kinds - {'text'})} rows "
                             "(use a `kind: sft` stage for chat/verifiable data, or a source with `kind: text`)")
    empty = sum(1 for t in rows["text"] if not t)
    if empty == len(rows):
        raise StageDataError("every text row of this dataset is empty")
    if empty and any("meco_prefix" in (m or "") for m in rows["metadata"]):
        raise StageDataError("empty text rows in a meco stage: curate them away (e.g. a length step)")
    rows = rows.filter(lambda r: bool(r["text"]), desc="drop empty text") if empty else rows
    keep = ["id", "source", "skill", "metadata"]
    if any("meco_prefix" in (m or "") for m in rows["metadata"][:1]):
        return rows.map(lambda r: {"prompt": json.loads(r["metadata"])["meco_prefix"], "completion": r["text"]},
                        remove_columns=[c for c in rows.column_names if c not in keep], desc="metadata prefix")
    return rows.select_columns(["text", *keep])


def build_trainer(ctx: StageContext):
    """The TRL trainer for a pretrain stage, its dataset tokenised (and packed)."""
    from trl import SFTConfig, SFTTrainer

    stage = ctx.stage
    train = to_text(ctx.train)
    args = SFTConfig(
        **trainer_args(ctx),
        dataset_text_field="text",
        max_length=stage.max_length,
        packing=stage.packing,
        packing_strategy=stage.packing_strategy,
        shuffle_dataset=stage.order == "shuffle",  # off: documents are packed in dataset order (an iclm order)
        completion_only_loss="prompt" in train.column_names,  # a metadata prefix (meco) is context, not a target
        assistant_only_loss=False,
    )
    evals = {name: to_text(rows) for name, rows in ctx.validation.items()} or None
    return SFTTrainer(model=ctx.model, args=args, train_dataset=train, eval_dataset=evals,
                      processing_class=ctx.tokenizer, peft_config=lora_config(stage.peft, ctx.model))


def run_pretrain(ctx: StageContext) -> TrainResult:
    trainer = build_trainer(ctx)
    ctx.install(trainer)
    output = trainer.train(resume_from_checkpoint=ctx.resume_from())
    return save_final(trainer, ctx.tokenizer, ctx.stage, ctx.stage_dir, output)


register_kind("pretrain", PretrainStage, run_pretrain)
