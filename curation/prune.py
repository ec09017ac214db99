"""Deterministic magnitude pruning of a causal LM's linear layers, in place.

One function serves both users of a pruned model: the ``prune`` stage kind
(``training/stages/prune.py``: "prune 50% of the MLP weights, then recover") and steps that need a
degraded copy of a model in-process (``paser``'s ``degraded: {prune: {sparsity, modules}}``), so a
recipe's stage and its selection step see the same pruned weights.

Method: per-matrix unstructured magnitude pruning (Han et al. 2015, "Learning both Weights and
Connections for Efficient Neural Networks"; the "magnitude" baseline of Sun et al. 2024, Wanda,
arXiv:2306.11695): in every selected weight matrix W with m entries, exactly
``k = round(sparsity * m)`` entries of smallest |W| are set to zero. Ties are broken by position
(a stable sort of |W| flattened in row-major order), so the result is a pure function of the
weights and the options, on any device. Biases, norms and embeddings are never pruned.

``modules`` selects the matrices by the module path (Hugging Face naming):

* ``mlp``: linear layers inside a block's feed-forward module (a path component ``mlp``,
  ``feed_forward``, ``ffn``; Llama's ``gate_proj``/``up_proj``/``down_proj``),
* ``attention``: linear layers inside the attention module (``self_attn``, ``attn``, ``attention``,
  ``self_attention``; Llama's ``q/k/v/o_proj``),
* ``all-linear``: every linear layer except the output head (``lm_head``), as PEFT's ``all-linear``.

Deviation from PASER (Ho et al. 2025): the paper recovers models pruned by LLM-Pruner, SliceGPT,
Wanda and SparseGPT; this built-in is plain magnitude pruning (no calibration data), the simplest
pruner that makes a model measurably worse. A model pruned elsewhere can be given by path instead.
"""

from __future__ import annotations

from typing import Any, Literal

Modules = Literal["mlp", "attention", "all-linear"]
MODULE_CHOICES = ("mlp", "attention", "all-linear")
_MLP = {"mlp", "feed_forward", "ffn"}
_ATTENTION = {"self_attn", "attn", "attention", "self_attention"}
_HEADS = {"lm_head", "embed_out", "output"}


class PruneError(ValueError):
    """The model has no linear layer of the selected kind (or the options are impossible)."""


def _is_linear(module) -> bool:
    import torch

    if isinstance(module, torch.nn.Linear):
        return True
    try:  # GPT-2 style models use transformers' Conv1D (a linear layer with transposed weights)
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return False
    return isinstance(module, Conv1D)


def selected_modules(model, modules: str) -> list[tuple[str, Any]]:
    """``[(qualified name, module)]`` of the linear layers ``modules`` selects, in model order."""
    if modules not in MODULE_CHOICES:
        raise PruneError(f"modules: {modules!r} is not one of {', '.join(MODULE_CHOICES)}")
    out = []
    for name, module in model.named_modules():
        if not _is_linear(module):
            continue
        parts = set(name.split("."))
        if modules == "mlp":
            ok = bool(parts & _MLP)
        elif modules == "attention":
            ok = bool(parts & _ATTENTION)
        else:
            ok = name.split(".")[-1] not in _HEADS
        if ok:
            out.append((name, module))
    return out


def prune_matrix_(weight, sparsity: float) -> int:
    """Zero exactly ``round(sparsity * numel)`` smallest-magnitude entries of ``weight`` in place
    (ties by position); returns how many were zeroed."""
    import torch

    flat = weight.data.view(-1)
    k = int(round(sparsity * flat.numel()))
    if k <= 0:
        return 0
    order = torch.argsort(flat.abs().float(), stable=True)
    flat[order[:k]] = 0
    return k


def magnitude_prune(model, sparsity: float, modules: str = "mlp") -> dict:
    """Prune ``model`` in place; returns a report (matrices, parameters, zeros, achieved sparsity)."""
    import torch

    if not 0 <= sparsity < 1:
        raise PruneError(f"sparsity must be in [0, 1), got {sparsity}")
    chosen = selected_modules(model, modules)
    if not chosen:
        raise PruneError(f"modules: {modules}: this model ({type(model).__name__}) has no linear layer of that kind "
                         f"to prune; give one of {', '.join(MODULE_CHOICES)} that it has")
    total = zeroed = 0
    with torch.no_grad():
        for _, module in chosen:
            total += module.weight.numel()
            zeroed += prune_matrix_(module.weight, sparsity)
    return {"modules": modules, "sparsity": sparsity, "matrices": len(chosen), "parameters": int(total),
            "zeroed": int(zeroed), "achieved_sparsity": zeroed / total if total else 0.0,
            "example_matrices": [n for n, _ in chosen[:4]]}


def sparsity_of(model, modules: str) -> float:
    """Share of exact zeros in the selected matrices (for tests and reports)."""
    chosen = selected_modules(model, modules)
    total = sum(m.weight.numel() for _, m in chosen)
    zeros = sum(int((m.weight == 0).sum()) for _, m in chosen)
    return zeros / total if total else 0.0
