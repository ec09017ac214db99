"""The card's figures as PNG (matplotlib, Agg backend): funnel, score distributions with their
thresholds, mixture target vs observed, and plots of steps' numeric extras when present
(e.g. cluster sizes of a clustering selector, mixture weights over time of an online method).

Extras are read generically, since steps are plug-ins: a list of numbers whose key names sizes or
counts is drawn as a histogram, another list of numbers as a line, a ``{name: number}`` map as bars,
and a ``{name: [numbers]}`` map (or a list of ``{name: number}``) as one line per name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from curation.card.run_files import RunFiles  # noqa: E402

SKIP_EXTRAS = ("contamin", "overlap", "card_section", "seconds")  # tables elsewhere (contamination, method sections)
MAX_EXTRA_PLOTS_PER_STEP = 4


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _slug(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(str(p) for p in parts)).strip("_")


def _title(ax, text: str, fontsize: float = 10) -> None:
    """A title wrapped to the figure's width (a long one is never clipped at the edges)."""
    import textwrap

    chars = max(20, int(ax.figure.get_figwidth() * 72 / (0.6 * fontsize)))
    ax.set_title("\n".join(textwrap.wrap(text, chars)), fontsize=fontsize)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def funnel(mixture: str, steps: list[dict], path: Path) -> None:
    labels = [s["step"] if s["step"] == "mixture" else f"{s['index']}: {s['step']}" for s in steps]
    rows_out = [s["rows_out"] for s in steps]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(steps) + 1.4))
    y = np.arange(len(steps))[::-1]
    ax.barh(y, rows_out, color="#4c72b0", label="rows out")
    dropped = [max(s["rows_in"] - s["rows_out"], 0) for s in steps]
    ax.barh(y, dropped, left=rows_out, color="#dd8452", alpha=0.6, label="dropped here")
    for yi, s, d in zip(y, steps, dropped):
        reasons = ", ".join(f"{k} {v}" for k, v in (s.get("dropped") or {}).items())
        ax.text(s["rows_out"] + d, yi, f"  {s['rows_out']}" + (f"  (-{d}: {reasons})" if d else ""), va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_xlabel("rows")
    ax.set_xlim(0, max(s["rows_in"] for s in steps) * 1.6 or 1)
    _title(ax, f"selection funnel of {mixture}")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def mixture_shares(mixture: str, table: list[dict], path: Path) -> None:
    names = [t["source"] for t in table]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) + 2), 3.2))
    tok = all("target_token_ratio" in t for t in table)  # a token mixture: shares of tokens
    unit = "tokens" if tok else "rows"
    ax.bar(x - 0.2, [t["target_token_ratio" if tok else "target_ratio"] for t in table], 0.4,
           label=f"target share of {unit}", color="#8c8c8c")
    ax.bar(x + 0.2, [t["token_ratio" if tok else "observed_ratio"] for t in table], 0.4,
           label=f"observed share of {unit}", color="#4c72b0")
    ax.set_xticks(x, names, rotation=20 if len(names) > 3 else 0)
    ax.set_ylim(0, 1.3)  # room for the legend above the bars
    ax.set_ylabel(f"share of mixture {unit}")
    _title(ax, f"mixture {mixture}: target vs observed (before selection)")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    _save(fig, path)


