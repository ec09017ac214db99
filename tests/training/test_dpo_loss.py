"""DPO losses against a hand computation: the log-probs are computed here from the raw logits of
the policy and of a different reference model, then plugged into the paper formulas; TRL's loss
on the same collated batch must match (sigmoid = DPO Eq. 7; dpo_norm = Tülu 3's length-normalised
DPO, which training/stages/dpo.py maps to TRL's ``sigmoid_norm``)."""

import math

import datasets
import pytest
import torch

from training.stages.dpo import LOSS_TYPES

PAIRS = [
    {"prompt": [{"role": "user", "content": "What is 2 + 3?"}],
     "chosen": [{"role": "assistant", "content": "5"}],
     "rejected": [{"role": "assistant", "content": "The answer is 17 for sure"}]},
    {"prompt": [{"role": "user", "content": "What is 7 + 1?"}],
     "chosen": [{"role": "assistant", "content": "It is 8"}],
     "rejected": [{"role": "assistant", "content": "9"}]},
]


def _hand_logps(model, input_ids, attention_mask, completion_mask):
    """Sum of log π(token | prefix) over completion tokens, and the completion-token count."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    tok = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    mask = completion_mask[:, 1:].float()
    return (tok * mask).sum(1), completion_mask.sum(1).float()


@pytest.mark.parametrize("loss", ["sigmoid", "dpo_norm"])
def test_dpo_loss_matches_hand_computation(loss, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():  # a reference that differs from the policy, so the log-ratios are not 0
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    beta = 0.7
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, beta=beta, loss_type=[LOSS_TYPES[loss]],
                     use_cpu=True, report_to=[], max_length=64)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=datasets.Dataset.from_list(PAIRS),
                         processing_class=tok)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    policy.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()

    ids, att, comp = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    pol, n = _hand_logps(policy, ids, att, comp)
    rf, _ = _hand_logps(ref, ids, att, comp)
    pol_w, pol_l = pol.chunk(2)
    ref_w, ref_l = rf.chunk(2)
    n_w, n_l = n.chunk(2)
    assert (n_w != n_l).any(), "the pairs should differ in length so that normalisation matters"
    losses = []
    for i in range(len(PAIRS)):
        if loss == "sigmoid":
            margin = (pol_w[i] - ref_w[i]) - (pol_l[i] - ref_l[i])
        else:
            margin = (pol_w[i] - ref_w[i]) / n_w[i] - (pol_l[i] - ref_l[i]) / n_l[i]
        losses.append(-math.log(1 / (1 + math.exp(-beta * margin.item()))))
    hand = sum(losses) / len(losses)
    assert abs(hand - math.log(2)) > 1e-3  # non-trivial
    assert trl_loss == pytest.approx(hand, rel=1e-4, abs=1e-5)

