"""Per-document loss of causal LMs, normalised as bits per character (BPC).

Used by ``preselect`` (Shum et al. 2025, "Predictive Data Selection: The Data That Predicts Is
the Data That Teaches", hkust-nlp/PreSelect@258c632 ``data_processing/bpc/main.py``):
BPC(d) = total cross-entropy of d's tokens (nats) / (characters(d) * ln 2). Dividing by characters
rather than tokens makes models with different tokenizers comparable.

Long documents use the sliding-window evaluation of the PreSelect code (window 1900, stride 512
there; ``window``/``stride`` here): each token is scored once, with up to ``window`` tokens of
context. Documents that fit one window are batched. A BOS token is prepended when the tokenizer
has one and does not add it, so the first real token is scored too.

Why our own code: transformers gives logits, not a per-document, character-normalised total with
a sliding window; and curation must not import ``training`` (DESIGN.md), so models are loaded
with transformers directly.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from curation.steps.base import StepError


def load_scoring_model(path: str, dtype: str = "float32"):
    """(model, tokenizer) in eval mode, ``dtype`` (default float32) on CPU or the first GPU; StepError
    if impossible."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    except Exception as exc:  # OSError (missing / not cached offline), ValueError (not a causal LM)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StepError(f"cannot load scoring model {path!r}: {first} (give a local model folder; nothing is "
                        f"downloaded at run time)") from None
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return model, tokenizer


def _token_ids(tokenizer, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def _nll_batch(model, batch: list[list[int]], pad_id: int) -> np.ndarray:
    """Sum of token NLLs (nats) of each sequence, all tokens after the first predicted."""
    import torch

    device = next(model.parameters()).device
    width = max(len(x) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, x in enumerate(batch):
        ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    return (-(logp * mask[:, 1:]).sum(1)).cpu().numpy().astype(np.float64)


def _nll_sliding(model, ids: list[int], window: int, stride: int) -> float:
    """Each token scored once with up to ``window`` tokens of context (stride = new tokens per window)."""
    import torch

    device = next(model.parameters()).device
    total, prev_end = 0.0, 1  # token 0 (BOS or first token) is never a target
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        chunk = torch.tensor(ids[begin:end], device=device)[None]
        with torch.no_grad():
            logits = model(input_ids=chunk).logits[0, :-1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, chunk[0, 1:, None])[:, 0]
        positions = torch.arange(begin + 1, end, device=device)
        total += float(-(logp[positions >= prev_end]).sum())
        prev_end = end
        if end == len(ids):
            break
    return total


def bits_per_char(model, tokenizer, texts: Sequence[str], *, window: int = 1024, stride: int = 512,
                  batch_size: int = 8, advance: Callable[[int], object] | None = None) -> np.ndarray:
    """BPC of every text under one model (NaN for an empty text)."""
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos:
        window = min(window, max_pos)
    stride = min(stride, window)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    all_ids = [_token_ids(tokenizer, t) for t in texts]
    nll = np.zeros(len(texts))
    short = sorted((i for i, x in enumerate(all_ids) if len(x) <= window), key=lambda i: len(all_ids[i]))
    for start in range(0, len(short), batch_size):
        idx = short[start:start + batch_size]
        nll[idx] = _nll_batch(model, [all_ids[i] for i in idx], pad)
        if advance:
            advance(len(idx))
    for i, x in enumerate(all_ids):
        if len(x) > window:
            nll[i] = _nll_sliding(model, x, window, stride)
            if advance:
                advance(1)
    chars = np.array([len(t) for t in texts], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(chars > 0, nll / (chars * math.log(2)), np.nan)
