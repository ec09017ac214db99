"""SFT stage variants through the runner: a model loaded by path, LoRA (merged), packing."""

import json

import pytest

from tests.conftest import tiny_recipe


def _train(cli, write_recipe, tmp_path, recipe):
    out = tmp_path / "run"
    res = cli("train", write_recipe(recipe), "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_model_by_local_path(cli, write_recipe, tmp_path, tiny_model_dir):
    r = tiny_recipe(model={"path": str(tiny_model_dir), "dtype": "float32"})
    out = _train(cli, write_recipe, tmp_path, r)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"][0]["input_model"] == str(tiny_model_dir)
    assert (out / "stages" / "0-sft" / "final" / "model.safetensors").exists()


@pytest.mark.parametrize("merge", [True, False])
def test_lora_sft(cli, write_recipe, tmp_path, merge):
    r = tiny_recipe()
    r["stages"][0].update(peft={"name": "lora", "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, merge=merge)
    out = _train(cli, write_recipe, tmp_path, r)
    final = out / "stages" / "0-sft" / "final"
    assert (final / "adapter_config.json").exists() != merge
    results = json.loads((out / "eval" / "results.json").read_text())
    assert "0-sft" in results["evals"]["arith_test"]["models"]  # the trained model (merged or base+adapter) loads for eval


def test_packing_and_full_loss(cli, write_recipe, tmp_path):
    r = tiny_recipe()
    r["stages"][0].update(packing=True, assistant_only_loss=False)
    out = _train(cli, write_recipe, tmp_path, r)
    log = json.loads((out / "stages" / "0-sft" / "final" / "train_log.json").read_text())
    assert any("loss" in entry for entry in log)


def test_model_path_that_cannot_load(cli, write_recipe, tmp_path):
    """A local model path that does not exist, or a folder without config.json, is a recipe error at
    `model.path` (exit 2, before anything runs); an unloadable model is a clear error too."""
    r = tiny_recipe(model={"path": str(tmp_path / "no_model_here"), "dtype": "float32"})
    r["stages"][0]["max_steps"] = 1
    res = cli("train", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 2 and "model.path" in res.output and "no such folder" in res.output
    (tmp_path / "empty_model").mkdir()
    r["model"]["path"] = str(tmp_path / "empty_model")
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "without config.json" in res.output and "Traceback" not in res.output
    (tmp_path / "empty_model" / "config.json").write_text("{}")  # a config, but nothing loads from it
    res = cli("train", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 1 and "cannot load" in res.output and "Traceback" not in res.output


def test_tiny_chat_template_masks_exactly_the_assistant_turns(tiny_model_dir):
    """Assistant-only loss: TRL takes the loss mask from ``return_assistant_tokens_mask``, which the
    template's {% generation %} markers drive. Only assistant text (and its end marker) is marked."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"},
                {"role": "assistant", "content": "5"}, {"role": "user", "content": "And 4 + 4?"},
                {"role": "assistant", "content": "8"}]
    enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assert len(ids) == len(mask) and 0 < sum(mask) < len(mask)
    marked = [i for i, m in zip(ids, mask) if m]
    assert tok.decode(marked).replace(" ", "") == "5<|end|>8<|end|>"
    unmarked = tok.decode([i for i, m in zip(ids, mask) if not m])
    assert "What is 2 + 3?".replace(" ", "") in unmarked.replace(" ", "") and "Be brief" in unmarked
