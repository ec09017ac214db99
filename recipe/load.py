"""Load a recipe: YAML -> OmegaConf (interpolation, dot-list overrides) -> validated ``Recipe``.

Every problem becomes a :class:`RecipeError` listing, for each error, the key path
(``stages[1].bta``), the offending value, a "did you mean" suggestion, and the file and line, so
the CLI can print it without a traceback. Plug-in options (generators, curation steps) are
checked by the plug-in's own ``Params`` model here, with the same paths.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from curation.generators import load_builtin_generators
from curation.steps import load_builtin_steps
from recipe import yaml_io
from recipe.checks import check_evals, check_hooks, check_plugins, check_row_kinds, check_selection_kinds
from recipe.problems import Problem, RecipeError, format_path, format_problem, key_path, line_for, problems_from_validation  # noqa: F401
from recipe.schema import Recipe


@dataclass
class LoadedRecipe:
    recipe: Recipe
    resolved: dict
    hash: str
    file: str
    env_keys: dict[tuple, str] = field(default_factory=dict)  # key path -> its ${oc.env:...} expression

    def published(self) -> dict:
        """The resolved recipe as every published file shows it: a value read from an environment
        variable (a token, a private path) is replaced by its ``${oc.env:...}`` expression."""
        import copy

        out = copy.deepcopy(self.resolved)
        for path, expr in self.env_keys.items():
            _set_path(out, path, expr)
        return out

    def resolved_yaml(self) -> str:
        return yaml.safe_dump(self.published(), sort_keys=False, allow_unicode=True)


NOT_HASHED = ("engine",)  # where curation runs, not what it decides (curation.engine)


def recipe_hash(resolved: dict) -> str:
    content = {k: v for k, v in resolved.items() if k not in NOT_HASHED}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _apply_overrides(cfg, overrides: list[str], file: str) -> dict[tuple, str]:
    """Merge ``a.b=c`` overrides; return key path -> override text (to blame errors on it)."""
    origins: dict[tuple, str] = {}
    for text in overrides:
        if "=" not in text:
            raise RecipeError(file, [Problem((), f"override {text!r} is not KEY=VALUE (e.g. stages.0.lr=2e-5)")])
        key = text.split("=", 1)[0].lstrip("+")
        path = tuple(int(p) if p.isdigit() else p for p in key.split("."))
        value_text = text.split("=", 1)[1]
        try:
            value = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={value_text}"]))["v"]
            # a list position is replaced (a selection step swapped for another), a mapping merged into
            OmegaConf.update(cfg, key, value, merge=not key.split(".")[-1].isdigit())
        except (OmegaConfBaseException, ValueError, IndexError, KeyError) as exc:
            raise RecipeError(file, [Problem(path, f"override {text!r} cannot be applied: {exc}".splitlines()[0], origin=text)]) from None
        origins[path] = text
    return origins


def _validate(data: dict, origins: dict[tuple, str]) -> tuple[Recipe | None, list[Problem]]:
    """Strict validation (a bool is never a number, a float never an int, a number never text).

    CLI overrides are the one deliberate conversion: OmegaConf parses ``name=123`` as a number, so
    where the schema wants text at a key an override set, the override's own text is used."""
    for _ in range(len(origins) + 1):
        try:
            return Recipe.model_validate(data, strict=True), []
        except ValidationError as exc:
            problems = problems_from_validation(exc, data)
            retry = False
            for err in exc.errors():
                if err["type"] != "string_type":
                    continue
                path = key_path(tuple(err["loc"]))
                text = origins.get(path)
                if text is not None and not isinstance(_get_path(data, path), str):
                    _set_path(data, path, text.split("=", 1)[1])
                    retry = True
            if not retry:
                return None, problems
    return None, problems


