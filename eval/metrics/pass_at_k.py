"""``pass_at_k``: ``n`` sampled completions per prompt at ``temperature``; for each k in ``k``, the
unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", Eq. 1):

    pass@k = E_prompts[ 1 - C(n - c, k) / C(n, k) ]

with c the number of the n samples the row's verifier passes, computed as
``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` (numerically stable; lm-evaluation-harness' form). ``n >= k``
for every k is checked at validate. The standard error is over prompts.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from eval.generation import generate, prompts_of
from eval.metrics import METRICS
from eval.metrics.base import EvalContext, Metric, MetricResult, grouped_means, mean_stderr, prompt_hash
from eval.verifiers import extract_answer, get_verifier


class SamplingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: list[int] = Field([1], min_length=1, description="the k of each pass@k / maj@k to report")
    n: int = Field(8, ge=1, description="completions sampled per prompt")
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _k_le_n(self):
        bad = [k for k in self.k if k < 1 or k > self.n]
        if bad:
            raise ValueError(f"k must be in 1..n (n = {self.n} samples per prompt); got {bad}")
        return self


def pass_at_k(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def sample_and_score(model, tokenizer, rows, ctx: EvalContext, params: SamplingParams):
    """(rendered prompts, completions per prompt, verifier scores per completion)."""
    spec = ctx.spec
    texts = prompts_of(rows, tokenizer, ctx)
    outputs = generate(model, tokenizer, texts, max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size,
                       num_samples=params.n, temperature=params.temperature, top_p=params.top_p, seed=ctx.seed,
                       on_batch=ctx.on_progress)
    scores = []
    for row, completions in zip(rows, outputs):
        verify = get_verifier(spec.verifier or row["verifier"])
        scores.append([float(verify(c, row["ground_truth"])) for c in completions])
    return texts, outputs, scores


@METRICS.register("pass_at_k")
class PassAtK(Metric):
    name = "pass_at_k"
    Params = SamplingParams

    def evaluate(self, model, tokenizer, rows, ctx: EvalContext) -> MetricResult:
        p = self.params
        texts, outputs, scores = sample_and_score(model, tokenizer, rows, ctx, p)
        per_k = {f"pass@{k}": [pass_at_k(p.n, int(sum(s >= 1.0 for s in ss)), k) for ss in scores] for k in p.k}
        values, stderr = {}, {}
        for key, vals in per_k.items():
            values[key], stderr[key] = mean_stderr(vals)
        items = []
        for row, text, comps, ss in zip(rows, texts, outputs, scores):
            name = ctx.spec.verifier or row["verifier"]
            items.append({"item_id": row["id"], "prompt_hash": prompt_hash(text), "output": comps[0],
                          "answer": extract_answer(name, comps[0]), "score": sum(s >= 1.0 for s in ss) / len(ss),
                          "samples": len(ss)})
        return MetricResult(values=values, stderr=stderr, n=len(rows),
                            by_skill={k: grouped_means(rows, v, "skill") for k, v in per_k.items()},
                            by_source={k: grouped_means(rows, v, "source") for k, v in per_k.items()}, items=items,
                            extras={"n": p.n, "temperature": p.temperature, "top_p": p.top_p})
