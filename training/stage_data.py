"""Checks of a stage's curated rows that need no model, run before any stage trains.

Each stage kind's config says which row kinds it trains on (``row_kinds`` /
``accepted_row_kinds()``) and may add its own checks (``check_rows``: RLVR's verifiers and IFEval
constraints); the converters to each trainer's format live with their kind (``training/stages/sft.py``,
...). :func:`check_stage_data` is what the stage loop calls for every stage before the first trains.
"""

from __future__ import annotations

from collections import Counter


class StageDataError(ValueError):
    pass


def require_kinds(stage, rows, kinds: frozenset[str] | None = None) -> None:
    """StageDataError unless every row is of a kind the stage trains on (with counts and example ids)."""
    allowed = kinds if kinds is not None else stage.accepted_row_kinds()
    present = Counter(rows["kind"])
    bad = set(present) - set(allowed)
    if not bad:
        return
    examples = [r["id"] for r in rows.select_columns(["id", "kind"]) if r["kind"] in bad][:3]
    counts = ", ".join(f"{k}: {present[k]}" for k in sorted(bad))
    raise StageDataError(
        f"a {stage.kind} stage trains on {', '.join(sorted(allowed))} rows; {sum(present[k] for k in bad)} of {len(rows)} "
        f"rows of dataset {stage.data!r} are not ({counts}; e.g. ids {examples}){stage.row_kinds_hint(bad)}")


def check_stage_data(stage, rows) -> None:
    """Everything about a stage's rows that can be checked before training (raises StageDataError)."""
    if len(rows) == 0:
        raise StageDataError(f"the {stage.kind} stage's dataset {stage.data!r} has no rows (every row was dropped?)")
    stage.check_rows(rows)


def prompt_lengths(rows, tokenizer, *, chat_template: str | None = None, sample: int = 2000, seed: int = 0) -> list[int]:
    """Tokens of each row's prompt as the trainer renders it (chat template, generation prompt), on a
    seeded sample of at most ``sample`` rows: what must fit in ``max_length`` for a row to train."""
    import random

    idx = list(range(len(rows)))
    if len(idx) > sample:
        idx = sorted(random.Random(seed).sample(idx, sample))
    out = []
    for r in rows.select(idx):
        if r["kind"] == "chat":
            msgs = r["messages"]
            first = next((j for j, m in enumerate(msgs) if m["role"] == "assistant"), len(msgs))
            prompt = msgs[:first]
        elif r["kind"] in ("preference", "verifiable"):
            prompt = r["prompt"]
        else:
            continue
        ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, chat_template=chat_template)
        out.append(len(ids["input_ids"] if hasattr(ids, "keys") else ids))  # transformers 5 returns a BatchEncoding
    return out


def no_row_fits(stage, rows, tokenizer, *, chat_template: str | None = None) -> str | None:
    """A problem when not one (sampled) row's prompt leaves room for an answer in ``max_length``."""
    lengths = prompt_lengths(rows, tokenizer, chat_template=chat_template)
    if not lengths:
        return None
    fitting = sum(n < stage.max_length for n in lengths)
    if fitting == 0:
        return (f"max_length: {stage.max_length} tokens leaves no room for an answer: the shortest prompt of dataset "
                f"{stage.data!r} is already {min(lengths)} tokens (median {sorted(lengths)[len(lengths) // 2]}); "
                "raise max_length")
    return None
