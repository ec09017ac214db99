"""The ``rlvr`` stage kind: its config -> TRL ``GRPOConfig`` -> ``GRPOTrainer`` with verifiable rewards.

Tülu 3 trains RLVR with PPO (value model initialised from a reward model); TRL's GRPO needs no
value model, and open-instruct's later RLVR runs use GRPO with the same reward (methods.md §7), so
this stage is GRPO: ``num_generations`` completions per prompt at ``temperature``, group-relative
advantages, KL to the starting model with coefficient ``beta`` (Tülu 3: 0.05). The reward is
:class:`training.rewards.VerifiableReward` (``reward`` x verifier score, per-row verifier routing,
optional ``non_stop_penalty``), plus any user ``reward_funcs`` (TRL's contract
``fn(prompts, completions, **columns) -> list[float | None]``; TRL sums them). Per-verifier reward
means and pass rates go into the trainer's logs and ``<stage_dir>/rewards.json`` (totals gathered
over every rank of a launched job, written once by rank 0).

The rows' verifiers, ifeval ground truths and reward functions are checked before the trainer is
built (``check_stage_data``; the runner also runs it before any stage trains).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from training.common import StageContext, TrainResult, lora_config, save_final, trainer_args
from training.config import StageBase
from training.kinds import register_kind
from training.rewards import VerifiableReward
from training.stage_data import StageDataError, require_kinds


def _check_verifier(name: str) -> str:
    from eval.verifiers import check_verifier_name

    check_verifier_name(name)
    return name


class RLVRStage(StageBase):
    """RL with verifiable rewards on TRL's ``GRPOTrainer`` (Tülu 3, methods.md §7): reward =
    ``reward`` x the row's verifier score (the row's ``verifier`` column, or ``verifier:`` for every
    row), ``non_stop_penalty`` replaces the reward of a completion with no EOS within
    ``max_completion_length``; ``reward_funcs`` adds user reward functions (dotted paths, TRL's
    contract ``fn(prompts, completions, **columns) -> list[float | None]``). ``beta`` is the KL
    coefficient. ``max_length`` is not used (GRPO does not truncate prompts)."""

    row_kinds: ClassVar[frozenset[str]] = frozenset({"verifiable"})

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
        return name if name is None else _check_verifier(name)

    @field_validator("reward_funcs")
    @classmethod
    def _importable(cls, paths):
        from curation.registry import import_path

        for path in paths:
            try:
                fn = import_path(path)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ValueError(f"cannot import reward function {path!r} ({exc}); give 'package.module:function'") from None
            if not callable(fn) or isinstance(fn, type):
                raise ValueError(f"reward function {path!r} is not a function")
        return paths

    @model_validator(mode="after")
    def _divisible(self):
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(f"batch_size x grad_accum ({self.batch_size} x {self.grad_accum}) must be a multiple of "
                             f"num_generations ({self.num_generations}): each prompt's completions form one group")
        if self.validation is not None:
            raise ValueError("validation: an rlvr stage evaluates with declared evals (eval:), not a validation loss")
        return self

    def row_kinds_hint(self, bad: set[str]) -> str:
        return " (keep only verifiable sources in this mixture: prompt, ground_truth, verifier)"

    def check_rows(self, rows) -> None:
        require_kinds(self, rows)
        from curation.registry import UnknownName
        from eval.verifiers import VERIFIERS

        names = [self.verifier] if self.verifier else sorted(set(rows["verifier"]))
        for name in names:
            try:
                VERIFIERS.get(name)
            except UnknownName as exc:
                where = "the stage's `verifier`" if self.verifier else "the rows' `verifier` column"
                raise StageDataError(f"dataset {self.data!r}: {where} names {exc}") from None
        if "ifeval" in names:
            from eval.ifeval import IFEvalError, parse_constraint

            for r in rows.select_columns(["id", "ground_truth", "verifier"]):
                if self.verifier == "ifeval" or r["verifier"] == "ifeval":
                    try:
                        parse_constraint(r["ground_truth"])
                    except IFEvalError as exc:
                        raise StageDataError(f"row {r['id']}: {exc}") from None


def to_prompts(rows, verifier: str | None = None):
    """Verifiable rows -> GRPO's ``prompt`` (messages) plus ``ground_truth``, ``verifier``, ``id``,
    ``skill``, ``metadata`` (GRPO passes every column to the reward functions)."""
    out = rows.select_columns(["id", "source", "prompt", "ground_truth", "verifier", "skill", "metadata"])
    if verifier is not None:
        out = out.map(lambda _: {"verifier": verifier}, desc="verifier override")
    return out


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else ids if isinstance(ids, list) else [ids]
    return sorted({tokenizer.eos_token_id, *ids} - {None})


def _gathered_summary(trainer, verifiable: VerifiableReward) -> dict:
    """Reward totals over every rank (each rank scores only its own completions)."""
    from accelerate.utils import gather_object

    parts = gather_object([verifiable.state()]) if trainer.accelerator.num_processes > 1 else [verifiable.state()]
    return VerifiableReward.merge(parts).summary()


def run_rlvr(ctx: StageContext) -> TrainResult:
    from curation.registry import import_path
    from trl import GRPOConfig, GRPOTrainer

    stage = ctx.stage
    stage.check_rows(ctx.train)
    train = to_prompts(ctx.train, stage.verifier)
    verifiable = VerifiableReward(reward=stage.reward, non_stop_penalty=stage.non_stop_penalty,
                                  eos_token_ids=_eos_ids(ctx.model, ctx.tokenizer), verifier=stage.verifier)
    reward_funcs = [verifiable]
    for path in stage.reward_funcs:
        try:
            reward_funcs.append(import_path(path))
        except (ImportError, AttributeError, ValueError) as exc:
            raise StageDataError(f"cannot import reward function {path!r}: {exc}") from None
    args = GRPOConfig(
        **trainer_args(ctx),
        num_generations=stage.num_generations,
        max_completion_length=stage.max_completion_length,
        temperature=stage.temperature,
        beta=stage.beta,
        num_iterations=stage.num_iterations,
        epsilon=stage.epsilon,
    )
    trainer = GRPOTrainer(model=ctx.model, reward_funcs=reward_funcs, args=args, train_dataset=train,
                          processing_class=ctx.tokenizer, peft_config=lora_config(stage.peft, ctx.model))
    ctx.install(trainer)
    output = trainer.train(resume_from_checkpoint=ctx.resume_from())
    result = save_final(trainer, ctx.tokenizer, stage, ctx.stage_dir, output)
    summary = _gathered_summary(trainer, verifiable)
    summary["logged"] = [{k: v for k, v in r.items() if k.startswith(("verifier/", "reward", "step"))}
                         for r in trainer.state.log_history if any(k.startswith("verifier/") for k in r)]
    if trainer.is_world_process_zero():
        (Path(ctx.stage_dir) / "rewards.json").write_text(json.dumps(summary, indent=1))
    result.metrics.update({f"rlvr/{name}/pass_rate": v["pass_rate"] for name, v in summary["by_verifier"].items()})
    return result


register_kind("rlvr", RLVRStage, run_rlvr)
