"""The decision ledger: one record per row per step, in Parquet.

Why our own code: no curation library records per-row decisions joined to the training set
(anchors.md). The ledger is what the data card, ``recipe audit`` and ``recipe diff`` read.

Columns: ``dataset`` (mixture name, or ``source:<name>`` for loading), ``step`` (``load``,
``mixture``, or ``<i>:<step name>``), ``step_index`` (order within the dataset's pipeline),
``row_id``, ``source``, ``decision`` (``keep``, ``drop``, ``quarantine``), ``score`` (float or
null), ``reason`` (the full ``code:detail`` string) and ``reason_code`` (the code alone).
Quarantined records keep their raw text in ``detail`` so nothing is lost. A step that orders its
rows (``Decisions.order``/``group``, e.g. ``iclm``) fills ``position`` (the kept row's place in
the step's output, 0-based; null for dropped rows and for steps that do not order) and ``group``
(e.g. the ICLM path the row was placed on). Both are nullable and *optional*: a ledger or a cached
step entry written before they existed is read with them null (:func:`conform`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("step", pa.string()),
        ("step_index", pa.int32()),
        ("row_id", pa.string()),
        ("source", pa.string()),
        ("decision", pa.string()),
        ("score", pa.float64()),
        ("reason", pa.string()),
        ("reason_code", pa.string()),
        ("detail", pa.string()),
        ("position", pa.int64()),
        ("group", pa.int64()),
    ]
)
OPTIONAL = ("position", "group")  # added later: older ledgers lack them, readers get nulls
REQUIRED = tuple(n for n in SCHEMA.names if n not in OPTIONAL)


class LedgerError(Exception):
    pass


def _code(reason: str | None) -> str | None:
    return None if reason is None else reason.split(":", 1)[0]


def _ints_or_null(values, n: int, valid=None) -> pa.Array:
    """Integers with null where negative (or where ``valid`` is false); all null when ``values`` is None."""
    if values is None:
        return pa.nulls(n, pa.int64())
    values = np.asarray(values, dtype=np.int64)
    mask = values < 0 if valid is None else (values < 0) | ~np.asarray(valid, dtype=bool)
    return pa.array(values, pa.int64(), mask=mask)


def records_table(dataset: str, step: str, step_index: int, row_ids, sources, keep, score=None, reason=None, detail=None,
                  position=None, group=None) -> pa.Table:
    n = len(row_ids)
    keep = np.asarray(keep, dtype=bool)
    reason = list(reason) if reason is not None else [None] * n
    return pa.table(
        {
            "dataset": pa.array([dataset] * n, pa.string()),
            "step": pa.array([step] * n, pa.string()),
            "step_index": pa.array(np.full(n, step_index, dtype=np.int32)),
            "row_id": pa.array(list(row_ids), pa.string()),
            "source": pa.array(list(sources), pa.string()),
            "decision": pa.array(np.where(keep, "keep", "drop").tolist(), pa.string()),
            "score": pa.array(None if score is None else np.asarray(score, dtype=np.float64), pa.float64())
            if score is not None else pa.nulls(n, pa.float64()),
            "reason": pa.array(reason, pa.string()),
            "reason_code": pa.array([_code(r) for r in reason], pa.string()),
            "detail": pa.array(list(detail) if detail is not None else [None] * n, pa.string()),
            "position": _ints_or_null(position, n, valid=keep),
            "group": _ints_or_null(group, n),
        },
        schema=SCHEMA,
    )


def conform(table: pa.Table) -> pa.Table:
    """``table`` with the columns of :data:`SCHEMA` in order, the optional ones added as nulls when missing
    (a ledger, or a cached step's decisions, from before they existed)."""
    for name in OPTIONAL:
        if name not in table.column_names:
            table = table.append_column(pa.field(name, SCHEMA.field(name).type), pa.nulls(table.num_rows, SCHEMA.field(name).type))
    return table.select(list(SCHEMA.names)) if table.column_names != SCHEMA.names else table


def quarantine_table(source: str, quarantine: list[dict]) -> pa.Table:
    n = len(quarantine)
    return pa.table(
        {
            "dataset": pa.array([f"source:{source}"] * n, pa.string()),
            "step": pa.array(["load"] * n, pa.string()),
            "step_index": pa.array(np.zeros(n, dtype=np.int32)),
            "row_id": pa.array([f"{source}@{q['index']}" for q in quarantine], pa.string()),
            "source": pa.array([source] * n, pa.string()),
            "decision": pa.array(["quarantine"] * n, pa.string()),
            "score": pa.nulls(n, pa.float64()),
            "reason": pa.array([f"{q['reason']}:{q['detail']}" if q["detail"] else q["reason"] for q in quarantine], pa.string()),
            "reason_code": pa.array([q["reason"] for q in quarantine], pa.string()),
            "detail": pa.array([q.get("raw") or None for q in quarantine], pa.string()),
            "position": pa.nulls(n, pa.int64()),
            "group": pa.nulls(n, pa.int64()),
        },
        schema=SCHEMA,
    )


def write(tables: list[pa.Table], path: Path, stamp: dict | None = None) -> Path:
    """Write the ledger atomically (a temp name unique to this process, then rename). ``stamp``
    (recipe_hash, curation_id) goes into the schema metadata: the run commit checks it."""
    from curation.files import atomic_path
    from curation.run_commit import stamp as stamp_table

    table = pa.concat_tables([conform(t.replace_schema_metadata(None)) for t in tables]) if tables else SCHEMA.empty_table()
    if stamp:
        table = stamp_table(table, stamp["recipe_hash"], stamp["curation_id"])
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read(path: Path) -> pa.Table:
    if not Path(path).exists():
        raise LedgerError(f"no ledger at {path}: run `recipe curate` (or `recipe train`) for this recipe first")
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise LedgerError(f"the ledger at {path} is unreadable ({str(exc).splitlines()[0]}); re-run `recipe curate` to rebuild it") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    return table if missing else conform(table)  # the caller names missing required columns
