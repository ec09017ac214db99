"""The ``prune`` stage kind: registered, refuses training keys and data, and its output (the pruned
model) is what the next stage starts from and what evals score."""

import json

import pytest

from tests.conftest import tiny_recipe


def test_prune_kind_is_registered_and_refuses_training_keys():
    from pydantic import ValidationError

    from training.kinds import STAGE_KINDS
    from training.stages.prune import PruneStage

    assert "prune" in STAGE_KINDS.names()
    stage = PruneStage.model_validate({"kind": "prune", "sparsity": 0.5, "modules": "attention"})
    assert stage.data is None and stage.accepted_row_kinds() == frozenset()
    PruneStage.model_validate(stage.model_dump(by_alias=True))  # the resolved stage (every key) validates again
    with pytest.raises(ValidationError, match="lr does not apply"):
        PruneStage.model_validate({"kind": "prune", "lr": 1e-3})
    with pytest.raises(ValidationError, match="reads no data"):
        PruneStage.model_validate({"kind": "prune", "data": "sft"})
    with pytest.raises(ValidationError):
        PruneStage.model_validate({"kind": "prune", "sparsity": 1.0})


def test_prune_then_recover_chains_and_evaluates_the_pruned_model(cli, write_recipe, tmp_path):
    from transformers import AutoModelForCausalLM

    from curation.prune import sparsity_of

    r = tiny_recipe(stages=[
        {"kind": "prune", "name": "prune", "sparsity": 0.5, "modules": "mlp"},
        {"kind": "sft", "data": "sft", "max_steps": 1, "lr": 1e-3, "batch_size": 8, "max_length": 48, "logging_steps": 1,
         "peft": {"name": "lora", "r": 4, "alpha": 8}, "merge": False},
    ], eval={"arith_test": {"source": "arith_test", "metrics": ["loss"]}})
    out = tmp_path / "run"
    res = cli("train", write_recipe(r), "--out", out)
    assert res.exit_code == 0, res.output
    pruned = out / "stages" / "0-prune" / "final"
    assert json.loads((pruned / "prune.json").read_text())["achieved_sparsity"] == 0.5
    assert sparsity_of(AutoModelForCausalLM.from_pretrained(pruned), "mlp") == 0.5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"][0]["rows"] is None and manifest["stages"][1]["input_model"] == str(pruned)
    adapter = json.loads((out / "stages" / "1-sft" / "final" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(pruned)  # the recovery's LoRA sits on the pruned model
    results = json.loads((out / "eval" / "results.json").read_text())
    assert set(results["evals"]["arith_test"]["models"]) == {"base", "prune", "1-sft"}
