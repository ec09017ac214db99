"""``accuracy``: greedy generation on held-out verifiable rows, scored by each row's verifier.

The score of an item is its verifier's (1.0 pass, 0.0 fail; ``math``/``gsm8k``: the last number, as
Tülu 3's GSM8K verifier): the value is the mean, with its standard error, per skill and per source.
Prompts are rendered exactly as in training (the model's own chat template), after the optional
few-shot turns of ``fewshot: {source, n}`` and the eval's ``prefix``. Every item's generation, the
answer the verifier read and the score go to the eval ledger.
"""

from __future__ import annotations

from eval.generation import generate, prompts_of
from eval.metrics import METRICS
from eval.metrics.base import EvalContext, Metric, MetricResult, per_item_result, prompt_hash
from eval.verifiers import extract_answer, get_verifier


@METRICS.register("accuracy")
class Accuracy(Metric):
    name = "accuracy"
    version = "2"

    def evaluate(self, model, tokenizer, rows, ctx: EvalContext) -> MetricResult:
        spec = ctx.spec
        texts = prompts_of(rows, tokenizer, ctx)
        outputs = generate(model, tokenizer, texts, max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size,
                           on_batch=ctx.on_progress)
        scores, items = [], []
        for row, text, (completion,) in zip(rows, texts, outputs):
            name = spec.verifier or row["verifier"]
            score = float(get_verifier(name)(completion, row["ground_truth"]))
            scores.append(score)
            items.append({"item_id": row["id"], "prompt_hash": prompt_hash(text), "output": completion,
                          "answer": extract_answer(name, completion), "score": score})
        examples = [{"id": it["item_id"], "prompt": row["prompt"][-1]["content"], "completion": it["output"],
                     "ground_truth": row["ground_truth"], "score": it["score"]}
                    for it, row in zip(items[:5], rows.select(range(min(5, len(rows)))))]
        return per_item_result("accuracy", rows, scores, items, {"examples": examples})
