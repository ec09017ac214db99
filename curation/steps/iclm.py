"""``iclm``: In-Context Pretraining ordering (Shi et al. 2024, "In-Context Pretraining: Language
Modeling Beyond Document Boundaries", ICLR 2024, arXiv:2310.10638), reference/methods.md section 8.

Idea: pretraining packs documents into context windows; when the documents of a window are
*related*, predicting one benefits from reading the others, so the model learns to use its
context across document boundaries. ICLM reorders the corpus so that related documents are
adjacent; packing in that order puts them in the same window. Official code:
swj0419/in-context-pretraining@acccf53 ``sort/sort.py`` (read, not copied). On ``text`` rows:

1. Embed every document (``curation.embed``; default all-MiniLM-L6-v2, L2-normalised) and find
   each one's ``k`` nearest neighbours by inner product (faiss; ``k`` default 50 as in
   ``configs/config_test.yaml``, capped by the number of rows).
2. Greedy paths (``sort()``): start from an unvisited document, step to the *first unvisited* of
   its ``neighbours`` (9) nearest neighbours (the code's ``knn[1:10]``); start a new path when none
   is free or the path holds ``max_path`` (21) documents.
3. Merge short paths (``merge()``): paths are visited in creation order; each one still shorter
   than ``max_path`` at its turn is dissolved: every document moves into the path of its nearest
   neighbour (among the ``neighbours``) that lies in another path, inserted *before* that neighbour.
4. Write the documents path by path (``write_docs_single()``): a document whose first
   ``dedup_chars`` (100) characters have a character 3-gram Jaccard similarity above
   ``dedup_jaccard`` (0.85) with those of the previous *written* document is dropped
   (``iclm_near_duplicate_of:<that document's id>``; score = the similarity, for every row).
5. The runner writes the kept rows in that order (``Decisions.order``) and records each row's
   position and path (``Decisions.group``) in the ledger; the ``pretrain`` stage packs in dataset
   order (``order: dataset``, its default; ``packing_strategy: wrapped``), so a window holds
   consecutive documents of a path and only whole windows are shuffled (the README's step 7).

Deviations, stated:

* Encoder: all-MiniLM-L6-v2 (384 dimensions, the first 256 word pieces of a document) instead of
  Contriever-msmarco over 510-token chunks (768 dimensions); any sentence-transformers model or
  local folder can be named with ``model``.
* Index: exact ``IndexFlatIP`` instead of ``IVF32768,PQ256`` with nprobe 64, right at this scale
  (up to ~10^5 documents); ``index`` takes any faiss ``index_factory`` string (e.g.
  ``IVF4096,PQ64``, trained on the rows themselves, ``nprobe`` applied) for larger corpora.
* Neighbour lists skip the document itself explicitly (the code assumes ``knn[0]`` is the query,
  which exact duplicates can break) and upsampled copies of it (same base id, ``#k``), so a
  mixture's deliberate repeats never chain into one path to be deduplicated away.
* Start of a path (``start``): ``first`` (default) takes the first unvisited row in input order,
  which is what the code's ``set.pop()`` over integer ids does (lowest id first); our input order is
  the mixture's seeded shuffle. ``random`` draws a seeded order (``seed``, default the recipe's).
  ``min_degree`` takes the unvisited row that fewest rows name among their ``neighbours``, as the
  paper's Algorithm 1 describes (methods.md marks this from memory; ties by input order).
* Every path, the first one included, holds at most ``max_path`` documents before merging (the
  code's counter lets its first path reach 22).
* A document of a short path none of whose ``neighbours`` lies in another path (the code raises
  there) is looked for among the rest of its ``k`` neighbours, and stays where it is if none is
  outside its path either (a path can then stay shorter than ``max_path``; counted in the extras).
* Two first-100-character prefixes without any 3-gram (under 3 characters) count as similarity 1
  when equal and 0 otherwise (the code's division by zero filtered the document).

Extras: ``card_section`` (the data card's ICLM section: the path lengths and the first path of
the packed data, each document's position, id and first characters), ``path_lengths`` after merging
(plotted by the card), paths before merging and how many were dissolved, documents left unmerged, the mean
cosine similarity of consecutive documents in the output vs of random pairs (how related the
neighbours in a window are), the threshold, the model and timings.

Why our own code: faiss finds the neighbours and sentence-transformers embeds; the path walk, the
merge and the duplicate skip are the method itself, which no library ships.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curation.columns import ids_of
from curation.embed import DEFAULT_MODEL, embed, resolve_model
from curation.row_ids import base_id
from curation.steps import STEPS
from curation.steps.base import Decisions, Step, StepError

_DUP_NGRAM = 3  # sort.py: self.n = 3 (character n-grams)


class ICLMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(DEFAULT_MODEL, description="sentence-transformers model name (offline) or local path")
    k: int = Field(50, ge=2, description="nearest neighbours searched per document (capped by the number of rows)")
    neighbours: int = Field(9, ge=1, description="how many of them a path step (and a merge) considers: knn[1:10]")
    max_path: int = Field(21, ge=1, description="documents per path before a new one starts; shorter paths are merged")
    dedup_jaccard: float = Field(0.85, gt=0, le=1, description="drop a document whose prefix 3-gram Jaccard with the "
                                                               "previous written one exceeds this")
    dedup_chars: int = Field(100, ge=1, description="characters of each document compared for the duplicate skip")
    start: Literal["first", "random", "min_degree"] = Field("first", description="which unvisited row starts a path")
    index: str = Field("Flat", description="faiss index_factory string (inner product), e.g. IVF4096,PQ64")
    nprobe: int = Field(64, ge=1, description="lists probed by an IVF index")
    seed: int | None = Field(None, description="for start: random; defaults to the recipe seed")
    batch_size: int = Field(64, ge=1)


# ---------------------------------------------------------------------- the method, on indices
def candidate_lists(knn: np.ndarray, neighbours: int, same: Sequence | None = None) -> list[list[int]]:
    """Per row, its first ``neighbours`` nearest neighbours, without itself, padding (-1) and rows of
    the same ``same`` key (an upsampled copy's base id)."""
    out = []
    for i, row in enumerate(np.asarray(knn)):
        keep = [int(j) for j in row if j >= 0 and j != i and (same is None or same[j] != same[i])]
        out.append(keep[:neighbours])
    return out


def build_paths(cands: list[list[int]], max_path: int, starts: Sequence[int]) -> list[list[int]]:
    """Greedy paths (``sort()``): from each start, step to the first unvisited candidate until none is
    free or the path holds ``max_path`` rows; the next path starts at the next unvisited row of
    ``starts`` (an ordering of every row)."""
    n = len(cands)
    visited = np.zeros(n, dtype=bool)
    paths: list[list[int]] = []
    for start in starts:
        if visited[start]:
            continue
        path, cur = [int(start)], int(start)
        visited[cur] = True
        while len(path) < max_path:
            nxt = next((j for j in cands[cur] if not visited[j]), None)
            if nxt is None:
                break
            path.append(nxt)
            visited[nxt] = True
            cur = nxt
        paths.append(path)
    return paths


def merge_short_paths(paths: list[list[int]], cands: list[list[int]], max_path: int,
                      fallback: list[list[int]] | None = None) -> tuple[list[list[int]], dict]:
    """``merge()``: paths shorter than ``max_path`` at their turn (in creation order) are dissolved,
    each row inserted before its nearest neighbour in another path (``cands``, then ``fallback``);
    a row with no neighbour outside its path stays. Returns the surviving paths in creation order
    and counts."""
    paths = [list(p) for p in paths]
    path_of = {j: pid for pid, p in enumerate(paths) for j in p}
    dissolved = stayed = 0
    for pid in range(len(paths)):
        if len(paths[pid]) >= max_path or not paths[pid]:
            continue
        remaining = []
        for doc in list(paths[pid]):
            lists = [cands[doc]] + ([fallback[doc]] if fallback is not None else [])
            target = next((j for lst in lists for j in lst if path_of[j] != pid), None)
            if target is None:
                remaining.append(doc)
                continue
            dest = paths[path_of[target]]
            dest.insert(dest.index(target), doc)
            path_of[doc] = path_of[target]
        stayed += len(remaining)
        dissolved += not remaining
        paths[pid] = remaining
    return [p for p in paths if p], {"dissolved": dissolved, "unmerged_rows": stayed}


def _ngrams(text: str) -> set[str]:
    return {text[i:i + _DUP_NGRAM] for i in range(len(text) - _DUP_NGRAM + 1)}


def prefix_similarity(a: str, b: str) -> float:
    """Character 3-gram Jaccard similarity of two prefixes (``ngram_similarity``)."""
    x, y = _ngrams(a), _ngrams(b)
    if not x and not y:
        return float(a == b)
    return len(x & y) / len(x | y)


def write_order(order: Sequence[int], texts: Sequence[str], chars: int, threshold: float):
    """``write_docs_single()``: walk ``order``; a row whose prefix similarity with the previous *kept*
    row exceeds ``threshold`` is dropped. Returns (kept flags, similarity to the previous kept row
    (NaN for the first), the index of that previous kept row (-1 for the first))."""
    n = len(texts)
    keep = np.zeros(n, dtype=bool)
    sim = np.full(n, np.nan)
    prev_of = np.full(n, -1, dtype=np.int64)
    prev = None
    for i in order:
        if prev is not None:
            sim[i] = prefix_similarity(texts[i][:chars], texts[prev][:chars])
            prev_of[i] = prev
            if sim[i] > threshold:
                continue
        keep[i] = True
        prev = i
    return keep, sim, prev_of


def min_degree_order(cands: list[list[int]]) -> list[int]:
    """Rows by how many rows name them among their candidates (fewest first; ties by index)."""
    degree = np.bincount([j for c in cands for j in c], minlength=len(cands))
    return np.argsort(degree, kind="stable").tolist()


# ---------------------------------------------------------------------- faiss
def nearest_neighbours(emb: np.ndarray, k: int, index: str = "Flat", nprobe: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(similarities, indices)`` of each row's ``k`` nearest rows by inner product (-1 where fewer)."""
    import faiss

    idx = faiss.index_factory(emb.shape[1], index, faiss.METRIC_INNER_PRODUCT)
    if not idx.is_trained:
        idx.train(emb)
    if "IVF" in index:
        faiss.ParameterSpace().set_index_parameter(idx, "nprobe", nprobe)
    idx.add(emb)
    return idx.search(emb, k)


EXAMPLE_DOCS, EXAMPLE_CHARS = 25, 100


def card_section(extras: dict, paths: list[list[int]], keep, order, ids, texts) -> dict:
    """The data card's ICLM section: path lengths, and the first path of the packed data in order
    (each document's position, id and first characters)."""
    lengths = [n for n in extras["path_lengths"] if n]
    counts = Counter(lengths)
    spread = (f"path lengths (kept documents) min {min(lengths)}, median {float(np.median(lengths)):g}, "
              f"max {max(lengths)}; " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())[:12])
              + (" ..." if len(counts) > 12 else "")) if lengths else "no path"
    sim = extras["adjacent_cosine_mean"]
    text = (f"{int(keep.sum())} documents written in {extras['n_paths']} paths of up to {extras['max_path']} "
            f"(greedy walk over each document's {extras['neighbours']} nearest of k={extras['k']}; "
            f"{extras['paths_before_merge']} paths before merging, {extras['short_paths_dissolved']} short ones "
            f"dissolved into their neighbours' paths); {spread}. {extras['near_duplicates_dropped']} near duplicates "
            f"of the previous document dropped (3-gram Jaccard > {extras['threshold']:g}). "
            + (f"Consecutive documents have a mean cosine similarity of {sim:.3f} (random pairs: "
               f"{extras['random_pair_cosine_mean']:.3f}). " if sim is not None and extras["random_pair_cosine_mean"] is not None else "")
            + "The first path of the packed data, in order:")
    first = next((pth for pth in paths if any(keep[j] for j in pth)), [])
    table = [{"position": int(order[j]), "id": ids[j], "text": " ".join(texts[j].split())[:EXAMPLE_CHARS]}
             for j in first if keep[j]][:EXAMPLE_DOCS]
    return {"title": "In-context pretraining order (ICLM)", "text": text, "table": table}


