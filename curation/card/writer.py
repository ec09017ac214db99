"""Write a run's data card: ``README.md``, ``card.json``, ``index.html`` and ``plots/*.png``.

The card reads only the run directory's files (see :mod:`curation.card.run_files`), so
``recipe card`` can (re)write it for any finished run, and the runner writes it after each run.
Files are written to a temporary folder and renamed into place, so a failed card never leaves a
half-written one over a good one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from curation.card.facts import build_facts
from curation.card.plots import write_plots
from curation.card.render import render_html, render_readme
from curation.card.run_files import RunFiles


def write_card(out: str | Path, card_dir: str | Path | None = None, n_examples: int = 3) -> Path:
    """Write the card of run directory ``out`` into ``card_dir`` (default ``<out>/card``)."""
    run = RunFiles.open(out)
    card_dir = Path(card_dir) if card_dir else run.out / "card"
    tmp = card_dir.with_name(card_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        facts = build_facts(run, n_examples=n_examples)
        plots = write_plots(run, facts, tmp / "plots")
        facts["plots"] = plots
        (tmp / "card.json").write_text(json.dumps(facts, indent=1, default=str, ensure_ascii=False))
        (tmp / "README.md").write_text(render_readme(facts, plots))
        (tmp / "index.html").write_text(render_html(facts, plots, tmp / "plots"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if card_dir.exists():
        shutil.rmtree(card_dir)
    tmp.rename(card_dir)
    return card_dir
