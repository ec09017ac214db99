"""``preference``: on held-out preference pairs, how often the policy prefers the chosen response
and the mean implicit reward margin against a reference model (DPO, Rafailov et al. 2023, Eq. 5:
r(x, y) = beta log pi(y|x) / pi_ref(y|x)):

    accuracy = mean[ log pi(y_w|x) > log pi(y_l|x) ]
    margin   = mean[ beta ((log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))) ]

log-probabilities summed over each response's tokens (``normalize: true``: averaged, as Tülu 3's
length-normalised DPO). ``ref`` names the reference: ``base`` (default) or a stage; its model key
joins the eval's cache key. Evaluated on the reference itself the margin is 0 by construction.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from eval.metrics import METRICS
from eval.metrics.base import EvalContext, Metric, MetricError, MetricResult, grouped_means, mean_stderr, prompt_hash
from eval.metrics.loss import encode_messages, score_encoded


class PreferenceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ref: str = Field("base", description="the reference model: base or a stage name")
    beta: float = Field(0.1, gt=0)
    normalize: bool = Field(False, description="average log-probs over response tokens (dpo_norm)")
    max_length: int = Field(1024, ge=8)


def _logps(model, tokenizer, rows, ctx, p) -> tuple[list[float], list[float]]:
    enc_w = [encode_messages(tokenizer, r["prompt"], r["prompt"] + r["chosen"], ctx.spec.prefix, p.max_length) for r in rows]
    enc_l = [encode_messages(tokenizer, r["prompt"], r["prompt"] + r["rejected"], ctx.spec.prefix, p.max_length) for r in rows]
    out = []
    for enc in (enc_w, enc_l):
        pairs = score_encoded(model, tokenizer, enc, ctx.spec.batch_size)
        out.append([-(s / c if p.normalize else s) if c else 0.0 for s, c in pairs])
    return out[0], out[1]


@METRICS.register("preference")
class Preference(Metric):
    name = "preference"
    Params = PreferenceParams
    row_kinds = frozenset({"preference"})

    @classmethod
    def model_refs(cls, params: PreferenceParams) -> list[str]:
        return [params.ref]

    def evaluate(self, model, tokenizer, rows, ctx: EvalContext) -> MetricResult:
        p = self.params
        if ctx.load_model is None:
            raise MetricError("preference needs the reference model, and the runner lent no model loader")
        pw, pl = _logps(model, tokenizer, rows, ctx, p)
        ref_model, ref_tok = ctx.load_model(p.ref)
        rw, rl = _logps(ref_model, ref_tok, rows, ctx, p)
        wins = [float(a > b) for a, b in zip(pw, pl)]
        margins = [p.beta * ((a - c) - (b - d)) for a, b, c, d in zip(pw, pl, rw, rl)]
        values, stderr = {}, {}
        values["preference_accuracy"], stderr["preference_accuracy"] = mean_stderr(wins)
        values["reward_margin"], stderr["reward_margin"] = mean_stderr(margins)
        items = [{"item_id": r["id"], "prompt_hash": prompt_hash(r["prompt"]), "output": None,
                  "answer": "chosen" if w else "rejected", "score": w, "margin": m} for r, w, m in zip(rows, wins, margins)]
        return MetricResult(values=values, stderr=stderr, n=len(rows),
                            by_skill={"preference_accuracy": grouped_means(rows, wins, "skill")},
                            by_source={"preference_accuracy": grouped_means(rows, wins, "source")}, items=items,
                            extras={"ref": p.ref, "beta": p.beta, "normalize": p.normalize})
