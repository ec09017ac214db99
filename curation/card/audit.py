"""``recipe audit``: the history of one row, or the rows dropped for one reason, from the ledger.

A row's history is every ledger record of its id (and of its upsampled copies ``<id>#k``): the load
(quarantine), the mixture draw, each selection step's decision, score and reason; then which stage
datasets it reached and which training stages consumed those datasets (from ``manifest.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from curation.card.run_files import RunFiles, RunFilesError
from curation.row_ids import base_id


class UnknownRow(RunFilesError):
    """No ledger record has this id; ``suggestions`` holds ids that share its prefix."""

    def __init__(self, row_id: str, suggestions: list[str], total: int):
        self.row_id, self.suggestions = row_id, suggestions
        if suggestions:
            more = f" (and {total - len(suggestions)} more)" if total > len(suggestions) else ""
            hint = "did you mean " + ", ".join(suggestions) + more + "?"
        else:
            hint = "no id starts with its first characters either; `recipe audit R --reason CODE` lists dropped rows"
        super().__init__(f"no row with id {row_id!r} in this run's ledger; {hint}")


@dataclass
class RowHistory:
    row_id: str
    ids: list[str]  # the id and its upsampled copies
    source_row: dict | None
    records: list[dict]
    reached: dict[str, list[str]] = field(default_factory=dict)  # stage dataset -> ids of this row in it
    stages: list[dict] = field(default_factory=list)  # stages that trained on a dataset holding it
    matched_items: list[dict] = field(default_factory=list)  # eval items a decontamination matched it to


@dataclass
class EvalItemHistory:
    """An eval item (a row of an eval source, or an lm-eval ``task:doc_id``): its results on every model."""

    item_id: str
    source_row: dict | None
    records: list[dict]


def _ids(run: RunFiles) -> list[str]:
    from curation import ledger

    return pc.unique(ledger.read(run.ledger_path, columns=["row_id"]).column("row_id")).to_pylist()


def suggest(run: RunFiles, row_id: str, limit: int = 5) -> tuple[list[str], int]:
    """Ids starting with ``row_id``; failing that, ids sharing its longest prefix (a typo late in it)."""
    ids = sorted(set(_ids(run)))
    for cut in range(len(row_id), 3, -1):
        hits = [i for i in ids if i.startswith(row_id[:cut])]
        if hits:
            return hits[:limit], len(hits)
    return [], 0


def eval_history(run: RunFiles, item_id: str) -> EvalItemHistory | None:
    """The eval ledger's records of one item (None when the run has none), read with a filter."""
    import pyarrow.dataset as pads

    path = run.out / "eval" / "samples.parquet"
    if not path.is_file():
        return None
    table = pads.dataset(path).to_table(filter=pads.field("item_id") == item_id)
    if table.num_rows == 0:
        return None
    return EvalItemHistory(item_id, run.source_rows([item_id]).get(item_id), table.to_pylist())


def _matched_items(run: RunFiles, records: list[dict]) -> list[dict]:
    """Eval items named by decontamination reasons (``ngram_overlap:<source>:<overlap>:<item id>``)."""
    out = []
    for r in records:
        if r["reason_code"] in ("ngram_overlap", "exact_match") and r["reason"]:
            parts = r["reason"].split(":")
            item, source = parts[-1], parts[1] if len(parts) > 2 else None
            row = run.source_rows([item]).get(item)
            out.append({"item_id": item, "source": source, "text": _text(row) if row else None})
    return out


def _text(row: dict) -> str:
    from curation.rows import row_text

    return row_text(row)[:500]


def history(run: RunFiles, row_id: str) -> RowHistory | EvalItemHistory:
    part = run.records_of([row_id])
    if part.num_rows == 0:
        found = eval_history(run, row_id)
        if found is not None:
            return found
        hits, total = suggest(run, row_id)
        raise UnknownRow(row_id, hits, total)
    records = sorted(part.to_pylist(), key=lambda r: (r["dataset"].startswith("source:") is False, r["dataset"], r["step_index"], r["row_id"]))
    ids = sorted({r["row_id"] for r in records})
    source_row = run.source_rows([base_id(row_id)]).get(base_id(row_id))
    hist = RowHistory(row_id, ids, source_row, records, matched_items=_matched_items(run, records))
    keys = {m: info.get("dataset_key") for m, info in run.curation.get("mixtures", {}).items()}
    for mix, found in run.datasets_holding(ids).items():
        if found:
            hist.reached[mix] = found
    for stage in (run.manifest or {}).get("stages", []):
        if stage.get("data") in hist.reached:
            hist.stages.append({**stage, "current_data": stage.get("data_key") == keys.get(stage["data"])})
    return hist


def dropped_for(run: RunFiles, reason: str) -> pa.Table:
    """Ledger records dropped or quarantined whose reason code equals or starts with ``reason``
    (``near_duplicate`` matches ``near_duplicate`` and ``near_duplicate_of``), or whose full reason
    starts with it (``duplicate_of:3fa2``)."""
    from curation import ledger

    match = pc.starts_with(pc.field("reason_code"), pattern=reason) | pc.starts_with(pc.field("reason"), pattern=reason)
    return ledger.read(run.ledger_path, where=(pc.field("decision") != "keep") & match)  # null matches nothing


def reason_codes(run: RunFiles) -> dict[str, int]:
    from curation import ledger

    codes = ledger.read(run.ledger_path, ["reason_code"], where=pc.field("decision") != "keep").column("reason_code")
    counts = pc.value_counts(codes).to_pylist()
    return {c["values"]: c["counts"] for c in counts if c["values"]}
