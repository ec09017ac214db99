"""Preference records in both layouts become the same canonical row, and TRL renders the prompt
once: Tülu 3's preference mixtures carry a `prompt` string AND chosen/rejected conversations that
start with that prompt turn (tulu3-fidelity.md, ranked mismatch 1)."""

import json

from curation.sources import load_source
from recipe.schema import FileSource
from tests.conftest import ROOT

Q = "What is the capital of France? Answer in one word."
TULU_LAYOUT = {  # allenai/llama-3.1-tulu-3-8b-preference-mixture: prompt + whole conversations
    "id": "row-1", "source": "ultrafeedback", "prompt": Q,
    "chosen": [{"role": "user", "content": Q}, {"role": "assistant", "content": "Paris"}],
    "rejected": [{"role": "user", "content": Q}, {"role": "assistant", "content": "Lyon, I believe"}],
}
RESPONSES_LAYOUT = {"prompt": Q, "chosen": [{"role": "assistant", "content": "Paris"}],
                    "rejected": [{"role": "assistant", "content": "Lyon, I believe"}]}
SPEC = dict(kind="preference", fields={"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"})


def _load(tmp_path, records, **spec):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return load_source("prefs", FileSource(path=str(path), **{**SPEC, **spec}))


def test_whole_conversations_are_split_at_the_shared_prompt(tmp_path):
    tulu = _load(tmp_path, [TULU_LAYOUT]).rows[0]
    plain = _load(tmp_path, [RESPONSES_LAYOUT]).rows[0]
    assert tulu["prompt"] == [{"role": "user", "content": Q}]
    assert tulu["chosen"] == [{"role": "assistant", "content": "Paris"}]
    assert tulu["rejected"] == [{"role": "assistant", "content": "Lyon, I believe"}]
    assert tulu["id"] == plain["id"]  # the same content, whichever layout it came in


def test_system_turns_stay_in_the_prompt(tmp_path):
    sys = {"role": "system", "content": "Be brief."}
    rec = {**TULU_LAYOUT, "chosen": [sys] + TULU_LAYOUT["chosen"], "rejected": [sys] + TULU_LAYOUT["rejected"]}
    row = _load(tmp_path, [rec]).rows[0]
    assert row["prompt"] == [sys, {"role": "user", "content": Q}]
    assert row["chosen"] == [{"role": "assistant", "content": "Paris"}]


def test_prompt_that_disagrees_is_quarantined(tmp_path):
    bad = {**TULU_LAYOUT, "prompt": "Something else entirely"}
    res = _load(tmp_path, [bad, TULU_LAYOUT])
    assert len(res.rows) == 1
    assert [q["reason"] for q in res.quarantine] == ["prompt_mismatch"]


def test_conversations_without_a_prompt_field(tmp_path):
    rec = {k: v for k, v in TULU_LAYOUT.items() if k != "prompt"}
    row = _load(tmp_path, [rec], fields={"chosen": "chosen", "rejected": "rejected"}).rows[0]
    assert row["prompt"] == [{"role": "user", "content": Q}]


def test_trl_renders_the_user_turn_once(tmp_path, tiny_model_dir):
    """The rendered DPO input (Tülu template) holds the question once, in chosen and in rejected."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from training.stages.dpo import to_preference

    rows = _load(tmp_path, [TULU_LAYOUT]).rows
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = (ROOT / "recipes" / "tulu3" / "tulu_chat_template.jinja").read_text()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), per_device_train_batch_size=1, use_cpu=True, report_to=[],
                     max_length=512)
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=to_preference(rows),
                         processing_class=tok, peft_config=None)
    batch = next(iter(trainer.get_train_dataloader()))
    texts = [tok.decode(ids[mask.bool()]) for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
    assert texts == [f"<|user|>\n{Q}\n<|assistant|>\nParis<|end|>", f"<|user|>\n{Q}\n<|assistant|>\nLyon, I believe<|end|>"]
    # the completion (what DPO scores and length-normalises) is the answer only, never the question
    completion = tok.decode(batch["input_ids"][0][batch["completion_mask"][0].bool()])
    assert completion == "Paris<|end|>"
