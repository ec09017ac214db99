"""The recipe schema: pydantic v2 models, ``extra="forbid"`` at every level.

This is the truth of the recipe format (DESIGN.md sketches it). Stage kinds are a discriminated
union on ``kind``, so an SFT stage rejects DPO keys. Plug-in parameters (a generator's options, a
curation step's options) are validated by the plug-in's own ``Params`` model in ``recipe.load``,
with the same error paths.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelSpec(Strict):
    """``{path: ...}`` loads any local or Hub causal LM; ``{init: tiny}`` builds one locally."""

    path: str | None = Field(None, description="local directory or Hub id")
    revision: str | None = None
    init: Literal["tiny"] | None = None
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    trust_remote_code: bool = False
    # tiny-init options (ignored with `path`)
    vocab_size: int = Field(512, ge=64)
    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(512, ge=8)
    max_position_embeddings: int = Field(512, ge=16)

    @model_validator(mode="after")
    def _one_of(self):
        if (self.path is None) == (self.init is None):
            raise ValueError("give exactly one of `path` (a local or Hub model) or `init: tiny`")
        return self


def check_verifier(name: str, context: str = "") -> None:
    """ValueError (a recipe error at the key) unless ``name`` is a registered verifier or an importable
    dotted path."""
    from curation.registry import UnknownName
    from eval.verifiers import VERIFIERS

    try:
        VERIFIERS.get(name)
    except UnknownName as exc:
        raise ValueError(f"{context}{exc}") from None


RowKind = Literal["chat", "preference", "verifiable", "text"]


class FileSource(Strict):
    """A local file (jsonl/json/parquet/csv, optionally .gz), a directory, or a Hub dataset id."""

    path: str
    name: str | None = Field(None, description="Hub dataset config name")
    split: str = "train"
    revision: str | None = None
    format: str | None = Field(None, description="built-in layout: alpaca, gsm8k, hh_rlhf, sharegpt")
    kind: RowKind | None = None
    fields: dict[str, str | list[str]] = Field(default_factory=dict)
    verifier: str | None = None
    verifier_map: dict[str, str] = Field(
        default_factory=dict, description="rename values of the `fields.verifier` column to verifier names, e.g. "
        "{MATH: boxed} for Tülu 3's RLVR data, whose `dataset` column says gsm8k, MATH or ifeval")
    skill: str | None = Field(None, description="skill label for every row of this source")
    license: str | None = None
    limit: int | None = Field(None, gt=0, description="read only the first N records")

    @field_validator("verifier_map")
    @classmethod
    def _known_mapped_verifiers(cls, mapping):
        for value, name in mapping.items():
            check_verifier(name, f"{value!r} maps to ")
        return mapping

    @model_validator(mode="after")
    def _kind_or_format(self):
        if self.format is None and self.kind is None:
            raise ValueError("give `kind` (chat, preference, verifiable, text) with `fields`, or a `format`")
        if self.kind == "verifiable" and self.format is None and not self.verifier and "verifier" not in self.fields:
            raise ValueError("a verifiable source needs `verifier` (e.g. math) or a `fields.verifier` column")
        if self.verifier_map and "verifier" not in self.fields:
            raise ValueError("`verifier_map` renames the values of a verifier column: also give `fields.verifier`")
        return self


class GeneratedSource(BaseModel):
    """``{generate: NAME, ...options}``: options are checked by the generator's own model."""

    model_config = ConfigDict(extra="allow")
    generate: str
    split: str = "train"
    license: str | None = None


def _source_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "generated" if "generate" in value else "file"
    return "generated" if isinstance(value, GeneratedSource) else "file"


from pydantic import Discriminator, Tag  # noqa: E402

SourceSpec = Annotated[
    Union[Annotated[FileSource, Tag("file")], Annotated[GeneratedSource, Tag("generated")]],
    Discriminator(_source_tag),
]


class MixShare(Strict):
    """Explicit form of a mixture entry; exactly one of the three."""

    fraction: float | None = Field(None, gt=0, le=1)
    upsample: float | None = Field(None, ge=1)
    count: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self):
        if sum(v is not None for v in (self.fraction, self.upsample, self.count)) != 1:
            raise ValueError("give exactly one of fraction, upsample, count")
        return self


MixValue = Union[int, float, MixShare]


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


class StageBase(Strict):
    name: str | None = Field(None, description="defaults to '<index>-<kind>'")
    data: str = Field(description="a mixture name (after its selection steps)")
    from_: str | None = Field(
        None, alias="from", description="'previous' (default), 'base', an earlier stage's name, or a model path"
    )
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
    seed: int | None = None

    @model_validator(mode="after")
    def _schedule_fits(self):
        s = self.schedule
        if self.lr_scheduler == "infinite" and s.min_lr_ratio is not None and not 0 < s.min_lr_ratio < s.constant_lr_ratio:
            raise ValueError("schedule.min_lr_ratio: the infinite schedule anneals from η_c down to η_min > 0; "
                             "give 0 < min_lr_ratio < constant_lr_ratio")
        return self


