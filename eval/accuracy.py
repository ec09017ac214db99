"""Accuracy eval: greedy generation on held-out verifiable rows, scored by each row's verifier.

Prompts are rendered with the model's chat template (``add_generation_prompt=True``) and
generated in left-padded batches with ``transformers``' ``generate`` (greedy, ``max_new_tokens``).
The result holds the overall accuracy, accuracy per skill and per verifier, and a few examples.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import datasets

from eval.verifiers import get_verifier


def generate_greedy(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int,
                    on_batch: Callable[[int], Any] | None = None) -> list[str]:
    import torch

    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in batch]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            for row in out[:, enc["input_ids"].shape[1] :]:
                outputs.append(tokenizer.decode(row, skip_special_tokens=True))
            if on_batch:
                on_batch(len(batch))
    finally:
        tokenizer.padding_side = old_side
    return outputs


def accuracy(model, tokenizer, rows: datasets.Dataset, *, verifier: str | None = None, max_new_tokens: int = 32,
             batch_size: int = 64, on_batch=None) -> dict[str, Any]:
    if len(rows) == 0:
        raise ValueError("the eval set is empty")
    bad = [k for k in set(rows["kind"]) if k != "verifiable"]
    if bad:
        raise ValueError(f"accuracy needs verifiable rows (prompt, ground_truth, verifier); got kinds {bad}")
    completions = generate_greedy(model, tokenizer, rows["prompt"], max_new_tokens, batch_size, on_batch)
    by_skill, by_verifier = defaultdict(list), defaultdict(list)
    scores, examples = [], []
    for row, completion in zip(rows, completions):
        name = verifier or row["verifier"]
        score = get_verifier(name)(completion, row["ground_truth"])
        scores.append(score)
        by_skill[row["skill"] or "all"].append(score)
        by_verifier[name].append(score)
        if len(examples) < 5:
            examples.append({"id": row["id"], "prompt": row["prompt"][-1]["content"], "completion": completion,
                             "ground_truth": row["ground_truth"], "score": score})
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "accuracy": mean(scores),
        "n": len(scores),
        "by_skill": {k: mean(v) for k, v in sorted(by_skill.items())},
        "by_verifier": {k: mean(v) for k, v in sorted(by_verifier.items())},
        "examples": examples,
    }
