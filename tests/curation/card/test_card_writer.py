"""The data card written by `recipe curate` / `recipe card`: README front matter and sections,
card.json facts that agree with the ledger, plots, examples, and clear errors for bad run dirs."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import yaml
from curation import ledger as ledger_mod


def _front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n", 2)[1])


def test_curate_writes_card_with_datasheet_sections(curated_run):
    _, out, output = curated_run
    assert "data card" in output
    card = out / "card"
    readme = (card / "README.md").read_text()
    meta = _front_matter(readme)
    assert meta["pretty_name"].startswith("cardtest")
    # arith declares CC0-1.0; notes (and arith_test) declare nothing: the card never invents one
    assert meta["license"] == ["cc0-1.0", "unknown"]
    assert "notes: not declared" in meta["license_details"]
    assert meta["size_categories"] == ["n<1K"]
    assert {c["config_name"] for c in meta["configs"]} == {"sft", "notes_mix"}
    assert set(meta["task_categories"]) == {"question-answering", "text-generation"}
    for section in ("## Motivation", "## Composition", "## Collection process", "## Preprocessing",
                    "## Mixture: target vs observed", "## Contamination", "## Uses", "## Distribution",
                    "## Examples", "## Provenance"):
        assert section in readme
    assert "A small recipe to exercise the data card." in readme
    assert "| notes | not declared |" in readme


def test_card_json_agrees_with_ledger_and_run_files(curated_run):
    _, out, _ = curated_run
    facts = json.loads((out / "card" / "card.json").read_text())
    ledger = ledger_mod.read(out / "ledger").to_pylist()
    curation = json.loads((out / "curation.json").read_text())
    # composition counts are the stage datasets' rows
    for mix in ("sft", "notes_mix"):
        assert facts["composition"][mix]["rows"] == pq.read_table(out / "datasets" / f"{mix}.parquet").num_rows
        funnel = facts["mixtures"][mix]["funnel"]
        assert [s["rows_out"] for s in funnel] == [s["rows_out"] for s in curation["mixtures"][mix]["funnel"]]
        for step in funnel[1:]:
            drops = [r for r in ledger if r["dataset"] == mix and r["step"] == step["ledger_step"] and r["decision"] == "drop"]
            assert sum(step["dropped"].values()) == len(drops) == step["rows_in"] - step["rows_out"]
    # quarantine: the broken line and the empty body, counted by reason
    notes = next(s for s in facts["sources"] if s["name"] == "notes")
    assert notes["quarantined"] == 2 and notes["license"] == "not declared"
    assert notes["origin"]["type"] == "file" and len(notes["origin"]["sha256"]) == 64
    assert sum(notes["quarantine_reasons"].values()) == 2
    # the leaked half of the eval set is caught by decontamination and reported per benchmark
    report = facts["contamination"]["step_reports"][0]
    assert report["step"] == "decontaminate"
    assert report["report"]["contamination"]["arith_test"]["rows_dropped"] == sum(report["dropped"].values()) >= 5
    assert "arith_test" not in facts["composition"]["sft"]["by_source"]  # every leaked eval row was removed
    overlap = {(o["benchmark"], o["dataset"]): o["overlapping_prompts"] for o in facts["contamination"]["exact_prompt_overlap"]}
    assert overlap[("arith_test", "sft")] == 0
    # the length step's score summary and threshold
    length = facts["mixtures"]["notes_mix"]["funnel"][1]
    assert length["thresholds"] == {"min": 3.0} and length["score"]["min"] == 1.0
    # no stage has run yet: uses lists the declared stage as not run
    assert facts["uses"] == [{"stage": "0-sft", "kind": "sft", "dataset": "sft", "rows": facts["composition"]["sft"]["rows"],
                              "dataset_tokens": facts["composition"]["sft"]["tokens"], "status": "not run",
                              "trained_tokens": None, "epochs_seen": None, "input_model": None, "data_key": None}]
    assert facts["provenance"]["recipe_hash"] == (out / "resolved.yaml").read_text().split(":", 1)[1].split()[0]
    assert facts["provenance"]["libraries"]["datasets"]


def test_card_examples_and_plots(curated_run):
    _, out, _ = curated_run
    card = out / "card"
    facts = json.loads((card / "card.json").read_text())
    dropped = facts["examples"]["datasets"]["notes_mix"]["dropped"]["0:length"]["too_short"]
    assert len(dropped) == 3 and all(len(e["text"].split()) < 3 and e["reason"].startswith("too_short:") for e in dropped)
    decon = facts["examples"]["datasets"]["sft"]["dropped"]["2:decontaminate"]["exact_match"]
    assert decon and all(e["reason"].startswith("exact_match:arith_test:") and "=>" in e["text"] for e in decon)
    quarantined = facts["examples"]["quarantined"]["notes"]
    assert set(quarantined) == set(facts["sources"][2]["quarantine_reasons"])
    files = {p["file"] for p in facts["plots"]}
    assert {"funnel_sft.png", "funnel_notes_mix.png", "mixture_sft.png", "score_notes_mix_0_length.png",
            "score_sft_1_length.png", "score_sft_2_decontaminate.png"} <= files
    for f in files:
        assert (card / "plots" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (card / "README.md").read_text()
    assert "![funnel](plots/funnel_sft.png)" in readme
    assert "Dropped by `0:length` for `too_short`" in readme
    html = (card / "index.html").read_text()
    assert html.count("data:image/png;base64,") == len(files)


def test_card_renders_step_extras_generically(curated_run, cli):
    """Extras of steps we do not know (cluster sizes, weights over time) get plots."""
    _, out, _ = curated_run
    cur = json.loads((out / "curation.json").read_text())
    cur["mixtures"]["sft"]["funnel"][2]["extras"].update(
        cluster_sizes=[5, 3, 3, 1, 1, 1], weights_over_time={"arith": [0.5, 0.6, 0.7], "arith_test": [0.5, 0.4, 0.3]})
    (out / "curation.json").write_text(json.dumps(cur))
    res = cli("card", out)
    assert res.exit_code == 1 and "curation.json (changed after the commit" in res.output  # an edit is noticed
    from curation import run_commit

    commit = run_commit.read(out)
    run_commit.commit(out, commit["recipe_hash"], commit["curation_id"], list(commit["files"]))
    res = cli("card", out)
    assert res.exit_code == 0, res.output
    files = {p["file"] for p in json.loads((out / "card" / "card.json").read_text())["plots"]}
    assert {"extras_sft_1_length_cluster_sizes.png", "extras_sft_1_length_weights_over_time.png"} <= files


def test_card_command_from_recipe_and_card_dir(curated_run, cli, tmp_path):
    path, out, _ = curated_run
    res = cli("card", path, "--out", out, "--card-dir", tmp_path / "elsewhere")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "elsewhere" / "README.md").is_file() and (tmp_path / "elsewhere" / "index.html").is_file()


def test_missing_or_corrupt_ledger_is_a_clear_error(curated_run, cli):
    _, out, _ = curated_run
    part = sorted((out / "ledger").glob("*.parquet"))[0]
    part.write_bytes(b"not parquet at all")
    for args in (("card", out), ("audit", out, "abc")):
        res = cli(*args)
        assert res.exit_code == 1
        assert f"ledger/{part.name} (changed after the commit" in res.output and "Traceback" not in res.output
    (out / "ledger" / "index.json").write_text("{not json")
    res = cli("card", out)
    assert res.exit_code == 1 and "ledger/index.json (changed after the commit" in res.output and "Traceback" not in res.output
    shutil.rmtree(out / "ledger")
    res = cli("card", out)
    assert res.exit_code == 1 and "ledger/index.json (missing)" in res.output and "Traceback" not in res.output


def test_not_a_run_dir_is_a_clear_error(tmp_path, cli):
    res = cli("card", tmp_path)
    assert res.exit_code == 1 and "resolved.yaml" in res.output and "Traceback" not in res.output
    (tmp_path / "resolved.yaml").write_text("# recipe hash: x\nname: y\n")
    (tmp_path / "curation.json").write_text("{oops")
    res = cli("card", tmp_path)
    assert res.exit_code == 1 and "did not finish (no run.json" in res.output  # never committed
    (tmp_path / "run.json").write_text('{"recipe_hash": "x", "curation_id": "c", "files": {"curation.json": 5}}')
    res = cli("card", tmp_path)
    assert res.exit_code == 1 and "curation.json (from curation unreadable" in res.output
