"""The eval ledger: one record per eval item per model per metric (``eval/samples.parquet``).

Columns: ``eval``, ``suite``, ``model``, ``metric``, ``item_id`` (the row id of the eval source, or
``<task>:<doc_id>`` for lm-eval), ``prompt_hash`` (of the rendered prompt), ``output`` (the generated
text, or null for loss metrics), ``answer`` (what the verifier read), ``score`` and ``loss``.
``recipe audit R ID`` on an eval item's id shows its records across models.
"""

from __future__ import annotations

import pyarrow as pa

SAMPLES_SCHEMA = pa.schema([
    ("eval", pa.string()), ("suite", pa.string()), ("model", pa.string()), ("metric", pa.string()),
    ("item_id", pa.string()), ("prompt_hash", pa.string()), ("output", pa.string()), ("answer", pa.string()),
    ("score", pa.float64()), ("loss", pa.float64()),
])


def samples_table(eval_name: str, suite: str, model: str, metric: str, items: list[dict]) -> pa.Table:
    n = len(items)

    def col(key, cast=None):
        vals = [it.get(key) for it in items]
        return [None if v is None else (cast(v) if cast else v) for v in vals]

    return pa.table({
        "eval": [eval_name] * n, "suite": [suite] * n, "model": [model] * n, "metric": [metric] * n,
        "item_id": col("item_id", str), "prompt_hash": col("prompt_hash", str), "output": col("output", str),
        "answer": col("answer", str), "score": col("score", float), "loss": col("loss", float),
    }, schema=SAMPLES_SCHEMA)
