"""``loss_reduction``: TRL's token mean, or open-instruct's per-micro-batch token sum (Tülu 3 SFT).

The accumulated gradient of one update must equal the autograd gradient of the hand-computed loss:
mean = (sum of every token loss of the update) / (loss tokens of the update); sum = (sum of every
token loss) / (gradient-accumulation steps), as open-instruct's ``--reduce_loss sum`` under accelerate."""

import pytest
import torch


ROWS = [[{"role": "user", "content": f"What is {a} + {b}?"}, {"role": "assistant", "content": str(a + b) * (1 + a % 3)}]
        for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]]


def _trainer(tiny_model_dir, tmp_path, reduction):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from training import loss_reduction

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    train = datasets.Dataset.from_list([{"messages": m} for m in ROWS])
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=2,
                     use_cpu=True, report_to=[], max_length=64, assistant_only_loss=True, shuffle_dataset=False,
                     dataloader_drop_last=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok)
    loss_reduction.install(trainer, reduction)
    return trainer, model


def _token_losses(model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits.float()
    labels = batch["labels"][:, 1:]
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels.clamp(min=0), reduction="none")
    return (ce * labels.ne(-100)).sum(), labels.ne(-100).sum()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_update_gradient_matches_the_reduction(reduction, tiny_model_dir, tmp_path):
    trainer, model = _trainer(tiny_model_dir, tmp_path, reduction)
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    batches, num_items = trainer.get_batch_samples(iter(trainer.get_train_dataloader()), 2, torch.device("cpu"))
    assert len(batches) == 2
    model.train()
    model.zero_grad()
    for batch in batches:
        trainer.training_step(model, batch, num_items)
    got = [p.grad.clone() for p in model.parameters() if p.grad is not None]

    model.zero_grad()
    sums, counts = zip(*(_token_losses(model, trainer._prepare_inputs(b)) for b in batches))
    hand = sum(sums) / (sum(counts) if reduction == "mean" else len(batches))
    hand.backward()
    want = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    if reduction == "sum":
        assert float(num_items) == 2.0  # grad-accum steps x 1 process


def test_sum_reduction_through_the_recipe(cli, write_recipe, tmp_path):
    from tests.conftest import tiny_recipe

    r = tiny_recipe()
    r["stages"][0].update(loss_reduction="sum", grad_accum=2, max_steps=2)
    res = cli("train", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    import json

    log = json.loads((tmp_path / "run" / "stages" / "0-sft" / "final" / "train_log.json").read_text())
    losses = [e["loss"] for e in log if "loss" in e]
    assert losses and losses[0] > 20  # a token SUM per micro-batch (~8 rows x a few answer tokens x ~5.7 nats)
