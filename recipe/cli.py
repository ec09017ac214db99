"""The ``recipe`` command line (typer + rich).

Every command takes the recipe file, OmegaConf dot-list overrides (``stages.0.lr=2e-5 seed=3``)
and ``--out DIR`` (default ``runs/<recipe name>/``). Recipe errors print the key path, the value,
a suggestion and the file, and exit 2; data and run errors print one clear message and exit 1;
neither shows a traceback.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from curation.console import make_console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="recipe-kit: one YAML recipe from raw data to an evaluated post-trained model.")
console = make_console()
err_console = make_console(stderr=True)
# User plug-ins named by dotted path (steps, formats, verifiers, reward functions) import from the
# current directory, as `python -m` would: `mypkg.steps:MyStep` finds ./mypkg/steps.py.
if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())

Overrides = typer.Argument(None, help="OmegaConf dot-list overrides, e.g. stages.0.lr=2e-5 seed=3")
OutOpt = typer.Option(None, "--out", help="run directory (default runs/<recipe name>/)")
CacheOpt = typer.Option(None, "--cache-dir", help="content-addressed cache (default <out>/cache)")
EngineOpt = typer.Option(None, "--engine", help="where curation steps run: local (default) or ray "
                         "(pip install 'recipe-kit[distributed]'); the decisions are the same")
RayAddressOpt = typer.Option(None, "--ray-address", help="a running Ray cluster (auto, or host:port from `ray start --head`); "
                             "implies --engine ray; default: start Ray on this machine")
WorkersOpt = typer.Option(None, "--workers", min=1, help="processes for row-local curation steps (default: every CPU; "
                          "decisions are the same for any number)")


def _user_errors():
    from curation.card import RunFilesError
    from curation.embed import EmbeddingModelError
    from curation.engine import EngineError
    from curation.ledger import LedgerError
    from curation.mixture import MixtureError
    from curation.registry import UnknownName
    from curation.sources import SourceError
    from curation.steps.base import StepError
    from curation.files import WriteError
    from recipe.run import RunError
    from recipe.run_lock import RunLocked
    from training.launch import LaunchError
    from training.loss_reduction import LossReductionError
    from training.models import ModelLoadError
    from training.stage_data import StageDataError
    from training.stage_loop import StageLoopError
    from eval.runner import EvalError
    from eval.metrics.base import MetricError
    from training.hooks.base import HookError

    return (HookError, EvalError, MetricError, SourceError, MixtureError, StepError, RunError, LedgerError, UnknownName, ModelLoadError, StageDataError, RunFilesError,
            EmbeddingModelError, EngineError, WriteError, RunLocked, StageLoopError, LaunchError, LossReductionError)


def _load(recipe: Path, overrides: Optional[List[str]]):
    from recipe.load import RecipeError, load_recipe

    try:
        return load_recipe(recipe, overrides or [])
    except RecipeError as exc:
        err_console.print(f"[bold red]recipe error[/] ({len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}):")
        err_console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def _runner(recipe: Path, overrides, out, cache_dir, gpus: Optional[int] = None, workers: Optional[int] = None,
            engine: Optional[str] = None, ray_address: Optional[str] = None):
    from recipe.run import Runner

    loaded = _load(recipe, overrides)
    try:
        return Runner(loaded, out=out, cache_dir=cache_dir, console=console, gpus=gpus, workers=workers,
                      engine=engine, ray_address=ray_address)
    except _user_errors() as exc:
        _fail(exc)
    except OSError as exc:
        _fail_os(exc)


def _fail_os(exc: OSError):
    from curation.files import describe_os_error

    err_console.print(f"[bold red]error:[/] {escape(describe_os_error(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def _locked(runner):
    """Hold the run directory's lock for the block (refused at once if another process holds it)."""
    from recipe.run_lock import RunLock, RunLocked

    lock = RunLock(runner.out)
    try:
        lock.acquire()
    except RunLocked as exc:
        _fail(exc)
    except OSError as exc:
        _fail_os(exc)
    try:
        yield lock
    finally:
        lock.release()


def _fail(exc: Exception):
    # escaped: a message's brackets (pip extras, key paths) are text, not rich markup
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _guard(fn):
    try:
        return fn()
    except _user_errors() as exc:
        _fail(exc)
    except OSError as exc:  # a read-only or full run/cache directory: the path, no traceback
        _fail_os(exc)


@app.command()
def validate(recipe: Path, overrides: Optional[List[str]] = Overrides):
    """Check a recipe (schema, references, plug-in options, the row kinds each stage and eval gets)
    without training or curating anything.

    Plug-ins named by dotted path (steps, formats, generators, verifiers, reward functions,
    'pkg.mod:Name') are IMPORTED to check them, which runs their module's code; the current
    directory is importable (PYTHONPATH adds more)."""
    loaded = _load(recipe, overrides)
    console.print(f"[green]ok[/] {recipe} (recipe {loaded.recipe.name!r}, hash {loaded.hash})")


