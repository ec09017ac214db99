"""Checks beyond the schema, still before anything runs: plug-in options (generators, steps) by their
own ``Params`` models, plug-in objects of the right shape (a step is a ``Step`` class, not a
function), the sources a step reads, and the row kinds each stage and eval will see (read off the
sources' declared kinds, so ``recipe validate`` refuses an sft stage fed text rows before curation).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from curation.generators import GENERATORS
from curation.registry import UnknownName
from curation.steps import STEPS
from curation.steps.base import Step
from recipe.problems import Problem, suggest
from recipe.schema import FileSource, Recipe, local_model_problem


def check_plugins(recipe: Recipe, data: dict) -> tuple[Recipe, list[Problem]]:
    """Validate generator and step options with their own Params models (normalised in place)."""
    problems: list[Problem] = []
    for name, spec in recipe.sources.items():
        if isinstance(spec, FileSource):
            continue
        try:
            gen = GENERATORS.get(spec.generate)
        except UnknownName as exc:
            problems.append(Problem(("sources", name, "generate"), f"unknown generator; known: {', '.join(exc.known)}", spec.generate, exc.suggestion))
            continue
        if not callable(gen) or isinstance(gen, type) or not hasattr(gen, "Params"):
            problems.append(Problem(("sources", name, "generate"), "is not a generator: a function "
                                    "(params, *, source, split, seed) -> rows with a `Params` model attribute", spec.generate))
            continue
        options = {k: v for k, v in (spec.model_extra or {}).items()}
        try:
            gen.Params.model_validate(options, strict=True)
        except ValidationError as exc:
            problems += _params_problems(exc, ("sources", name), gen.Params)
    for mix, steps in recipe.selection.items():
        for i, item in enumerate(steps):
            if len(item) != 1:
                problems.append(Problem(("selection", mix, i), "each selection item is one `step_name: {options}` mapping", item))
                continue
            (step_name, options), = item.items()
            try:
                step_cls = STEPS.get(step_name)
            except UnknownName as exc:
                msg = "unknown step" + (f" ({exc.why})" if exc.why else f"; known: {', '.join(exc.known)}; or 'pkg.module:Class'")
                problems.append(Problem(("selection", mix, i, step_name), msg, None, exc.suggestion))
                continue
            if not (isinstance(step_cls, type) and issubclass(step_cls, Step)):
                what = "a function" if callable(step_cls) else type(step_cls).__name__
                problems.append(Problem(("selection", mix, i, step_name), f"is {what}, not a step: a step is a class "
                                        "deriving from curation.steps.base.Step (name, version, Params, decide)", None))
                continue
            if options and getattr(step_cls, "eval_targets", ()):
                options = _eval_targets(recipe, step_cls, options)
                item[step_name] = options
            try:
                params = step_cls.Params.model_validate(options or {}, strict=True)
            except ValidationError as exc:
                problems += _params_problems(exc, ("selection", mix, i, step_name), step_cls.Params)
                continue
            problems += _unknown_reads(recipe, step_cls, params, options or {}, ("selection", mix, i, step_name))
            problems += _bad_models(step_cls, params, options or {}, ("selection", mix, i, step_name))
    return recipe, problems


def _bad_models(step_cls, params, options: dict, prefix: tuple) -> list[Problem]:
    """Every model a step runs (``model_refs``) is ``base`` or a loadable path / Hub id; a stage's name
    is refused (curation runs before any stage)."""
    out = []
    for ref in step_cls.model_refs(params):
        if ref == "base":
            continue
        where = next((prefix + (k,) for k, v in options.items() if v == ref), prefix)
        problem = local_model_problem(ref)
        if problem is None and "/" not in ref and not Path(ref).expanduser().exists():
            problem = (f"{ref!r} is neither `base` nor a model path; a step runs before every stage, so it can name the "
                       "recipe's base model (`base`) or a model folder / Hub id, not a stage")
        if problem:
            out.append(Problem(where, problem, ref))
    return out


def _unknown_reads(recipe: Recipe, step_cls, params, options: dict, prefix: tuple) -> list[Problem]:
    """Every source a step reads (``reads_sources``) must be declared; the problem points at the
    option that names it when it can be found (``selection.sft[0].quality_classifier.positive[1]``)."""

    def where(node, path):
        if isinstance(node, str):
            return path if node == name else None
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            found = where(v, path + (k,))
            if found:
                return found
        return None

    out = []
    for name in step_cls.reads_sources(params):
        if name not in recipe.sources:
            out.append(Problem(where(options, prefix) or prefix, f"names no source; sources are {sorted(recipe.sources)}",
                               name, suggest(name, recipe.sources)))
    return out


def _params_problems(exc: ValidationError, prefix: tuple, params_model) -> list[Problem]:
    out = []
    known = list(params_model.model_fields)
    for err in exc.errors():
        path = prefix + tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            out.append(Problem(path, "unknown option", suggestion=suggest(err["loc"][-1], known)))
        elif err["type"] == "missing":
            out.append(Problem(path, "required option is missing"))
        else:
            out.append(Problem(path, err["msg"].removeprefix("Value error, "), err.get("input")))
    return out


def _eval_targets(recipe: Recipe, step_cls, options: dict) -> dict:
    """Declared evals are targets by name: in a step's ``eval_targets`` options (decontaminate's
    ``against``) an eval's name stands for its source, and ``all_evals`` for every declared eval's."""
    options = dict(options)
    for key in step_cls.eval_targets:
        value = options.get(key)
        if value == "all_evals":
            options[key] = sorted({spec.source for spec in recipe.eval.values() if spec.source})
        elif isinstance(value, list):
            options[key] = [recipe.eval[v].source if v in recipe.eval and v not in recipe.sources and recipe.eval[v].source
                            else v for v in value]
    return options


def declared_kind(recipe: Recipe, source: str) -> str | None:
    """The row kind a source will yield, known before loading it (None: a user format decides)."""
    from curation.formats import DEFAULT_KIND

    spec = recipe.sources[source]
    if isinstance(spec, FileSource):
        return spec.kind or DEFAULT_KIND.get(spec.format or "")
    gen = GENERATORS.get(spec.generate)
    row_kind = getattr(gen, "row_kind", None)
    return row_kind(gen.Params.model_validate(spec.model_extra or {})) if row_kind else None


def check_row_kinds(recipe: Recipe) -> list[Problem]:
    """Each stage's mixture and validation set, and each eval's source, hold rows of a kind they can
    use (by the sources' declared kinds; the curated rows are checked again before training)."""
    problems: list[Problem] = []
    for i, stage in enumerate(recipe.stages):
        allowed = stage.accepted_row_kinds()
        for key, mix in (("data", stage.data),):
            for src in recipe.mixtures.get(mix, {}):
                kind = declared_kind(recipe, src)
                if kind is not None and kind not in allowed:
                    problems.append(Problem(("stages", i, key), f"mixture {mix!r} holds {kind} rows (source {src!r}); "
                                            f"a {stage.kind} stage trains on {', '.join(sorted(allowed))} rows"
                                            f"{stage.row_kinds_hint({kind})}", mix))
        if stage.validation is not None:
            v = stage.validation.data
            names = list(recipe.mixtures[v]) if v in recipe.mixtures else [v]
            for src in names:
                kind = declared_kind(recipe, src)
                if kind is not None and kind not in allowed:
                    problems.append(Problem(("stages", i, "validation", "data"), f"{v!r} holds {kind} rows (source "
                                            f"{src!r}); a {stage.kind} stage's validation loss needs "
                                            f"{', '.join(sorted(allowed))} rows", v))
    return problems


def check_evals(recipe: Recipe) -> list[Problem]:
    """Each eval's metrics: registered, options valid (their own ``Params``), fit for the source's
    row kind, and naming only models the recipe has."""
    from eval.metrics import METRICS

    problems: list[Problem] = []
    models = ["base", *recipe.stage_names()]
    for ev, spec in recipe.eval.items():
        kind = declared_kind(recipe, spec.source) if spec.source else None
        for i, (name, options) in enumerate(spec.metric_entries()):
            where = ("eval", ev, "metrics", i)
            try:
                metric = METRICS.get(name)
            except UnknownName as exc:
                problems.append(Problem(where, f"unknown metric; known: {', '.join(exc.known)}", name, exc.suggestion))
                continue
            try:
                params = metric.Params.model_validate(options, strict=True)
            except ValidationError as exc:
                problems += _params_problems(exc, where + (name,), metric.Params)
                continue
            if hasattr(metric, "validate"):
                try:
                    metric.validate(params)
                except ValueError as exc:
                    problems.append(Problem(where + (name,), str(exc)))
                    continue
            if kind is not None and kind not in metric.row_kinds:
                problems.append(Problem(("eval", ev, "source"), f"source {spec.source!r} holds {kind} rows; metric "
                                        f"{name!r} scores {', '.join(sorted(metric.row_kinds))} rows", spec.source))
            for ref in getattr(metric, "model_refs", lambda p: [])(params):
                if ref not in models:
                    problems.append(Problem(where + (name, "ref"), f"names no model; give base or a stage: {models}", ref,
                                            suggest(ref, models)))
    return problems


def check_hooks(recipe: Recipe) -> list[Problem]:
    """Each stage's hooks: registered, options valid, fit for the stage's kind, packing, rows and launch."""
    from training.hooks import HOOKS
    from training.hooks.base import Hook

    problems: list[Problem] = []
    for i, stage in enumerate(recipe.stages):
        kinds = {declared_kind(recipe, s) for s in recipe.mixtures.get(stage.data, {})} - {None}
        for j, item in enumerate(stage.hooks):
            where = ("stages", i, "hooks", j)
            if len(item) != 1:
                problems.append(Problem(where, "each hook is one `name: {options}` mapping", item))
                continue
            (name, options), = item.items()
            try:
                cls = HOOKS.get(name)
            except UnknownName as exc:
                msg = "unknown hook" + (f" ({exc.why})" if exc.why else f"; known: {', '.join(exc.known)}")
                problems.append(Problem(where + (name,), msg, None, exc.suggestion))
                continue
            if not (isinstance(cls, type) and issubclass(cls, Hook)):
                problems.append(Problem(where + (name,), "is not a hook: a hook is a class deriving from "
                                        "training.hooks.base.Hook", None))
                continue
            try:
                params = cls.Params.model_validate(options or {}, strict=True)
            except ValidationError as exc:
                problems += _params_problems(exc, where + (name,), cls.Params)
                continue
            here = where + (name,)
            if stage.kind not in cls.stage_kinds:
                problems.append(Problem(here, f"runs on {', '.join(sorted(cls.stage_kinds))} stages, not {stage.kind}"))
                continue
            if cls.needs_rows and getattr(stage, "packing", False):
                problems.append(Problem(("stages", i, "packing"), f"packing: true packs rows into blocks, and hook {name!r} "
                                        "needs them one by one (per-row losses or a per-row sampler): set packing: false"))
            bad = kinds - cls.row_kinds
            if bad:
                problems.append(Problem(here, f"takes {', '.join(sorted(cls.row_kinds))} rows; mixture {stage.data!r} "
                                        f"holds {', '.join(sorted(bad))} rows"))
            if recipe.launch is not None and recipe.launch.profile not in cls.launchers:
                problems.append(Problem(("launch", "profile"), f"hook {name!r} (stages[{i}]) runs under "
                                        f"{', '.join(sorted(cls.launchers))}, not {recipe.launch.profile}"))
            msg = cls.check(params, stage)
            if msg:
                problems.append(Problem(here, msg))
    return problems


def check_selection_kinds(recipe: Recipe) -> list[Problem]:
    """Each step that declares ``row_kinds`` gets a mixture of those kinds (by the sources' declared
    kinds; the step checks the curated rows again), and the dataset of an ordering step (``orders``,
    e.g. ``iclm``) feeds no pretrain stage that would discard the order (``bfd`` regroups documents
    by length; without packing each document is its own sequence) unless it says ``order: shuffle``."""
    problems: list[Problem] = []
    ordered: dict[str, str] = {}  # mixture -> the last ordering step's name
    for mix, steps in recipe.selection.items():
        for i, item in enumerate(steps):
            if len(item) != 1:
                continue
            (name, _), = item.items()
            try:
                cls = STEPS.get(name)
            except UnknownName:
                continue
            kinds = getattr(cls, "row_kinds", None)
            if kinds:
                for src in recipe.mixtures.get(mix, {}):
                    kind = declared_kind(recipe, src)
                    if kind is not None and kind not in kinds:
                        problems.append(Problem(("selection", mix, i, name), f"takes {', '.join(sorted(kinds))} rows; "
                                                f"mixture {mix!r} holds {kind} rows (source {src!r}); give it a mixture of "
                                                f"{', '.join(sorted(kinds))} sources"))
            if getattr(cls, "orders", False):
                ordered[mix] = name
    for i, stage in enumerate(recipe.stages):
        step = ordered.get(stage.data)
        if step is None or getattr(stage, "order", "shuffle") != "dataset":
            continue
        if not getattr(stage, "packing", True):
            problems.append(Problem(("stages", i, "packing"), f"dataset {stage.data!r} is ordered by step {step!r}, and "
                                    "without packing no two documents share a window: set packing: true (or order: "
                                    "shuffle to train on it without its order)", False))
        elif getattr(stage, "packing_strategy", "wrapped") != "wrapped":
            problems.append(Problem(("stages", i, "packing_strategy"), f"dataset {stage.data!r} is ordered by step "
                                    f"{step!r}; {stage.packing_strategy} packing regroups documents by length and loses "
                                    "that order: use packing_strategy: wrapped (or order: shuffle to drop the order)",
                                    stage.packing_strategy))
    return problems
