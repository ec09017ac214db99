"""The evaluation phase: every declared eval on the starting model and after every stage.

Each (eval, model) pair is one plan node with a content key (the eval's options, its source's key,
the model's key), cached like every node, so re-running an unchanged recipe evaluates nothing.
Models are moved to the accelerator when one is present. ``run`` is the runner (duck-typed:
``recipe``, ``plan``, ``cache``, ``out``, ``console``, ``model_dir_of``, ``source``,
``load_policy``, ``say``, ``timings``); this module never imports ``recipe``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.table import Table

from curation.console import progress
from curation.files import atomic_write_text


def model_available(run, model_name: str) -> bool:
    """The base model always is (a Hub id loads by name); a stage's output once it trained."""
    if model_name == "base":
        return True
    return Path(run.model_dir_of(model_name)).exists()


def evaluate(run, only_available: bool = False) -> dict:
    from eval.accuracy import accuracy
    from training.models import has_gpu, load_model, load_tokenizer

    started = time.time()
    results: dict[str, dict] = {}
    for node in run.plan.of_kind("eval"):
        ev, model_name = node.extra["eval"], node.extra["model"]
        spec = run.recipe.eval[ev]
        entry = run.cache.path("eval", node.key)
        if not run.cache.has("eval", node.key):
            if only_available and not model_available(run, model_name):
                continue
            mdir = run.model_dir_of(model_name)
            run.say(node, "evaluating")
            rows = run.source(spec.source)
            if spec.limit:
                rows = rows.select(range(min(spec.limit, len(rows))))
            with run.load_policy():
                model = load_model(str(mdir), dtype=run.recipe.model.dtype)
                tokenizer = load_tokenizer(str(mdir))
            if has_gpu():
                model.to("cuda")
            model.eval()
            with progress(run.console) as prog:
                task = prog.add_task(f"eval {ev} on {model_name}", total=len(rows))
                res = accuracy(model, tokenizer, rows, verifier=spec.verifier, max_new_tokens=spec.max_new_tokens,
                               batch_size=spec.batch_size, on_batch=lambda k: prog.advance(task, k))
            with run.cache.write("eval", node.key, node.describe) as tmp:
                (tmp / "result.json").write_text(json.dumps(res, indent=1))
        else:
            run.say(node, "[green]cached[/]")
        results.setdefault(ev, {})[model_name] = json.loads((entry / "result.json").read_text())
    atomic_write_text(Path(run.out) / "eval" / "results.json", json.dumps(results, indent=1))
    print_results(run.console, results)
    run.timings["eval"] = time.time() - started
    return results


def print_results(console, results: dict) -> None:
    t = Table(title="evaluation")
    for col in ("eval", "model", "accuracy", "n", "by skill"):
        t.add_column(col)
    for ev, per_model in results.items():
        for model_name, res in per_model.items():
            skills = " ".join(f"{k}={v:.2f}" for k, v in res["by_skill"].items())
            t.add_row(ev, model_name, f"{res['accuracy']:.3f}", str(res["n"]), skills)
    console.print(t)