LOSS_REDUCTION = Field("mean", description="mean: TRL's token mean over each update; sum: open-instruct's per-micro-batch "
                                          "token sum (Tülu 3 SFT; training/loss_reduction.py)")


class SFTStage(StageBase):
    kind: Literal["sft"]
    loss_reduction: Literal["mean", "sum"] = LOSS_REDUCTION
    packing: bool = False
    assistant_only_loss: bool = True
    chat_template_path: str | None = Field(
        None, description="a Jinja chat template (or a tokenizer dir) to train with, e.g. for a base model that has none")


class PretrainStage(StageBase):
    """Continued pretraining: causal-LM loss on every token of ``text`` rows, documents packed into
    ``max_length`` blocks (``wrapped``: concatenated with EOS and cut, as in GPT-style pretraining;
    ``bfd``: best-fit packing without cutting documents)."""

    kind: Literal["pretrain"]
    loss_reduction: Literal["mean", "sum"] = LOSS_REDUCTION
    packing: bool = True
    packing_strategy: Literal["wrapped", "bfd"] = "wrapped"


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
    """DPO on TRL's ``DPOTrainer`` (``training/dpo.py``). ``loss: sigmoid`` is standard DPO
    (Rafailov et al. 2023, Eq. 7); ``dpo_norm`` is Tülu 3's length-normalised DPO (TRL's
    ``sigmoid_norm``). ``ref`` is the reference model: ``previous`` (the stage's starting model),
    ``base``, an earlier stage's name, or a model path. With ``peft:`` and ``ref: previous`` TRL uses
    the policy with its adapter disabled as the reference (the same weights, no second copy)."""

    kind: Literal["dpo"]
    lr: float = Field(5e-7, gt=0)
    loss: Literal["sigmoid", "dpo_norm"] = "sigmoid"
    beta: float = Field(0.1, gt=0)
    ref: str = Field("previous", description="'previous' (default), 'base', an earlier stage's name, or a model path")
    pairs: PairsSpec | None = Field(None, description="build pairs from verifiable rows (else: preference rows only)")
    precompute_ref_log_probs: bool = False


class RLVRStage(StageBase):
    """RL with verifiable rewards on TRL's ``GRPOTrainer`` (``training/rlvr.py``; Tülu 3, methods.md
    §7): reward = ``reward`` x the row's verifier score (the row's ``verifier`` column, or
    ``verifier:`` for every row), ``non_stop_penalty`` replaces the reward of a completion with no
    EOS within ``max_completion_length``; ``reward_funcs`` adds user reward functions (dotted paths,
    TRL's contract ``fn(prompts, completions, **columns) -> list[float | None]``). ``beta`` is the KL
    coefficient. ``max_length`` is not used (GRPO does not truncate prompts)."""

    kind: Literal["rlvr"]
    lr: float = Field(1e-6, gt=0)
    verifier: str | None = Field(None, description="override every row's verifier")
    reward: float = Field(10.0, description="reward for a verifier pass (score 1.0)")
    non_stop_penalty: float | None = Field(None, description="reward of a completion that never ends (Tülu 3: -10)")
    reward_funcs: list[str] = Field(default_factory=list, description="extra TRL reward functions, 'pkg.mod:fn'")
    num_generations: int = Field(4, ge=2)
    max_completion_length: int = Field(64, ge=1)
    temperature: float = Field(1.0, gt=0)
    beta: float = Field(0.05, ge=0, description="KL coefficient")
    num_iterations: int = Field(1, ge=1, description="optimisation passes over each generated batch (GRPO's μ; "
                                                      "PPO epochs: Tülu 3 used 4)")
    epsilon: float = Field(0.2, gt=0, lt=1, description="clipping range of the policy ratio (Tülu 3 PPO: 0.2)")

    @field_validator("verifier")
    @classmethod
    def _known_verifier(cls, name):
        if name is not None:
            check_verifier(name)
        return name

    @field_validator("reward_funcs")
    @classmethod
    def _importable(cls, paths):
        from curation.registry import import_path

        for path in paths:
            try:
                fn = import_path(path)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ValueError(f"cannot import reward function {path!r} ({exc}); give 'package.module:function'") from None
            if not callable(fn):
                raise ValueError(f"reward function {path!r} is not callable")
        return paths

    @model_validator(mode="after")
    def _divisible(self):
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(f"batch_size x grad_accum ({self.batch_size} x {self.grad_accum}) must be a multiple of "
                             f"num_generations ({self.num_generations}): each prompt's completions form one group")
        return self


StageSpec = Annotated[Union[SFTStage, PretrainStage, DPOStage, RLVRStage], Field(discriminator="kind")]


