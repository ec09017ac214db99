"""A stage dataset's composition: rows and whitespace tokens by source, rows by kind and skill.

The data card shows it for every curated dataset. The runner computes it when it writes the
dataset, from the per-row token counts the mixture's draw already made for its outcome table
(``mixture._row_tokens``: ``word_counts(text_column(rows, "all"))``), carried through the steps as
the kept rows narrow (``Selection.carried``), and keeps it in ``curation.json``; the card then
reads it instead of reading the whole dataset back and counting every word again (about 2 s of the
card's 7 s at 1M rows here). A run written before that, or one whose cached mixture has no token
counts, is counted by the card from the dataset, with the same function.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def counts(column) -> dict[str, int]:
    """Value counts, most frequent first (ties in first-seen order, as ``Counter.most_common``)."""
    found = pc.value_counts(column).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(found, key=lambda c: -c["counts"])}


def composition(source, kind, skill, tokens: np.ndarray) -> dict:
    """The composition of rows with these ``source``, ``kind`` and ``skill`` columns and ``tokens`` per row."""
    tokens = np.asarray(tokens, dtype=np.int64)
    by = pa.table({"source": source, "tokens": tokens}).group_by("source").aggregate(
        [("tokens", "count"), ("tokens", "sum")]).to_pylist()
    by_source = {r["source"]: {"rows": r["tokens_count"], "tokens": int(r["tokens_sum"] or 0)} for r in by}
    return {"rows": len(tokens), "tokens": int(tokens.sum()),
            "by_source": dict(sorted(by_source.items())),
            "by_kind": counts(kind),
            "by_skill": counts(pc.fill_null(skill, "(none)"))}


def of_table(table: pa.Table) -> dict:
    """The composition of canonical rows, counting their tokens."""
    from curation.columns import text_column, word_counts

    return composition(table.column("source"), table.column("kind"), table.column("skill"),
                       word_counts(text_column(table, "all")))
