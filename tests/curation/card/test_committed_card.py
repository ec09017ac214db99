"""The committed card data_cards/quickstart/ matches what the code writes for the committed recipe.

A fresh `recipe curate` of recipes/quickstart.yaml (curation only) writes a card; its sections,
front matter, counts, funnel, plots and example ids must equal the committed card's. Timestamps,
git commit and library versions are not compared. Fix a failure by regenerating the card with the
command in data_cards/README.md."""

from __future__ import annotations

import json

import yaml

from tests.conftest import ROOT

COMMITTED = ROOT / "data_cards" / "quickstart"
REGENERATE = "recipe curate recipes/quickstart.yaml --out runs/quickstart --card-dir data_cards/quickstart"


def _structure(card_dir) -> dict:
    facts = json.loads((card_dir / "card.json").read_text())
    readme = (card_dir / "README.md").read_text()
    _, front, body = readme.split("---\n", 2)
    prov = facts["provenance"]
    return {
        "front_matter": yaml.safe_load(front),
        "headings": [line for line in body.splitlines() if line.startswith("#")],
        "sections": sorted(facts),
        "recipe": facts["recipe"],
        "sources": facts["sources"],
        "licenses": facts["licenses"],
        "composition": facts["composition"],
        "mixtures": facts["mixtures"],
        "contamination": facts["contamination"],
        "uses": facts["uses"],
        "examples": facts["examples"],
        "plots": facts["plots"],
        "provenance": {k: prov[k] for k in ("recipe_hash", "seed", "ledger_records", "resolved_recipe")},
        "plot_files": sorted(p.name for p in (card_dir / "plots").iterdir()),
    }


def test_committed_quickstart_card_matches_a_fresh_curate(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(ROOT)  # the recipe's path is recorded as given
    fresh = tmp_path / "card"
    res = cli("curate", "recipes/quickstart.yaml", "--out", tmp_path / "run", "--card-dir", fresh)
    assert res.exit_code == 0, res.output
    assert COMMITTED.is_dir(), f"no committed card; run: {REGENERATE}"
    want, got = _structure(COMMITTED), _structure(fresh)
    for key in want:
        assert got[key] == want[key], f"data_cards/quickstart drifted in {key!r}; regenerate with: {REGENERATE}"