@app.command()
def plan(recipe: Path, overrides: Optional[List[str]] = Overrides, out: Optional[Path] = OutOpt,
         cache_dir: Optional[Path] = CacheOpt):
    """List every step with its content hash and whether it is cached or will run."""
    runner = _runner(recipe, overrides, out, cache_dir)
    t = Table(title=f"plan of {runner.recipe.name} ({runner.loaded.hash})")
    for col in ("kind", "step", "hash", "status"):
        t.add_column(col)
    for n in runner.plan.nodes:
        cost = f" ({n.extra['cost']})" if n.extra.get("cost") else ""
        t.add_row(n.kind, n.name, n.key[:12], ("[green]cached[/]" if n.cached else "[yellow]will run[/]") + cost)
    console.print(t)


@app.command()
def curate(recipe: Path, overrides: Optional[List[str]] = Overrides, out: Optional[Path] = OutOpt,
           cache_dir: Optional[Path] = CacheOpt,
           card_dir: Optional[Path] = typer.Option(None, "--card-dir", help="write the data card here (default <out>/card)"),
           workers: Optional[int] = WorkersOpt, engine: Optional[str] = EngineOpt,
           ray_address: Optional[str] = RayAddressOpt):
    """Load sources, mix them and run the selection steps; write the ledger and stage datasets."""
    runner = _runner(recipe, overrides, out, cache_dir, workers=workers, engine=engine, ray_address=ray_address)
    with _locked(runner):
        _guard(runner.curate)
    console.print(f"[green]curated[/] -> {runner.out}")
    _write_card(runner.out, card_dir)


@app.command()
def train(recipe: Path, overrides: Optional[List[str]] = Overrides, out: Optional[Path] = OutOpt,
          cache_dir: Optional[Path] = CacheOpt,
          resume: bool = typer.Option(False, "--resume", help="continue the unfinished stage from its last checkpoint"),
          restart: bool = typer.Option(False, "--restart", help="discard unfinished stages' checkpoints and train them from the start"),
          gpus: Optional[int] = typer.Option(None, "--gpus", min=1,
                                             help="run each stage on N processes (accelerate launch; torchrun on CPU)"),
          workers: Optional[int] = WorkersOpt, engine: Optional[str] = EngineOpt,
          ray_address: Optional[str] = RayAddressOpt):
    """Curate, run the training stages in order, then evaluate."""
    if resume and restart:
        _fail(ValueError("give --resume or --restart, not both"))
    runner = _runner(recipe, overrides, out, cache_dir, gpus=gpus, workers=workers, engine=engine, ray_address=ray_address)
    if resume and not any(runner.out.glob("stages/*/checkpoint-*")) and not any(runner.out.glob("stages/*/stage.json")):
        _fail(RuntimeError(f"nothing to resume in {runner.out}: no stage has started there"))
    with _locked(runner):
        _guard(lambda: runner.train(resume=resume, restart=restart))
        _guard(runner.evaluate)
    console.print(f"[green]done[/] -> {runner.out}")
    _write_card(runner.out)


@app.command("eval")
def eval_(recipe: Path, overrides: Optional[List[str]] = Overrides, out: Optional[Path] = OutOpt,
          cache_dir: Optional[Path] = CacheOpt,
          stage: Optional[str] = typer.Option(None, "--stage", help="only this model: base or a stage name"),
          model: Optional[str] = typer.Option(None, "--model", help="evaluate this model folder (or Hub id) instead"),
          suite: Optional[str] = typer.Option(None, "--suite", help="only the evals of this suite (dev, unseen, ...)")):
    """Evaluate the base model and every finished stage (cached per eval and model)."""
    if stage is not None and model is not None:
        _fail(ValueError("give --stage or --model, not both"))
    runner = _runner(recipe, overrides, out, cache_dir)
    with _locked(runner):
        _guard(lambda: runner.evaluate(only_available=True, stage=stage, suite=suite, model=model))


