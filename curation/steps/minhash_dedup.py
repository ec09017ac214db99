"""``minhash_dedup``: near-duplicate detection with MinHash + LSH, one row kept per cluster.

Method: Broder (1997) MinHash over n-gram shingles with banded LSH (Leskovec et al., *Mining of
Massive Datasets* 3.4), as in datasketch and text-dedup; the vectorised core is
``curation.minhash`` and the tokenisation ``curation.shingles``.

Options::

    - minhash_dedup:
        field: all            # all | prompt | response (curation.rows.row_text)
        unit: word            # word | char shingles
        ngram: 5              # shingle size in units (datatrove/datasketch practice: word 5-grams)
        num_perm: 128         # permutations (signature length)
        threshold: 0.8        # Jaccard similarity in (0, 1] that counts as a near duplicate
        bands: null           # LSH bands and rows per band; default: chosen from the threshold by
        rows: null            #   minimising the weighted FP + FN areas (datasketch's _optimal_param)
        false_positive_weight: 0.5
        false_negative_weight: 0.5
        verify: false         # true: keep only candidate pairs whose TRUE shingle Jaccard >= threshold
        keep: first           # first | longest | highest_score
        score_key: score      # metadata key read by keep: highest_score
        seed: null            # permutation seed (default: the recipe seed)

Decisions: rows are clustered by connected components of the (verified) candidate pairs -- the
clusters of a union-find over the pairs. Each cluster keeps one row:

* ``first``: the earliest row in mixture order;
* ``longest``: the row with the longest text in ``field`` (ties: earliest);
* ``highest_score``: the row with the largest numeric ``metadata[score_key]`` (rows without it
  rank last; ties: earliest). Steps do not see earlier steps' ledger scores, so a score has to be
  in the row's metadata (e.g. a quality score written by the source). If no row has it, the step
  fails with a ``StepError`` rather than silently falling back to ``first``.

Every other member is dropped with reason ``near_duplicate_of:<kept id>`` and score = Jaccard
similarity to the kept row (the MinHash estimate, or the true shingle Jaccard when ``verify``).
A kept row's score is its highest similarity to a row dropped in its favour (0 for rows in no
cluster). Members of a transitive cluster can be less similar to the kept row than ``threshold``;
the score shows it. Copies made on purpose by mixture upsampling (same base id, ``#k``) are never
duplicates of each other: they share one signature and one decision.

Short texts: a text with fewer than ``ngram`` units is ONE shingle of all its units, so it is a
duplicate only of texts with exactly the same normalised units (never silently dropped, never an
error). A text with no units at all (e.g. an empty ``response`` field) takes no part: kept, and
counted in ``extras.rows_without_tokens``.

Extras (for the data card): ``bands``, ``rows``, the FP/FN areas of that choice, candidate and
verified pair counts, ``clusters`` and ``cluster_size_histogram`` ({size: count}).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation import kernels
from curation.minhash import (
    EMPTY, MinHasher, band_keys, candidate_pairs, clusters, collision_probability, estimate_jaccard,
    optimal_bands_rows,
)
from curation.columns import table_of, text_column
from curation.shingles import ngram_hashes, tokenize
from curation.steps import STEPS
from curation.steps.base import Decisions, Step, StepError


class MinHashDedupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: Literal["all", "prompt", "response"] = "all"
    unit: Literal["word", "char"] = "word"
    ngram: int = Field(5, ge=1, le=64)
    num_perm: int = Field(128, ge=2, le=4096)
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard similarity in (0, 1]")
    bands: int | None = Field(None, ge=1)
    rows: int | None = Field(None, ge=1)
    false_positive_weight: float = Field(0.5, ge=0.0)
    false_negative_weight: float = Field(0.5, ge=0.0)
    verify: bool = False
    keep: Literal["first", "longest", "highest_score"] = "first"
    score_key: str = "score"
    seed: int | None = None

    @model_validator(mode="after")
    def _bands_rows(self):
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both `bands` and `rows`, or neither (then they are chosen from `threshold`)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.false_positive_weight + self.false_negative_weight <= 0:
            raise ValueError("false_positive_weight + false_negative_weight must be > 0")
        return self


def _true_jaccard(texts: list[str], u: np.ndarray, v: np.ndarray, ngram: int, unit: str) -> np.ndarray:
    """Exact Jaccard of the shingle sets of the pairs (u, v) (indices into ``texts``)."""
    involved = np.unique(np.r_[u, v])
    h, owner = ngram_hashes(tokenize([texts[i] for i in involved], unit), ngram)
    bounds = np.searchsorted(owner, np.arange(len(involved) + 1))
    sets = {int(doc): np.unique(h[bounds[j]:bounds[j + 1]]) for j, doc in enumerate(involved)}
    out = np.empty(len(u))
    for k, (a, b) in enumerate(zip(u.tolist(), v.tolist())):
        sa, sb = sets[a], sets[b]
        inter = len(np.intersect1d(sa, sb, assume_unique=True))
        out[k] = inter / (len(sa) + len(sb) - inter) if len(sa) + len(sb) else 1.0
    return out


@dataclass
class MinHashPlan:
    """The step's inputs after grouping upsampled copies (see :meth:`MinHashDedup.plan`)."""
    ids: list
    rep_rows: np.ndarray   # row index of each representative
    row_rep: np.ndarray    # representative number of each row
    texts: list[str] | None  # one per representative (None: the Ray engine's workers read them from shards)
    bands: int
    rws: int
    seed: int
    lengths: np.ndarray | None = None  # each representative's text length (keep: longest) where texts is None

    @property
    def m(self) -> int:
        """How many representatives."""
        return len(self.rep_rows)

    def text_lengths(self) -> np.ndarray:
        return self.lengths if self.lengths is not None else np.array([len(t) for t in self.texts], dtype=np.int64)


