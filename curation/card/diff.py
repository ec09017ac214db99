"""``recipe diff``: what changed between two run directories.

For each stage dataset: the rows that entered (in B, not in A) and left (in A, not in B), grouped by
the step and reason that explain the change -- a row that left is found where run B's ledger
dropped it, a row that entered where run A's ledger dropped it; a row absent from the other run's
ledger altogether came from a source that changed. Then the recipe keys that differ between the
two ``resolved.yaml`` files. Runs of two different recipes are compared too, with a note. A stage
dataset whose common rows are in another order (an ordering step, ``iclm``) says so.
"""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from curation.card.run_files import RunFiles

MISSING = "(not set)"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def changed_keys(a: dict, b: dict) -> list[dict]:
    fa, fb = flatten(a), flatten(b)
    return [{"key": k, "a": fa.get(k, MISSING), "b": fb.get(k, MISSING)}
            for k in sorted(set(fa) | set(fb)) if fa.get(k, MISSING) != fb.get(k, MISSING)]


def _drop_cause(run: RunFiles, mixture: str) -> dict[str, str]:
    """row id -> "step: reason_code" where this run's ledger removed it from ``mixture``."""
    part = run.ledger_of(mixture, columns=["row_id", "step", "reason_code"], where=pc.field("decision") != "keep")
    return {rid: f"{step}: {code}" for rid, step, code in
            zip(*(part.column(c).to_pylist() for c in ("row_id", "step", "reason_code")))}


def _seen(run: RunFiles, mixture: str) -> set[str]:
    return set(run.ledger_of(mixture, columns=["row_id"]).column("row_id").to_pylist())


def _cause(rid: str, dropped: dict[str, str], seen: set[str], other: str) -> str:
    if rid in dropped:
        return f"dropped in {other} by {dropped[rid]}"
    if rid not in seen:
        return f"not among {other}'s mixture rows (a source or mixture share changed)"
    return f"kept by every step in {other} (its stage dataset differs)"


def diff_runs(a: RunFiles, b: RunFiles, examples: int = 3) -> dict:
    name_a, name_b = a.recipe.get("name"), b.recipe.get("name")
    result: dict[str, Any] = {
        "a": str(a.out), "b": str(b.out), "recipe_a": name_a, "recipe_b": name_b,
        "hash_a": a.recipe_hash, "hash_b": b.recipe_hash,
        "same_recipe": name_a == name_b, "changed_keys": changed_keys(a.recipe, b.recipe), "datasets": {},
    }
    ids_a, ids_b = a.dataset_ids, b.dataset_ids
    for mix in list(dict.fromkeys(list(ids_a) + list(ids_b))):
        if mix not in ids_a or mix not in ids_b:
            result["datasets"][mix] = {"only_in": "A" if mix in ids_a else "B",
                                       "rows": len(ids_a.get(mix) or ids_b.get(mix))}
            continue
        left, entered = ids_a[mix] - ids_b[mix], ids_b[mix] - ids_a[mix]
        drop_a, drop_b = _drop_cause(a, mix), _drop_cause(b, mix)
        seen_a, seen_b = _seen(a, mix), _seen(b, mix)
        groups = {}
        for label, ids, dropped, seen, other in (("left", left, drop_b, seen_b, "B"), ("entered", entered, drop_a, seen_a, "A")):
            causes: dict[str, list[str]] = {}
            for rid in sorted(ids):
                causes.setdefault(_cause(rid, dropped, seen, other), []).append(rid)
            groups[label] = [{"cause": c, "rows": len(r), "examples": r[:examples]}
                             for c, r in sorted(causes.items(), key=lambda kv: -len(kv[1]))]
        result["datasets"][mix] = {"rows_a": len(ids_a[mix]), "rows_b": len(ids_b[mix]), "left": len(left),
                                   "entered": len(entered), **{f"{k}_by_cause": v for k, v in groups.items()},
                                   "reordered": reordered(a, b, mix)}
    result["stages"] = stage_changes(a, b)
    return result


def reordered(a: RunFiles, b: RunFiles, mixture: str) -> dict | None:
    """Whether the rows both runs hold are in another order in B (the order is the training order
    when an ordering step such as ``iclm`` set it): ``{common, moved}`` or None when it is the same."""
    seq_a, seq_b = (run.dataset(mixture, ["id"]).column("id").to_pylist() for run in (a, b))
    common = set(seq_a) & set(seq_b)
    seq_a, seq_b = [i for i in seq_a if i in common], [i for i in seq_b if i in common]
    if seq_a == seq_b:
        return None
    return {"common": len(seq_a), "moved": sum(x != y for x, y in zip(seq_a, seq_b))}


def stage_changes(a: RunFiles, b: RunFiles) -> list[dict]:
    """Which training stages consumed a different dataset between the runs."""
    sa = {s["name"]: s for s in (a.manifest or {}).get("stages", [])}
    sb = {s["name"]: s for s in (b.manifest or {}).get("stages", [])}
    out = []
    for name in list(dict.fromkeys(list(sa) + list(sb))):
        x, y = sa.get(name), sb.get(name)
        out.append({"stage": name, "data_a": x and x["data"], "data_b": y and y["data"],
                    "same_data": bool(x and y and x.get("data_key") == y.get("data_key")),
                    "rows_a": x and x.get("rows"), "rows_b": y and y.get("rows")})
    return out

