"""A curated run for the card tests: two sources (one a file with malformed lines and no declared
license), a leaked slice of the eval set, and four selection steps incl. decontamination."""

from __future__ import annotations

import json

import pytest

from tests.conftest import tiny_recipe


def card_recipe(tmp_path, **over) -> dict:
    notes = tmp_path / "notes.jsonl"
    lines = [json.dumps({"body": f"note {i} " + " ".join(["carry"] * (i % 6))}) for i in range(30)]  # 2..7 words
    lines += [json.dumps({"body": "hi"}), json.dumps({"body": "ok"}), "{broken json", json.dumps({"body": ""})]
    notes.write_text("\n".join(lines) + "\n")
    recipe = tiny_recipe(
        name="cardtest",
        description="A small recipe to exercise the data card.",
        sources={
            **tiny_recipe()["sources"],
            "notes": {"path": str(notes), "kind": "text", "fields": {"text": "body"}},  # no license declared
        },
        mixtures={"sft": {"arith": 1.0, "arith_test": 0.5}, "notes_mix": {"notes": 1.0}},
        selection={
            "sft": [{"exact_dedup": {}}, {"length": {"unit": "chars", "max": 200}},
                    {"decontaminate": {"against": ["arith_test"], "mode": "exact", "field": "prompt"}}],
            "notes_mix": [{"length": {"unit": "words", "min": 3}}],
        },
    )
    recipe["sources"]["arith"]["license"] = "CC0-1.0"
    recipe.update(over)
    return recipe


@pytest.fixture
def curated_run(tmp_path, write_recipe, cli):
    path = write_recipe(card_recipe(tmp_path))
    out = tmp_path / "run"
    res = cli("curate", path, "--out", out)
    assert res.exit_code == 0, res.output
    return path, out, res.output
