"""Read a recipe file's YAML strictly: what the text says is what the schema sees.

PyYAML's ``safe_load`` (YAML 1.1) has three traps for a recipe, each of which silently changed
what a shipped recipe meant or ended in a traceback, so this module replaces it:

* **Numbers.** YAML 1.1 reads ``2e-5`` (no dot) as the *string* "2e-5"; YAML 1.2 and OmegaConf read
  it as a float. The loader here resolves floats the YAML 1.2 way, so ``lr: 2e-5`` is a number and
  only a quoted ``"2e-5"`` is text (which the strict schema then refuses where a number is due).
* **Duplicate keys.** PyYAML keeps the last of two equal keys without a word; here it is an error
  naming both lines.
* **Dates.** ``2024-01-01`` becomes a ``datetime.date``, which OmegaConf cannot hold (a traceback);
  here every date is reported at its key path, with the fix (quote it).

A file that is not UTF-8 is reported with the byte offset and line of the first bad byte.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# YAML 1.2 core-schema floats (and YAML 1.1's), as OmegaConf's loader resolves them.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


@dataclass
class YamlProblem(Exception):
    message: str
    line: int | None = None
    path: tuple = ()


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, first: int, second: int):
        super().__init__(f"duplicate key {key!r} (first on line {first}, again on line {second})")
        self.key, self.first, self.second = key, first, second


class RecipeLoader(yaml.SafeLoader):
    """``SafeLoader`` with YAML 1.2 floats and duplicate keys refused."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the base class reports an unhashable key
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _DuplicateKey(str(key), seen[key], line)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


RecipeLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in list(RecipeLoader.yaml_implicit_resolvers):
    RecipeLoader.yaml_implicit_resolvers[_first] = [
        (tag, rx) for tag, rx in RecipeLoader.yaml_implicit_resolvers[_first] if tag != "tag:yaml.org,2002:float"]
RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def read_text(path: Path) -> str:
    """The file's text; a file that is not UTF-8 raises :class:`YamlProblem` naming the byte and line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlProblem(f"the recipe file is not UTF-8 text (byte {exc.start}, 0x{data[exc.start]:02x}, on line {line}); "
                          "save it as UTF-8", line) from None


def parse(text: str) -> Any:
    """YAML text -> Python data (raises :class:`YamlProblem` with the line)."""
    try:
        return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise YamlProblem(f"{exc}; a mapping holds each key once", exc.second) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YamlProblem(f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
                          mark.line + 1 if mark else None) from None


def find_dates(data: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Key paths of every YAML date/timestamp (no recipe key takes one; OmegaConf cannot hold one)."""
    if isinstance(data, (datetime.date, datetime.datetime)):
        return [(path, data)]
    out: list[tuple[tuple, Any]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += find_dates(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += find_dates(v, path + (i,))
    return out


def line_index(text: str) -> dict[tuple, int]:
    """Key path -> 1-based line, from the YAML node tree (best effort)."""
    index: dict[tuple, int] = {}
    try:
        root = yaml.compose(text, Loader=RecipeLoader)
    except yaml.YAMLError:
        return index

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                p = path + (k.value,)
                index[p] = k.start_mark.line + 1
                walk(v, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                index[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    if root is not None:
        walk(root, ())
    return index
