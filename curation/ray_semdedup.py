"""``semantic_dedup`` (SemDeDup) on Ray Data: embeddings in an actor pool, clusters on the driver,
the within-cluster passes as a group-by.

1. **embeddings** (the costly part: an encoder forward pass per row): ``map_batches`` over text
   shards in an actor pool, each actor loading the encoder once; every actor calls the step's own
   :func:`curation.embed.embed` with the run's embedding store (the driver's path: one node, or a
   cache on a filesystem every node mounts), so vectors already embedded by any run are read back,
   and new ones are stored for the next.
2. **clusters**: spherical k-means on the driver, as the local step (faiss, trained on every row),
   and each cluster's walk order (:meth:`SemanticDedup.plan`).
3. **within-cluster passes** (O(size^2 x dim) per cluster): the rows, with their cluster, place in
   the walk order and vector, go through a group-by on ``cluster mod P`` (P = 2 x CPUs group keys); a partition runs the
   step's :func:`within_cluster_dedup` on each of its clusters in walk order, and returns each row's
   duplicate-of row and similarity. The driver writes the records with the step's ``finish``.

Same decisions as the local engine for the same vectors: steps 2-3 are the local code on the same
inputs. The vectors themselves are the encoder's for each text; an encoder's float results can
differ in the last bits between batch compositions (padding), on either engine, as they can between
a local run that reads cached vectors and one that does not.

What one process holds: an actor, the encoder and one shard of texts; a partition, its clusters'
vectors (rows / P x dim x 4 bytes); the driver, every vector (n x dim x 4 bytes: 1.5 GB at 1M rows
and 384 dimensions) for the k-means, as the local step. ``keep: random`` walks the clusters with one
random stream in cluster order; its passes run on the driver.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from curation.steps.base import Decisions, Step


def semantic_dedup(engine, step: Step, inp) -> Decisions:
    """``inp``: a :class:`curation.ray_input.StepInput`. Sharded, the actors cut the texts from their
    shards and send back each vector and a 64-bit hash of its text, which the driver counts distinct
    texts by (the clusters' ``k``; only where that count is under ``n_clusters`` can a collision
    matter, and there the driver reads the texts and counts them exactly); else the driver's texts."""
    import ray

    from curation.embed import _DEFAULT_ALIASES, load_encoder, resolve_model
    from curation.rows import dataset_of
    from curation.steps.semantic_dedup import within_cluster_dedup

    p = step.params
    n = inp.num_rows
    if not n:
        return step.decide(dataset_of(inp.table()))
    started = time.time()
    cache = step.embedding_cache()
    model = p.model if p.model in _DEFAULT_ALIASES else resolve_model(p.model)[0]  # a path: absolute, as the driver sees it
    load_encoder(p.model)  # an encoder that cannot load offline fails here, with the local step's message, not in an actor
    vectors = inp.texts(p.field).map_batches(
        _Embedder, fn_constructor_kwargs={"model": model, "cache_dir": str(cache) if cache else None,
                                          "batch_size": p.batch_size},
        batch_format="pyarrow", batch_size=None, compute=ray.data.ActorPoolStrategy(size=engine.cpus)).materialize()
    emb = _matrix_in_order(vectors, n)
    embed_s = time.time() - started
    started = time.time()
    ids = inp.column("id").to_pylist()
    if inp.sharded:
        from curation.ray_engine import gathered

        distinct = len(np.unique(gathered(vectors.select_columns(["_index", "text_hash"]), n, "hashes")
                                 .column("text_hash").to_numpy()))
        if distinct < p.n_clusters:  # k = distinct texts here: counted exactly
            from curation.columns import text_column

            distinct = len(set(text_column(inp.table(), p.field).to_pylist()))
        plan = step.plan(None, emb, ids, distinct=distinct)
    else:
        from curation.columns import text_column

        plan = step.plan(text_column(inp.table(), p.field).to_pylist(), emb, ids)
    threshold = 1.0 - p.eps
    if p.keep == "random":
        engine.say("semantic_dedup keep: random walks every cluster with one random stream: the passes run on the driver")
        passes = [within_cluster_dedup(emb[order], threshold, plan.groups[order]) for order in plan.orders]
    else:
        passes = _distributed_passes(engine, emb, plan, threshold)
        engine.say(f"semantic_dedup: embeddings in an actor pool of {engine.cpus}, {plan.k} clusters' passes by group-by")
    return step.finish(plan, passes, embed_s, time.time() - started)


