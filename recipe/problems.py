"""Recipe problems: what a user sees when a recipe is wrong (key path, value, suggestion, file, line).

pydantic's validation errors become :class:`Problem` records here: union-branch tags dropped from the
key path, strict type errors worded as "expected a number, not a boolean", unknown keys given a
"did you mean" from the keys allowed at that place.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

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


def line_for(index: dict[tuple, int], path: tuple) -> int | None:
    for n in range(len(path), 0, -1):
        if path[:n] in index:
            return index[path[:n]]
    return None


def suggest(word: str, candidates) -> str | None:
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


def key_path(loc: tuple) -> tuple:
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


def problems_from_validation(exc: ValidationError, data: dict, prefix: tuple = ()) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = key_path(tuple(err["loc"]))
        path = prefix + loc
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, ReferenceErrors):
            for p, msg in ctx_error.errors:
                problems.append(Problem(prefix + p, msg, suggestion=None))
            continue
        if err["type"] == "extra_forbidden":
            suggestion = suggest(path[-1], _siblings(data, loc)) if path else None
            problems.append(Problem(path, "unknown key", suggestion=suggestion))
        elif err["type"] == "missing":
            problems.append(Problem(path, "required key is missing"))
        elif err["type"] == "union_tag_invalid" or (err["type"] == "literal_error" and loc and loc[-1] == "kind"):
            value = err.get("input")
            value = value.get("kind") if isinstance(value, dict) else value
            from recipe.schema import stage_models

            known = sorted(stage_models())
            problems.append(Problem(path if loc[-1:] == ("kind",) else path + ("kind",),
                                    f"unknown stage kind; known: {', '.join(known)}", value, suggest(value, known)))
        elif err["type"] in _TYPE_NAMES:
            problems.append(Problem(path, _type_message(err), err.get("input")))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            value = err.get("input")
            suggestion = None
            if err["type"] == "literal_error" and isinstance(value, str):
                expected = (err.get("ctx") or {}).get("expected", "")
                suggestion = suggest(value, [s.strip(" '") for s in expected.replace(" or ", ",").split(",")])
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
