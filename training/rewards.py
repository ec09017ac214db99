"""Verifiable rewards for GRPO (Tülu 3 RLVR, open-instruct ``apply_verifiable_reward``; methods.md §7).

:class:`VerifiableReward` is a TRL reward function (``fn(prompts, completions, **columns)``):

* r = ``reward`` x the row's verifier score (``reward`` = 10 in Tülu 3; verifiers score 0 or 1),
  the verifier routed per row by its ``verifier`` column (or the stage's ``verifier`` override).
* ``non_stop_penalty``: a completion that never ends (no EOS within ``max_completion_length``,
  read off TRL's ``completion_ids``, which keep the EOS when one was generated) gets exactly this
  reward instead (open-instruct ``--non_stop_penalty``: score = ``penalty_reward_value`` = -10).
* Per verifier it logs, through TRL's ``log_metric`` hook, ``verifier/<name>/reward`` (mean
  reward) and ``verifier/<name>/pass_rate`` (share of completions scoring 1.0), plus
  ``verifier/non_stop_rate``; these land in the trainer's logs (``final/train_log.json``). It also
  keeps running totals that ``training/stages/rlvr.py`` writes to ``<stage_dir>/rewards.json``.

Why our own code: TRL supplies the GRPO loop and the reward-function contract, not the verifiers,
the per-row routing or the non-stop penalty.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from eval.verifiers import get_verifier


def completion_text(completion: Any) -> str:
    """TRL gives conversational completions as ``[{"role": "assistant", "content": ...}]``."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


class VerifiableReward:
    __name__ = "verifiable_reward"  # TRL names reward columns after the function

    def __init__(self, *, reward: float = 10.0, non_stop_penalty: float | None = None, eos_token_ids=(),
                 verifier: str | None = None):
        self.reward = reward
        self.non_stop_penalty = non_stop_penalty
        self.eos_token_ids = set(eos_token_ids)
        self.verifier = verifier
        self.totals: dict[str, dict[str, float]] = defaultdict(lambda: {"n": 0, "passed": 0, "reward_sum": 0.0})
        self.non_stop = 0
        self.calls = 0

    def __call__(self, prompts, completions, ground_truth, verifier=None, completion_ids=None, log_metric=None,
                 **_: Any) -> list[float]:
        names = [self.verifier] * len(completions) if self.verifier else list(verifier)
        rewards: list[float] = []
        batch: dict[str, list[tuple[float, float]]] = defaultdict(list)
        stops = 0
        for i, (completion, truth, name) in enumerate(zip(completions, ground_truth, names)):
            ended = completion_ids is None or (len(completion_ids[i]) > 0 and completion_ids[i][-1] in self.eos_token_ids)
            score = float(get_verifier(name)(completion_text(completion), truth))
            r = self.reward * score
            if self.non_stop_penalty is not None and not ended:
                r = self.non_stop_penalty
            stops += not ended
            rewards.append(r)
            batch[name].append((score, r))
        self.calls += 1
        self.non_stop += stops
        for name, values in batch.items():
            t = self.totals[name]
            t["n"] += len(values)
            t["passed"] += sum(s >= 1.0 for s, _ in values)
            t["reward_sum"] += sum(r for _, r in values)
            if log_metric is not None:
                log_metric(f"verifier/{name}/reward", sum(r for _, r in values) / len(values))
                log_metric(f"verifier/{name}/pass_rate", sum(s >= 1.0 for s, _ in values) / len(values))
        if log_metric is not None and completion_ids is not None:
            log_metric("verifier/non_stop_rate", stops / len(completions))
        return rewards

    def state(self) -> dict[str, Any]:
        """The running totals as plain data (to gather them over ranks)."""
        return {"totals": {k: dict(v) for k, v in self.totals.items()}, "non_stop": self.non_stop, "calls": self.calls,
                "reward": self.reward, "non_stop_penalty": self.non_stop_penalty, "verifier": self.verifier}

    @classmethod
    def merge(cls, states: list[dict[str, Any]]) -> "VerifiableReward":
        """One reward object whose totals are the sums of several ranks' :meth:`state`."""
        first = states[0]
        out = cls(reward=first["reward"], non_stop_penalty=first["non_stop_penalty"], verifier=first["verifier"])
        for st in states:
            for name, t in st["totals"].items():
                for k, v in t.items():
                    out.totals[name][k] += v
            out.non_stop += st["non_stop"]
            out.calls += st["calls"]
        return out

    def summary(self) -> dict[str, Any]:
        per = {name: {"completions": int(t["n"]), "pass_rate": t["passed"] / t["n"] if t["n"] else None,
                      "reward_mean": t["reward_sum"] / t["n"] if t["n"] else None}
               for name, t in sorted(self.totals.items())}
        n = sum(int(t["n"]) for t in self.totals.values())
        return {"reward": self.reward, "non_stop_penalty": self.non_stop_penalty, "reward_calls": self.calls,
                "completions": n, "non_stop": self.non_stop, "by_verifier": per}
