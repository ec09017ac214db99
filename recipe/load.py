"""Load a recipe: YAML -> OmegaConf (interpolation, dot-list overrides) -> validated ``Recipe``.

Every problem becomes a :class:`RecipeError` listing, for each error, the key path
(``stages[1].bta``), the offending value, a "did you mean" suggestion, and the file and line, so
the CLI can print it without a traceback. Plug-in options (generators, curation steps) are
checked by the plug-in's own ``Params`` model here, with the same paths.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ValidationError

from curation.generators import GENERATORS, load_builtin_generators
from curation.registry import UnknownName
from curation.steps import STEPS, load_builtin_steps
from recipe import yaml_io
from recipe.schema import FileSource, Recipe, ReferenceErrors, all_field_names


@dataclass
class Problem:
    path: tuple
    message: str
    value: Any = None
    suggestion: str | None = None
    line: int | None = None
    origin: str | None = None  # the CLI override that set this key, if any


@dataclass
class RecipeError(Exception):
    file: str
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(format_problem(self.file, p) for p in self.problems)


def format_path(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def format_problem(file: str, p: Problem) -> str:
    where = f"{file}:{p.line}" if p.line else file
    text = f"{where}: {format_path(p.path)}: {p.message}"
    if p.value is not None and not isinstance(p.value, (dict, list)):
        text += f" (got {p.value!r})"
    if p.suggestion:
        text += f"\n    did you mean {p.suggestion!r}?"
    if p.origin:
        text += f"\n    (set by the override {p.origin!r})"
    return text


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


def recipe_hash(resolved: dict) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _line_for(index: dict[tuple, int], path: tuple) -> int | None:
    for n in range(len(path), 0, -1):
        if path[:n] in index:
            return index[path[:n]]
    return None


def _suggest(word: str, candidates) -> str | None:
    close = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def _siblings(data: Any, path: tuple) -> set[str]:
    """Keys allowed next to ``path[-1]``: the fields of the model found at ``path[:-1]``."""
    from recipe import schema

    model: Any = Recipe
    node = data
    for part in path[:-1]:
        node = node[part] if isinstance(node, (dict, list)) and (isinstance(part, int) or part in node) else None
        if model is Recipe and part in ("sources", "mixtures", "selection", "eval", "stages"):
            model = part
            continue
        if model == "stages":
            kind = node.get("kind") if isinstance(node, dict) else None
            model = schema.stage_models().get(kind, schema.SFTStage) if isinstance(part, int) else model
            continue
        if model == "sources":
            model = FileSource
            continue
        if model == "eval":
            model = schema.EvalSpec
            continue
        if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            ann = model.model_fields[part].annotation
            model = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
            continue
        model = None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {f.alias or n for n, f in model.model_fields.items()}
    return all_field_names()


def _stage_kinds() -> set[str]:
    from recipe.schema import stage_models

    return set(stage_models())


def _key_path(loc: tuple) -> tuple:
    """pydantic's error location without the union-branch tags it inserts (by position, so a
    mixture or source that happens to be called ``sft`` or ``file`` keeps its name)."""
    loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))  # function-after[...] etc.
    if len(loc) > 2 and loc[0] == "sources" and loc[2] in ("file", "generated"):
        loc = loc[:2] + loc[3:]
    if len(loc) > 2 and loc[0] == "stages" and loc[2] in _stage_kinds():
        loc = loc[:2] + loc[3:]  # the union's tag (stage kind) is not a key
    if len(loc) > 3 and loc[0] == "mixtures" and loc[3] in ("int", "float", "MixShare"):
        loc = loc[:3] + loc[4:]
    return loc


def _problems_from_validation(exc: ValidationError, data: dict, prefix: tuple = ()) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = _key_path(tuple(err["loc"]))
        path = prefix + loc
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, ReferenceErrors):
            for p, msg in ctx_error.errors:
                problems.append(Problem(prefix + p, msg, suggestion=None))
            continue
        if err["type"] == "extra_forbidden":
            suggestion = _suggest(path[-1], _siblings(data, loc)) if path else None
            problems.append(Problem(path, "unknown key", suggestion=suggestion))
        elif err["type"] == "missing":
            problems.append(Problem(path, "required key is missing"))
        elif err["type"] == "union_tag_invalid" or (err["type"] == "literal_error" and loc and loc[-1] == "kind"):
            value = err.get("input")
            value = value.get("kind") if isinstance(value, dict) else value
            from recipe.schema import stage_models

            known = sorted(stage_models())
            problems.append(Problem(path if loc[-1:] == ("kind",) else path + ("kind",),
                                    f"unknown stage kind; known: {', '.join(known)}", value, _suggest(value, known)))
        elif err["type"] in _TYPE_NAMES:
            problems.append(Problem(path, _type_message(err), err.get("input")))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            value = err.get("input")
            suggestion = None
            if err["type"] == "literal_error" and isinstance(value, str):
                expected = (err.get("ctx") or {}).get("expected", "")
                suggestion = _suggest(value, [s.strip(" '") for s in expected.replace(" or ", ",").split(",")])
            problems.append(Problem(path, msg, value, suggestion))
    return _merge_type_problems(problems)


# pydantic's strict type errors -> what the key wants
_TYPE_NAMES = {"bool_type": "true or false", "int_type": "an integer", "float_type": "a number",
               "string_type": "text", "int_from_float": "an integer", "list_type": "a list",
               "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping"}


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if value is None:
        return "null"
    return {"list": "a list", "dict": "a mapping"}.get(type(value).__name__, type(value).__name__)


def _type_message(err: dict) -> str:
    value = err.get("input")
    want = _TYPE_NAMES[err["type"]]
    kind = _kind_of(value)
    hint = ""
    if isinstance(value, str) and want in ("a number", "an integer"):
        try:
            float(value)
            hint = "write the number without quotes"
        except ValueError:
            pass
    elif isinstance(value, float) and want == "an integer":
        kind = "a number with a decimal point" if value == int(value) else "a number with a fraction"
        hint = "write a whole number (no decimal point)"
    elif isinstance(value, bool) and want in ("a number", "an integer"):
        hint = "a boolean is never read as a number"
    elif want == "text" and isinstance(value, (int, float, bool)):
        hint = "quote it to mean the text"
    return f"expected {want}, not {kind}" + (f"; {hint}" if hint else "")


def _merge_type_problems(problems: list[Problem]) -> list[Problem]:
    """One problem per path (unions report each branch): type errors at one key become "expected X or Y"."""
    merged: dict[tuple, Problem] = {}
    wants: dict[tuple, list[str]] = {}
    order: list[tuple] = []
    for p in problems:
        key = (p.path, None if p.message.startswith("expected ") else p.message)
        if p.message.startswith("expected "):
            want = p.message.removeprefix("expected ").split(", not ")[0]
            if key in merged:
                if want not in wants[key]:
                    wants[key].append(want)
                continue
            wants[key] = [want]
        elif key in merged:
            continue
        merged[key] = p
        order.append(key)
    out = []
    for key in order:
        p = merged[key]
        if key in wants and len(wants[key]) > 1:
            alternatives = " or ".join(wants[key]).replace("an integer or a number", "a number")
            p.message = f"expected {alternatives}, not " + p.message.split(", not ", 1)[1]
        out.append(p)
    return out


def _check_plugins(recipe: Recipe, data: dict) -> tuple[Recipe, list[Problem]]:
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
            try:
                params = step_cls.Params.model_validate(options or {}, strict=True)
            except ValidationError as exc:
                problems += _params_problems(exc, ("selection", mix, i, step_name), step_cls.Params)
                continue
            problems += _unknown_reads(recipe, step_cls, params, options or {}, ("selection", mix, i, step_name))
    return recipe, problems


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
                               name, _suggest(name, recipe.sources)))
    return out


def _params_problems(exc: ValidationError, prefix: tuple, params_model) -> list[Problem]:
    out = []
    known = list(params_model.model_fields)
    for err in exc.errors():
        path = prefix + tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            out.append(Problem(path, "unknown option", suggestion=_suggest(err["loc"][-1], known)))
        elif err["type"] == "missing":
            out.append(Problem(path, "required option is missing"))
        else:
            out.append(Problem(path, err["msg"].removeprefix("Value error, "), err.get("input")))
    return out


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
            OmegaConf.update(cfg, key, value, merge=True)
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
            problems = _problems_from_validation(exc, data)
            retry = False
            for err in exc.errors():
                if err["type"] != "string_type":
                    continue
                path = _key_path(tuple(err["loc"]))
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


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> LoadedRecipe:
    """Load, override, resolve and validate a recipe file. Raises :class:`RecipeError`."""
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
                                         line=_line_for(lines, path_)) for path_, value in dates])
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
    recipe, problems = _validate(data, origins)
    if recipe is not None:
        recipe, problems = _check_plugins(recipe, data)
    if problems:
        for prob in problems:
            prob.line = _line_for(lines, prob.path)
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
