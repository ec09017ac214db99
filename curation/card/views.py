"""Terminal views (rich) of ``recipe audit`` and ``recipe diff`` results; the CLI only calls these."""

from __future__ import annotations

import json

import pyarrow as pa
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curation.card.audit import EvalItemHistory, RowHistory
from curation.card.examples import display


def print_eval_history(console: Console, h: EvalItemHistory) -> None:
    console.print(f"[bold]eval item {h.item_id}[/]")
    if h.source_row:
        console.print(f"  {display(h.source_row)}", markup=False, highlight=False)
    t = Table(title="results across models (the eval ledger)")
    for col in ("suite", "eval", "model", "metric", "score", "loss", "answer", "output"):
        t.add_column(col, overflow="fold")
    for r in h.records:
        t.add_row(r["suite"], r["eval"], r["model"], r["metric"], "-" if r["score"] is None else f"{r['score']:.3g}",
                  "-" if r["loss"] is None else f"{r['loss']:.3g}", r["answer"] or "", (r["output"] or "")[:120])
    console.print(t)


def print_history(console: Console, h: RowHistory | EvalItemHistory) -> None:
    if isinstance(h, EvalItemHistory):
        return print_eval_history(console, h)
    console.print(f"[bold]row {h.row_id}[/]" + (f"  (copies: {', '.join(i for i in h.ids if i != h.row_id)})" if len(h.ids) > 1 else ""))
    if h.source_row:
        row = h.source_row
        console.print(f"source [bold]{row['source']}[/], kind {row['kind']}, skill {row['skill'] or '-'}, metadata {row['metadata']}")
        console.print(f"  {display(row)}", markup=False, highlight=False)
    else:
        raw = next((r["detail"] for r in h.records if r["decision"] == "quarantine"), None)
        console.print("source record: " + (f"quarantined raw record: {raw}" if raw else "not available (quarantined, or its cache entry is gone)"),
                      markup=False, highlight=False)
    t = Table(title="decisions")
    show_id, show_detail = len(h.ids) > 1, any(r["detail"] for r in h.records if r["decision"] != "quarantine")
    # an ordering step (iclm) records where it placed the row and in which group (ICLM's path)
    show_order = any(r.get("position") is not None or r.get("group") is not None for r in h.records)
    cols = ["dataset", "step"] + (["row id"] if show_id else []) + ["decision", "score", "reason"] + (
        ["position", "path"] if show_order else []) + (["detail"] if show_detail else [])
    for col in cols:
        t.add_column(col, overflow="fold")
    for r in h.records:
        colour = {"keep": "green", "drop": "red", "quarantine": "yellow"}[r["decision"]]
        cells = [r["dataset"], r["step"]] + ([r["row_id"]] if show_id else []) + [
            f"[{colour}]{r['decision']}[/]", "-" if r["score"] is None else f"{r['score']:.4g}", r["reason"] or ""]
        if show_order:
            cells += ["-" if r.get(c) is None else str(r[c]) for c in ("position", "group")]
        t.add_row(*cells, *([r["detail"] or ""] if show_detail else []))
    console.print(t)
    for m in h.matched_items:
        text = m["text"] if m["text"] else "(its text is not available in this run's cache)"
        console.print(f"matched eval item [bold]{escape(m['item_id'])}[/] of {escape(str(m['source']))}: {escape(text)}",
                      highlight=False)
    if h.reached:
        for mix, ids in h.reached.items():
            console.print(f"reached stage dataset [bold]{mix}[/] ({', '.join(ids)})")
    else:
        console.print("[yellow]reached no stage dataset[/]")
    for s in h.stages:
        note = "" if s["current_data"] else " [yellow](an earlier version of this dataset)[/]"
        epoch = (s.get("metrics") or {}).get("epoch")
        seen = f"; the stage ran {epoch:.2f} epochs, so it may not have reached every row" if epoch is not None and epoch < 1 else ""
        console.print(f"trained on by stage [bold]{s['name']}[/] ({s['kind']}, status {s.get('status')}){note}{seen}")
    if h.reached and not h.stages:
        console.print("no training stage has consumed its dataset in this run")


def print_dropped(console: Console, reason: str, table: pa.Table, limit: int, codes: dict[str, int]) -> None:
    if table.num_rows == 0:
        known = ", ".join(f"{c} ({n})" for c, n in sorted(codes.items(), key=lambda kv: -kv[1])) or "none"
        console.print(f"no row was dropped for a reason starting with {reason!r}; reasons in this run: {known}")
        return
    # one line per record (not a table): long ids and reasons stay whole and the output greps well
    shown = f" (first {limit}; --limit N for more)" if table.num_rows > limit else ""
    console.print(f"[bold]{table.num_rows} record(s) dropped for {reason!r}[/]{shown}")
    console.print("dataset\tstep\trow id\tsource\tdecision\tscore\treason", style="dim", highlight=False)
    for r in table.slice(0, limit).to_pylist():
        score = "-" if r["score"] is None else f"{r['score']:.4g}"
        console.print(f"{r['dataset']}\t{r['step']}\t{r['row_id']}\t{r['source']}\t{r['decision']}\t{score}\t{r['reason'] or ''}",
                      markup=False, highlight=False, soft_wrap=True)


def print_diff(console: Console, d: dict) -> None:
    if not d["same_recipe"]:
        console.print(f"[yellow]note: these are runs of different recipes ({d['recipe_a']!r} vs {d['recipe_b']!r}); "
                      "comparing them anyway[/]")
    console.print(f"A = {d['a']} (recipe {d['recipe_a']}, hash {d['hash_a']})\nB = {d['b']} (recipe {d['recipe_b']}, hash {d['hash_b']})")
    if d["changed_keys"]:
        t = Table(title="changed recipe keys")
        for col in ("key", "A", "B"):
            t.add_column(col, overflow="fold")
        for c in d["changed_keys"]:
            t.add_row(c["key"], json.dumps(c["a"], default=str), json.dumps(c["b"], default=str))
        console.print(t)
    else:
        console.print("no recipe key changed")
    for mix, info in d["datasets"].items():
        if "only_in" in info:
            console.print(f"stage dataset [bold]{mix}[/] exists only in run {info['only_in']} ({info['rows']} rows)")
            continue
        console.print(f"stage dataset [bold]{mix}[/]: {info['rows_a']} -> {info['rows_b']} rows; "
                      f"{info['left']} left, {info['entered']} entered")
        if info.get("reordered"):
            console.print(f"  the {info['reordered']['common']} rows in both runs are in another order in B "
                          f"({info['reordered']['moved']} at another place among them: another seed, or an ordering step such as iclm)")
        for label in ("left", "entered"):
            for g in info[f"{label}_by_cause"]:
                console.print(f"  {label:7} {g['rows']:>7}  {g['cause']}   e.g. {', '.join(g['examples'])}",
                              markup=False, highlight=False)
    for s in d.get("stages", []):
        if s["data_a"] is None or s["data_b"] is None:
            console.print(f"stage {s['stage']} ran only in run {'A' if s['data_b'] is None else 'B'}")
        elif not s["same_data"]:
            console.print(f"stage {s['stage']}: trained on {s['data_a']} ({s['rows_a']} rows) in A, "
                          f"{s['data_b']} ({s['rows_b']} rows) in B")
        else:
            console.print(f"stage {s['stage']}: the same data in both runs")
