"""``preselect``: PreSelect (Shum et al. 2025, "Predictive Data Selection: The Data That
Predicts Is the Data That Teaches"; hkust-nlp/PreSelect@258c632), reference/methods.md section 6.

Idea: a document is worth training on when the losses of several models on it *predict* their
downstream ability. Given models M_1..M_m with benchmark scores b_1..b_m (the recipe states them)::

    - preselect:
        models: [{path: models/m1, score: 31.2}, {path: models/m2, score: 40.5}, {path: models/m3, score: 47.0}]
        fraction: 0.1

1. BPC_k(d) = CE of d under M_k / (chars(d) ln 2)  (``curation.lm_loss``; the paper's
   ``data_processing/bpc/main.py``, sliding window).
2. Predictive strength S(d) = number of model pairs (a, b) with b_a != b_b whose benchmark order
   matches their loss order: b_a > b_b and BPC_a(d) < BPC_b(d) (``train_fasttext.py``). With m
   models and distinct scores there are m(m-1)/2 pairs (15 for the paper's 6). Equal losses
   count as not matching; pairs of equal benchmark score carry no order and are left out.
3. Positives: documents with S = number of pairs (perfect concordance). Negatives: an equal
   number of the lowest-S other documents (ascending S; the code's missing ``sorted_id2score``
   line is read as ascending, as methods.md notes), ties broken by a seeded shuffle. If there are
   fewer other documents than positives, the positives are subsampled to keep classes equal.
4. fastText ``train_supervised(epoch=3, lr=0.1, wordNgrams=2)``, other settings default, newlines
   replaced by spaces, labels ``__label__1``/``__label__0``.
5. Score every row by P(``__label__1``); keep the best rows until they hold ``fraction`` (default
   0.1) of all characters (``find_threshold.py --percentage 0.1``): rows are taken best first
   while the characters already kept are below the budget, so the row that crosses it is kept.
   The threshold (the last kept row's score) is in the extras.

Deviations, stated: losses are computed on the rows being selected (or a seeded ``score_rows``
sample of them) rather than on a separate 900K-document sample, and the threshold is exact on
those rows instead of estimated on 3 shards; fastText's ``bucket`` is 200,000 rather than its
2,000,000 default (model ~80 MB instead of ~800 MB; ``bucket: 2000000`` restores it); training
uses one thread (no lock-free updates across threads; runs can still differ slightly between processes); on a diverged (NaN) run the learning rate is halved
and training restarted, up to 3 times (``lr_used`` in the extras).

The classifier (``work/preselect.bin``) and the BPC matrix (``work/bpc.npy``, rows x models)
are saved in the step's cache entry; the models' files are part of the cache key
(``cache_inputs``).
"""

from __future__ import annotations

import itertools
import json
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation import fasttext_util as ft
from curation.columns import text_column
from curation.steps import STEPS
from curation.steps.base import Decisions, Step, StepError, path_fingerprint


class ScoringModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="a local causal LM folder (or a Hub id already in the local cache)")
    score: float = Field(description="the model's benchmark score (higher = better)")


class PreSelectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[ScoringModel] = Field(min_length=2)
    fraction: float = Field(0.1, gt=0, le=1, description="share of all characters to keep")
    field: Literal["all", "prompt", "response"] = "all"
    score_rows: int | None = Field(None, gt=1, description="compute losses on a seeded sample of this many rows")
    window: int = Field(1024, ge=8, description="sliding-window length in tokens (1900 in the paper)")
    stride: int = Field(512, ge=1)
    batch_size: int = Field(8, ge=1)
    epoch: int = Field(3, ge=1)
    lr: float = Field(0.1, gt=0)
    word_ngrams: int = Field(2, ge=1)
    dim: int = Field(100, ge=1)
    bucket: int = Field(200_000, ge=1)
    threads: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _distinct_scores(self):
        if len({m.score for m in self.models}) < 2:
            raise ValueError("the models' benchmark scores are all equal; PreSelect needs models of different ability")
        return self


def predictive_strength(bpc: np.ndarray, scores) -> tuple[np.ndarray, int]:
    """S(d) for every row of ``bpc`` (rows x models), and the number of informative pairs."""
    s = np.zeros(len(bpc), dtype=np.int64)
    pairs = 0
    for a, b in itertools.combinations(range(len(scores)), 2):
        if scores[a] == scores[b]:
            continue
        better, worse = (a, b) if scores[a] > scores[b] else (b, a)
        s += bpc[:, better] < bpc[:, worse]
        pairs += 1
    return s, pairs


