"""``perplexity``: exp of the token-weighted held-out loss of ``loss`` (eval/metrics/loss.py), the
aggregation lm-evaluation-harness uses (exp of the mean log-likelihood over all tokens, never a
mean of per-row perplexities); per skill and per source the same way."""

from __future__ import annotations

from eval.metrics import METRICS
from eval.metrics.base import EvalContext, Metric, MetricResult
from eval.metrics.loss import LossParams, loss_result, perplexity, token_losses


@METRICS.register("perplexity")
class Perplexity(Metric):
    name = "perplexity"
    Params = LossParams
    row_kinds = frozenset({"text", "chat", "verifiable", "preference"})
    higher_is_better = False

    def evaluate(self, model, tokenizer, rows, ctx: EvalContext) -> MetricResult:
        sums, encoded = token_losses(model, tokenizer, rows, ctx.spec.prefix, self.params.max_length,
                                     ctx.spec.batch_size, ctx.on_progress)
        return loss_result(rows, sums, encoded, "perplexity", transform=perplexity)
