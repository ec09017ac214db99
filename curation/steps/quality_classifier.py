"""``quality_classifier``: score every row with a fastText classifier and keep the best.

The DCLM recipe (Li et al. 2024, "DataComp-LM", section 4.4): a fastText bigram classifier
(Joulin et al. 2017) trained with high-quality instruction-like text as positives (OpenHermes-2.5
+ ELI5 there) against random web text as negatives, then used to keep the rows it rates most
likely positive. Here the recipe names its own sources::

    - quality_classifier: {positive: [alpaca], negative: [web_sample], top_fraction: 0.3}

or a trained model: ``{model_path: classifiers/dclm.bin, positive_label: __label__hq}``.

Score = P(``positive_label``) from fastText's softmax over all labels. Keep rule: ``threshold``
(score >= t; default 0.5 when neither is given) or ``top_fraction`` (the ceil(f*N) best rows,
ties broken by input order). Dropped rows say ``low_quality:<score><t`` or
``low_quality_rank:<rank>>top<k>``.

Training (when ``positive``/``negative`` are given): texts are ``row_text(field)`` with newlines
collapsed (fastText reads one example per line), ``max_train_rows`` per class drawn with the
recipe seed, ``validation_fraction`` held out to report precision/recall in the extras. The
classifier is saved as ``work/quality.bin`` inside the step's cache entry: the cache key covers
the sources (``reads_sources``), so an unchanged recipe never retrains, and the file can be
reused elsewhere via ``model_path``. A ``model_path`` file is part of the cache key by size and
modification time (``cache_inputs``).

Hyper-parameters: fastText's own defaults (epoch 5, lr 0.1, dim 100) with word bigrams
(``word_ngrams: 2``); DCLM's exact training settings were not checked against its code. Deviation:
``bucket`` defaults to 200,000 instead of fastText's 2,000,000 so that a cached classifier is
~80 MB rather than ~800 MB; set ``bucket: 2000000`` to restore it. ``threads: 1`` avoids fastText's
lock-free (hogwild) updates across threads, so a seed gives the same classifier. Training runs in a
fresh child process (``fasttext_util.train``: fastText reads stale heap memory otherwise). If
training diverges (NaN), the learning rate is halved and training restarted (up to 3 times);
``lr_used`` in the extras says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation import fasttext_util as ft
from curation.columns import text_column
from curation.steps import STEPS
from curation.steps.base import Decisions, Step, StepError, path_fingerprint


class QualityClassifierParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    positive: list[str] = Field(default_factory=list, description="sources of high-quality examples (label 1)")
    negative: list[str] = Field(default_factory=list, description="sources of low-quality examples (label 0)")
    model_path: str | None = Field(None, description="a trained supervised fastText .bin instead of training")
    positive_label: str = "__label__1"
    field: Literal["all", "prompt", "response"] = "all"
    threshold: float | None = Field(None, ge=0, le=1, description="keep rows with P(positive) >= threshold")
    top_fraction: float | None = Field(None, gt=0, le=1, description="keep this fraction of rows, best first")
    max_train_rows: int | None = Field(None, gt=0, description="per class")
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    epoch: int = Field(5, ge=1)
    lr: float = Field(0.1, gt=0)
    word_ngrams: int = Field(2, ge=1)
    dim: int = Field(100, ge=1)
    bucket: int = Field(200_000, ge=1)
    threads: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self):
        trains = bool(self.positive or self.negative)
        if trains and self.model_path:
            raise ValueError("give either `model_path` (a trained classifier) or `positive` + `negative` sources, not both")
        if not trains and not self.model_path:
            raise ValueError("give `positive` and `negative` source names to train a classifier, or `model_path`")
        if trains and not (self.positive and self.negative):
            raise ValueError("training needs both `positive` and `negative` source lists")
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise ValueError(f"sources {both} are both positive and negative")
        if self.threshold is not None and self.top_fraction is not None:
            raise ValueError("give `threshold` or `top_fraction`, not both")
        if trains and self.positive_label != "__label__1":
            raise ValueError("a classifier trained here labels positives __label__1; `positive_label` is for `model_path`")
        return self


@STEPS.register("quality_classifier")
class QualityClassifier(Step):
    name = "quality_classifier"
    version = "1"
    Params = QualityClassifierParams

    @classmethod
    def reads_sources(cls, params: QualityClassifierParams) -> list[str]:
        return list(params.positive) + list(params.negative)

    @classmethod
    def cache_inputs(cls, params: QualityClassifierParams) -> dict:
        return {"model_path": path_fingerprint(params.model_path)} if params.model_path else {}

    def _train(self) -> tuple[object, dict]:
        p = self.params
        if self.ctx.workdir is None:
            raise StepError("quality_classifier needs a work folder to train in (the runner gives one)")
        rng = np.random.default_rng(self.ctx.seed)
        texts, labels, counts = [], [], {}
        for kind, label, names in (("positive", "__label__1", p.positive), ("negative", "__label__0", p.negative)):
            pool = [t for name in names for t in text_column(self.ctx.source(name), p.field).to_pylist()]
            if p.max_train_rows and len(pool) > p.max_train_rows:
                pool = [pool[i] for i in sorted(rng.choice(len(pool), p.max_train_rows, replace=False))]
            if not pool:
                raise StepError(f"the {kind} sources {names} have no rows to train the quality classifier on")
            counts[label] = len(pool)
            texts += pool
            labels += [label] * len(pool)
        order = rng.permutation(len(texts))
        n_val = int(len(texts) * p.validation_fraction) if min(counts.values()) >= 10 else 0
        val, trn = order[:n_val], order[n_val:]
        work = self.ctx.workdir
        work.mkdir(parents=True, exist_ok=True)
        ft.write_training_file(work / "train.txt", [texts[i] for i in trn], [labels[i] for i in trn])
        model, lr_used = ft.train(work / "train.txt", work / "quality.bin", epoch=p.epoch, lr=p.lr,
                                    word_ngrams=p.word_ngrams, dim=p.dim, bucket=p.bucket, seed=self.ctx.seed,
                                    threads=p.threads)
        (work / "train.txt").unlink()
        info = {"trained": True, "classifier": "work/quality.bin", "lr_used": lr_used, "train_rows": {"positive": counts["__label__1"],
                                                                                 "negative": counts["__label__0"]}}
        if n_val:
            prob = ft.positive_probability(model, [texts[i] for i in val], "__label__1")
            truth = np.array([labels[i] == "__label__1" for i in val])
            pred = prob >= 0.5
            tp = int((pred & truth).sum())
            info["validation"] = {"rows": int(n_val), "accuracy": float((pred == truth).mean()),
                                  "precision": tp / max(int(pred.sum()), 1), "recall": tp / max(int(truth.sum()), 1)}
        (work / "classifier.json").write_text(json.dumps(info, indent=1))
        return model, info

    def classifier(self) -> tuple[object, dict, Path]:
        """(the loaded classifier, what the extras say about it, its .bin file): trained from the
        sources into the step's work folder, or the ``model_path`` file."""
        p = self.params
        if p.model_path:
            return (ft.load_classifier(p.model_path, p.positive_label), {"trained": False, "classifier": p.model_path},
                    Path(p.model_path).expanduser())
        model, info = self._train()
        return model, info, self.ctx.workdir / "quality.bin"

    def decide(self, rows) -> Decisions:
        p = self.params
        model, info, _ = self.classifier()
        texts = text_column(rows, p.field).to_pylist()
        advance = self.ctx.progress("quality scores", len(texts)) if self.ctx.progress else None
        score = ft.positive_probability(model, texts, p.positive_label, advance=advance)
        return self.finish(score, info, list(model.get_labels()))

    def finish(self, score: np.ndarray, info: dict, labels: list[str]) -> Decisions:
        """The keep rule over every row's score (a ranking for ``top_fraction``: all rows at once)."""
        p = self.params
        n = len(score)
        reason: list[str | None] = [None] * n
        if p.top_fraction is not None:
            k = min(n, math.ceil(p.top_fraction * n))
            rank = np.empty(n, dtype=np.int64)
            rank[np.argsort(-score, kind="stable")] = np.arange(n)
            keep = rank < k
            for i in np.flatnonzero(~keep):
                reason[i] = f"low_quality_rank:{rank[i] + 1}>top{k}"
            rule = {"top_fraction": p.top_fraction, "kept": int(k)}
        else:
            t = 0.5 if p.threshold is None else p.threshold
            keep = score >= t
            for i in np.flatnonzero(~keep):
                reason[i] = f"low_quality:{score[i]:.4f}<{t:g}"
            rule = {"threshold": t}
        hist, edges = np.histogram(score, bins=20, range=(0.0, 1.0))
        extras = {**info, **rule, "labels": labels, "positive_label": p.positive_label,
                  "score_histogram": {"counts": hist.tolist(), "edges": edges.round(3).tolist()}}
        return Decisions(keep=keep, score=score, reason=reason, extras=extras)
