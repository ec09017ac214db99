"""The ``eval:`` entries of a recipe: which rows, which metrics, which suite, how prompts are framed.

``eval: {NAME: {source, suite, metrics, prefix, verifier, fewshot, max_new_tokens, batch_size, limit}}``.
``suite`` groups evals (``dev`` -- tuned against; ``unseen`` -- never looked at while developing, as
Tülu 3; any other name). ``metrics`` lists names or ``{name: {options}}`` from ``eval.metrics.METRICS``
(checked at validate against the source's row kind). ``prefix`` is prepended to every prompt (MeCo's
conditional inference). Every eval runs on the starting model and after every stage.
"""

from __future__ import annotations

from typing import Any, Union

from pydantic import Field, model_validator

from training.config import Strict

MetricEntry = Union[str, dict[str, Union[dict[str, Any], None]]]


class FewshotSpec(Strict):
    source: str = Field(description="a recipe source whose rows become the example turns")
    n: int = Field(ge=1, description="examples before every prompt (as earlier chat turns)")
    seed: int | None = Field(None, description="which examples (default: the recipe seed)")


class EvalSpec(Strict):
    source: str | None = Field(None, description="the held-out rows (not needed by lm_eval tasks)")
    suite: str = Field("dev", pattern=r"^[A-Za-z0-9_.\-]+$", description="dev, unseen, or any name")
    metrics: list[MetricEntry] = Field(default_factory=lambda: ["accuracy"], min_length=1)
    prefix: str = Field("", description="prepended to every prompt (MeCo: 'URL: en.wikipedia.org\\n\\n')")
    verifier: str | None = Field(None, description="override the rows' own verifier")
    fewshot: FewshotSpec | None = None
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(64, ge=1)
    limit: int | None = Field(None, gt=0, description="evaluate the first N rows")

    @model_validator(mode="after")
    def _entries(self):
        for i, entry in enumerate(self.metrics):
            if isinstance(entry, dict) and len(entry) != 1:
                raise ValueError(f"metrics[{i}]: one `name: {{options}}` mapping per entry")
        if self.source is None and any(name != "lm_eval" for name, _ in self.metric_entries()):
            raise ValueError("give `source` (the held-out rows); only lm_eval tasks bring their own data")
        return self

    def metric_entries(self) -> list[tuple[str, dict]]:
        out = []
        for entry in self.metrics:
            if isinstance(entry, str):
                out.append((entry, {}))
            else:
                (name, options), = entry.items()
                out.append((name, dict(options or {})))
        return out
