"""Registries by name, and dotted-path imports for user plug-ins.

One small class serves every extension point (source generators, source formats, curation steps,
verifiers, stage kinds): a name maps to an object, and a name containing ``:`` (``pkg.mod:Obj``)
is imported on demand, only when a recipe names it. No other plugin machinery (DESIGN.md).
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """A name that is neither registered nor an importable ``module:attr`` path."""

    def __init__(self, kind: str, name: str, known: list[str], why: str = ""):
        self.kind, self.name, self.known, self.why = kind, name, known, why
        close = difflib.get_close_matches(name, known, n=1)
        self.suggestion = close[0] if close else None
        msg = f"unknown {kind} {name!r}"
        if why:
            msg += f" ({why})"
        if self.suggestion:
            msg += f"; did you mean {self.suggestion!r}?"
        msg += f" Known: {', '.join(sorted(known)) or 'none'}"
        if not why:
            msg += "; or give a dotted path 'package.module:Name'."
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


def import_path(path: str) -> Any:
    """Import ``package.module:attr`` (or ``package.module.attr``)."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    def __init__(self, kind: str, builtins: Callable[[], None] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._builtins = builtins  # imports the modules that register the built-in entries

    def _load_builtins(self) -> None:
        if self._builtins is not None:
            load, self._builtins = self._builtins, None
            load()

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._items or ":" in name

    def get(self, name: str) -> T:
        self._load_builtins()
        if name in self._items:
            return self._items[name]
        if ":" in name:
            try:
                return import_path(name)
            except (ImportError, AttributeError, ValueError) as exc:
                raise UnknownName(self.kind, name, self.names(), why=f"cannot import: {exc}") from None
        raise UnknownName(self.kind, name, self.names())
