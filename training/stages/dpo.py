"""The ``dpo`` stage kind: its config (``loss``, ``beta``, ``ref``, ``pairs``) -> TRL ``DPOConfig`` -> ``DPOTrainer``.

Losses (``loss:``), both TRL built-ins, chosen by ``DPOConfig.loss_type``:

* ``sigmoid`` -- standard DPO (Rafailov et al. 2023, Eq. 7):
  L = -log σ(β[(log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x))]),
  log-probs summed over the completion tokens.
* ``dpo_norm`` -- Tülu 3's length-normalised DPO (open-instruct ``dpo_utils.py``,
  ``average_log_prob=True``; methods.md §7):
  L = -log σ(β[(log π(y_w|x) - log π_ref(y_w|x))/|y_w| - (log π(y_l|x) - log π_ref(y_l|x))/|y_l|]),
  |y| = the number of completion tokens (EOS included), the reference averaged the same way.
  TRL 1.16's ``loss_type="sigmoid_norm"`` computes exactly this (the summed log-ratio of each
  response divided by its completion-token count); ``tests/training/test_dpo_loss.py`` checks it
  against a hand computation, so no custom loss is needed.

Reference model (``ref:``), stated, never implied: ``previous`` (default) is the stage's starting
model (a frozen copy; with ``peft:`` TRL instead uses the policy with its LoRA adapter disabled,
which is the same weights without a second copy); ``base``, an earlier stage's name, or a path are
resolved to a model directory by the runner and loaded as a separate frozen model (this works with
``peft:`` too: TRL then uses that model instead of the adapter-disabled policy).

Pairs: preference rows as they are; verifiable rows with ``pairs:`` (``training/pairs.py``), built
by :func:`prepare_dpo` in the runner's single process before the job starts (never on every rank of
a launched job: ``rejected: sample`` would draw different pairs per rank), recorded in the ledger once.
TRL 1.16 has no ``max_prompt_length``: ``max_length`` bounds prompt + completion, truncating the
end (``keep_start``); a pair whose prompt alone reaches ``max_length`` is dropped by TRL.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from training.common import StageContext, TrainResult, lora_config, save_final, trainer_args
from training.config import StageBase, Strict
from training.kinds import register_kind
from training.stage_data import StageDataError, require_kinds

LOSS_TYPES = {"sigmoid": "sigmoid", "dpo_norm": "sigmoid_norm"}


class PairsSpec(Strict):
    """Build preference pairs from ``verifiable`` rows (``training/pairs.py``): chosen = the worked
    solution (``metadata.solution``) or the ground truth; rejected = a wrong answer, either a
    ``perturb``-ed ground truth (numbers only: a seeded offset) or ``sample``-d from the stage's
    starting model and failed by the row's verifier (falling back to a perturbed answer when every
    sample passes)."""

    rejected: Literal["perturb", "sample"] = "perturb"
    num_samples: int = Field(4, ge=1, description="sample: completions drawn per prompt")
    max_new_tokens: int = Field(32, ge=1, description="sample: length of each drawn completion")
    temperature: float = Field(1.0, gt=0, description="sample: sampling temperature")


class DPOStage(StageBase):
    """DPO on TRL's ``DPOTrainer``. ``loss: sigmoid`` is standard DPO (Rafailov et al. 2023, Eq. 7);
    ``dpo_norm`` is Tülu 3's length-normalised DPO (TRL's ``sigmoid_norm``). ``ref`` is the reference
    model: ``previous`` (the stage's starting model), ``base``, an earlier stage's name, or a model
    path. With ``peft:`` and ``ref: previous`` TRL uses the policy with its adapter disabled as the
    reference (the same weights, no second copy)."""

    row_kinds: ClassVar[frozenset[str]] = frozenset({"preference"})
    extra_models: ClassVar[tuple[str, ...]] = ("ref",)

    kind: Literal["dpo"]
    lr: float = Field(5e-7, gt=0)
    loss: Literal["sigmoid", "dpo_norm"] = "sigmoid"
    beta: float = Field(0.1, gt=0)
    ref: str = Field("previous", description="'previous' (default), 'base', an earlier stage's name, or a model path")
    pairs: PairsSpec | None = Field(None, description="build pairs from verifiable rows (else: preference rows only)")
    precompute_ref_log_probs: bool = False

    def accepted_row_kinds(self) -> frozenset[str]:
        return frozenset({"preference", "verifiable"}) if self.pairs is not None else self.row_kinds

    def length_problem(self, rows, tokenizer) -> str | None:
        """TRL drops a pair whose prompt alone reaches ``max_length``."""
        from training.stage_data import no_row_fits

        return no_row_fits(self, rows, tokenizer)

    def row_kinds_hint(self, bad: set[str]) -> str:
        hint = ("; verifiable rows become pairs with the stage option `pairs: {rejected: perturb}` (or `sample`)"
                if "verifiable" in bad else "")
        return (f" (a dpo stage needs preference rows: prompt, chosen, rejected{hint}. Chat rows have no rejected "
                "answer: use them in an sft stage, or a preference source, e.g. format: hh_rlhf)")


def to_preference(rows):
    """Preference rows -> TRL conversational preference columns (``prompt``, ``chosen``, ``rejected``;
    ``id``, ``skill``, ``metadata`` kept)."""
    kinds = set(rows["kind"])
    if kinds - {"preference"}:
        raise StageDataError(f"a dpo stage needs preference rows (prompt, chosen, rejected); this dataset has "
                             f"{sorted(kinds - {'preference'})} rows")
    return rows.select_columns(["prompt", "chosen", "rejected", "id", "source", "skill", "metadata"])


def prepare_dpo(stage: DPOStage, rows, *, seed: int, stage_name: str, stage_dir: Path, load_start_model):
    """Single-process data preparation: pairs from verifiable rows (``pairs:``), written with their
    ledger records to the stage directory; preference rows pass through. ``load_start_model()`` gives
    (model, tokenizer) of the stage's starting model, loaded only for ``rejected: sample``."""
    for stale in ("ledger.parquet", "pairs.jsonl"):  # an earlier run's pairs must not outlive `pairs:`
        (Path(stage_dir) / stale).unlink(missing_ok=True)
    if stage.pairs is None:
        return rows
    from training.pairs import pairs_from_verifiable

    model = tokenizer = None
    if stage.pairs.rejected == "sample" and "verifiable" in set(rows["kind"]):
        model, tokenizer = load_start_model()
    pairs = pairs_from_verifiable(rows, stage.pairs, seed=stage.effective_seed(seed), stage_name=stage_name,
                                  stage_dir=stage_dir, model=model, tokenizer=tokenizer)
    if len(pairs) == 0:
        raise StageDataError(f"no preference pair could be built from dataset {stage.data!r}; "
                             f"see {Path(stage_dir) / 'ledger.parquet'} for each row's reason")
    return pairs


def reference_model(ctx: StageContext):
    """The frozen reference for ``stage.ref`` (None: TRL's adapter-disabled policy under LoRA)."""
    from training.models import load_model

    stage, model = ctx.stage, ctx.model
    if stage.ref == "previous":
        return None if stage.peft is not None else copy.deepcopy(model)
    path = ctx.models.get("ref")
    if not path:
        raise StageDataError(f"dpo reference {stage.ref!r} was not resolved to a model directory "
                             "(the stage loop resolves 'base', stage names and paths)")
    return load_model(path, dtype=str(model.dtype).removeprefix("torch."))


def run_dpo(ctx: StageContext) -> TrainResult:
    from trl import DPOConfig, DPOTrainer

    stage = ctx.stage
    require_kinds(stage, ctx.train, kinds=frozenset({"preference"}))  # pairs were built by prepare_dpo
    args = DPOConfig(
        **trainer_args(ctx),
        beta=stage.beta,
        loss_type=[LOSS_TYPES[stage.loss]],
        max_length=stage.max_length,
        precompute_ref_log_probs=stage.precompute_ref_log_probs,
    )
    evals = {name: to_preference(rows) for name, rows in ctx.validation.items()} or None
    trainer = DPOTrainer(model=ctx.model, ref_model=reference_model(ctx), args=args,
                         train_dataset=to_preference(ctx.train), eval_dataset=evals, processing_class=ctx.tokenizer,
                         peft_config=lora_config(stage.peft, ctx.model))
    ctx.install(trainer)
    output = trainer.train(resume_from_checkpoint=ctx.resume_from())
    return save_final(trainer, ctx.tokenizer, stage, ctx.stage_dir, output)


register_kind("dpo", DPOStage, run_dpo, prepare=prepare_dpo)
