"""The DPO stage: our stage config -> TRL ``DPOConfig`` -> ``DPOTrainer``.

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

Pairs: preference rows as they are; verifiable rows with ``pairs:`` (``training/pairs.py``).
TRL 1.16 has no ``max_prompt_length``: ``max_length`` bounds prompt + completion, truncating the
end (``keep_start``); a pair whose prompt alone reaches ``max_length`` is dropped by TRL.
"""

from __future__ import annotations

import copy
from pathlib import Path

from training import schedules
from training.common import TrainResult, lora_config, resume_checkpoint, save_final, trainer_args
from training.stage_data import StageDataError, check_stage_data, to_preference

LOSS_TYPES = {"sigmoid": "sigmoid", "dpo_norm": "sigmoid_norm"}


def reference_model(stage, model):
    """The frozen reference for ``stage.ref`` (None: TRL's adapter-disabled policy under LoRA)."""
    from training.models import load_model

    if stage.ref == "previous":
        return None if stage.peft is not None else copy.deepcopy(model)
    if stage.ref == "base" or "/" not in stage.ref and not Path(stage.ref).exists():
        raise StageDataError(f"dpo reference {stage.ref!r} was not resolved to a model directory "
                             "(the runner resolves 'base' and stage names)")
    return load_model(stage.ref, dtype=str(model.dtype).removeprefix("torch."))


def run_dpo(stage, model, tokenizer, rows, stage_dir: Path, *, seed: int, resume: bool = False) -> TrainResult:
    from trl import DPOConfig, DPOTrainer

    check_stage_data(stage, rows)
    for stale in ("ledger.parquet", "pairs.jsonl"):  # an earlier run's pairs must not outlive `pairs:`
        (Path(stage_dir) / stale).unlink(missing_ok=True)
    if stage.pairs is not None:
        from training.pairs import pairs_from_verifiable

        rows = pairs_from_verifiable(rows, stage.pairs, seed=stage.seed if stage.seed is not None else seed,
                                     stage_name=stage.name or Path(stage_dir).name, stage_dir=stage_dir, model=model,
                                     tokenizer=tokenizer)
        if len(rows) == 0:
            raise StageDataError(f"no preference pair could be built from dataset {stage.data!r}; "
                                 f"see {Path(stage_dir) / 'ledger.parquet'} for each row's reason")
    train = to_preference(rows)
    args = DPOConfig(
        **trainer_args(stage, stage_dir, seed),
        beta=stage.beta,
        loss_type=[LOSS_TYPES[stage.loss]],
        max_length=stage.max_length,
        precompute_ref_log_probs=stage.precompute_ref_log_probs,
    )
    trainer = DPOTrainer(model=model, ref_model=reference_model(stage, model), args=args, train_dataset=train,
                         processing_class=tokenizer, peft_config=lora_config(stage.peft, model))
    schedules.install(trainer, stage, stage_dir)
    output = trainer.train(resume_from_checkpoint=resume_checkpoint(stage_dir) if resume else None)
    return save_final(trainer, tokenizer, stage, stage_dir, output)
