"""The data card, ``recipe audit`` and ``recipe diff``: readers of a run directory's files.

Why our own code: no library joins a per-row decision ledger to the selected data and the
training stages that consumed it (anchors.md). The card follows "Datasheets for Datasets"
(Gebru et al., 2021) in the Hugging Face dataset-card format; figures are matplotlib, pages Jinja2.
Nothing here re-runs a recipe or imports ``recipe``; everything reads the files a run wrote.
"""

from curation.card.run_files import RunFiles, RunFilesError

__all__ = ["RunFiles", "RunFilesError", "write_card"]


def write_card(out, card_dir=None, n_examples: int = 3):
    from curation.card.writer import write_card as _write

    return _write(out, card_dir, n_examples)
