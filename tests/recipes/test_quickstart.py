"""The shipped quickstart recipe runs end to end through the CLI (shortened by overrides)."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def test_quickstart_validates(cli):
    res = cli("validate", QUICKSTART)
    assert res.exit_code == 0, res.output


def test_quickstart_end_to_end_short(cli, tmp_path):
    out = tmp_path / "qs"
    res = cli("train", QUICKSTART, "--out", out, "sources.arithmetic.n=3000", "stages.0.max_steps=15",
              "eval.arith_test.limit=20")
    assert res.exit_code == 0, res.output
    curation = json.loads((out / "curation.json").read_text())
    funnel = curation["mixtures"]["sft"]["funnel"]
    assert funnel[0]["rows_out"] == 3000 and funnel[1]["dropped"].get("duplicate_of", 0) > 0
    results = json.loads((out / "eval" / "results.json").read_text())["evals"]["arith_test"]["models"]
    base, sft = results["base"]["metrics"]["accuracy"], results["0-sft"]["metrics"]["accuracy"]
    assert base["n"] == 20 and base["values"]["accuracy"] == 0.0
    assert set(sft["by_skill"]["accuracy"]) == {"add", "sub", "mul"}