def score_hist(run: RunFiles, mixture: str, step: dict, path: Path) -> bool:
    scores, kept = run.step_scores(mixture, step["ledger_step"])  # null -> nan
    ok = np.isfinite(scores)
    if not ok.any():
        return False
    scores, kept = scores[ok], kept[ok]
    bins = np.histogram_bin_edges(scores, bins=min(50, max(5, len(np.unique(scores)))))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.hist([scores[kept], scores[~kept]], bins=bins, stacked=True, color=["#4c72b0", "#dd8452"],
            label=[f"kept ({kept.sum()})", f"dropped ({(~kept).sum()})"])
    for name, value in step.get("thresholds", {}).items():
        ax.axvline(value, color="#c44e52", linestyle="--")
        ax.text(value, ax.get_ylim()[1] * 0.95, f" {name}={value:g}", color="#c44e52", fontsize=8, va="top")
    unit = (step.get("extras") or {}).get("unit")
    ax.set_xlabel(f"score ({unit})" if unit else "score")
    ax.set_ylabel("rows")
    _title(ax, f"{mixture} / {step['index']}: {step['step']}: score distribution")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def extra_plot(title: str, key: str, value: Any, path: Path) -> bool:
    """Draw one extras value if it has a plottable shape; False when it has none."""
    series: dict[str, list[float]] | None = None
    if "distribution" in key and isinstance(value, dict) and value \
            and all(isinstance(v, list) and all(_num(x) for x in v) for v in value.values()):
        return distributions(title, key, value, path)  # e.g. MATES: predicted influence, selected vs dropped
    if isinstance(value, dict) and value and all(isinstance(v, list) and len(v) > 1 and all(_num(x) for x in v) for v in value.values()):
        series = {str(k): v for k, v in value.items()}
    elif isinstance(value, list) and len(value) > 1 and all(isinstance(v, dict) and v and all(_num(x) for x in v.values()) for v in value):
        names = sorted({k for v in value for k in v})
        series = {k: [v.get(k, np.nan) for v in value] for k in names}
    if isinstance(value, dict) and isinstance(value.get("matrix"), list) and value["matrix"] \
            and all(isinstance(r, list) and all(_num(x) for x in r) for r in value["matrix"]):
        return heat_map(title, key, value, path)  # a skills graph: rows x columns with labels
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if series:
        for name, ys in list(series.items())[:12]:
            ax.plot(np.arange(len(ys)), ys, marker=".", label=name)
        ax.set_xlabel("update")
        ax.legend(fontsize=7, ncol=2)
    elif isinstance(value, dict) and len(value) > 1 and all(_num(v) for v in value.values()):
        items = list(value.items())[:40]
        ax.bar([str(k) for k, _ in items], [v for _, v in items], color="#4c72b0")
        ax.tick_params(axis="x", rotation=45 if len(items) > 6 else 0, labelsize=7)
    elif isinstance(value, list) and len(value) > 1 and all(_num(v) for v in value):
        if re.search(r"size|count|len", key):
            ax.hist(value, bins=min(40, max(5, len(set(value)))), color="#4c72b0")
            ax.set_xlabel(key)
            ax.set_ylabel("how many")
        else:
            ax.plot(np.arange(len(value)), value, marker=".")
            ax.set_xlabel("index")
    else:
        plt.close(fig)
        return False
    _title(ax, f"{title}: {key}")
    _save(fig, path)
    return True


def method_map(title: str, m: dict, path: Path) -> bool:
    """A step's 2-D map of its pool (``card_section.map``: x, y, cluster, selected): one colour per
    cluster, the selected rows ringed in black."""
    try:
        x, y = np.asarray(m["x"], dtype=float), np.asarray(m["y"], dtype=float)
        cluster, selected = np.asarray(m["cluster"]), np.asarray(m["selected"], dtype=bool)
    except (KeyError, TypeError, ValueError):
        return False
    if not len(x) or not (len(x) == len(y) == len(cluster) == len(selected)):
        return False
    fig, ax = plt.subplots(figsize=(7, 5.2))
    ids = sorted(set(cluster.tolist()))
    cmap = plt.get_cmap("tab10" if len(ids) <= 10 else "tab20")
    for k, c in enumerate(ids):
        part = cluster == c
        ax.scatter(x[part], y[part], s=8, color=cmap(k % cmap.N), alpha=0.55, linewidths=0, label=f"cluster {c}")
    ax.scatter(x[selected], y[selected], s=22, facecolors="none", edgecolors="black", linewidths=0.6,
               label=f"selected ({int(selected.sum())})")
    ax.set_xticks([])
    ax.set_yticks([])
    method = str(m.get("method") or "map").upper()
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.legend(fontsize=7, ncol=2, loc="best", markerscale=1.5)
    shown = f"{m.get('rows')} of {m.get('of')} rows" if m.get("rows") != m.get("of") else f"{m.get('of')} rows"
    _title(ax, f"{title}: 2-D {method} map of the pool ({shown}) by cluster, selected rows ringed"
               + (f" -- {m['note']}" if m.get("note") else ""))
    _save(fig, path)
    return True


def distributions(title: str, key: str, value: dict, path: Path) -> bool:
    """Overlaid histograms of named groups of values on shared bins."""
    every = np.concatenate([np.asarray(v, dtype=float) for v in value.values()]) if value else np.zeros(0)
    every = every[np.isfinite(every)]
    if len(every) < 2:
        return False
    bins = np.histogram_bin_edges(every, bins=min(40, max(5, len(np.unique(every)))))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, vals in value.items():
        vals = np.asarray(vals, dtype=float)
        ax.hist(vals[np.isfinite(vals)], bins=bins, alpha=0.6, label=f"{name} ({len(vals)})")
    ax.set_xlabel(key.replace("_distribution", "").replace("_", " "))
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    _title(ax, f"{title}: {key}")
    _save(fig, path)
    return True


def exposure_plot(run: RunFiles, stage: dict, path: Path) -> bool:
    """Rows by the number of times the stage consumed them, one series per skill (or source)."""
    import pyarrow.parquet as pq

    f = Path(stage["output"]).parent / "exposure.parquet"
    if not f.is_file():
        return False
    t = pq.read_table(f).to_pydict()
    by = "skill" if any(t.get("skill") or []) else "source"
    groups: dict[str, list[int]] = {}
    for g, c in zip(t.get(by) or [None] * len(t["exposures"]), t["exposures"]):
        groups.setdefault(str(g), []).append(int(c))
    top = max((max(v) for v in groups.values()), default=0)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    xs = np.arange(top + 1)
    width = 0.8 / max(1, len(groups))
    for k, (g, counts) in enumerate(sorted(groups.items())[:10]):
        ax.bar(xs + k * width, np.bincount(counts, minlength=top + 1), width, label=g)
    ax.set_xlabel("times trained on")
    ax.set_ylabel("rows")
    ax.legend(fontsize=7, ncol=2, title=by)
    _title(ax, f"stage {stage['name']}: exposure of each row (by {by})")
    _save(fig, path)
    return True


