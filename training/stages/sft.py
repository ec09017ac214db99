"""The ``sft`` stage kind: its config, our rows -> TRL's conversational format, ``SFTTrainer``.

Assistant-only loss relies on the chat template's ``{% generation %}`` markers (the tiny model's
template has them; for Hub models whose template lacks them, set ``assistant_only_loss: false``).
LoRA comes from PEFT (``peft: {name: lora, ...}``); with ``merge: true`` the adapter is merged so
the next stage starts from a plain model. CPU runs use ``use_cpu``; bf16 is used where a GPU
supports it. ``loss_reduction: sum`` is open-instruct's token sum (``training/loss_reduction.py``).

Rows: chat rows as they are; verifiable rows become the prompt plus an assistant turn holding the
worked solution when the source kept one (``metadata.solution``, e.g. GSM8K) or else the ground
truth; preference rows contribute prompt + chosen. ``id``, ``skill`` and ``metadata`` stay in the
trainer's dataset (TRL's tokenisation keeps extra columns; the Trainer drops them from the batches),
so training-time methods can read them.
"""

from __future__ import annotations

import json
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from training.common import StageContext, TrainResult, lora_config, save_final, trainer_args
from training.config import LOSS_REDUCTION, StageBase
from training.kinds import register_kind

KEEP = ["id", "source", "skill", "metadata"]


class SFTStage(StageBase):
    row_kinds: ClassVar[frozenset[str]] = frozenset({"chat", "verifiable", "preference"})

    kind: Literal["sft"]
    loss_reduction: Literal["mean", "sum"] = LOSS_REDUCTION
    packing: bool = False
    assistant_only_loss: bool = True
    chat_template_path: str | None = Field(
        None, description="a Jinja chat template (or a tokenizer dir) to train with, e.g. for a base model that has none")

    def row_kinds_hint(self, bad: set[str]) -> str:
        return " (use a `kind: pretrain` stage for plain text)" if "text" in bad else ""

    def length_problem(self, rows, tokenizer) -> str | None:
        """With assistant-only loss a row whose prompt fills ``max_length`` trains on nothing."""
        from pathlib import Path

        from training.stage_data import no_row_fits

        if not self.assistant_only_loss:
            return None
        template = None
        if self.chat_template_path and Path(self.chat_template_path).is_file():
            template = Path(self.chat_template_path).read_text()
        return no_row_fits(self, rows, tokenizer, chat_template=template)

    @field_validator("chat_template_path")
    @classmethod
    def _template_exists(cls, path):
        from pathlib import Path

        if path is not None and not Path(path).expanduser().exists():
            raise ValueError(f"{path}: no such file or folder (relative paths start at the current directory, "
                             f"{Path.cwd()})")
        return path


def to_sft(rows):
    """Canonical rows -> ``messages`` (+ ``id``, ``skill``, ``metadata``)."""

    def convert(row):
        if row["kind"] == "chat":
            return {"messages": row["messages"]}
        if row["kind"] == "preference":
            return {"messages": row["prompt"] + row["chosen"]}
        solution = json.loads(row["metadata"] or "{}").get("solution")
        return {"messages": row["prompt"] + [{"role": "assistant", "content": solution or row["ground_truth"]}]}

    drop = [c for c in rows.column_names if c not in KEEP]
    return rows.map(convert, remove_columns=drop, desc="sft format")


def run_sft(ctx: StageContext) -> TrainResult:
    from trl import SFTConfig, SFTTrainer

    stage = ctx.stage
    args = SFTConfig(
        **trainer_args(ctx),
        max_length=stage.max_length,
        packing=stage.packing,
        assistant_only_loss=stage.assistant_only_loss,
        chat_template_path=stage.chat_template_path,
    )
    evals = {name: to_sft(rows) for name, rows in ctx.validation.items()} or None
    trainer = SFTTrainer(model=ctx.model, args=args, train_dataset=to_sft(ctx.train), eval_dataset=evals,
                         processing_class=ctx.tokenizer, peft_config=lora_config(stage.peft, ctx.model))
    ctx.install(trainer)
    output = trainer.train(resume_from_checkpoint=ctx.resume_from())
    return save_final(trainer, ctx.tokenizer, stage, ctx.stage_dir, output)


register_kind("sft", SFTStage, run_sft)
