"""``decontaminate``: drop training rows that contain evaluation items (n-gram overlap or exact match).

Method: Tülu 3 (Lambert et al. 2024, section 3.2 / the open-instruct decontamination tool) matches
8-grams of training prompts against the eval suites and reports contamination per benchmark.
Here, for a training row R and an eval item E with n-gram sets N(R), N(E) (word n-grams after
normalisation, ``curation.shingles``: NFKC, lower-case, punctuation and whitespace only separate
words), the overlap is

    overlap(R, E) = |N(E) ∩ N(R)| / |N(E)|

(the fraction of the eval item's n-grams found in the row), and R is contaminated when
``max_E overlap(R, E) >= threshold``. Because punctuation, casing and spacing are normalised away
and the score is containment of E in R (not Jaccard), an eval question pasted into an
instruction with extra framing ("Question: ... Answer step by step.") is still caught.
``mode: exact`` instead drops rows whose whole normalised text equals an eval item's.

**Numbers** (``normalize_numbers``, default on, ``mode: ngram``): every run of digits becomes the
token ``0`` on both sides before n-gramming ("1,234.5" -> ``0 0 0``). A math
benchmark often leaks with its numbers changed; each changed number breaks every n-gram that spans
it, and with exact numbers only about a third of such GSM8K leaks reach the 0.5 overlap at 8-grams
(benchmarks/decontam_gsm8k.py, ``numbers`` kind). An eval item with fewer than ``ngram`` words
besides its numbers keeps its numbers: masked, every problem of a template ("What is 3 + 4?") would
match it. ``mode: exact`` compares the text as it is. Turn it off to require equal numbers.

Deviations, stated: Tülu 3 ran this as a separate Elasticsearch workflow and decided per training
*dataset*; this step decides per row, in memory (n-grams hashed to 64-bit ints; sorted arrays and
``searchsorted``). An eval item with fewer than ``ngram`` words is matched by its whole word
sequence (its one shingle), so short items are neither skipped nor over-matched.

Options::

    - decontaminate:
        against: [gsm8k_test]   # recipe sources or declared evals (by name), or `all_evals` (required)
        field: prompt           # training text compared: prompt | response | all
        eval_field: prompt      # eval item text: prompt | response | all
        ngram: 8                # words per n-gram (Tülu 3: 8)
        threshold: 0.5          # overlap in (0, 1] at which a row counts as contaminated
        mode: ngram             # ngram | exact
        normalize_numbers: true # numbers match whatever their digits
        examples: 5             # examples per benchmark in the report

Reason of a dropped row: ``ngram_overlap:<eval source>:<overlap>:<eval item id>`` (or
``exact_match:<eval source>:<eval item id>``); score = the highest overlap over all eval items
(1.0 for an exact match; 0 for rows that touch no eval n-gram). ``extras.contamination`` is the
per-benchmark report for the data card: rows hit, eval items hit (items that are the closest
match of at least one contaminated row, of how many items) and examples with row and item ids.
A row hit by several benchmarks is dropped once, named after the first in ``against`` order, and
counted in each benchmark's ``rows_hit``.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curation.columns import ids_of, text_column
from curation.shingles import Tokens, ngram_hashes, normalise_words, tokenize
from curation.steps import STEPS
from curation.steps.base import Decisions, Step, StepError


class DecontaminateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    against: list[str] = Field(..., min_length=1, description="recipe sources with the eval items")
    field: Literal["all", "prompt", "response"] = "prompt"
    eval_field: Literal["all", "prompt", "response"] = "prompt"
    ngram: int = Field(8, ge=1, le=64)
    threshold: float = Field(0.5, gt=0.0, le=1.0, description="overlap fraction in (0, 1]")
    mode: Literal["ngram", "exact"] = "ngram"
    normalize_numbers: bool = Field(True, description="every number is one placeholder token on both sides")
    examples: int = Field(5, ge=0)


_NUMBER = r"\d+"


def numbers_out(texts: list[str]) -> list[str]:
    """Each run of digits -> ``0``, so a changed number still matches ("1,234.5" -> "0,0.0": its
    groups stay separate tokens, as they are when punctuation is respaced, "1 ,234")."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.replace_substring_regex(pa.array(texts, pa.large_string()), _NUMBER, "0").to_pylist()


def _exact_keys(texts: list[str]) -> list[bytes | None]:
    """Digest of each text's normalised word sequence (None when it has no words)."""
    out: list[bytes | None] = []
    for words in normalise_words(texts).to_pylist():
        words = [w for w in words if w]
        out.append(hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).digest() if words else None)
    return out


