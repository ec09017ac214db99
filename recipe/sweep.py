"""``recipe sweep``: one recipe over variants x seeds, sharing every cached node, with a summary.

A sweep is given on the command line (``--vary KEY=V1,V2`` -- the cartesian product of every
``--vary``; a bare step name at ``selection.<mix>.<i>`` means ``{name: {}}``) or as a YAML file next
to its recipe, so a comparison is a shipped artifact::

    recipe: ../tulu3_tiny.yaml
    name: tulu3_tiny_stages
    seeds: [0, 1, 2]
    baseline: sft
    metric: {eval: arith_test, value: accuracy}      # after each variant's last stage
    variants:
      sft:  {stages: [sft]}                           # keep these stages (by name)
      dpo:  {stages: [sft, dpo]}
      rlvr: {stages: [sft, dpo, rlvr]}
      lr_x2: ["stages.0.lr=6e-3"]                      # or a list of overrides

Every (variant, seed) runs in ``<sweep>/<variant>/seed<k>/`` on one shared cache
(``<sweep>/cache``): curation nodes, base models, evals and whole stages (indexed by key) that
variants have in common run once. Every variant is validated before anything runs. Written:
``summary.json`` -- exactly ``{command, metric, lower_is_better, method, baseline, seeds, variants:
{NAME: {per_seed, mean, std}}}`` for the headline metric (what tools read); ``metrics.json`` -- every
eval value after every stage, per variant, with the ratio to the baseline; ``summary.md`` and
``summary.png``.
"""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recipe.load import Problem, RecipeError, load_recipe


@dataclass
class Variant:
    name: str
    overrides: list[str] = field(default_factory=list)
    stages: list[str] | None = None


@dataclass
class Sweep:
    name: str
    recipe: Path
    seeds: list[int]
    variants: list[Variant]
    baseline: str
    metric_eval: str | None = None
    metric_value: str | None = None
    metric_stage: str = "last"
    file: str = ""


def split_values(text: str) -> list[str]:
    """``a,b,{x: 1, y: 2}`` -> three values: commas inside brackets, braces or quotes do not split."""
    out, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _value(key: str, value: str) -> str:
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "selection" and parts[2].isdigit() and value.replace("_", "").replace(":", "").replace(".", "").isalnum():
        return "{" + value + ": {}}"  # a bare step name in a selection position
    return value


def from_vary(recipe: Path, vary: list[str], seeds: list[int], baseline: str | None, name: str | None) -> Sweep:
    axes = []
    for item in vary:
        if "=" not in item:
            raise RecipeError(str(recipe), [Problem((), f"--vary {item!r} is not KEY=V1,V2 (e.g. selection.sft.0=paser,random)")])
        key, values = item.split("=", 1)
        axes.append([(key, v) for v in split_values(values)])
    variants = []
    for combo in itertools.product(*axes) if axes else [()]:
        vname = ",".join(f"{k.split('.')[-1] if len(axes) == 1 else k}={v}" for k, v in combo) or "recipe"
        variants.append(Variant(vname, [f"{k}={_value(k, v)}" for k, v in combo]))
    base = baseline or variants[0].name
    return Sweep(name or Path(recipe).stem, Path(recipe), seeds, variants, base)


def from_file(path: Path, seeds: list[int] | None, name: str | None) -> Sweep:
    doc = yaml.safe_load(Path(path).read_text()) or {}
    file = str(path)
    problems = []
    for key in ("recipe", "variants"):
        if key not in doc:
            problems.append(Problem((key,), "required key is missing"))
    unknown = set(doc) - {"recipe", "name", "seeds", "baseline", "metric", "variants", "description"}
    problems += [Problem((k,), "unknown key") for k in sorted(unknown)]
    if problems:
        raise RecipeError(file, problems)
    variants = []
    for vname, spec in doc["variants"].items():
        if isinstance(spec, list):
            variants.append(Variant(str(vname), [str(o) for o in spec]))
        elif isinstance(spec, dict) and set(spec) <= {"overrides", "stages"}:
            variants.append(Variant(str(vname), [str(o) for o in spec.get("overrides", [])], spec.get("stages")))
        else:
            raise RecipeError(file, [Problem(("variants", vname), "a variant is a list of overrides or "
                                                                  "{overrides: [...], stages: [names]}")])
    metric = doc.get("metric") or {}
    return Sweep(name or doc.get("name") or Path(path).stem, (Path(path).parent / doc["recipe"]).resolve(),
                 seeds or [int(s) for s in doc.get("seeds", [0])], variants, str(doc.get("baseline") or variants[0].name),
                 metric.get("eval"), metric.get("value"), metric.get("stage", "last"), file)


def validate(sweep: Sweep) -> dict[tuple[str, int], object]:
    """Every (variant, seed) loaded and validated before anything runs (key-path errors name the variant)."""
    names = [v.name for v in sweep.variants]
    if sweep.baseline not in names:
        raise RecipeError(sweep.file or str(sweep.recipe), [Problem(("baseline",), f"names no variant; variants are {names}",
                                                                    sweep.baseline)])
    loaded = {}
    for v in sweep.variants:
        for seed in sweep.seeds:
            try:
                loaded[(v.name, seed)] = load_recipe(sweep.recipe, [*v.overrides, f"seed={seed}"], keep_stages=v.stages)
            except RecipeError as exc:
                for p in exc.problems:
                    p.message = f"{p.message} (in variant {v.name!r})"
                raise
    return loaded


def _stats(values: list[float]) -> dict:
    vals = [v for v in values if v is not None]
    mean = statistics.mean(vals) if vals else None
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0 if vals else None
    return {"per_seed": values, "mean": mean, "std": std}