def _matrix_in_order(ds, n: int) -> np.ndarray:
    from curation.ray_engine import gathered

    col = gathered(ds, n, "vectors").column("vec").combine_chunks()
    return col.flatten().to_numpy().reshape(len(col), col.type.list_size).astype(np.float32, copy=False)


def _distributed_passes(engine, emb: np.ndarray, plan, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
    import ray

    n, dim = emb.shape
    cluster = np.empty(n, dtype=np.int64)
    place = np.empty(n, dtype=np.int64)
    for c, order in enumerate(plan.orders):
        cluster[order] = c
        place[order] = np.arange(len(order))
    parts = max(1, min(plan.k, 2 * engine.cpus))
    rows = pa.table({"cluster": cluster, "place": place, "group": plan.groups,
                     "_part": cluster % parts,
                     "vec": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), pa.float32()), dim)})
    ds = ray.data.from_arrow(engine.shard_tables(rows))
    out = ds.groupby("_part", num_partitions=parts).map_groups(_cluster_passes, fn_kwargs={"threshold": threshold},
                                                               batch_format="pyarrow")
    res = pa.concat_tables(list(out.iter_batches(batch_format="pyarrow", batch_size=None)))
    got = res.column("_index").to_numpy()
    if len(got) != n:
        raise RuntimeError(f"ray semantic_dedup passes returned {len(got)} rows for {n}")
    dup_row = np.empty(n, dtype=np.int64)
    sim = np.empty(n)
    dup_row[got] = res.column("dup_row").to_numpy()
    sim[got] = res.column("sim").to_numpy(zero_copy_only=False)
    passes = []
    for order in plan.orders:  # back to positions in each cluster's walk order
        d = dup_row[order]
        dup_of = np.full(len(order), -1, dtype=np.int64)
        has = d >= 0
        dup_of[has] = place[d[has]]
        passes.append((dup_of, sim[order]))
    return passes


class _Embedder:
    """One encoder per actor."""

    def __init__(self, model: str, cache_dir: str | None, batch_size: int):
        from curation.embed import load_encoder

        self.model, self.cache_dir, self.batch_size = model, cache_dir, batch_size
        encoder = load_encoder(model)
        self.dim = encoder.get_embedding_dimension() if hasattr(encoder, "get_embedding_dimension") else \
            encoder.get_sentence_embedding_dimension()

    def __call__(self, batch: pa.Table) -> pa.Table:
        from curation.embed import embed
        from curation.ray_engine import _fault_for_tests

        from curation.shingles import hash_strings

        _fault_for_tests()
        texts = batch.column("text")
        if len(texts):
            vec = np.asarray(embed(texts.to_pylist(), self.model, cache_dir=self.cache_dir, normalize=True,
                                   batch_size=self.batch_size), dtype=np.float32)
        else:  # a shard none of whose rows is in the step's input
            vec = np.zeros((0, self.dim), dtype=np.float32)
        return pa.table({"_index": batch.column("_index"),
                         "vec": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel(), pa.float32()), self.dim),
                         "text_hash": pa.array(hash_strings(texts) if len(texts) else np.zeros(0, np.uint64))})


def _cluster_passes(group: pa.Table, threshold: float) -> pa.Table:
    """In one partition: each of its clusters walked in order by the step's greedy pass."""
    from curation.steps.semantic_dedup import within_cluster_dedup

    index = group.column("_index").to_numpy()
    cluster = group.column("cluster").to_numpy()
    place = group.column("place").to_numpy()
    groups = group.column("group").to_numpy()
    col = group.column("vec").combine_chunks()
    vec = col.flatten().to_numpy().reshape(len(col), col.type.list_size)
    order = np.lexsort((place, cluster))
    index, cluster, groups, vec = index[order], cluster[order], groups[order], vec[order]
    dup_row = np.full(len(index), -1, dtype=np.int64)
    sim = np.full(len(index), np.nan)
    bounds = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        dup_of, s = within_cluster_dedup(vec[a:b], threshold, groups[a:b])
        has = dup_of >= 0
        dup_row[a:b][has] = index[a:b][dup_of[has]]
        sim[a:b] = s
    return pa.table({"_index": pa.array(index, pa.int64()), "dup_row": pa.array(dup_row), "sim": pa.array(sim, pa.float64())})