class LaunchSpec(Strict):
    """Run each stage under ``accelerate launch`` with a shipped profile (training/launch_profiles/).

    ``num_processes`` is the total over all machines (``--gpus N`` on the command line sets it);
    the multi-node keys pass through to ``accelerate launch``. ``launcher: torchrun`` runs the
    stage with ``torchrun`` instead (the CPU multi-process path; ``auto`` picks it when no GPU is
    visible)."""

    profile: Literal["ddp", "fsdp2", "zero2", "zero3"] = "ddp"
    num_processes: int | None = Field(None, ge=1)
    num_machines: int = Field(1, ge=1)
    machine_rank: int = Field(0, ge=0)
    main_process_ip: str | None = None
    main_process_port: int | None = Field(None, ge=1, le=65535)
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None
    launcher: Literal["auto", "accelerate", "torchrun"] = "auto"

    @model_validator(mode="after")
    def _multi_node(self):
        if self.num_machines > 1 and not self.main_process_ip:
            raise ValueError("a multi-machine launch (num_machines > 1) needs `main_process_ip`")
        if self.machine_rank >= self.num_machines:
            raise ValueError(f"machine_rank {self.machine_rank} must be below num_machines {self.num_machines}")
        return self


class EvalSpec(Strict):
    source: str
    metrics: list[Literal["accuracy"]] = ["accuracy"]
    verifier: str | None = Field(None, description="override the rows' own verifier")
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(64, ge=1)
    limit: int | None = Field(None, gt=0)


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    seed: int = 0
    model: ModelSpec
    sources: dict[str, SourceSpec]
    mixtures: dict[str, dict[str, MixValue]] = Field(default_factory=dict)
    selection: dict[str, list[dict[str, dict[str, Any] | None]]] = Field(default_factory=dict)
    stages: list[StageSpec] = Field(default_factory=list)
    eval: dict[str, EvalSpec] = Field(default_factory=dict)
    launch: LaunchSpec | None = Field(None, description="multi-process launch of every stage (or `--gpus N`)")

    @model_validator(mode="after")
    def _references(self):
        errors = []
        for mix, entries in self.mixtures.items():
            for src in entries:
                if src not in self.sources:
                    errors.append((("mixtures", mix, src), f"names no source; sources are {sorted(self.sources)}"))
        for mix in self.selection:
            if mix not in self.mixtures:
                errors.append((("selection", mix), f"names no mixture; mixtures are {sorted(self.mixtures)}"))
        names = []
        for i, stage in enumerate(self.stages):
            if stage.data not in self.mixtures:
                errors.append((("stages", i, "data"), f"{stage.data!r} names no mixture; mixtures are {sorted(self.mixtures)}"))
            ref = stage.from_
            if ref and ref not in ("previous", "base") and ref not in names and "/" not in ref:
                errors.append((("stages", i, "from"), f"{ref!r} names no earlier stage ({names or 'none'}), nor 'previous', 'base' or a path"))
            dpo_ref = getattr(stage, "ref", None)  # a DPO stage's reference model
            if dpo_ref and dpo_ref not in ("previous", "base") and dpo_ref not in names and "/" not in dpo_ref:
                errors.append((("stages", i, "ref"), f"{dpo_ref!r} names no earlier stage ({names or 'none'}), nor 'previous', 'base' or a path"))
            names.append(stage.name or f"{i}-{stage.kind}")
        for ev, spec in self.eval.items():
            if spec.source not in self.sources:
                errors.append((("eval", ev, "source"), f"{spec.source!r} names no source; sources are {sorted(self.sources)}"))
        if errors:
            raise ReferenceErrors(errors)
        return self

    def stage_names(self) -> list[str]:
        return [s.name or f"{i}-{s.kind}" for i, s in enumerate(self.stages)]


class ReferenceErrors(ValueError):
    """Cross-reference errors, each with its key path."""

    def __init__(self, errors: list[tuple[tuple, str]]):
        super().__init__("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in errors))
        self.errors = errors


def stage_models() -> dict[str, type]:
    """kind -> stage model, read off the ``StageSpec`` union (a new kind needs only the union edit)."""
    import typing

    union = typing.get_args(StageSpec)[0]
    return {typing.get_args(m.model_fields["kind"].annotation)[0]: m for m in typing.get_args(union)}


def all_field_names() -> set[str]:
    """Every key the schema knows (for "did you mean" when the location is ambiguous)."""
    names: set[str] = set()
    for model in (Recipe, ModelSpec, FileSource, GeneratedSource, MixShare, LoraSpec, SFTStage, EvalSpec,
                  PretrainStage, ScheduleSpec, LaunchSpec, DPOStage, RLVRStage, PairsSpec):
        for fname, finfo in model.model_fields.items():
            names.add(finfo.alias or fname)
    return names
