"""The composition the runner keeps in curation.json (token counts carried from the mixture's draw
through the steps) is the one counted over the stage dataset, fresh, cached, and for a cached
mixture from before the counts were kept."""

import json

import pyarrow.parquet as pq
import pytest

from curation import composition
from curation.pipeline import TOKENS_FILE


MIXES = [{"pool": {"upsample": 1.5}, "arith": 0.5},  # copies past one (a take), and a fraction (a filter)
         {"pool": {"tokens": 0.7, "max_repetition": 2.0}, "arith": {"tokens": 0.3, "max_repetition": 2.0}},  # a token mixture
         {"pool": 200, "arith": 1.0}]  # a count, and every row once


def _recipe(path, mix) -> dict:
    return {
        "name": "c", "seed": 3, "model": {"init": "tiny"},
        "sources": {
            "pool": {"path": str(path), "kind": "text", "fields": {"text": "body"}, "license": "CC0-1.0"},
            "arith": {"generate": "arithmetic", "n": 120, "skills": ["add", "sub"], "max_operand": 9, "split": "train"},
        },
        "mixtures": {"mix": mix},
        "selection": {"mix": [{"exact_dedup": {}}, {"length": {"unit": "words", "min": 4}}]},
    }


def _stored_and_counted(out):
    record = json.loads((out / "curation.json").read_text())["mixtures"]["mix"]
    return record.get("composition"), composition.of_table(pq.read_table(out / "datasets" / "mix.parquet"))


@pytest.mark.parametrize("mix", MIXES)
def test_stored_composition_equals_the_counted_one(tmp_path, write_recipe, cli, mix):
    words = ["alpha", "beta", "gamma", "delta", "eps"]
    lines = [{"body": " ".join(words[: 1 + i % 5] * (1 + i % 3))} for i in range(300)]
    src = tmp_path / "pool.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))
    path = write_recipe(_recipe(src, mix))
    out = tmp_path / "run"
    for _ in range(2):  # fresh, then every node served from the cache
        res = cli("curate", path, "--out", out)
        assert res.exit_code == 0, res.output
        stored, counted = _stored_and_counted(out)
        assert stored == counted
        assert set(stored["by_source"]) == {"pool", "arith"}
        assert stored["rows"] < json.loads((out / "curation.json").read_text())["mixtures"]["mix"]["funnel"][0]["rows_out"]
    for entry in (out / "cache").rglob(TOKENS_FILE):  # a mixture cached before the counts were kept
        entry.unlink()
    res = cli("curate", path, "--out", out)
    assert res.exit_code == 0, res.output
    stored, counted = _stored_and_counted(out)
    assert stored is None
    facts = json.loads((out / "card" / "card.json").read_text())
    assert facts["composition"]["mix"] == counted  # the card counted it itself
