"""The runner through the CLI: ledger, quarantine counts, cache reuse and invalidation, atomicity, train + eval."""

import json

import pyarrow.parquet as pq
import pytest

from tests.conftest import tiny_recipe
from curation import ledger as ledger_mod


def _alpaca_file(tmp_path, n_good=30):
    lines = [json.dumps({"instruction": f"Say {i}", "input": "", "output": f"{i}"}) for i in range(n_good)]
    lines += ['{"instruction": "oops', json.dumps({"instruction": "no output", "input": ""}),
              json.dumps({"instruction": "empty", "input": "", "output": ""})]
    p = tmp_path / "alpaca.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


def _recipe_with_file(tmp_path, **over):
    r = tiny_recipe()
    r["sources"]["alp"] = {"path": str(_alpaca_file(tmp_path)), "format": "alpaca", "license": "CC-BY-NC-4.0"}
    r["mixtures"]["sft"] = {"arith": 1.0, "alp": 0.5}
    r["selection"]["sft"] = [{"exact_dedup": {}}, {"length": {"max": 40}}]
    r.update(over)
    return r


def test_curate_writes_ledger_with_quarantine_and_decisions(cli, write_recipe, tmp_path):
    out = tmp_path / "run"
    res = cli("curate", write_recipe(_recipe_with_file(tmp_path)), "--out", out)
    assert res.exit_code == 0, res.output
    assert "quarantined 3 of 33 records" in res.output
    led = ledger_mod.read(out / "ledger").to_pandas()
    q = led[led.decision == "quarantine"]
    assert sorted(q.reason_code) == ["empty_assistant_turn", "invalid_json", "missing_field"]
    mixture = led[(led.step == "mixture") & (led.source == "alp")]
    assert len(mixture) == 30 and (mixture.decision == "keep").sum() == 15
    assert set(mixture[mixture.decision == "drop"].reason) == {"not_sampled"}
    dedup = led[led.step == "0:exact_dedup"]
    assert len(dedup) == 200 + 15 and dedup[dedup.decision == "drop"].reason.str.startswith("duplicate_of:").all()
    curation = json.loads((out / "curation.json").read_text())
    assert curation["sources"]["alp"]["quarantined"] == 3
    funnel = curation["mixtures"]["sft"]["funnel"]
    assert [f["step"] for f in funnel] == ["mixture", "exact_dedup", "length"]
    assert funnel[1]["rows_out"] == funnel[2]["rows_in"]
    final = pq.read_table(out / "datasets" / "sft.parquet")
    assert final.num_rows == funnel[-1]["rows_out"]
    assert (out / "resolved.yaml").read_text().startswith("# recipe hash:")


def test_second_curate_recomputes_nothing(cli, write_recipe, tmp_path):
    path = write_recipe(_recipe_with_file(tmp_path))
    out = tmp_path / "run"
    assert cli("curate", path, "--out", out).exit_code == 0
    res = cli("plan", path, "--out", out)
    assert "will run" in res.output  # stages and evals have not run
    lines = [l for l in res.output.splitlines() if l.startswith("│ source") or l.startswith("│ step") or l.startswith("│ mixture")]
    assert lines and all("cached" in l for l in lines), res.output
    res = cli("curate", path, "--out", out)
    assert "running" not in res.output and "loading" not in res.output


def test_editing_a_filter_reruns_it_and_what_follows(cli, write_recipe, tmp_path):
    path = write_recipe(_recipe_with_file(tmp_path))
    out = tmp_path / "run"
    cli("curate", path, "--out", out)
    res = cli("plan", path, "--out", out, "selection.sft.1.length.max=30")
    rows = {l.split("│")[2].strip(): l for l in res.output.splitlines() if l.count("│") >= 4}
    assert "cached" in rows["sft[0]:exact_dedup"] and "will run" in rows["sft[1]:length"]
    assert "cached" in rows["arith"] and "cached" in rows["sft"]


def test_mixture_count_larger_than_source(cli, write_recipe, tmp_path):
    r = tiny_recipe()
    r["mixtures"]["sft"] = {"arith": 500}
    res = cli("curate", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 1 and "asks for 500 rows of source 'arith', which has 200" in res.output
    assert "Traceback" not in res.output


def test_missing_data_file(cli, write_recipe, tmp_path):
    r = tiny_recipe()
    r["sources"]["f"] = {"path": str(tmp_path / "missing.jsonl"), "format": "alpaca"}
    res = cli("curate", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 1 and "data file not found" in res.output and "missing.jsonl" in res.output


def test_empty_source(cli, write_recipe, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    r = tiny_recipe()
    r["sources"]["e"] = {"path": str(tmp_path / "empty.jsonl"), "format": "alpaca"}
    res = cli("curate", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 1 and "yields no valid row" in res.output


def test_killed_step_leaves_no_trusted_entry(tmp_path):
    from recipe.cache import Cache

    cache = Cache(tmp_path / "c")
    with pytest.raises(KeyboardInterrupt):
        with cache.write("step", "abc") as tmp:
            (tmp / "rows.parquet").write_text("half")
            raise KeyboardInterrupt
    assert not cache.has("step", "abc") and not list((tmp_path / "c" / "step").iterdir())
    # a folder left by a SIGKILLed process (no marker, temp name) is never trusted and is swept
    (tmp_path / "c" / "step" / "abc.tmp-999-1").mkdir()
    assert not cache.has("step", "abc")
    assert cache.sweep() == 1


def test_train_eval_and_cache(cli, write_recipe, tmp_path):
    path = write_recipe(tiny_recipe())
    out = tmp_path / "run"
    res = cli("train", path, "--out", out)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "eval" / "results.json").read_text())["evals"]
    assert set(results["arith_test"]["models"]) == {"base", "0-sft"}
    assert results["arith_test"]["models"]["base"]["metrics"]["accuracy"]["n"] == 10
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"][0]["status"] == "done" and manifest["stages"][0]["rows"] > 0
    assert (out / "stages" / "0-sft" / "final" / "config.json").exists()
    # the card says which stage consumed which dataset, with the tokens it processed
    (use,) = json.loads((out / "card" / "card.json").read_text())["uses"]
    assert use["stage"] == "0-sft" and use["dataset"] == "sft" and use["status"] == "done"
    assert 0 < use["trained_tokens"] <= 3 * 8 * 48 and use["rows"] == manifest["stages"][0]["rows"]
    # and an audit of a row in the trained dataset names the stage that trained on it

    led = ledger_mod.read(out / "ledger").to_pandas()
    kept = led[(led.step == "0:exact_dedup") & (led.decision == "keep")].row_id.iloc[0]
    res = cli("audit", path, kept, "--out", out)
    assert res.exit_code == 0 and "reached stage dataset sft" in res.output
    assert "trained on by stage 0-sft" in res.output and "status done" in res.output
    # unchanged: nothing re-runs
    res = cli("train", path, "--out", out)
    assert "training" not in res.output and "evaluating" not in res.output and "running" not in res.output
    # only the lr changes: training and eval of the trained model re-run; curation and base eval stay cached
    res = cli("train", path, "--out", out, "stages.0.lr=2e-3")
    assert res.exit_code == 0
    assert "training" in res.output and "running" not in res.output and "loading" not in res.output
    assert "arith_test@base" in res.output and res.output.count("evaluating") == 1


def test_resume_with_nothing_to_resume(cli, write_recipe, tmp_path):
    res = cli("train", write_recipe(tiny_recipe()), "--out", tmp_path / "fresh", "--resume")
    assert res.exit_code == 1 and "nothing to resume" in res.output