@app.command()
def sweep(recipe: Path = typer.Argument(..., help="a recipe, or a sweep file (variants: ...) next to its recipe"),
          overrides: Optional[List[str]] = typer.Argument(None, help="overrides applied to every variant"),
          seeds: Optional[str] = typer.Option(None, "--seeds", help="comma-separated seeds (default 0, or the sweep file's)"),
          vary: Optional[List[str]] = typer.Option(None, "--vary", help="KEY=V1,V2: one variant per value (repeatable: the product)"),
          baseline: Optional[str] = typer.Option(None, "--baseline", help="the variant the others are compared with"),
          name: Optional[str] = typer.Option(None, "--name", help="the sweep's name (default: the file's)"),
          out: Optional[Path] = typer.Option(None, "--out", help="sweep directory (default sweeps/<name>/)")):
    """Run a recipe over variants x seeds, sharing every cached node, and compare each variant with a
    baseline: summary.json (mean, std, per seed), metrics.json, summary.md, summary.png."""
    import yaml as _yaml

    from recipe import sweep as sweep_mod
    from recipe.load import RecipeError

    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError:
        _fail(ValueError(f"--seeds {seeds!r}: give comma-separated integers, e.g. 0,1,2"))
    try:
        doc = _yaml.safe_load(recipe.read_text()) if recipe.is_file() else None
        if isinstance(doc, dict) and "variants" in doc:
            if vary:
                _fail(ValueError("a sweep file declares its variants; give --vary with a recipe instead"))
            spec = sweep_mod.from_file(recipe, seed_list, name)
            if baseline:
                spec.baseline = baseline
        else:
            spec = sweep_mod.from_vary(recipe, list(vary or []), seed_list or [0], baseline, name)
        for v in spec.variants:
            v.overrides = [*(overrides or []), *v.overrides]
        command = "recipe sweep " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else [str(recipe)])
        summary = _guard(lambda: sweep_mod.run(spec, out or Path("sweeps") / spec.name, command, console))
    except RecipeError as exc:
        err_console.print(f"[bold red]recipe error[/] ({len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}):")
        err_console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    t = Table(title=f"sweep {spec.name}: {summary['metric']} (baseline {summary['baseline']})")
    for col in ("variant", "mean", "std", "per seed"):
        t.add_column(col)
    for vname, v in summary["variants"].items():
        t.add_row(vname, "-" if v["mean"] is None else f"{v['mean']:.4g}", "-" if v["std"] is None else f"{v['std']:.3g}",
                  ", ".join("-" if x is None else f"{x:.4g}" for x in v["per_seed"]))
    console.print(t)
    console.print(f"[green]sweep[/] -> {out or Path('sweeps') / spec.name}/summary.json")


def _write_card(out: Path, card_dir: Optional[Path] = None) -> None:
    from curation.card import write_card

    path = _guard(lambda: write_card(out, card_dir))
    console.print(f"[green]data card[/] -> {path}/README.md, {path}/index.html")


def _run_dir(recipe: Path, out: Optional[Path]) -> Path:
    """The run directory: --out, RECIPE itself when it is a run directory, else runs/<recipe name>."""
    if out is not None:
        return out
    if recipe.is_dir():
        return recipe
    return Path("runs") / _load(recipe, []).recipe.name


RunArg = typer.Argument(..., help="the recipe file (its run dir is --out or runs/<name>/), or a run directory")


@app.command()
def card(recipe: Path = RunArg, out: Optional[Path] = OutOpt,
         card_dir: Optional[Path] = typer.Option(None, "--card-dir", help="write the card here (default <out>/card)")):
    """(Re)write the data card of an existing run: README.md, card.json, index.html, plots/."""
    _write_card(_run_dir(recipe, out), card_dir)


@app.command()
def audit(recipe: Path = RunArg, row_id: Optional[str] = typer.Argument(None, help="a row id (or its prefix)"),
          out: Optional[Path] = OutOpt,
          reason: Optional[str] = typer.Option(None, "--reason", help="list rows dropped for this reason code (or prefix)"),
          limit: int = typer.Option(50, "--limit", help="rows to show with --reason")):
    """The history of one row (every step's decision, the datasets and stages it reached), or the rows
    dropped for a reason."""
    from curation.card import RunFiles
    from curation.card import audit as audit_mod
    from curation.card import views

    if (row_id is None) == (reason is None):
        _fail(ValueError("give a row id, or --reason CODE (not both)"))
    run = _guard(lambda: RunFiles.open(_run_dir(recipe, out), allow_failed=True))
    if reason is not None:
        table = _guard(lambda: audit_mod.dropped_for(run, reason))
        views.print_dropped(console, reason, table, limit, audit_mod.reason_codes(run))
        return
    views.print_history(console, _guard(lambda: audit_mod.history(run, row_id)))


@app.command()
def diff(out_a: Path = typer.Argument(..., help="run directory A"), out_b: Path = typer.Argument(..., help="run directory B"),
         examples: int = typer.Option(3, "--examples", help="example ids per group")):
    """Rows that entered and left each stage dataset between two runs, by the step and reason, and the
    recipe keys that changed."""
    from curation.card import RunFiles
    from curation.card import views
    from curation.card.diff import diff_runs

    a, b = _guard(lambda: RunFiles.open(out_a)), _guard(lambda: RunFiles.open(out_b))
    views.print_diff(console, _guard(lambda: diff_runs(a, b, examples)))


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
