"""How a stage's token losses are reduced: TRL's token mean (default) or open-instruct's sum.

``loss_reduction: mean`` (TRL, transformers): every micro-batch loss is the sum of its token losses
divided by the number of loss tokens in the whole update (all gradient-accumulation micro-batches,
all ranks), so an update is the mean over its tokens.

``loss_reduction: sum`` (open-instruct ``finetune.py --reduce_loss sum``, the Tülu 3 SFT setting;
tulu3-fidelity.md): every micro-batch loss is the *sum* of its token losses; accelerate divides it by
the gradient-accumulation steps, and DDP averages the gradients over ranks. So an update's gradient
is (1 / (GA x ranks)) x the sum over its micro-batches of their token-summed gradients: it grows
with the number of tokens, and the published lr (5e-6 for Tülu 3 8B SFT) assumes that scale. With
``max_grad_norm: 1.0`` the clipped norm then caps most updates (open-instruct clips at 1.0 too), so
the effective step is close to a normalised-gradient step of size lr.

How: transformers passes ``num_items_in_batch`` (the update's loss-token count) to the loss, which
divides the token sum by it, and skips its own division by the accumulation steps when it did.
:func:`install` replaces that count, on the trainer instance, with GA (x ranks when
``average_tokens_across_devices`` later multiplies the loss by the rank count), which turns the same
code path into open-instruct's reduction without a TRL subclass. ``get_batch_samples`` is a public
``Trainer`` method (it returns the micro-batches of an update and that count).
"""

from __future__ import annotations

from typing import Literal

LossReduction = Literal["mean", "sum"]


class LossReductionError(RuntimeError):
    pass


def install(trainer, reduction: str) -> None:
    """Make ``trainer`` reduce token losses by ``reduction`` (``mean`` leaves it unchanged)."""
    if reduction == "mean":
        return
    if reduction != "sum":
        raise ValueError(f"unknown loss_reduction {reduction!r}; use mean or sum")
    original = trainer.get_batch_samples

    def get_batch_samples(epoch_iterator, num_batches, device):
        import torch

        batch_samples, num_items = original(epoch_iterator, num_batches, device)
        if num_items is None:
            raise LossReductionError("loss_reduction: sum needs a model whose loss accepts num_items_in_batch "
                                     "(transformers' loss kwargs); this model's does not: use loss_reduction: mean")
        scaled_for_ga = trainer.loss_is_scaled_for_ga if trainer.loss_is_scaled_for_ga is not None \
            else trainer.model_accepts_loss_kwargs
        divisor = len(batch_samples) if scaled_for_ga else 1
        if trainer.args.average_tokens_across_devices:  # the loss is then multiplied by the rank count
            divisor *= trainer.accelerator.num_processes
        return batch_samples, torch.tensor(float(divisor), device=device)

    trainer.get_batch_samples = get_batch_samples
