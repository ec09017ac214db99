"""`recipe sweep`: variants x seeds on one shared cache (common stages train once), the summary in
the shape tools read, a sweep file next to its recipe, and bad input (key path, no traceback)."""

import json

import pytest
import yaml

from tests.conftest import tiny_recipe


def _recipe(tmp_path):
    r = tiny_recipe()
    r["stages"] = [{"kind": "sft", "name": "first", "data": "sft", "max_steps": 2, "batch_size": 8, "max_length": 48},
                   {"kind": "sft", "name": "second", "data": "sft", "max_steps": 2, "batch_size": 8, "max_length": 48,
                    "lr": 5e-3}]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


def test_sweep_file_shares_stages_and_writes_the_summary(tmp_path, cli):
    _recipe(tmp_path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"recipe": "r.yaml", "name": "chain", "seeds": [0, 1], "baseline": "one",
                                     "metric": {"eval": "arith_test", "value": "accuracy"},
                                     "variants": {"one": {"stages": ["first"]}, "two": {"stages": ["first", "second"]}}}))
    out = tmp_path / "sweeps"
    res = cli("sweep", sweep, "--out", out)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"command", "metric", "lower_is_better", "method", "baseline", "seeds", "variants"}
    assert summary["metric"] == "arith_test/accuracy" and summary["lower_is_better"] is False
    assert summary["baseline"] == "one" and summary["method"] == "two" and summary["seeds"] == [0, 1]
    for v in summary["variants"].values():
        assert set(v) == {"per_seed", "mean", "std"} and len(v["per_seed"]) == 2
    # the stage both variants share trained once per seed: variant two reused variant one's
    for seed in (0, 1):
        assert (out / "one" / f"seed{seed}" / "stages" / "0-sft" / "final").is_dir()
        assert not (out / "two" / f"seed{seed}" / "stages" / "0-sft" / "final").exists()
        assert (out / "two" / f"seed{seed}" / "stages" / "1-sft" / "final").is_dir()
    assert res.output.count("training") == 2 + 2  # first x 2 seeds, second x 2 seeds
    table = json.loads((out / "metrics.json").read_text())
    row = next(r for r in table if r["eval"] == "arith_test" and r["value"] == "accuracy" and r["model"] == "first")
    assert row["variants"]["one"]["ratio_to_baseline"] in (1.0, None)
    assert (out / "summary.md").is_file() and (out / "summary.png").is_file()


def test_vary_on_the_command_line(tmp_path, cli):
    path = _recipe(tmp_path)
    out = tmp_path / "sw"
    res = cli("sweep", path, "--seeds", "0", "--vary", "selection.sft.0=exact_dedup,{length: {max: 20}}",
              "--baseline", "0=exact_dedup", "--out", out)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["variants"]) == ["0=exact_dedup", "0={length: {max: 20}}"]


@pytest.mark.parametrize("args,message", [
    (("--vary", "stages.0.lrr=1e-3,2e-3"), "stages[0].lrr: unknown key"),
    (("--vary", "stages.0.lr=fast,1e-3"), "stages[0].lr: expected a number"),
    (("--vary", "stages.0.lr=1e-3,2e-3", "--baseline", "nosuch"), "baseline: names no variant"),
    (("--seeds", "a,b"), "--seeds 'a,b'"),
])
def test_sweep_bad_input(tmp_path, cli, args, message):
    res = cli("sweep", _recipe(tmp_path), "--out", tmp_path / "sw", *args)
    assert res.exit_code in (1, 2) and message in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "sw" / "summary.json").exists()
