"""What every stage kind's config shares: the strict pydantic base, LoRA, the lr schedule options,
validation sets, and the fields of ``StageBase``.

A stage kind is one file in ``training/stages/`` (``sft.py``, ``pretrain.py``, ``dpo.py``, ``rlvr.py``): its config
model (a ``StageBase`` subclass with ``kind: Literal[...]``) next to its runner, registered in
``training.kinds.STAGE_KINDS``. The recipe schema's ``stages:`` union, the "did you mean" key lists,
the data checks (:meth:`StageBase.check_rows`) and the model references (``from`` plus each kind's
``extra_models``, e.g. DPO's ``ref``) are all read off the registered kinds. Nothing here imports a
trainer: ``recipe validate`` loads these models without loading TRL.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Unknown keys are errors; the loader validates in strict mode (no lax coercions)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LoraSpec(Strict):
    name: Literal["lora"] = "lora"
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


LrScheduler = Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr", "wsd", "infinite"]


class ScheduleSpec(Strict):
    """Options of the learning-rate schedule (``training/schedules.py`` has the formulas).

    ``wsd`` (warmup-stable-decay, MiniCPM / Hägele et al. 2024) uses ``decay``, ``decay_ratio`` and
    ``min_lr_ratio``; ``infinite`` (Singh et al. 2025, "Beyond Cosine Decay") uses
    ``cooldown_ratio``, ``constant_ratio``, ``constant_lr_ratio`` (η_c/η_max) and ``min_lr_ratio``
    (η_min/η_max). ``rewarm`` applies when a stage starts from an earlier stage's output.
    """

    decay: Literal["linear", "cosine", "1-sqrt"] = Field("linear", description="wsd: shape of the final decay")
    decay_ratio: float = Field(0.2, gt=0, le=1, description="wsd: fraction of the steps spent decaying")
    min_lr_ratio: float | None = Field(
        None, ge=0, lt=1, description="final lr / peak lr (wsd default 0.0, infinite default 0.01, cosine_with_min_lr 0.0)")
    cooldown_ratio: float = Field(0.15, gt=0, lt=1, description="infinite: cosine cooldown ends at this fraction of steps")
    constant_ratio: float = Field(0.80, gt=0, lt=1, description="infinite: the constant phase ends (anneal starts) here")
    constant_lr_ratio: float = Field(0.25, gt=0, le=1, description="infinite: η_c / η_max")
    rewarm: bool | None = Field(
        None, description="when the stage starts from an earlier stage: warm up again (default for all but "
                          "infinite) or not (infinite default: stay at η_c, then anneal)")
    rewarm_from: float = Field(0.0, ge=0, lt=1, description="re-warm-up starts at this fraction of the peak lr")

    @model_validator(mode="after")
    def _order(self):
        if self.constant_ratio <= self.cooldown_ratio:
            raise ValueError("infinite schedule: constant_ratio must be larger than cooldown_ratio")
        return self


class ValidationSpec(Strict):
    """Held-out sets a stage evaluates while it trains (HF ``eval_dataset`` as a dict): ``data`` names
    a mixture (its curated dataset) or a source; ``by: skill`` (or ``source``) splits it into one set
    per value, so the trainer logs ``eval_<skill>_loss`` for each; ``every`` evaluates every N steps
    (default: at the end of training only)."""

    data: str = Field(description="a mixture or a source name")
    by: Literal["skill", "source"] | None = None
    every: int | None = Field(None, gt=0, description="evaluate every N optimizer steps")
    max_rows: int | None = Field(None, gt=0, description="at most N rows per set (seeded draw)")


LOSS_REDUCTION = Field("mean", description="mean: TRL's token mean over each update; sum: open-instruct's per-micro-batch "
                                          "token sum (Tülu 3 SFT; training/loss_reduction.py)")


class StageBase(Strict):
    """Keys every stage kind takes. Subclasses add ``kind: Literal["..."]`` and their own keys."""

    # The row kinds a stage of this kind trains on (checked statically at validate from the sources'
    # declared kinds, and on the curated rows before any stage trains).
    row_kinds: ClassVar[frozenset[str]] = frozenset()
    # Keys (besides `from`) that name a model: 'previous', 'base', an earlier stage's name, or a path.
    extra_models: ClassVar[tuple[str, ...]] = ()

    name: str | None = Field(None, description="defaults to '<index>-<kind>'")
    data: str = Field(description="a mixture name (after its selection steps)")
    from_: str | None = Field(
        None, alias="from", description="'previous' (default), 'base', an earlier stage's name, or a model path"
    )
    validation: ValidationSpec | None = Field(None, description="held-out sets evaluated during training")
    hooks: list[dict[str, dict[str, Any] | None]] = Field(
        default_factory=list, description="training-time data methods, e.g. [{skill_it: {eta: 0.5}}] (training/hooks/)")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    lr: float = Field(2e-5, gt=0)
    lr_scheduler: LrScheduler = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec, description="options of wsd / infinite / re-warming")
    batch_size: int = Field(8, ge=1, description="per device")
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=8)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    peft: LoraSpec | None = None
    merge: bool = Field(True, description="with LoRA: merge the adapter before the next stage")
    gradient_checkpointing: bool = False
    save_steps: int | None = Field(None, gt=0, description="checkpoint every N steps (resume)")
    logging_steps: int = Field(10, ge=1)
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "clearml", "swanlab", "dvclive"]] = \
        Field(default_factory=list, description="experiment trackers (transformers' report_to), default none")
    seed: int | None = None

    @model_validator(mode="after")
    def _schedule_fits(self):
        s = self.schedule
        if self.lr_scheduler == "infinite" and s.min_lr_ratio is not None and not 0 < s.min_lr_ratio < s.constant_lr_ratio:
            raise ValueError("schedule.min_lr_ratio: the infinite schedule anneals from η_c down to η_min > 0; "
                             "give 0 < min_lr_ratio < constant_lr_ratio")
        return self

    # ------------------------------------------------------------------ what kinds override
    def accepted_row_kinds(self) -> frozenset[str]:
        """Row kinds this stage (with its options) trains on."""
        return self.row_kinds

    def row_kinds_hint(self, bad: set[str]) -> str:
        """What to do about rows of kinds this stage does not take (appended to the error)."""
        return ""

    def check_rows(self, rows) -> None:
        """Everything about the stage's curated rows that can be checked before training (raise
        ``training.stage_data.StageDataError``). The default checks the row kinds."""
        from training.stage_data import require_kinds

        require_kinds(self, rows)

    def length_problem(self, rows, tokenizer) -> str | None:
        """A problem with ``max_length`` for these rows (None: fine). Kinds that truncate prompts override."""
        return None

    def model_refs(self) -> dict[str, str]:
        """Key -> the model it names, for ``from`` and every ``extra_models`` key (unset: 'previous')."""
        refs = {"from": self.from_ or "previous"}
        for key in self.extra_models:
            refs[key] = getattr(self, key) or "previous"
        return refs

    def effective_seed(self, recipe_seed: int) -> int:
        return self.seed if self.seed is not None else recipe_seed

    @classmethod
    def key_names(cls) -> set[str]:
        return {f.alias or n for n, f in cls.model_fields.items()}


def dump_stage(stage: StageBase) -> dict[str, Any]:
    return stage.model_dump(mode="json", by_alias=True)
