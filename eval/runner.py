"""The evaluation phase: every declared eval on the starting model and after every stage.

Each (eval, model) pair is one plan node with a content key (the eval's options, its source's and
few-shot source's keys, the model's key, each metric's version, any reference model's key), cached
like every node: re-running an unchanged recipe evaluates nothing. A node runs every metric of its
eval and stores ``result.json`` (aggregates) and ``samples.parquet`` (one record per item: the eval
ledger). The run directory then gets ``eval/results.json``, ``results.md``, ``samples.parquet`` and
one plot per metric across the models (``eval.report``). Models go to the accelerator when there is
one. ``run`` is the runner (duck-typed: ``recipe``, ``plan``, ``cache``, ``out``, ``console``,
``model_dir_of``, ``source``, ``load_policy``, ``say``, ``timings``, ``loaded``); this module never
imports ``recipe``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.console import progress
from eval import report
from eval.metrics import METRICS
from eval.metrics.base import EvalContext, MetricError
from eval.samples import SAMPLES_SCHEMA, samples_table


class EvalError(RuntimeError):
    """A user-facing evaluation failure (an unknown --stage, a --model that is no model, ...)."""


def model_available(run, model_name: str) -> bool:
    """The base model always is (a Hub id loads by name); a stage's output once it trained."""
    if model_name == "base":
        return True
    return Path(run.model_dir_of(model_name)).exists()


def _load(run, name_or_path: str):
    from training.models import has_gpu, load_model, load_tokenizer

    mdir = run.model_dir_of(name_or_path)
    with run.load_policy():
        model = load_model(str(mdir), dtype=run.recipe.model.dtype)
        tokenizer = load_tokenizer(str(mdir))
    if has_gpu():
        model.to("cuda")
    model.eval()
    return model, tokenizer


def check_sources(run) -> None:
    """Before any stage trains: each eval's rows are of a kind its metrics score (the curated rows;
    ``recipe validate`` checked the declared kinds already)."""
    for ev, spec in run.recipe.eval.items():
        if spec.source is None:
            continue
        kinds = set(run.source(spec.source)["kind"])
        for name, _ in spec.metric_entries():
            metric = METRICS.get(name)
            bad = kinds - metric.row_kinds
            if metric.needs_source and bad:
                raise EvalError(f"eval.{ev}: metric {name!r} scores {', '.join(sorted(metric.row_kinds))} rows; source "
                                f"{spec.source!r} has {sorted(bad)} rows")


def select_nodes(run, stage: str | None = None, suite: str | None = None) -> list:
    nodes = run.plan.of_kind("eval")
    if stage is not None:
        names = ["base", *run.recipe.stage_names()]
        if stage not in names:
            import difflib

            close = difflib.get_close_matches(stage, names, n=1)
            raise EvalError(f"--stage {stage!r} names no model of this recipe; give one of {names}"
                            + (f" (did you mean {close[0]!r}?)" if close else ""))
        nodes = [n for n in nodes if n.extra["model"] == stage]
    if suite is not None:
        suites = sorted({n.extra["suite"] for n in run.plan.of_kind("eval")})
        if suite not in suites:
            raise EvalError(f"--suite {suite!r}: no eval of this recipe is in it; its suites are {suites or 'none'}")
        nodes = [n for n in nodes if n.extra["suite"] == suite]
    return nodes