def contrastive_labels(strength: np.ndarray, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of positives (S = pairs) and of an equal number of lowest-S negatives."""
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(strength == pairs)
    rest = np.flatnonzero(strength != pairs)
    rest = rest[rng.permutation(len(rest))]  # seeded tie-break among equal S
    rest = rest[np.argsort(strength[rest], kind="stable")]
    n = min(len(pos), len(rest))
    if len(pos) > n:
        pos = np.sort(rng.choice(pos, n, replace=False))
    return pos, np.sort(rest[:n])


def top_characters(prob: np.ndarray, chars: np.ndarray, fraction: float) -> np.ndarray:
    """Keep the highest-``prob`` rows until they hold ``fraction`` of all characters."""
    order = np.argsort(-prob, kind="stable")
    before = np.concatenate([[0], np.cumsum(chars[order])[:-1]])
    keep = np.zeros(len(prob), dtype=bool)
    keep[order[before < fraction * chars.sum()]] = True
    return keep


@STEPS.register("preselect")
class PreSelect(Step):
    name = "preselect"
    version = "1"
    Params = PreSelectParams

    @classmethod
    def cache_inputs(cls, params: PreSelectParams) -> dict:
        return {"models": [path_fingerprint(m.path) for m in params.models]}

    def _losses(self, texts: list[str]) -> np.ndarray:
        from curation.lm_loss import bits_per_char, load_scoring_model

        p = self.params
        out = np.zeros((len(texts), len(p.models)))
        for k, spec in enumerate(p.models):
            model, tokenizer = load_scoring_model(spec.path)
            advance = self.ctx.progress(f"bits/char under model {k + 1}/{len(p.models)}", len(texts)) if self.ctx.progress else None
            out[:, k] = bits_per_char(model, tokenizer, texts, window=p.window, stride=p.stride,
                                      batch_size=p.batch_size, advance=advance)
            del model
        return out

    def decide(self, rows) -> Decisions:
        p = self.params
        if self.ctx.workdir is None:
            raise StepError("preselect needs a work folder (the runner gives one)")
        work = self.ctx.workdir
        work.mkdir(parents=True, exist_ok=True)
        texts = text_column(rows, p.field).to_pylist()
        n = len(texts)
        if n < 2:
            raise StepError(f"preselect needs at least 2 rows to learn from, got {n}")
        rng = np.random.default_rng(self.ctx.seed)
        scored = np.arange(n) if not p.score_rows or p.score_rows >= n else np.sort(rng.choice(n, p.score_rows, replace=False))
        unique = list(dict.fromkeys(texts[i] for i in scored))  # upsampled copies are scored once
        bpc_unique = self._losses(unique)
        where = {t: i for i, t in enumerate(unique)}
        bpc = bpc_unique[[where[texts[i]] for i in scored]]
        np.save(work / "bpc.npy", bpc)
        valid = ~np.isnan(bpc).any(axis=1)
        scores = [m.score for m in p.models]
        strength, pairs = predictive_strength(bpc[valid], scores)
        pos, neg = contrastive_labels(strength, pairs, self.ctx.seed)
        if len(pos) == 0 or len(neg) == 0:
            what = "no scored row has losses in the models' benchmark order" if len(pos) == 0 else \
                "every scored row has losses in the models' benchmark order, so there are no negatives"
            raise StepError(f"preselect cannot train its classifier: {what} ({int(valid.sum())} rows, {pairs} model "
                            f"pairs); check the models' `score` values, or give more (or more varied) rows")
        train_idx = scored[valid]
        ft.write_training_file(work / "train.txt", [texts[train_idx[i]] for i in np.concatenate([pos, neg])],
                               ["__label__1"] * len(pos) + ["__label__0"] * len(neg))
        model, lr_used = ft.train(work / "train.txt", work / "preselect.bin", epoch=p.epoch, lr=p.lr,
                                    word_ngrams=p.word_ngrams, dim=p.dim, bucket=p.bucket, seed=self.ctx.seed,
                                    threads=p.threads)
        (work / "train.txt").unlink()
        advance = self.ctx.progress("preselect scores", n) if self.ctx.progress else None
        prob = ft.positive_probability(model, texts, "__label__1", advance=advance)
        chars = np.array([len(t) for t in texts], dtype=np.float64)
        keep = top_characters(prob, chars, p.fraction)
        reason = [None if k else f"preselect_outside_top_chars:{p.fraction:g}" for k in keep]
        extras = {
            "models": [{"path": m.path, "score": m.score, "mean_bpc": float(np.nanmean(bpc[:, k]))}
                       for k, m in enumerate(p.models)],
            "pairs": pairs,
            "lr_used": lr_used,
            "scored_rows": int(len(scored)),
            "strength_counts": np.bincount(strength, minlength=pairs + 1).tolist(),
            "positives": int(len(pos)),
            "negatives": int(len(neg)),
            "fraction": p.fraction,
            "kept_char_fraction": float(chars[keep].sum() / max(chars.sum(), 1)),
            "threshold": float(prob[keep].min()) if keep.any() else None,
            "classifier": "work/preselect.bin",
        }
        (work / "summary.json").write_text(json.dumps(extras, indent=1))
        return Decisions(keep=keep, score=prob, reason=reason, extras=extras)
