"""``ifeval``: instruction following (Zhou et al. 2023, "Instruction-Following Evaluation for Large
Language Models"): greedy responses checked against each row's constraints (``verifier: ifeval``
rows; the ground truth is one constraint ``{func_name, kwargs}`` or a list of them).

Four values, as the paper and lm-evaluation-harness report them: ``prompt_level_strict`` (share of
prompts whose every instruction is followed), ``inst_level_strict`` (share of instructions
followed), and their ``_loose`` forms, where an instruction counts as followed if any loose variant
of the response follows it (first / last line removed, ``*`` removed; ``eval/ifeval.py``). The
checks are ours (``eval/ifeval.py``: IFEval's constraint descriptions, open-instruct's names).
"""

from __future__ import annotations

from eval.generation import generate, prompts_of
from eval.ifeval import follows, parse_constraints
from eval.metrics import METRICS
from eval.metrics.base import EvalContext, Metric, MetricError, MetricResult, grouped_means, mean_stderr, prompt_hash


@METRICS.register("ifeval")
class IFEval(Metric):
    name = "ifeval"

    def evaluate(self, model, tokenizer, rows, ctx: EvalContext) -> MetricResult:
        spec = ctx.spec
        names = {spec.verifier or v for v in rows["verifier"]}
        if names != {"ifeval"}:
            raise MetricError(f"ifeval scores rows whose verifier is ifeval; this source has {sorted(names)}")
        texts = prompts_of(rows, tokenizer, ctx)
        outputs = generate(model, tokenizer, texts, max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size,
                           on_batch=ctx.on_progress)
        prompt_level = {"strict": [], "loose": []}
        inst_level = {"strict": [], "loose": []}
        items = []
        for row, text, (response,) in zip(rows, texts, outputs):
            constraints = parse_constraints(row["ground_truth"])
            for mode in ("strict", "loose"):
                ok = [follows(response, name, kw, loose=mode == "loose") for name, kw in constraints]
                prompt_level[mode].append(float(all(ok)))
                inst_level[mode].extend(float(x) for x in ok)
            items.append({"item_id": row["id"], "prompt_hash": prompt_hash(text), "output": response,
                          "answer": None, "score": prompt_level["strict"][-1]})
        values, stderr = {}, {}
        for mode in ("strict", "loose"):
            values[f"prompt_level_{mode}"], stderr[f"prompt_level_{mode}"] = mean_stderr(prompt_level[mode])
            values[f"inst_level_{mode}"], stderr[f"inst_level_{mode}"] = mean_stderr(inst_level[mode])
        return MetricResult(values=values, stderr=stderr, n=len(rows),
                            by_skill={"prompt_level_strict": grouped_means(rows, prompt_level["strict"], "skill")},
                            by_source={"prompt_level_strict": grouped_means(rows, prompt_level["strict"], "source")},
                            items=items, extras={"instructions": len(inst_level["strict"])})