def _unique_pairs(hashes: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (owner, hash) pairs, sorted by hash."""
    if len(hashes) == 0:
        return hashes, owner
    order = np.lexsort((owner, hashes))
    h, o = hashes[order], owner[order]
    new = np.r_[True, (h[1:] != h[:-1]) | (o[1:] != o[:-1])]
    return h[new], o[new]


class EvalIndex:
    """The n-grams of a set of eval items, sorted for ``searchsorted``; one table per shingle size
    (``n``, plus each length below ``n`` that some short item has: such an item is matched by its
    full word sequence, so it is neither skipped nor over-matched)."""

    def __init__(self, item_tokens: Tokens, n: int):
        self.n_items = len(item_tokens.counts)
        counts, starts = item_tokens.counts, item_tokens.starts
        eff = np.where(counts >= n, n, counts)
        self.tables: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        for m in np.unique(eff[eff > 0]).tolist():
            sel = np.flatnonzero(eff == m)
            sub = Tokens(np.concatenate([item_tokens.hashes[s:s + c] for s, c in zip(starts[sel], counts[sel])]), counts[sel])
            ih, iowner = ngram_hashes(sub, m)
            ih, iowner = _unique_pairs(ih, sel[iowner])
            self.tables.append((m, ih, iowner, np.bincount(iowner, minlength=self.n_items)))

    def best_overlap(self, row_tokens: Tokens) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the highest ``|N(E) ∩ N(R)| / |N(E)|`` over items, and that item (-1: none)."""
        n_rows = len(row_tokens.counts)
        best = np.zeros(n_rows)
        best_item = np.full(n_rows, -1, dtype=np.int64)
        for m, ih, iowner, n_item in self.tables:
            rh, rowner = ngram_hashes(row_tokens, m)
            lo = np.searchsorted(ih, rh, side="left")
            hit = (lo < len(ih)) & (ih[np.minimum(lo, len(ih) - 1)] == rh)
            if not hit.any():
                continue
            rh, rowner = _unique_pairs(rh[hit], rowner[hit])  # a row's n-gram counts once
            lo = np.searchsorted(ih, rh, side="left")
            reps = np.searchsorted(ih, rh, side="right") - lo
            # expand each matched row n-gram to every eval item that has it
            pair_row = np.repeat(rowner, reps)
            offs = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
            pair_item = iowner[np.repeat(lo, reps) + offs]
            uniq, counts = np.unique(pair_row * np.int64(self.n_items) + pair_item, return_counts=True)
            r, it = uniq // self.n_items, uniq % self.n_items
            frac = counts / n_item[it]
            order = np.lexsort((-frac, r))  # per row, the highest overlap first
            r, it, frac = r[order], it[order], frac[order]
            first = np.r_[True, r[1:] != r[:-1]]
            r, it, frac = r[first], it[first], frac[first]
            better = frac > best[r]
            best[r[better]] = frac[better]
            best_item[r[better]] = it[better]
        return best, best_item


@STEPS.register("decontaminate")
class Decontaminate(Step):
    name = "decontaminate"
    version = "3"  # 3: a word past 32,767 bytes is hashed whole (shingles._hash_words)
    eval_targets = ("against",)  # an eval's name stands for its source; `against: all_evals` for every eval
    Params = DecontaminateParams
    batch = 50000  # rows shingled at a time

    @classmethod
    def reads_sources(cls, params: DecontaminateParams) -> list[str]:
        return list(params.against)

    def _indexes(self, item_texts: list[str]) -> list[tuple[EvalIndex, np.ndarray, bool]]:
        """The eval items' n-gram index(es). With ``normalize_numbers`` an item with at least ``ngram``
        words besides its numbers is compared number-masked; an item with fewer (a templated
        "What is 3 + 4?") keeps its numbers, else every problem of the template would match it."""
        p = self.params
        n = len(item_texts)
        if not p.normalize_numbers:
            return [(EvalIndex(tokenize(item_texts, "word"), p.ngram), np.arange(n), False)]
        masked = numbers_out(item_texts)
        words = normalise_words(masked).to_pylist()
        long = np.array([sum(1 for w in ws if w and w != "0") >= p.ngram for ws in words], dtype=bool)
        out = []
        for flag in (True, False):
            pos = np.flatnonzero(long == flag)
            if len(pos):
                texts = [masked[i] if flag else item_texts[i] for i in pos]
                out.append((EvalIndex(tokenize(texts, "word"), p.ngram), pos, bool(flag)))
        return out

    def decide(self, rows) -> Decisions:
        texts = text_column(rows, self.params.field).to_pylist()
        evals = self.eval_items()
        matcher = self.matcher(evals)
        advance = self.ctx.progress("decontaminate", len(texts)) if self.ctx.progress else None
        best, best_item = matcher.match(texts, advance=advance)
        return self.finish(ids_of(rows), texts, evals, best, best_item)

    def eval_items(self) -> dict[str, tuple[list[str], list[str]]]:
        """Per benchmark in ``against``: its items' texts and ids."""
        evals = {}
        for name in self.params.against:
            try:
                items = self.ctx.source(name)
            except KeyError:
                raise StepError(f"decontaminate: source {name!r} is not defined in the recipe") from None
            evals[name] = (text_column(items, self.params.eval_field).to_pylist(), ids_of(items))
        return evals

    def matcher(self, evals: dict[str, tuple[list[str], list[str]]]) -> "Matcher":
        """The eval side, built once: what a worker needs to score any slice of the training rows."""
        p = self.params
        if p.mode == "exact":
            exact = {}
            for name, (item_texts, item_ids) in evals.items():
                index: dict[bytes, str] = {}
                for k, iid in zip(_exact_keys(item_texts), item_ids):
                    if k is not None:
                        index.setdefault(k, iid)
                exact[name] = index
            return Matcher(p.mode, self.batch, exact=exact)
        # (index, positions of its items in the source, whether it compares number-masked text)
        indexes = {name: self._indexes(t) for name, (t, _) in evals.items()}
        return Matcher(p.mode, self.batch, indexes=indexes, item_ids={name: ids for name, (_, ids) in evals.items()})

    def finish(self, ids: list[str], shown: list[str], evals, best: dict[str, np.ndarray],
               best_item: dict[str, list]) -> Decisions:
        """Decisions and the contamination report from each row's best overlap per benchmark."""
        p = self.params
        n = len(ids)
        keep = np.ones(n, dtype=bool)
        score = np.zeros(n)
        reason: list[str | None] = [None] * n
        report: dict[str, dict] = {}
        for name in evals:
            ov = best[name]
            score = np.maximum(score, ov)
            hit_rows = np.flatnonzero(ov >= p.threshold if p.mode == "ngram" else ov > 0).tolist()
            dropped_here = 0
            for i in hit_rows:
                if keep[i]:  # the first benchmark (in `against` order) that hits a row names it
                    keep[i] = False
                    dropped_here += 1
                    reason[i] = (f"ngram_overlap:{name}:{ov[i]:.2f}:{best_item[name][i]}" if p.mode == "ngram"
                                 else f"exact_match:{name}:{best_item[name][i]}")
            report[name] = {
                "eval_items": len(evals[name][1]),
                "eval_items_hit": len({best_item[name][i] for i in hit_rows}),
                "rows_hit": len(hit_rows), "rows_dropped": dropped_here,
                "examples": [{"row_id": ids[i], "eval_item_id": best_item[name][i], "overlap": round(float(ov[i]), 4),
                              "row_text": shown[i][:200]} for i in hit_rows[: p.examples]],
            }
        extras = {"mode": p.mode, "ngram": p.ngram, "normalize_numbers": p.normalize_numbers, "threshold": p.threshold, "field": p.field,
                  "eval_field": p.eval_field, "contamination": report, "dropped": int((~keep).sum())}
        return Decisions(keep=keep, score=score, reason=reason, extras=extras)


class Matcher:
    """The eval n-gram index (or exact-text index) of every benchmark, and the per-row match: a
    function of the training texts alone, so any slice of them scores the same in any process (the
    Ray engine broadcasts one Matcher to its workers). Holds the eval side only: its n-gram hashes
    (8 bytes each, twice) -- about 2 MB for GSM8K's 1,319 test items."""

    def __init__(self, mode: str, batch: int, indexes=None, item_ids=None, exact=None):
        self.mode, self.batch = mode, batch
        self.indexes, self.item_ids, self.exact = indexes, item_ids, exact

    def names(self) -> list[str]:
        return list(self.exact if self.mode == "exact" else self.indexes)

    def match(self, texts: list[str], advance=None) -> tuple[dict[str, np.ndarray], dict[str, list]]:
        """Per benchmark: each text's best overlap (1.0 for an exact match) and its eval item id."""
        n = len(texts)
        best = {name: np.zeros(n) for name in self.names()}
        best_item: dict[str, list] = {name: [None] * n for name in self.names()}
        if self.mode == "exact":
            row_keys = _exact_keys(texts)
            for name, index in self.exact.items():
                for i, k in enumerate(row_keys):
                    if k is not None and k in index:
                        best[name][i], best_item[name][i] = 1.0, index[k]
            return best, best_item
        masked_needed = any(masked for parts in self.indexes.values() for _, _, masked in parts)
        for b0 in range(0, n, self.batch):  # bounded memory: rows are shingled a batch at a time
            chunk = texts[b0:b0 + self.batch]
            tokens = {False: tokenize(chunk, "word")}
            if masked_needed:
                tokens[True] = tokenize(numbers_out(chunk), "word")
            for name, parts in self.indexes.items():
                item_ids = self.item_ids[name]
                for index, positions, masked in parts:
                    ov, it = index.best_overlap(tokens[masked])
                    better = ov > best[name][b0:b0 + len(ov)]
                    best[name][b0:b0 + len(ov)] = np.where(better, ov, best[name][b0:b0 + len(ov)])
                    for j in np.flatnonzero(better & (it >= 0)).tolist():
                        best_item[name][b0 + j] = item_ids[int(positions[int(it[j])])]
            if advance is not None:
                advance(len(tokens[False].counts))
        return best, best_item
