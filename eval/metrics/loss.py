"""``loss``: held-out mean token loss (cross-entropy, nats) of each row's target text.

Targets by row kind, as the stages train on them: ``text`` rows -- every token (causal LM, as the
pretrain stage); ``chat`` -- the assistant tokens (the chat template's ``{% generation %}`` mask when
it has one, else every token after the rendered prompt); ``verifiable`` -- the assistant turn SFT
adds (the worked solution, or the ground truth); ``preference`` -- the chosen response. An eval
``prefix`` (MeCo's metadata, "URL: host\\n\\n") is prepended and never scored.

The value is token-weighted: the sum of every target token's loss over the number of target tokens
(overall, per ``skill`` and per ``source``), which is what ``perplexity`` exponentiates. The
standard error is over rows of their mean token loss (an approximation: rows differ in length).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

from pydantic import BaseModel, ConfigDict, Field

from eval.metrics import METRICS
from eval.metrics.base import EvalContext, Metric, MetricResult, mean_stderr, prompt_hash


class LossParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_length: int = Field(1024, ge=8, description="tokens per row (longer rows are cut)")


def _target(row) -> tuple[list[dict] | None, list[dict] | None, str | None]:
    """(prompt messages, full conversation, text) of a row's scored target."""
    kind = row["kind"]
    if kind == "text":
        return None, None, row["text"]
    if kind == "chat":
        msgs = row["messages"]
        first = next((i for i, m in enumerate(msgs) if m["role"] == "assistant"), len(msgs))
        return msgs[:first], msgs, None
    if kind == "preference":
        return row["prompt"], row["prompt"] + row["chosen"], None
    solution = json.loads(row["metadata"] or "{}").get("solution") or row["ground_truth"]
    return row["prompt"], row["prompt"] + [{"role": "assistant", "content": solution}], None


def encode(tokenizer, row, prefix: str, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of a row and the mask of its target tokens."""
    prompt, full, text = _target(row)
    if text is not None:
        pre = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        body = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids, mask = pre + body, [0] * len(pre) + [1] * len(body)
        return ids[:max_length], mask[:max_length]
    return encode_messages(tokenizer, prompt, full, prefix, max_length)


def encode_messages(tokenizer, prompt: list[dict], full: list[dict], prefix: str, max_length: int):
    """Token ids of a conversation and the mask of what follows its prompt turns."""
    rendered = tokenizer.apply_chat_template(full, tokenize=False)
    ids = tokenizer(prefix + rendered, add_special_tokens=False)["input_ids"]
    head = tokenizer(prefix + tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]
    mask = [0] * len(head) + [1] * (len(ids) - len(head))
    try:
        enc = tokenizer.apply_chat_template(full, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        assistant = list(enc["assistant_masks"])
        if not prefix and any(assistant) and len(assistant) == len(ids):
            mask = assistant  # the template marks every assistant turn (multi-turn chats)
    except (ValueError, KeyError, TypeError):
        pass
    return ids[:max_length], mask[:max_length]


def token_losses(model, tokenizer, rows, prefix: str, max_length: int, batch_size: int, on_batch=None):
    """Per row: (sum of target-token losses, number of target tokens)."""
    encoded = [encode(tokenizer, r, prefix, max_length) for r in rows]
    return score_encoded(model, tokenizer, encoded, batch_size, on_batch), encoded


def score_encoded(model, tokenizer, encoded, batch_size: int, on_batch=None) -> list[tuple[float, int]]:
    """(sum of masked-token cross-entropies, masked tokens) of each encoded sequence."""
    import torch

    out: list[tuple[float, int]] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start:start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        tgt = torch.zeros((len(batch), width), dtype=torch.bool)
        for i, (x, m) in enumerate(batch):
            ids[i, :len(x)] = torch.tensor(x)
            att[i, :len(x)] = 1
            tgt[i, :len(m)] = torch.tensor(m, dtype=torch.bool)
        ids, att, tgt = ids.to(model.device), att.to(model.device), tgt.to(model.device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=att).logits.float()
        ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
        m = tgt[:, 1:] & att[:, 1:].bool()
        for s, c in zip((ce * m).sum(1).tolist(), m.sum(1).tolist()):
            out.append((s, int(c)))
        if on_batch:
            on_batch(len(batch))
    return out


def loss_result(rows, sums: list[tuple[float, int]], encoded, key: str, transform=lambda x: x) -> MetricResult:
    def agg(pairs):
        tokens = sum(c for _, c in pairs)
        return transform(sum(s for s, _ in pairs) / tokens) if tokens else float("nan")

    groups = {"skill": defaultdict(list), "source": defaultdict(list)}
    for row, pair in zip(rows, sums):
        for col in groups:
            groups[col][row[col] or "all"].append(pair)
    per_row = [s / c for s, c in sums if c]
    _, se = mean_stderr(per_row)
    items = [{"item_id": row["id"], "prompt_hash": prompt_hash(ids), "loss": (s / c) if c else None, "tokens": c,
              "score": None} for row, (s, c), (ids, _) in zip(rows, sums, encoded)]
    return MetricResult(values={key: agg(sums)}, stderr={key: se if key == "loss" else float("nan")}, n=len(rows),
                        by_skill={key: {k: agg(v) for k, v in sorted(groups["skill"].items())}},
                        by_source={key: {k: agg(v) for k, v in sorted(groups["source"].items())}}, items=items,
                        extras={"tokens": sum(c for _, c in sums)})


@METRICS.register("loss")
class Loss(Metric):
    name = "loss"
    Params = LossParams
    row_kinds = frozenset({"text", "chat", "verifiable", "preference"})
    higher_is_better = False

    def evaluate(self, model, tokenizer, rows, ctx: EvalContext) -> MetricResult:
        sums, encoded = token_losses(model, tokenizer, rows, ctx.spec.prefix, self.params.max_length,
                                     ctx.spec.batch_size, ctx.on_progress)
        return loss_result(rows, sums, encoded, "loss")


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss == loss and loss < 700 else float("inf")
