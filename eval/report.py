"""The evaluation report: ``eval/results.json``, ``results.md``, ``samples.parquet`` and a plot per metric.

``results.json``: ``{recipe_hash, models (in chain order), suites: {suite: [evals]}, evals: {eval:
{suite, source, models: {model: {start, metrics: {metric: {values, stderr, n, by_skill, by_source,
extras, higher_is_better, delta}}}}}}}`` where ``delta`` is each value minus the same value on the
model the stage started from ("the previous stage"). ``results.md`` and the terminal table show the
same, dev and unseen suites separated; ``plots/<eval>__<value>.png`` draws each value across the
models with its standard error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rich.table import Table

from curation.files import atomic_path, atomic_write_text
from eval.samples import SAMPLES_SCHEMA


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}" if abs(v) >= 1000 or abs(v) < 0.001 and v != 0 else f"{v:.3f}"


def assemble(records: list[dict], order: list[str], recipe_hash: str | None) -> dict:
    evals: dict[str, dict] = {}
    for r in records:
        e = evals.setdefault(r["eval"], {"suite": r["suite"], "source": r.get("source"), "models": {}})
        e["models"][r["model"]] = {"start": r.get("start"), "metrics": r["metrics"]}
    for e in evals.values():
        for model, entry in e["models"].items():
            start = e["models"].get(entry.get("start") or "")
            for name, m in entry["metrics"].items():
                prev = (start or {}).get("metrics", {}).get(name, {}).get("values", {})
                m["delta"] = {k: (v - prev[k]) if k in prev and v is not None and prev[k] is not None else None
                              for k, v in m["values"].items()}
    present = [m for m in order if any(m in e["models"] for e in evals.values())]
    present += sorted({m for e in evals.values() for m in e["models"]} - set(present))
    suites: dict[str, list[str]] = {}
    for ev, e in evals.items():
        suites.setdefault(e["suite"], []).append(ev)
    return {"recipe_hash": recipe_hash, "models": present, "suites": suites, "evals": evals}


def table_rows(results: dict):
    """(suite, eval, metric value key, model, value, stderr, delta, n, higher_is_better) in report order."""
    suites = sorted(results["suites"], key=lambda s: (s != "dev", s != "unseen", s))
    for suite in suites:
        for ev in results["suites"][suite]:
            e = results["evals"][ev]
            keys = []
            for model in results["models"]:
                for name, m in e["models"].get(model, {}).get("metrics", {}).items():
                    keys += [(name, k) for k in m["values"] if (name, k) not in keys]
            for name, key in keys:
                for model in results["models"]:
                    m = e["models"].get(model, {}).get("metrics", {}).get(name)
                    if m is None:
                        continue
                    yield (suite, ev, key, model, m["values"].get(key), m["stderr"].get(key), m["delta"].get(key),
                           m.get("n"), m.get("higher_is_better", True))


def markdown(results: dict) -> str:
    lines = ["# Evaluation", ""]
    current = None
    for suite, ev, key, model, v, se, d, n, _ in table_rows(results):
        if suite != current:
            current = suite
            lines += ["", f"## suite: {suite}", "", "| eval | value | model | score | ± stderr | Δ vs previous | n |",
                      "|---|---|---|---:|---:|---:|---:|"]
        lines.append(f"| {ev} | {key} | {model} | {_fmt(v)} | {_fmt(se)} | {'' if d is None else f'{d:+.3f}'} | {n} |")
    return "\n".join(lines) + "\n"


def print_table(console, results: dict) -> None:
    t = Table(title="evaluation (Δ: against the model the stage started from)")
    for col in ("suite", "eval", "value", "model", "score", "±", "Δ", "n"):
        t.add_column(col, justify="right" if col in ("score", "±", "Δ", "n") else "left")
    for suite, ev, key, model, v, se, d, n, hib in table_rows(results):
        delta = "" if d is None else (f"[green]{d:+.3f}[/]" if (d > 0) == hib and d != 0 else f"[red]{d:+.3f}[/]" if d else "+0.000")
        t.add_row(suite, ev, key, model, _fmt(v), _fmt(se), delta, str(n))
    console.print(t)


def plot(results: dict, plots_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    series: dict[tuple, list] = {}
    for suite, ev, key, model, v, se, *_ in table_rows(results):
        series.setdefault((ev, key), []).append((model, v, se))
    files = []
    for (ev, key), pts in series.items():
        if len(pts) < 1 or all(v is None for _, v, _ in pts):
            continue
        fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(pts) + 2), 3.2))
        xs = list(range(len(pts)))
        vals = [v if v is not None else float("nan") for _, v, _ in pts]
        errs = [se if se is not None and se == se else 0.0 for _, _, se in pts]
        ax.errorbar(xs, vals, yerr=errs, marker="o", capsize=3)
        ax.set_xticks(xs, [m for m, _, _ in pts], rotation=20 if len(pts) > 3 else 0)
        ax.set_ylabel(key)
        ax.set_title(f"{ev}: {key} after each stage", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{ev}__{key}") + ".png"
        fig.savefig(plots_dir / name, dpi=100, metadata={"Software": None})
        plt.close(fig)
        files.append(name)
    return files


def write(run, records: list[dict], tables: list[pa.Table], out: Path | None = None) -> dict:
    out = Path(out or Path(run.out) / "eval")
    order = ["base", *run.recipe.stage_names()]
    results = assemble(records, order, getattr(getattr(run, "loaded", None), "hash", None))
    results["plots"] = plot(results, out / "plots")
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=str))
    atomic_write_text(out / "results.md", markdown(results))
    table = pa.concat_tables(tables) if tables else SAMPLES_SCHEMA.empty_table()
    with atomic_path(out / "samples.parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")
    print_table(run.console, results)
    return results


def headline(results: dict, eval_name: str, model: str, metric: str | None = None) -> float | None:
    """One value: ``metric`` (a value key such as ``accuracy`` or ``pass@1``; default: the eval's
    first metric's first value) of ``eval_name`` on ``model``."""
    e = results["evals"].get(eval_name, {}).get("models", {}).get(model)
    if e is None:
        return None
    for m in e["metrics"].values():
        if metric is None:
            return next(iter(m["values"].values()), None)
        if metric in m["values"]:
            return m["values"][metric]
    return None
