"""The pretrain stage's data path: text rows are packed into ``max_length`` blocks and every token
is a label (continued pretraining), unlike SFT's assistant-only loss."""

import pytest
from transformers import AutoTokenizer

from curation.rows import make_row, rows_to_dataset
from recipe.schema import PretrainStage
from training.models import load_model
from training.common import StageContext
from training.stages.pretrain import build_trainer
from training.stage_data import StageDataError


def _docs(n=40):
    return rows_to_dataset([make_row("text", "web", text=f"Document {k}: " + " ".join(f"{k} + {j} = {k + j}." for j in range(2)))
                            for k in range(n)])


@pytest.mark.parametrize("strategy", ["wrapped", "bfd"])
def test_documents_are_packed_and_every_token_is_a_label(tiny_model_dir, tmp_path, strategy):
    stage = PretrainStage(kind="pretrain", data="web", max_length=64, batch_size=4, max_steps=1,
                          packing_strategy=strategy)
    model, tok = load_model(str(tiny_model_dir), dtype="float32"), AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = build_trainer(StageContext(stage, model, tok, _docs(), tmp_path, seed=0))
    packed = trainer.train_dataset
    total = sum(len(tok(d["text"])["input_ids"]) + 1 for d in _docs())  # + EOS per document
    lengths = [len(ids) for ids in packed["input_ids"]]
    assert len(packed) < 40 and max(lengths) == 64  # several documents share a block
    if strategy == "wrapped":  # concatenated and cut: all blocks full but the last, no token lost
        assert all(n == 64 for n in lengths[:-1]) and sum(lengths) == total
    batch = trainer.data_collator([packed[i] for i in range(4)])
    real = batch["labels"] != -100
    # no prompt/completion masking: every token is a label, except (bfd, padding-free) the first token
    # of each packed document, which TRL un-labels so that no document is predicted from another
    starts = sum(len(packed[i]["seq_lengths"]) for i in range(4)) if strategy == "bfd" else 0
    assert real.sum() == sum(lengths[:4]) - starts
    assert (batch["labels"][real] == batch["input_ids"][real]).all()


def test_chat_rows_are_refused(tiny_model_dir, tmp_path):
    stage = PretrainStage(kind="pretrain", data="x", max_length=64, max_steps=1)
    model, tok = load_model(str(tiny_model_dir), dtype="float32"), AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = rows_to_dataset([make_row("chat", "s", messages=[{"role": "user", "content": "hi"},
                                                            {"role": "assistant", "content": "yo"}])])
    with pytest.raises(StageDataError, match="pretrain stage needs text rows"):
        build_trainer(StageContext(stage, model, tok, chat, tmp_path, seed=0))
