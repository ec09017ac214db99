"""`recipe audit` (a row's history, rows dropped for a reason) and `recipe diff` between runs."""

from __future__ import annotations

import pyarrow.parquet as pq

from tests.curation.card.conftest import card_recipe
from curation import ledger as ledger_mod


def _dropped_id(out, dataset, step):
    led = ledger_mod.read(out / "ledger").to_pylist()
    return next(r for r in led if r["dataset"] == dataset and r["step"] == step and r["decision"] == "drop")


def test_audit_kept_row_shows_every_step_and_dataset(curated_run, cli):
    _, out, _ = curated_run
    kept = pq.read_table(out / "datasets" / "sft.parquet").column("id")[0].as_py()
    res = cli("audit", out, kept)
    assert res.exit_code == 0, res.output
    text = res.output
    for step in ("mixture", "0:exact_dedup", "1:length", "2:decontaminate"):
        assert step in text
    assert "reached stage dataset sft" in text
    assert "=>" in text  # the source row itself (prompt => answer)
    assert "no training stage has consumed" in text


def test_audit_dropped_row_shows_reason(curated_run, cli):
    _, out, _ = curated_run
    rec = _dropped_id(out, "notes_mix", "0:length")
    res = cli("audit", out, rec["row_id"])
    assert res.exit_code == 0, res.output
    assert "too_short" in res.output and "reached no stage dataset" in res.output


def test_audit_quarantined_row_shows_raw_record(curated_run, cli):
    _, out, _ = curated_run
    res = cli("audit", out, "notes@33")  # the broken-JSON line
    assert res.exit_code == 0, res.output
    assert "quarantine" in res.output and "invalid_json" in res.output


def test_audit_unknown_id_suggests_prefix_matches(curated_run, cli):
    _, out, _ = curated_run
    kept = pq.read_table(out / "datasets" / "sft.parquet").column("id")[0].as_py()
    res = cli("audit", out, kept[:8])
    assert res.exit_code == 1
    assert f"no row with id {kept[:8]!r}" in res.output and kept in res.output and "did you mean" in res.output
    res = cli("audit", out, kept[:10] + "zzzzzz")  # a typo late in the id: still a suggestion
    assert res.exit_code == 1 and kept[:10] in res.output and "Traceback" not in res.output
    res = cli("audit", out, "zzzzzzzzzz")
    assert res.exit_code == 1 and "no row with id" in res.output


def test_audit_by_reason(curated_run, cli):
    _, out, _ = curated_run
    res = cli("audit", out, "--reason", "exact_m")
    assert res.exit_code == 0, res.output
    assert "6 record(s) dropped for 'exact_m'" in res.output or "dropped for 'exact_m'" in res.output
    assert "decontami" in res.output  # the step (the table may fold long cells)
    res = cli("audit", out, "--reason", "near_duplicate")
    assert res.exit_code == 0
    assert "no row was dropped" in res.output and "too_short" in res.output  # lists the reasons that exist
    res = cli("audit", out)
    assert res.exit_code == 1 and "give a row id" in res.output


def test_diff_groups_changes_by_step_and_reason(curated_run, cli, write_recipe, tmp_path):
    path, out, _ = curated_run
    out_b = tmp_path / "run_b"
    res = cli("curate", path, "selection.notes_mix.0.length.min=5", "--out", out_b)
    assert res.exit_code == 0, res.output
    res = cli("diff", out, out_b)
    assert res.exit_code == 0, res.output
    text = res.output
    assert "different recipes" not in text
    assert "selection.notes_mix[0].length.min" in text
    assert "dropped in B by 0:length: too_short" in text
    assert "stage dataset sft" in text and "0 left, 0 entered" in text
    # and the other way round: rows that entered B->A
    res = cli("diff", out_b, out)
    assert "entered" in res.output and "dropped in A by 0:length: too_short" in res.output


def test_diff_of_different_recipes_is_allowed_and_says_so(curated_run, cli, write_recipe, tmp_path):
    _, out, _ = curated_run
    other = write_recipe(card_recipe(tmp_path, name="other"), name="other.yaml")
    out_b = tmp_path / "other_run"
    assert cli("curate", other, "--out", out_b).exit_code == 0
    res = cli("diff", out, out_b)
    assert res.exit_code == 0, res.output
    assert "different recipes" in res.output and "'cardtest'" in res.output and "'other'" in res.output
    assert "name" in res.output


def test_diff_of_a_missing_run_is_a_clear_error(curated_run, cli, tmp_path):
    _, out, _ = curated_run
    res = cli("diff", out, tmp_path / "nope")
    assert res.exit_code == 1 and "not a run directory" in res.output and "Traceback" not in res.output