def signatures(texts: list[str], num_perm: int, seed: int, ngram: int, unit: str) -> np.ndarray:
    """The MinHash signatures of ``texts`` (rows x num_perm), as the step computes them: a
    function of the texts and options only, so any process (a Ray task) gives the same."""
    return MinHasher(num_perm, seed).signatures(texts, ngram, unit)


def column_signatures(column, num_perm: int, seed: int, ngram: int, unit: str) -> np.ndarray:
    """:func:`signatures` of an Arrow column of texts (a worker's shard, ``engine.map_column``)."""
    return signatures(column.to_pylist(), num_perm, seed, ngram, unit)


@STEPS.register("minhash_dedup")
class MinHashDedup(Step):
    name = "minhash_dedup"
    version = "2"  # 2: a word past 32,767 bytes is hashed whole (shingles._hash_words)
    Params = MinHashDedupParams

    def decide(self, rows) -> Decisions:
        p = self.params
        if len(rows) == 0:
            return Decisions(keep=np.zeros(0, bool), score=np.zeros(0), reason=[], extras={})
        plan = self.plan(rows)
        texts, m = plan.texts, len(plan.texts)
        engine = self.ctx.engine
        if engine is not None and engine.name != "local":  # where the engine runs work
            sig = engine.map_texts(signatures, texts, num_perm=p.num_perm, seed=plan.seed, ngram=p.ngram, unit=p.unit)
        elif engine is not None and hasattr(engine, "spreads") and engine.spreads(m) and not kernels.enabled():
            # the local engine's workers, without numba only: the compiled signatures are faster here than a
            # shard's trip to a worker and its signatures' trip back (1M rows, 2 CPUs: 3.5 s against 6.0-6.6 s)
            advance = self.ctx.progress("minhash signatures", m) if self.ctx.progress else None
            sig = np.empty((m, p.num_perm), dtype=np.uint32)
            engine.map_column(column_signatures, pa.array(texts, pa.large_string()), into=sig, progress=advance,
                              num_perm=p.num_perm, seed=plan.seed, ngram=p.ngram, unit=p.unit)
        else:
            advance = self.ctx.progress("minhash signatures", m) if self.ctx.progress else None
            sig = MinHasher(p.num_perm, plan.seed).signatures(texts, p.ngram, p.unit, advance=advance)
        active = sig[:, 0] != EMPTY
        u, v = candidate_pairs(band_keys(sig, plan.bands, plan.rws), active)
        n_candidates = len(u)
        rejected = 0
        if p.verify and len(u):
            sim = _true_jaccard(texts, u, v, p.ngram, p.unit)
            ok = sim >= p.threshold
            rejected = int((~ok).sum())
            u, v = u[ok], v[ok]
        if p.verify:
            def similarity(a, b):
                return _true_jaccard(texts, a, b, p.ngram, p.unit)
        else:
            def similarity(a, b):
                return estimate_jaccard(sig, a, b)
        return self.finish(rows, plan, clusters(m, u, v), active, n_candidates, rejected, similarity)

    def plan(self, rows) -> "MinHashPlan":
        """What the step works on: one representative per base id (upsampled copies ``#k`` share their
        base row's decision), their texts, the LSH bands and rows, and the permutation seed."""
        table = table_of(rows)
        plan = self.plan_of_ids(table.column("id"))
        all_texts = text_column(table, self.params.field).to_pylist()
        plan.texts = all_texts if plan.m == len(rows) else [all_texts[i] for i in plan.rep_rows]
        return plan

    def plan_of_ids(self, id_column) -> "MinHashPlan":
        """:meth:`plan` without the texts (``texts`` None): what only the row ids decide."""
        p = self.params
        n = len(id_column)
        ids = id_column.to_pylist()
        # the base id (before an upsampling suffix #k) of every row, as integer codes
        bases = pc.dictionary_encode(pc.replace_substring_regex(id_column, "(?s)#.*", "", max_replacements=1)
                                     .combine_chunks())
        codes = np.asarray(bases.indices, dtype=np.int64)
        first = np.full(len(bases.dictionary), n, dtype=np.int64)
        np.minimum.at(first, codes, np.arange(n, dtype=np.int64))
        _, rep_of_row_first, rep_index = np.unique(first[codes], return_index=True, return_inverse=True)
        order = np.argsort(rep_of_row_first)  # representatives in first-occurrence order
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        rep_rows = rep_of_row_first[order]      # row index of each representative
        row_rep = rank[rep_index]               # representative number of each row
        if p.bands is not None:
            bands, rws = p.bands, p.rows
        else:
            bands, rws, _, _ = optimal_bands_rows(p.threshold, p.num_perm, p.false_positive_weight, p.false_negative_weight)
        seed = self.ctx.seed if p.seed is None else p.seed
        return MinHashPlan(ids, rep_rows, row_rep, None, bands, rws, seed)

    def finish(self, rows, plan: "MinHashPlan", labels: np.ndarray, active: np.ndarray, n_candidates: int,
               rejected: int, similarity) -> Decisions:
        """Decisions from the clusters (``labels``: one per representative, equal within a cluster):
        the keep rule, then ``similarity(kept, dropped)`` (arrays of representative numbers) scores
        every dropped representative and, by its maximum, its kept one."""
        p = self.params
        n, m = len(rows), plan.m
        ids, rep_rows, row_rep = plan.ids, plan.rep_rows, plan.row_rep
        s = np.linspace(0, 1, 1001)
        prob = collision_probability(s, plan.bands, plan.rws)
        fp_area = float(np.trapezoid(prob[s <= p.threshold], s[s <= p.threshold]))
        fn_area = float(np.trapezoid(1 - prob[s >= p.threshold], s[s >= p.threshold]))

        sizes = np.bincount(labels, minlength=labels.max() + 1)
        in_cluster = sizes[labels] > 1
        keeper = self._keepers(rows, plan, labels, in_cluster)  # per rep: its cluster's kept rep

        dropped = np.flatnonzero(in_cluster & (keeper != np.arange(m)))
        score_rep = np.zeros(m)
        if len(dropped):
            du, dv = keeper[dropped], dropped
            dsim = similarity(du, dv)
            score_rep[dropped] = dsim
            np.maximum.at(score_rep, du, dsim)

        score = score_rep[row_rep]
        dropped_rep = in_cluster & (keeper != np.arange(m))
        keep = ~dropped_rep[row_rep]
        reason: list[str | None] = [None] * n
        for i, k in zip(np.flatnonzero(~keep).tolist(), rep_rows[keeper[row_rep[~keep]]].tolist()):
            reason[i] = f"near_duplicate_of:{ids[k]}"

        hist = Counter(sizes[sizes > 1].tolist())
        extras = {
            "num_perm": p.num_perm, "ngram": p.ngram, "unit": p.unit, "field": p.field, "threshold": p.threshold,
            "bands": plan.bands, "rows": plan.rws, "bands_rows_chosen": "given" if p.bands is not None else "optimal",
            "false_positive_area": round(fp_area, 6), "false_negative_area": round(fn_area, 6),
            "candidate_pairs": n_candidates, "verified": p.verify, "pairs_rejected_by_verify": rejected,
            "rows_without_tokens": int((~active[row_rep]).sum()),
            "clusters": int((sizes > 1).sum()), "rows_in_clusters": int(in_cluster[row_rep].sum()),
            "dropped": int((~keep).sum()), "keep_rule": p.keep,
            "cluster_size_histogram": {str(k): hist[k] for k in sorted(hist)},
        }
        return Decisions(keep=keep, score=score, reason=reason, extras=extras)

    def _keepers(self, rows, plan: "MinHashPlan", labels, in_cluster) -> np.ndarray:
        """For each representative, the representative kept for its cluster. ``rows``: the step's rows, or
        what stands for them on the Ray engine (``metadata_at(indices)``: those rows' metadata)."""
        m = len(labels)
        rep_rows = plan.rep_rows
        idx = np.arange(m)
        rule = self.params.keep
        if rule == "first":
            priority = np.zeros(m)
        elif rule == "longest":
            priority = -plan.text_lengths().astype(np.float64)
        else:
            key = self.params.score_key
            priority = np.full(m, np.inf)
            found = 0
            members = np.flatnonzero(in_cluster)
            metas = (rows.metadata_at(rep_rows[members]) if hasattr(rows, "metadata_at") else
                     table_of(rows).column("metadata").take(pa.array(rep_rows[members])).to_pylist())
            for k, meta in zip(members.tolist(), metas):
                try:
                    val = json.loads(meta or "{}").get(key)
                except (json.JSONDecodeError, AttributeError):
                    val = None
                if isinstance(val, (int, float)) and not isinstance(val, bool) and np.isfinite(val):
                    priority[k] = -float(val)
                    found += 1
            if in_cluster.any() and not found:
                raise StepError(f"minhash_dedup keep: highest_score reads metadata[{key!r}], but no duplicate row has "
                                f"a numeric {key!r}; set `score_key` to a metadata field that holds a score, or use keep: first")
        # lowest (priority, index) per cluster
        order = np.lexsort((idx, priority, labels))
        first_of = np.r_[True, labels[order][1:] != labels[order][:-1]]
        winner = np.empty(labels.max() + 1, dtype=np.int64)
        winner[labels[order][first_of]] = order[first_of]
        return winner[labels]
