"""The metric protocol: a metric scores one model on one eval's rows and returns per-item records
(the eval ledger, ``eval/samples.parquet``) and aggregates (with a standard error where the metric
has one, and per ``skill`` and ``source``).

A metric is a class with ``name``, ``version`` (part of the eval node's cache key), ``Params``
(pydantic, ``extra="forbid"``), ``row_kinds`` (what its source must hold; checked at validate),
``higher_is_better`` (per value key: the report's deltas and sweeps' ratios read it), ``needs_source``
and ``evaluate(model, tokenizer, rows, ctx) -> MetricResult``. Per-item functions and the
aggregation are separate, as in lm-evaluation-harness: items first, then means over items (so a
perplexity is exp(mean token loss over all tokens), never a mean of perplexities).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricError(ValueError):
    """A metric that cannot run on this eval's rows or model (user-facing)."""


@dataclass
class EvalContext:
    """What the runner lends a metric: the eval's options and helpers."""

    spec: Any  # eval.spec.EvalSpec
    eval_name: str = ""
    model_name: str = ""
    seed: int = 0
    fewshot: list[list[dict]] = field(default_factory=list)  # example turns prepended to every prompt
    on_progress: Callable[[int], Any] | None = None
    load_model: Callable[[str], Any] | None = None  # name ('base', a stage) -> (model, tokenizer), e.g. a reference
    workdir: Any = None


@dataclass
class MetricResult:
    values: dict[str, float]
    n: int
    stderr: dict[str, float] = field(default_factory=dict)
    by_skill: dict[str, dict[str, float]] = field(default_factory=dict)
    by_source: dict[str, dict[str, float]] = field(default_factory=dict)
    items: list[dict] = field(default_factory=list)  # item_id, prompt_hash, output, answer, score, loss
    extras: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"values": self.values, "stderr": self.stderr, "n": self.n, "by_skill": self.by_skill,
                "by_source": self.by_source, "extras": self.extras}


class Metric:
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = NoParams
    row_kinds: ClassVar[frozenset[str]] = frozenset({"verifiable"})
    higher_is_better: ClassVar[bool] = True
    needs_source: ClassVar[bool] = True

    def __init__(self, params: BaseModel):
        self.params = params

    def lower_is_better(self, key: str) -> bool:
        return not self.higher_is_better

    def evaluate(self, model, tokenizer, rows, ctx: EvalContext) -> MetricResult:  # pragma: no cover - interface
        raise NotImplementedError


def prompt_hash(prompt: Any) -> str:
    import json

    return hashlib.sha256(json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def mean_stderr(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n); 0 for n < 2)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    if n < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def grouped_means(rows, scores: list[float], column: str) -> dict[str, float]:
    """Mean score per value of ``column`` (``skill`` or ``source``; missing values -> 'all')."""
    groups: dict[str, list[float]] = defaultdict(list)
    for value, s in zip(rows[column], scores):
        groups[value or "all"].append(s)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def per_item_result(key: str, rows, scores: list[float], items: list[dict], extras: dict | None = None) -> MetricResult:
    """The usual aggregation of a per-item score: mean, standard error, by skill and by source."""
    m, se = mean_stderr(scores)
    return MetricResult(values={key: m}, stderr={key: se}, n=len(scores),
                        by_skill={key: grouped_means(rows, scores, "skill")},
                        by_source={key: grouped_means(rows, scores, "source")}, items=items, extras=extras or {})
