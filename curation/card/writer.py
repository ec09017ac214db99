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
from curation.files import WriteError, describe_os_error, temp_tag


def write_card(out: str | Path, card_dir: str | Path | None = None, n_examples: int = 3) -> Path:
    """Write the card of run directory ``out`` into ``card_dir`` (default ``<out>/card``)."""
    run = RunFiles.open(out)
    card_dir = Path(card_dir) if card_dir else run.out / "card"
    tmp = card_dir.with_name(f".{card_dir.name}.tmp-{temp_tag()}")  # unique: two writers never share it
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise WriteError(exc.errno, describe_os_error(exc, card_dir.parent)) from None
    try:
        facts = build_facts(run, n_examples=n_examples)
        plots = write_plots(run, facts, tmp / "plots")
        facts["plots"] = plots
        (tmp / "card.json").write_text(json.dumps(facts, indent=1, default=str, ensure_ascii=False))
        (tmp / "README.md").write_text(render_readme(facts, plots))
        (tmp / "index.html").write_text(render_html(facts, plots, tmp / "plots"))
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(exc.errno, describe_os_error(exc, exc.filename or card_dir)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = card_dir.with_name(f".{card_dir.name}.old-{temp_tag()}")
    if card_dir.exists():
        card_dir.rename(old)  # moved aside, then the new card renamed in: never a half card in place
    try:
        tmp.rename(card_dir)
    except OSError:  # another writer's card landed in between: replace it
        card_dir.rename(card_dir.with_name(f".{card_dir.name}.old-{temp_tag()}-2"))
        tmp.rename(card_dir)
    for stale in card_dir.parent.glob(f".{card_dir.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return card_dir
