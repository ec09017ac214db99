"""``maj_at_k``: majority vote (self-consistency, Wang et al. 2023) over the first k of ``n``
sampled completions: the answer each completion gives is extracted the way its row's verifier
reads it (the last number for ``math``; the final boxed answer for ``boxed``), the most frequent
answer wins (ties: the earliest), and a completion giving that answer is scored by the verifier.
Rows whose verifier reads no single answer (``ifeval``, a user verifier) are an error: there is
nothing to vote on.
"""

from __future__ import annotations

from collections import Counter

from eval.metrics import METRICS
from eval.metrics.base import EvalContext, Metric, MetricError, MetricResult, grouped_means, mean_stderr, prompt_hash
from eval.metrics.pass_at_k import SamplingParams, sample_and_score
from eval.verifiers import extract_answer


def majority(answers: list[str | None]) -> int | None:
    """Index of the first completion whose answer is the most frequent (None: no answers)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(i for i, a in enumerate(answers) if a is not None and counts[a] == best)


@METRICS.register("maj_at_k")
class MajAtK(Metric):
    name = "maj_at_k"
    Params = SamplingParams

    def evaluate(self, model, tokenizer, rows, ctx: EvalContext) -> MetricResult:
        p = self.params
        names = [ctx.spec.verifier or v for v in rows["verifier"]]
        if any(extract_answer(n, "1") is None for n in set(names)):
            bad = sorted({n for n in names if extract_answer(n, "1") is None})
            raise MetricError(f"maj_at_k votes on extracted answers; verifier(s) {bad} read no single answer")
        texts, outputs, scores = sample_and_score(model, tokenizer, rows, ctx, p)
        per_k: dict[str, list[float]] = {f"maj@{k}": [] for k in p.k}
        items = []
        for row, name, text, comps, ss in zip(rows, names, texts, outputs, scores):
            answers = [extract_answer(name, c) for c in comps]
            for k in p.k:
                win = majority(answers[:k])
                per_k[f"maj@{k}"].append(0.0 if win is None else ss[win])
            win = majority(answers)
            items.append({"item_id": row["id"], "prompt_hash": prompt_hash(text),
                          "output": comps[win] if win is not None else comps[0],
                          "answer": answers[win] if win is not None else None,
                          "score": per_k[f"maj@{max(p.k)}"][-1], "samples": len(comps)})
        values, stderr = {}, {}
        for key, vals in per_k.items():
            values[key], stderr[key] = mean_stderr(vals)
        return MetricResult(values=values, stderr=stderr, n=len(rows),
                            by_skill={k: grouped_means(rows, v, "skill") for k, v in per_k.items()},
                            by_source={k: grouped_means(rows, v, "source") for k, v in per_k.items()}, items=items,
                            extras={"n": p.n, "temperature": p.temperature})
