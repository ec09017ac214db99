"""``reweight``: loss-based sample reweighting (Sow et al., ICLR 2025, "Dynamic Loss-Based Sample
Reweighting for Improved Large Language Model Pretraining"; the official trainer,
sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025 ``src/trainer.py``; methods.md section 4).

For a global micro-batch of N sequences (gathered over every process):

1. l_i = the length-normalised cross-entropy of sequence i (mean over its n_i target tokens);
2. h_i = 2 delta l_i / (l_max - l_min) - delta (l_max + l_min) / (l_max - l_min), in [-delta, delta]
   (0 when every loss is equal);
3. f_i by ``strategy``: ``linupper`` min(h + delta, delta) (down-weights low-loss, redundant samples,
   flat from mid-range up); ``quadratic`` (the code's ``mid``) 1 - h^2/delta^2; ``extremes`` |h|;
   ``upper`` 0.5 h + 0.5 delta;
4. w_i = exp((f_i - max f) / r) / sum_j exp((f_j - max f) / r)  (``r`` is the code's ``kl_reg``;
   r -> infinity gives uniform weights);
5. loss = N sum_i w_i (n_i / sum_j n_j) l_i -- with uniform weights exactly the token mean.

The first ``burn_in`` optimizer steps use uniform weights (the code's ``burnout_steps``, 1000 there).
Weights are detached (they are not trained through). Each process computes the loss of its own
sequences with the gathered weights; the result is multiplied by the process count because DDP
averages gradients. Packing must be off (one sequence per row, checked at validate). What is not
kept from TRL's own loss: its logged entropy and token accuracy (the loss itself is recomputed
from the logits here).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from training.hooks import HOOKS
from training.hooks.base import Hook


class ReweightParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Literal["linupper", "quadratic", "extremes", "upper"] = "linupper"
    r: float = Field(0.4, gt=0, description="softmax temperature (the code's kl_reg: 1.0 for 124M, 0.4 for 210M/684M)")
    delta: float = Field(1.0, gt=0)
    burn_in: int = Field(0, ge=0, description="optimizer steps with uniform weights first (the code: 1000)")


def sample_weights(losses, strategy: str, r: float, delta: float):
    """w_i of steps 2-4 above for a 1-D tensor of per-sequence losses."""
    import torch

    lo, hi = losses.min(), losses.max()
    if float(hi - lo) <= 1e-12:
        h = torch.zeros_like(losses)
    else:
        h = 2 * delta * losses / (hi - lo) - delta * (hi + lo) / (hi - lo)
    if strategy == "linupper":
        f = torch.clamp(h + delta, max=delta)
    elif strategy == "quadratic":
        f = 1 - h ** 2 / delta ** 2
    elif strategy == "extremes":
        f = h.abs()
    else:  # upper
        f = 0.5 * h + 0.5 * delta
    return torch.softmax((f - f.max()) / r, dim=0)


def sequence_losses(model, inputs):
    """Per sequence: (mean target-token cross-entropy l_i, target tokens n_i), and the model output."""
    import torch

    labels = inputs["labels"]
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    model_inputs["use_cache"] = False
    out = model(**model_inputs)
    logits = out.logits[:, :-1].float()
    tgt = labels[:, 1:]
    mask = tgt.ne(-100)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt.clamp(min=0), reduction="none") * mask
    n = mask.sum(1)
    return ce.sum(1) / n.clamp(min=1), n, out


@HOOKS.register("reweight")
class Reweight(Hook):
    name = "reweight"
    Params = ReweightParams
    stage_kinds = frozenset({"sft", "pretrain"})

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.stats: list[dict] = []

    def compute_loss(self, trainer, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

        l_i, n_i, out = sequence_losses(model, inputs)
        acc = trainer.accelerator
        world = acc.num_processes
        if world > 1:
            from accelerate.utils import pad_across_processes

            size = torch.tensor([len(l_i)], device=l_i.device)
            sizes = acc.gather(size)
            l_all = acc.gather(pad_across_processes(l_i.detach(), dim=0))
            n_all = acc.gather(pad_across_processes(n_i, dim=0))
            width = int(sizes.max())
            keep = torch.cat([torch.arange(width, device=l_i.device) < s for s in sizes])
            l_all, n_all = l_all[keep], n_all[keep]
            start = int(sizes[: acc.process_index].sum())
        else:
            l_all, n_all, start = l_i.detach(), n_i, 0
        valid = n_all > 0
        N = int(valid.sum())
        p = self.params
        training = model.training
        if training and trainer.state.global_step >= p.burn_in and N > 1:
            w_all = torch.zeros_like(l_all)
            w_all[valid] = sample_weights(l_all[valid], p.strategy, p.r, p.delta)
        else:
            w_all = valid.float() / max(N, 1)
        w = w_all[start:start + len(l_i)].detach()
        total_tokens = n_all.sum().clamp(min=1)
        loss = N * (w * (n_i / total_tokens) * l_i).sum() * (world if training else 1)  # DDP averages gradients
        if training:
            wv = w_all[valid]
            self.stats.append({"step": trainer.state.global_step, "n": N, "w_min": float(wv.min()) * N,
                               "w_max": float(wv.max()) * N, "entropy": float(-(wv * wv.clamp(min=1e-12).log()).sum()),
                               "uniform": trainer.state.global_step < p.burn_in})
            step = trainer.state.global_step
            if step != getattr(self, "_last_logged", None) and step % max(1, trainer.args.logging_steps) == 0:
                self._last_logged = step
                self.log(self.stats[-1])
        return (loss, out) if return_outputs else loss

    def summary(self) -> dict:
        if not self.stats:
            return {}
        every = max(1, len(self.stats) // 200)
        return {"weight_max_over_uniform": [s["w_max"] for s in self.stats[::every]],
                "weight_min_over_uniform": [s["w_min"] for s in self.stats[::every]]}