def run_node(run, node, model, tokenizer) -> dict:
    """Every metric of one eval on one model: (result record, samples table)."""
    from eval.generation import fewshot_turns

    ev = node.extra["eval"]
    spec = run.recipe.eval[ev]
    rows = run.source(spec.source) if spec.source else None
    if rows is not None and spec.limit:
        rows = rows.select(range(min(spec.limit, len(rows))))
    fewshot = []
    if spec.fewshot is not None:
        seed = spec.fewshot.seed if spec.fewshot.seed is not None else run.recipe.seed
        fewshot = fewshot_turns(run.source(spec.fewshot.source), spec.fewshot.n, seed)
    loaded: dict[str, tuple] = {}

    def load_model(name):
        if name not in loaded:
            loaded[name] = _load(run, name)
        return loaded[name]

    metrics, tables = {}, []
    for name, options in spec.metric_entries():
        metric_cls = METRICS.get(name)
        metric = metric_cls(metric_cls.Params.model_validate(options))
        with progress(run.console) as prog:
            task = prog.add_task(f"{name} on {ev} @ {node.extra['model']}", total=len(rows) if rows is not None else None)
            ctx = EvalContext(spec=spec, eval_name=ev, model_name=node.extra["model"], seed=run.recipe.seed,
                              fewshot=fewshot, on_progress=lambda k: prog.advance(task, k), load_model=load_model)
            try:
                result = metric.evaluate(model, tokenizer, rows, ctx)
            except MetricError as exc:
                raise EvalError(f"eval {ev!r}, metric {name!r} on {node.extra['model']}: {exc}") from None
        metrics[name] = {**result.to_json(), "higher_is_better": metric.higher_is_better}
        tables.append(samples_table(ev, spec.suite, node.extra["model"], name, result.items))
    record = {"eval": ev, "suite": spec.suite, "source": spec.source, "model": node.extra["model"], "metrics": metrics}
    return record, (pa.concat_tables(tables) if tables else SAMPLES_SCHEMA.empty_table())


def evaluate(run, only_available: bool = False, stage: str | None = None, suite: str | None = None) -> dict:
    started = time.time()
    records, tables = [], []
    models: dict[str, tuple] = {}
    for node in select_nodes(run, stage, suite):
        entry = run.cache.path("eval", node.key)
        model_name = node.extra["model"]
        if not run.cache.has("eval", node.key):
            if only_available and not model_available(run, model_name):
                continue
            run.say(node, "evaluating")
            if model_name not in models:
                models.clear()  # one model in memory at a time
                models[model_name] = _load(run, model_name)
            record, table = run_node(run, node, *models[model_name])
            with run.cache.write("eval", node.key, node.describe) as tmp:
                (tmp / "result.json").write_text(json.dumps(record, indent=1, default=str))
                pq.write_table(table, tmp / "samples.parquet")
        else:
            run.say(node, "[green]cached[/]")
        records.append({**json.loads((entry / "result.json").read_text()), "start": node.extra.get("start")})
        tables.append(pq.read_table(entry / "samples.parquet"))
    results = report.write(run, records, tables)
    run.timings["eval"] = time.time() - started
    return results


def evaluate_path(run, path: str, suite: str | None = None) -> dict:
    """``recipe eval R --model PATH``: the recipe's evals on any local model directory or Hub id (not
    cached: the model is outside the plan); results under ``eval/models/<name>/``."""
    from types import SimpleNamespace

    p = Path(path).expanduser()
    if p.exists() and not (p.is_dir() and any((p / f).is_file() for f in ("config.json", "adapter_config.json"))):
        raise EvalError(f"--model {path}: not a model folder (no config.json or adapter_config.json)")
    if not p.exists() and (path.startswith((".", "/", "~")) or path.count("/") != 1):
        raise EvalError(f"--model {path}: no such folder (a local model folder, or a Hub id owner/name)")
    started = time.time()
    model = _load(run, str(p) if p.exists() else path)
    records, tables = [], []
    for ev, spec in run.recipe.eval.items():
        if suite is not None and spec.suite != suite:
            continue
        node = SimpleNamespace(kind="eval", name=f"{ev}@{path}", key="(not cached)",
                               extra={"eval": ev, "model": path, "suite": spec.suite})
        run.say(node, "evaluating")
        record, table = run_node(run, node, *model)
        records.append({**record, "start": None})
        tables.append(table)
    if not records:
        raise EvalError(f"--suite {suite!r}: no eval of this recipe is in it")
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.strip("/"))[-80:]
    results = report.write(run, records, tables, out=Path(run.out) / "eval" / "models" / slug)
    run.timings["eval"] = time.time() - started
    return results