@STEPS.register("iclm")
class ICLM(Step):
    name = "iclm"
    version = "1"
    Params = ICLMParams
    row_kinds = frozenset({"text"})
    orders = True

    @classmethod
    def cache_inputs(cls, params: ICLMParams) -> dict:
        return {"model": resolve_model(params.model)[1]}

    def decide(self, rows) -> Decisions:
        p = self.params
        n = len(rows)
        kinds = Counter(rows["kind"])
        if set(kinds) - {"text"}:
            bad = {k: v for k, v in kinds.items() if k != "text"}
            example = next(r["id"] for r in rows.select_columns(["id", "kind"]) if r["kind"] != "text")
            raise StepError(f"iclm orders text documents for pretraining; {sum(bad.values())} of {n} rows are not text "
                            f"({', '.join(f'{k}: {v}' for k, v in sorted(bad.items()))}; e.g. id {example}): give it a "
                            "mixture of `kind: text` sources")
        if n == 0:
            return Decisions(keep=np.zeros(0, dtype=bool), order=np.zeros(0), group=np.zeros(0),
                             extras={"path_lengths": [], "n_paths": 0})
        texts = [t or "" for t in rows["text"]]
        ids = ids_of(rows)
        started = time.time()
        cache_dir = (self.ctx.cache_root / "embeddings") if self.ctx.cache_root else None
        emb = embed(texts, p.model, cache_dir=cache_dir, normalize=True, batch_size=p.batch_size,
                    progress=self.ctx.progress)
        embed_s = time.time() - started
        started = time.time()
        k = min(p.k, n)
        _, knn = nearest_neighbours(emb, k, p.index, p.nprobe)
        search_s = time.time() - started
        started = time.time()
        same = [base_id(i) for i in ids]
        cands = candidate_lists(knn, p.neighbours, same)
        fallback = candidate_lists(knn, k, same)
        if p.start == "first":
            starts = list(range(n))
        elif p.start == "random":
            starts = np.random.default_rng(p.seed if p.seed is not None else self.ctx.seed).permutation(n).tolist()
        else:
            starts = min_degree_order(cands)
        first_paths = build_paths(cands, p.max_path, starts)
        paths, merge_counts = merge_short_paths(first_paths, cands, p.max_path, fallback)
        sequence = [j for path in paths for j in path]
        group = np.full(n, -1, dtype=np.int64)
        for pid, path in enumerate(paths):
            group[path] = pid
        keep, sim, prev_of = write_order(sequence, texts, p.dedup_chars, p.dedup_jaccard)
        order = np.full(n, -1, dtype=np.int64)
        kept_seq = [j for j in sequence if keep[j]]
        order[kept_seq] = np.arange(len(kept_seq))
        reason = [None if keep[i] else f"iclm_near_duplicate_of:{ids[prev_of[i]]}" for i in range(n)]
        lengths = np.bincount(group[keep], minlength=len(paths)).tolist()
        a, b = np.random.default_rng(0).integers(0, n, size=(2, 2000))  # random pairs: the baseline similarity
        a, b = a[a != b], b[a != b]
        adjacent = [float(emb[x] @ emb[y]) for x, y in zip(kept_seq[:-1], kept_seq[1:])]
        extras = {
            "model": resolve_model(p.model)[1],
            "index": p.index,
            "k": int(k),
            "neighbours": p.neighbours,
            "max_path": p.max_path,
            "start": p.start,
            "threshold": p.dedup_jaccard,
            "n_paths": len(paths),
            "path_lengths": lengths,
            "paths_before_merge": len(first_paths),
            "short_paths_dissolved": merge_counts["dissolved"],
            "rows_left_unmerged": merge_counts["unmerged_rows"],
            "near_duplicates_dropped": int((~keep).sum()),
            "adjacent_cosine_mean": float(np.mean(adjacent)) if adjacent else None,
            "random_pair_cosine_mean": float(np.mean(np.einsum("ij,ij->i", emb[a], emb[b]))) if len(a) else None,
            "embed_seconds": round(embed_s, 3),
            "search_seconds": round(search_s, 3),
            "order_seconds": round(time.time() - started, 3),
        }
        extras["card_section"] = card_section(extras, paths, keep, order, ids, texts)
        return Decisions(keep=keep, score=sim, reason=reason, order=order, group=group, extras=extras)
