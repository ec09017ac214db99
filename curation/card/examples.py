"""A few rows kept and dropped per reason, with their ids, for the card (truncated text).

Dropped rows are taken in ledger order (the first ``n`` per step and reason code); their text is
read from the cached canonical source rows. Quarantined records show their raw text from the
ledger's ``detail`` column (they never became canonical rows).
"""

from __future__ import annotations

from collections import defaultdict

import pyarrow.compute as pc

from curation.card.run_files import RunFiles

MAX_CHARS = 240


def truncate(text: str | None, limit: int = MAX_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _turns(messages) -> str:
    return " | ".join(f"{m['role']}: {m['content']}" for m in messages or [])


def display(row: dict) -> str:
    """One line that shows a canonical row of any kind."""
    kind = row.get("kind")
    if kind == "chat":
        text = _turns(row.get("messages"))
    elif kind == "preference":
        text = f"{_turns(row.get('prompt'))} || chosen: {_turns(row.get('chosen'))} || rejected: {_turns(row.get('rejected'))}"
    elif kind == "verifiable":
        text = f"{_turns(row.get('prompt'))} => {row.get('ground_truth')}"
    else:
        text = row.get("text") or ""
    return truncate(text)


def examples(run: RunFiles, n: int = 3) -> dict:
    out: dict = {"datasets": {}, "quarantined": {}}
    wanted: list[str] = []
    for mix in run.mixtures:
        kept = run.first_ids(mix, n)
        drops = run.ledger_of(mix, columns=["step", "row_id", "reason", "reason_code", "score"], where=pc.field("decision") == "drop")
        groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for step, rid, reason, code, score in zip(*(drops.column(c).to_pylist() for c in
                                                    ("step", "row_id", "reason", "reason_code", "score"))):
            bucket = groups[step][code or "(none)"]
            if len(bucket) < n:
                bucket.append({"id": rid, "reason": reason, "score": score})
        out["datasets"][mix] = {"kept": [{"id": i} for i in kept],
                                "dropped": {s: dict(g) for s, g in groups.items()}}
        wanted += kept + [e["id"] for g in groups.values() for b in g.values() for e in b]
    rows = run.source_rows(wanted)
    for mix, ex in out["datasets"].items():
        for e in ex["kept"] + [e for g in ex["dropped"].values() for b in g.values() for e in b]:
            row = rows.get(e["id"])
            e["text"] = display(row) if row else "(row text unavailable: the source cache entry is gone)"
    for src in run.curation.get("sources", {}):
        _quarantined(run.ledger_of(f"source:{src}", "load", where=pc.field("decision") == "quarantine"), out["quarantined"], n)
    return out


def _quarantined(quarantine, out: dict, n: int) -> None:
    for src, rid, code, reason, raw in zip(*(quarantine.column(c).to_pylist() for c in
                                            ("source", "row_id", "reason_code", "reason", "detail"))):
        bucket = out.setdefault(src, {}).setdefault(code, [])
        if len(bucket) < n:
            bucket.append({"id": rid, "reason": reason, "text": truncate(raw) or "(no raw text: the record was unparseable)"})
