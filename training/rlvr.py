"""The RLVR stage: our stage config -> TRL ``GRPOConfig`` -> ``GRPOTrainer`` with verifiable rewards.

Tülu 3 trains RLVR with PPO (value model initialised from a reward model); TRL's GRPO needs no
value model, and open-instruct's later RLVR runs use GRPO with the same reward (methods.md §7), so
this stage is GRPO: ``num_generations`` completions per prompt at ``temperature``, group-relative
advantages, KL to the starting model with coefficient ``beta`` (Tülu 3: 0.05). The reward is
:class:`training.rewards.VerifiableReward` (``reward`` x verifier score, per-row verifier routing,
optional ``non_stop_penalty``), plus any user ``reward_funcs`` (TRL's contract
``fn(prompts, completions, **columns) -> list[float | None]``; TRL sums them). Per-verifier reward
means and pass rates go into the trainer's logs and ``<stage_dir>/rewards.json``.

The rows' verifiers, ifeval ground truths and reward functions are checked before the trainer is
built (``check_stage_data``; the runner also runs it before any stage trains).
"""

from __future__ import annotations

import json
from pathlib import Path

from training import schedules
from training.common import TrainResult, lora_config, resume_checkpoint, save_final, trainer_args
from training.rewards import VerifiableReward
from training.stage_data import StageDataError, check_stage_data, to_prompts


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else ids if isinstance(ids, list) else [ids]
    return sorted({tokenizer.eos_token_id, *ids} - {None})


def run_rlvr(stage, model, tokenizer, rows, stage_dir: Path, *, seed: int, resume: bool = False) -> TrainResult:
    from curation.registry import import_path
    from trl import GRPOConfig, GRPOTrainer

    check_stage_data(stage, rows)
    train = to_prompts(rows, stage.verifier)
    verifiable = VerifiableReward(reward=stage.reward, non_stop_penalty=stage.non_stop_penalty,
                                  eos_token_ids=_eos_ids(model, tokenizer), verifier=stage.verifier)
    reward_funcs = [verifiable]
    for path in stage.reward_funcs:
        try:
            reward_funcs.append(import_path(path))
        except (ImportError, AttributeError, ValueError) as exc:
            raise StageDataError(f"cannot import reward function {path!r}: {exc}") from None
    args = GRPOConfig(
        **trainer_args(stage, stage_dir, seed),
        num_generations=stage.num_generations,
        max_completion_length=stage.max_completion_length,
        temperature=stage.temperature,
        beta=stage.beta,
        num_iterations=stage.num_iterations,
        epsilon=stage.epsilon,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train,
                          processing_class=tokenizer, peft_config=lora_config(stage.peft, model))
    schedules.install(trainer, stage, stage_dir)
    output = trainer.train(resume_from_checkpoint=resume_checkpoint(stage_dir) if resume else None)
    result = save_final(trainer, tokenizer, stage, stage_dir, output)
    summary = verifiable.summary()
    summary["logged"] = [{k: v for k, v in r.items() if k.startswith(("verifier/", "reward", "step"))}
                         for r in trainer.state.log_history if any(k.startswith("verifier/") for k in r)]
    (Path(stage_dir) / "rewards.json").write_text(json.dumps(summary, indent=1))
    result.metrics.update({f"rlvr/{name}/pass_rate": v["pass_rate"] for name, v in summary["by_verifier"].items()})
    return result
