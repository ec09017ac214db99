"""Stages chain for real: pretrain -> LoRA unmerged -> LoRA continued -> full FT from an adapter dir
-> `from: base`; the manifest records each stage's input, data hash, output and status; every stage
gets its lr schedule plot; a continued `infinite` stage starts at η_c (no re-warm)."""

import json

import pytest
import yaml

from tests.conftest import tiny_recipe

SMALL = {"lr": 1e-3, "batch_size": 4, "max_length": 48, "logging_steps": 1}


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    from recipe.load import load_recipe
    from recipe.run import Runner

    tmp = tmp_path_factory.mktemp("chain")
    with open(tmp / "texts.jsonl", "w") as fh:
        for i in range(40):
            fh.write(json.dumps({"text": f"Note {i}: " + " ".join(f"{a} plus {i % 7} is {a + i % 7}." for a in range(6))}) + "\n")
    r = tiny_recipe(eval={})
    r["sources"]["notes"] = {"path": str(tmp / "texts.jsonl"), "kind": "text", "fields": {"text": "text"}}
    r["mixtures"]["cpt"] = {"notes": 1.0}
    r["stages"] = [
        {"kind": "pretrain", "data": "cpt", "max_steps": 3, "lr_scheduler": "wsd", "warmup_ratio": 0.3,
         "schedule": {"decay": "1-sqrt", "decay_ratio": 0.5}, **SMALL},
        {"kind": "sft", "name": "lora_a", "data": "sft", "max_steps": 3, "peft": {"r": 4}, "merge": False,
         "lr_scheduler": "infinite", **SMALL},
        {"kind": "sft", "name": "lora_b", "data": "sft", "max_steps": 2, "peft": {"r": 4}, "merge": True, **SMALL},
        {"kind": "sft", "name": "full_from_adapter", "from": "lora_a", "data": "sft", "max_steps": 2, **SMALL},
        {"kind": "sft", "name": "from_base", "from": "base", "data": "sft", "max_steps": 2, **SMALL},
    ]
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    runner = Runner(load_recipe(path), out=tmp / "out")
    runner.train()
    return runner, json.loads((tmp / "out" / "manifest.json").read_text())


def test_manifest_records_every_stage(chained):
    runner, manifest = chained
    out = runner.out
    base = str(runner.base_model_dir())
    names = [s["name"] for s in manifest["stages"]]
    assert names == ["0-pretrain", "lora_a", "lora_b", "full_from_adapter", "from_base"]
    by = {s["name"]: s for s in manifest["stages"]}
    assert by["0-pretrain"]["input_model"] == base and by["0-pretrain"]["from"] == "base"
    assert by["lora_a"]["input_model"] == str(out / "stages" / "0-pretrain" / "final")
    assert by["lora_b"]["input_model"] == str(out / "stages" / "1-sft" / "final")
    assert by["full_from_adapter"]["input_model"] == str(out / "stages" / "1-sft" / "final")
    assert by["from_base"]["input_model"] == base
    for s in manifest["stages"]:
        assert s["status"] == "done" and s["metrics"]["train_loss"] > 0
        assert s["data_key"] and s["rows"] > 0 and (out / "stages" / s["output"].split("/stages/")[1]).is_dir()
        assert (out / "stages" / s["output"].split("/stages/")[1]).parent.joinpath("lr_schedule.png").is_file()
    assert by["lora_a"]["adapter_only"] and not by["lora_b"]["adapter_only"]
    assert by["0-pretrain"]["data_key"] != by["lora_a"]["data_key"]


def test_unmerged_adapter_and_what_follows(chained):
    runner, _ = chained
    stages = runner.out / "stages"
    a = stages / "1-sft" / "final"
    assert (a / "adapter_config.json").is_file() and not (a / "model.safetensors").exists()
    cfg = json.loads((a / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(stages / "0-pretrain" / "final")
    for merged in ("2-sft", "3-sft", "4-sft"):  # continued adapter merged at the end; full FT; from base
        assert (stages / merged / "final" / "model.safetensors").is_file()
        assert not (stages / merged / "final" / "adapter_config.json").exists()


def test_unmerged_adapter_loads_as_base_plus_adapter(chained):
    import torch

    from training.models import load_model

    runner, _ = chained
    stages = runner.out / "stages"
    peft_model = load_model(str(stages / "1-sft" / "final"))
    assert type(peft_model).__name__.startswith("Peft")
    merged = load_model(str(stages / "1-sft" / "final"), adapter="merge")
    base = load_model(str(stages / "0-pretrain" / "final"))
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        a, b, c = (m(ids).logits for m in (peft_model, merged, base))
    assert torch.allclose(a, b, atol=1e-5)  # base + adapter == merged
    assert not torch.allclose(b, c, atol=1e-6)  # and the adapter changed something
    trainable = load_model(str(stages / "1-sft" / "final"), adapter="train")
    assert any(p.requires_grad for n, p in trainable.named_parameters() if "lora" in n)


def test_schedules_recorded(chained):
    runner, _ = chained
    stages = runner.out / "stages"
    wsd = json.loads((stages / "0-pretrain" / "lr_schedule.json").read_text())
    assert wsd["lr_scheduler"] == "wsd" and wsd["steps"] == 3 and wsd["lr"][0] == 0.0
    inf = json.loads((stages / "1-sft" / "lr_schedule.json").read_text())
    assert inf["continued"] and inf["rewarm"] is False
    assert inf["lr"][0] == pytest.approx(0.25e-3)  # a later stage of the infinite schedule stays at η_c
    log = json.loads((stages / "1-sft" / "final" / "train_log.json").read_text())
    assert [r["learning_rate"] for r in log if "learning_rate" in r][0] == pytest.approx(0.25e-3)