def heat_map(title: str, key: str, value: dict, path: Path) -> bool:
    m = np.asarray(value["matrix"], dtype=float)
    rows, cols = value.get("rows") or list(range(m.shape[0])), value.get("cols") or list(range(m.shape[1]))
    fig, ax = plt.subplots(figsize=(max(4.5, 0.7 * m.shape[1] + 2.5), max(3.0, 0.5 * m.shape[0] + 1.5)))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.set_xticks(range(m.shape[1]), [str(c) for c in cols], rotation=30 if m.shape[1] > 4 else 0)
    ax.set_yticks(range(m.shape[0]), [str(r) for r in rows])
    ax.set_xlabel(value.get("cols_label", "evaluation skill"))
    ax.set_ylabel(value.get("rows_label", "training skill"))
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(im, ax=ax)
    _title(ax, f"{title}: {key}")
    _save(fig, path)
    return True


def write_plots(run: RunFiles, facts: dict, plot_dir: Path) -> list[dict]:
    """Write every plot; return [{file, title, section, dataset, step}] in reading order."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for mix, info in facts["mixtures"].items():
        name = f"funnel_{_slug(mix)}.png"
        funnel(mix, info["funnel"], plot_dir / name)
        made.append({"file": name, "title": f"Selection funnel of {mix}", "section": "preprocessing", "dataset": mix})
        if info["target_vs_observed"]:
            name = f"mixture_{_slug(mix)}.png"
            mixture_shares(mix, info["target_vs_observed"], plot_dir / name)
            made.append({"file": name, "title": f"Mixture {mix}: target vs observed", "section": "mixture", "dataset": mix})
        for step in info["funnel"]:
            if step["step"] == "mixture":
                continue
            if step.get("score"):
                name = f"score_{_slug(mix, step['index'], step['step'])}.png"
                if score_hist(run, mix, step, plot_dir / name):
                    made.append({"file": name, "title": f"{mix} / {step['index']}: {step['step']} scores",
                                 "section": "preprocessing", "dataset": mix, "step": step["ledger_step"]})
            count = 0
            for key, value in (step.get("extras") or {}).items():
                if count >= MAX_EXTRA_PLOTS_PER_STEP or any(s in key.lower() for s in SKIP_EXTRAS):
                    continue
                name = f"extras_{_slug(mix, step['index'], step['step'], key)}.png"
                if extra_plot(f"{mix} / {step['index']}: {step['step']}", key, value, plot_dir / name):
                    count += 1
                    made.append({"file": name, "title": f"{mix} / {step['index']}: {step['step']}: {key}",
                                 "section": "preprocessing", "dataset": mix, "step": step["ledger_step"]})
            section = (step.get("extras") or {}).get("card_section")
            if isinstance(section, dict) and isinstance(section.get("map"), dict):
                name = f"map_{_slug(mix, step['index'], step['step'])}.png"
                if method_map(f"{mix} / {step['index']}: {step['step']}", section["map"], plot_dir / name):
                    made.append({"file": name, "title": f"{mix} / {step['index']}: {step['step']}: map of the pool",
                                 "section": "method", "dataset": mix, "method_step": step["ledger_step"]})
    for stage in (run.manifest or {}).get("stages", []):
        for key, value in (stage.get("extras") or {}).items():  # online methods' logs, when a stage records them
            name = f"stage_{_slug(stage['name'], key)}.png"
            if extra_plot(f"stage {stage['name']}", key, value, plot_dir / name):
                made.append({"file": name, "title": f"stage {stage['name']}: {key}", "section": "uses", "dataset": stage["data"]})
    for stage in (run.manifest or {}).get("stages", []):
        name = f"exposure_{_slug(stage['name'])}.png"
        if stage.get("exposure") and exposure_plot(run, stage, plot_dir / name):
            made.append({"file": name, "title": f"stage {stage['name']}: how often each row was trained on",
                         "section": "uses", "dataset": stage["data"]})
    import shutil

    for name in (run.eval_results or {}).get("plots", []):  # eval.report drew one per value across models
        src = run.out / "eval" / "plots" / name
        if src.is_file():
            shutil.copy(src, plot_dir / f"eval_{name}")
            made.append({"file": f"eval_{name}", "title": f"evaluation: {name[:-4].replace('__', ': ')}",
                         "section": "uses", "dataset": None})
    return [{"step": None, **m} for m in made]