def _get_path(data: Any, path: tuple) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _set_path(data: Any, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _env_keys(raw: Any, path: tuple = ()) -> dict[tuple, str]:
    """Key paths whose value reads an environment variable (``${oc.env:...}``), with the expression."""
    out: dict[tuple, str] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            out.update(_env_keys(v, path + (k,)))
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            out.update(_env_keys(v, path + (i,)))
    elif isinstance(raw, str) and "${oc.env:" in raw.replace(" ", ""):
        out[path] = raw
    if not path:  # values interpolated from an env-reading key read the environment too
        refs = _interpolations(raw)
        for _ in range(len(refs)):
            more = {p: expr for p, expr in refs.items() if p not in out and any(
                target[: len(e)] == e for target in _targets(expr) for e in out)}
            if not more:
                break
            out.update(more)
    return out


def _interpolations(raw: Any, path: tuple = ()) -> dict[tuple, str]:
    if isinstance(raw, dict):
        return {k: v for key, val in raw.items() for k, v in _interpolations(val, path + (key,)).items()}
    if isinstance(raw, list):
        return {k: v for i, val in enumerate(raw) for k, v in _interpolations(val, path + (i,)).items()}
    return {path: raw} if isinstance(raw, str) and "${" in raw else {}


def _targets(expr: str) -> list[tuple]:
    import re

    return [tuple(int(p) if p.isdigit() else p for p in m.split(".")) for m in re.findall(r"\$\{([^}:]+)\}", expr)]


def _keep_stages(data: dict, names: list[str], file: str) -> None:
    """Keep only the named stages (in recipe order): a sweep variant that runs a prefix of the chain."""
    stages = data.get("stages") or []
    have = [s.get("name") or f"{i}-{s.get('kind')}" if isinstance(s, dict) else str(i) for i, s in enumerate(stages)]
    unknown = [n for n in names if n not in have]
    if unknown:
        raise RecipeError(file, [Problem(("stages",), f"the variant keeps stages {unknown}, which the recipe does not "
                                                      f"have; its stages are {have}")])
    data["stages"] = [s for s, n in zip(stages, have) if n in names]


def load_recipe(path: str | Path, overrides: list[str] | None = None, keep_stages: list[str] | None = None) -> LoadedRecipe:
    """Load, override, resolve and validate a recipe file. Raises :class:`RecipeError`.
    ``keep_stages`` keeps only those stages (by name), as a sweep variant asks."""
    load_builtin_generators()
    load_builtin_steps()
    file = str(path)
    p = Path(path)
    if not p.is_file():
        raise RecipeError(file, [Problem((), f"recipe file not found: {file}")])
    try:
        text = yaml_io.read_text(p)
        raw = yaml_io.parse(text)
    except yaml_io.YamlProblem as exc:
        raise RecipeError(file, [Problem((), exc.message, line=exc.line)]) from None
    if not isinstance(raw, dict):
        raise RecipeError(file, [Problem((), "a recipe is a YAML mapping (name, model, sources, ...)")])
    lines = yaml_io.line_index(text)
    dates = yaml_io.find_dates(raw)
    if dates:
        raise RecipeError(file, [Problem(path_, f"YAML reads {value.isoformat()} as a date, and no recipe key takes one; "
                                         f"quote it ('{value.isoformat()}') if you mean the text",
                                         line=line_for(lines, path_)) for path_, value in dates])
    try:
        cfg = OmegaConf.create(raw)
    except OmegaConfBaseException as exc:
        raise RecipeError(file, [Problem((), f"cannot read the recipe: {str(exc).splitlines()[0]}")]) from None
    origins = _apply_overrides(cfg, overrides or [], file)
    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise RecipeError(file, [Problem(tuple(key.split(".")) if key else (), f"interpolation failed: {exc.msg if hasattr(exc, 'msg') else exc}")]) from None
    if keep_stages is not None:
        _keep_stages(data, keep_stages, file)
    recipe, problems = _validate(data, origins)
    if recipe is not None:
        recipe, problems = check_plugins(recipe, data)
        if not problems:
            problems = (check_row_kinds(recipe) + check_selection_kinds(recipe) + check_evals(recipe)
                        + check_hooks(recipe))
    if problems:
        for prob in problems:
            prob.line = line_for(lines, prob.path)
            for opath, otext in origins.items():
                if prob.path[: len(opath)] == opath or opath[: len(prob.path)] == prob.path:
                    prob.origin = otext
        raise RecipeError(file, problems)
    resolved = recipe.model_dump(mode="json", by_alias=True, exclude_none=False)
    # keep the generator options (extra keys) in the resolved recipe
    for name, spec in recipe.sources.items():
        if spec.model_extra:
            resolved["sources"][name].update(spec.model_extra)
    env = {k: v for k, v in _env_keys(OmegaConf.to_container(cfg, resolve=False)).items()
           if _get_path(resolved, k) is not None}
    return LoadedRecipe(recipe=recipe, resolved=resolved, hash=recipe_hash(resolved), file=file, env_keys=env)