def run(sweep: Sweep, out_root: Path, command: str, console) -> dict:
    from eval.metrics import METRICS
    from recipe.run import Runner

    loaded = validate(sweep)
    out_root = Path(out_root)
    results: dict[tuple[str, int], dict] = {}
    last_stage: dict[str, str] = {}
    for (vname, seed), rec in loaded.items():
        console.rule(f"sweep {sweep.name}: variant {vname}, seed {seed}")
        runner = Runner(rec, out=out_root / vname / f"seed{seed}", cache_dir=out_root / "cache", console=console)
        runner.train()
        results[(vname, seed)] = runner.evaluate()
        names = rec.recipe.stage_names()
        last_stage[vname] = names[-1] if names else "base"
    first = next(iter(loaded.values())).recipe
    ev = sweep.metric_eval or next(iter(first.eval), None)
    if ev is None:
        raise RecipeError(str(sweep.recipe), [Problem(("eval",), "a sweep compares eval results; the recipe declares no eval")])
    metric_name, _ = next(iter(first.eval[ev].metric_entries()))
    value_key = sweep.metric_value or metric_name
    metric_cls = METRICS.get(metric_name)

    def value(vname, seed, model, key=value_key, eval_name=ev):
        from eval.report import headline

        return headline(results[(vname, seed)], eval_name, model, key)

    variants = {}
    for v in sweep.variants:
        stage = last_stage[v.name] if sweep.metric_stage == "last" else sweep.metric_stage
        variants[v.name] = _stats([value(v.name, s, stage) for s in sweep.seeds])
    non_base = [v.name for v in sweep.variants if v.name != sweep.baseline]
    summary = {"command": command, "metric": f"{ev}/{value_key}", "lower_is_better": not metric_cls.higher_is_better,
               "method": non_base[0] if len(non_base) == 1 else sweep.name, "baseline": sweep.baseline,
               "seeds": sweep.seeds, "variants": variants}
    table = _all_metrics(sweep, results, last_stage)
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_root / "metrics.json").write_text(json.dumps(table, indent=1))
    (out_root / "summary.md").write_text(_markdown(summary, table))
    _plot(summary, out_root / "summary.png")
    return summary


def _all_metrics(sweep: Sweep, results: dict, last_stage: dict) -> list[dict]:
    """Every (eval, value, model) per variant: per seed, mean, std, ratio of means to the baseline."""
    rows: dict[tuple, dict] = {}
    for (vname, seed), res in results.items():
        for ev, e in res["evals"].items():
            for model, entry in e["models"].items():
                for name, m in entry["metrics"].items():
                    for key, val in m["values"].items():
                        r = rows.setdefault((ev, key, model), {"eval": ev, "suite": e["suite"], "value": key, "model": model,
                                                               "higher_is_better": m.get("higher_is_better", True),
                                                               "variants": {}})
                        r["variants"].setdefault(vname, {})[seed] = val
    out = []
    for r in rows.values():
        stats = {v: _stats([per.get(s) for s in sweep.seeds]) for v, per in r["variants"].items()}
        base = stats.get(sweep.baseline, {}).get("mean")
        for st in stats.values():
            st["ratio_to_baseline"] = (st["mean"] / base) if base not in (None, 0) and st["mean"] is not None else None
        out.append({**r, "variants": stats})
    return out


def _markdown(summary: dict, table: list[dict]) -> str:
    lines = [f"# sweep: {summary['method']} vs {summary['baseline']}", "", f"`{summary['command']}`", "",
             f"Headline: **{summary['metric']}** ({'lower' if summary['lower_is_better'] else 'higher'} is better), "
             f"seeds {summary['seeds']}.", "", "| variant | mean | std | per seed | ratio to baseline |", "|---|---:|---:|---|---:|"]
    base = summary["variants"][summary["baseline"]]["mean"]
    for name, v in summary["variants"].items():
        ratio = f"{v['mean'] / base:.3f}" if base not in (None, 0) and v["mean"] is not None else "-"
        per = ", ".join("-" if x is None else f"{x:.4g}" for x in v["per_seed"])
        lines.append(f"| {name} | {v['mean']:.4g} | {v['std']:.3g} | {per} | {ratio} |" if v["mean"] is not None
                     else f"| {name} | - | - | {per} | - |")
    lines += ["", "## every eval value after every stage", "", "| suite | eval | value | model | variant | mean | std | ratio |",
              "|---|---|---|---|---|---:|---:|---:|"]
    for r in table:
        for vname, st in r["variants"].items():
            if st["mean"] is None:
                continue
            ratio = "-" if st["ratio_to_baseline"] is None else f"{st['ratio_to_baseline']:.3f}"
            lines.append(f"| {r['suite']} | {r['eval']} | {r['value']} | {r['model']} | {vname} | {st['mean']:.4g} | "
                         f"{st['std']:.3g} | {ratio} |")
    return "\n".join(lines) + "\n"


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["variants"])
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(names) + 2), 3.4))
    for i, n in enumerate(names):
        v = summary["variants"][n]
        if v["mean"] is None:
            continue
        ax.bar(i, v["mean"], yerr=v["std"], capsize=4, color="#4c72b0" if n != summary["baseline"] else "#8c8c8c")
        ax.scatter([i] * len([x for x in v["per_seed"] if x is not None]), [x for x in v["per_seed"] if x is not None],
                   color="black", s=12, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=20 if len(names) > 3 else 0)
    ax.set_ylabel(summary["metric"])
    ax.set_title(f"{summary['metric']} over seeds {summary['seeds']} (baseline: {summary['baseline']})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
