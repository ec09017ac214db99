"""The step protocol: a step decides, the runner applies and records (DESIGN.md).

A step is a class with

* ``name``     -- its registry name (``exact_dedup``),
* ``version``  -- bumped whenever its decisions could change for the same input (part of its
  cache key, so an edited step never serves stale cached decisions),
* ``Params``   -- a pydantic model of its options (``extra="forbid"``),
* ``uses_tokenizer`` -- whether decisions depend on the model's tokenizer (then the tokenizer is
  part of the cache key),
* ``reads_sources(params)`` -- names of other recipe sources it reads (e.g. eval sets for
  decontamination), whose content hashes join its cache key,
* ``cache_inputs(params)`` -- identity of local files its options name (a classifier, scoring
  models), joined to its cache key when not empty,
* ``model_refs(params)`` -- models it runs (``base``, or paths), lent by ``ctx.model(name)``;
  each model's identity joins its cache key,
* ``decide(rows) -> Decisions``: one keep flag per row, an optional score, and a reason for every
  dropped row (``code`` or ``code:detail``, e.g. ``duplicate_of:3fa2...``).
* ``row_kinds`` -- the row kinds it takes (None: any); ``recipe validate`` checks a mixture's
  declared kinds against it,
* ``orders`` -- whether its decisions carry an ``order`` (the rows' output order matters to what
  consumes them: ``recipe validate`` refuses a stage that would discard it),
* ``row_local`` -- a row's decision depends on that row alone. Such a step implements
  ``decide_batch(table) -> Decisions`` over a ``pyarrow.Table`` of canonical rows (vectorised with
  ``pyarrow.compute`` / numpy where it can be, ``curation.columns`` gives the row texts) and
  ``summarise(decisions) -> extras`` over the merged decisions; the runner decides the rows in
  shards, on several processes when ``per_row_python`` and ``parallel_ok`` and the step needs no
  tokenizer, model or other source (``curation.row_local``); ``decide(rows)`` is ``decide_batch``
  of the whole table.

A step never removes rows itself; the runner applies the decisions and appends them to the
ledger, so every drop has a record. Selectors with a budget return the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # datasets costs a worker process most of a second to import
    import datasets


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepError(Exception):
    """A step cannot run on this input (bad option for this data, missing file, ...)."""


@dataclass
class Decisions:
    """One step's decisions, one entry per input row.

    ``order`` (optional; a step that *orders* its rows, e.g. ``iclm``): each kept row's position in
    the step's output, a permutation of ``0..kept-1`` over the kept rows (dropped rows: any value,
    stored as -1). The runner writes the kept rows in that order and records each position in the
    ledger. Without it the kept rows keep their input order -- so a later step that only filters
    preserves an earlier step's order. ``group`` (optional): a group id per row (ICLM's path; -1 for
    none), recorded in the ledger for every row, kept or dropped.
    """

    keep: np.ndarray
    score: np.ndarray | None = None
    reason: list[str | None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # JSON-able facts for the data card
    order: np.ndarray | None = None
    group: np.ndarray | None = None

    def kept_indices(self) -> list[int]:
        """Input indices of the kept rows, in output order (``order`` when given, else input order)."""
        kept = np.flatnonzero(self.keep)
        if self.order is not None:
            kept = kept[np.argsort(self.order[kept], kind="stable")]
        return kept.tolist()

    def __post_init__(self):
        self._check_order()
        self.keep = np.asarray(self.keep, dtype=bool)
        n = len(self.keep)
        if self.score is not None:
            self.score = np.asarray(self.score, dtype=np.float64)
            if len(self.score) != n:
                raise ValueError(f"score has {len(self.score)} values for {n} rows")
        if self.reason is None:
            self.reason = [None] * n
        if len(self.reason) != n:
            raise ValueError(f"reason has {len(self.reason)} values for {n} rows")
        for i in np.flatnonzero(~self.keep):
            if not self.reason[i]:
                raise ValueError(f"row {i} is dropped without a reason")

    def _check_order(self) -> None:
        self.keep = np.asarray(self.keep, dtype=bool)
        n, kept = len(self.keep), int(self.keep.sum())
        for name in ("order", "group"):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.array(value, dtype=np.int64)  # a copy: dropped rows' order is reset below
            if value.shape != (n,):
                raise ValueError(f"{name} has {value.size} values for {n} rows")
            setattr(self, name, value)
        if self.order is not None:
            if not np.array_equal(np.sort(self.order[self.keep]), np.arange(kept)):
                raise ValueError(f"order must give the {kept} kept rows the positions 0..{kept - 1}, each once")
            self.order[~self.keep] = -1


@dataclass
class StepContext:
    """What the runner lends a step."""

    seed: int = 0
    workdir: Path | None = None  # a private folder inside the step's cache entry
    tokenizer_loader: Callable[[], Any] | None = None
    source_loader: Callable[[str], datasets.Dataset] | None = None
    progress: Callable[[str, int], Any] | None = None  # (description, total) -> rich-like task
    cache_root: Path | None = None  # the run's cache root: shared stores (e.g. embeddings/) live under it
    # a model the step names (`base` = the recipe's base model, or a path) -> a loadable model dir or Hub id
    model_loader: Callable[[str], Any] | None = None
    # the curation engine (curation.engine): a step with a data-parallel inner loop runs it through
    # engine.map_texts; None runs it here
    engine: Any = None

    def model(self, name: str):
        """The model directory (or Hub id) of ``name``: ``base`` is the recipe's base model (the tiny
        model is built into the cache on first use), anything else a path or Hub id as given."""
        if self.model_loader is not None:
            return self.model_loader(name)
        if name == "base":
            raise StepError("this step uses the recipe's base model, but the runner gave it no model loader")
        return name

    def tokenizer(self):
        if self.tokenizer_loader is None:
            raise StepError("this step needs a tokenizer, but the recipe has no model")
        return self.tokenizer_loader()

    def source(self, name: str) -> datasets.Dataset:
        if self.source_loader is None:
            raise StepError(f"this step reads source {name!r}, but no source loader was given")
        return self.source_loader(name)


def path_fingerprint(path: str | Path) -> Any:
    """Cheap identity of a local file or folder (relative names, sizes, mtimes); the string
    itself for anything that is not a local path (a Hub id)."""
    p = Path(path).expanduser()
    if not p.exists():
        return str(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    return [[str(f.relative_to(p)) if f != p else p.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


class Step:
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = NoParams
    uses_tokenizer: ClassVar[bool] = False
    # options naming eval items: the loader lets a declared eval's name (or `all_evals`) stand for sources
    eval_targets: ClassVar[tuple[str, ...]] = ()
    row_kinds: ClassVar[frozenset[str] | None] = None  # the row kinds it takes (None: any)
    orders: ClassVar[bool] = False  # its Decisions carry an `order` the runner applies
    row_local: ClassVar[bool] = False  # decide_batch(table) over any shard gives that shard's decisions
    parallel_ok: ClassVar[bool] = True  # a row-local step a worker process can rebuild from its options
    per_row_python: ClassVar[bool] = False  # its decide_batch loops over rows in Python: worth a worker
    text_only: ClassVar[bool] = False  # decide_batch reads only text_column(table, params.field): a worker gets that

    def __init__(self, params: BaseModel, ctx: StepContext):
        self.params = params
        self.ctx = ctx

    @classmethod
    def reads_sources(cls, params: BaseModel) -> list[str]:
        return []

    @classmethod
    def model_refs(cls, params: BaseModel) -> list[str]:
        """Models the step's decisions depend on: ``base`` (the recipe's base model) or paths / Hub
        ids. The plan joins each one's identity to the step's cache key (the base model's plan node
        key; a path's content fingerprint) and the runner lends them through ``ctx.model(name)``."""
        return []

    @classmethod
    def cache_inputs(cls, params: BaseModel) -> dict[str, Any]:
        """Identity of files the options name by path (a classifier, scoring models), for the cache
        key, so replacing such a file re-runs the step. Use :func:`path_fingerprint`."""
        return {}

    def decide(self, rows: datasets.Dataset) -> Decisions:
        """The step's decisions for ``rows``; a row-local step's are ``decide_batch`` of the whole table."""
        if not self.row_local:  # pragma: no cover - interface
            raise NotImplementedError
        from curation.columns import table_of

        decisions = self.decide_batch(table_of(rows))
        decisions.extras = self.summarise(decisions)
        return decisions

    def decide_batch(self, table: pa.Table) -> Decisions:  # pragma: no cover - interface
        """Row-local steps: the decisions for the rows of ``table`` (any contiguous shard of the input)."""
        raise NotImplementedError

    def summarise(self, decisions: Decisions) -> dict[str, Any]:
        """Row-local steps: the card facts (``extras``) of the merged decisions of all shards."""
        return decisions.extras
