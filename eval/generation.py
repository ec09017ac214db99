"""Prompts rendered as in training, and batched generation (greedy or sampled) with ``transformers``.

Rendering: the model's chat template with ``add_generation_prompt=True`` -- the template a stage
trained with, saved next to its weights -- after any few-shot examples as earlier turns
(``fewshot_as_multiturn``, as lm-evaluation-harness and OLMES do for chat models), then the eval's
``prefix`` prepended to the rendered text (MeCo's conditional inference: ``"URL: en.wikipedia.org\\n\\n"``
before the context, OLMES' ``OEEVAL_PREFIX``).

Batching: prompts are sorted by token length (longest first) so each batch holds prompts of similar
length, left-padded (decoder-only generation continues from the last real token), generated with
``model.generate`` in ``torch.no_grad``, and returned in the original order. Why our own loop and not
lm-eval's ``HFLM.generate_until``: it runs the rows of a recipe source with each row's own verifier,
few-shot turns from another source and the eval ledger, none of which lm-eval's task format holds;
``benchmarks/eval_throughput.py`` compares the two on the same model and questions.
"""

from __future__ import annotations

from typing import Any, Callable


def fewshot_turns(rows, n: int, seed: int) -> list[dict]:
    """``n`` seeded examples of a source as alternating user/assistant turns."""
    import json
    import random

    if n == 0 or len(rows) == 0:
        return []
    idx = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
    turns: list[dict] = []
    for r in rows.select(idx):
        if r["kind"] == "verifiable":
            solution = json.loads(r["metadata"] or "{}").get("solution") or r["ground_truth"]
            turns += r["prompt"] + [{"role": "assistant", "content": solution}]
        elif r["kind"] == "chat":
            turns += r["messages"]
        elif r["kind"] == "preference":
            turns += r["prompt"] + r["chosen"]
    return turns


def render(tokenizer, prompt: list[dict], fewshot: list[dict] | None = None, prefix: str = "") -> str:
    text = tokenizer.apply_chat_template(list(fewshot or []) + list(prompt), tokenize=False, add_generation_prompt=True)
    return prefix + text


def generate(model, tokenizer, texts: list[str], *, max_new_tokens: int, batch_size: int, num_samples: int = 1,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
             on_batch: Callable[[int], Any] | None = None) -> list[list[str]]:
    """``num_samples`` completions per text (greedy when ``temperature`` is 0), in input order."""
    import torch

    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out: list[list[str]] = [[] for _ in texts]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    sample = temperature > 0
    if sample:
        torch.manual_seed(seed)
    kwargs = dict(do_sample=sample, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=tokenizer.eos_token_id, num_return_sequences=num_samples)
    if sample:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            with torch.no_grad():
                gen = model.generate(**enc, **kwargs)
            decoded = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for j, i in enumerate(batch):
                out[i] = decoded[j * num_samples:(j + 1) * num_samples]
            if on_batch:
                on_batch(len(batch))
    finally:
        tokenizer.padding_side = old_side
    return out


def prompts_of(rows, tokenizer, ctx) -> list[str]:
    """The rendered prompt of every verifiable row of an eval (few-shot turns and prefix included)."""
    return [render(tokenizer, p, ctx.fewshot, ctx.spec.prefix) for p in rows["prompt"]]
