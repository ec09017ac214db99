"""``minhash_dedup`` on Ray Data: signatures, LSH band keys, candidate pairs and connected components
as distributed stages, with the local step's decisions (issue 16).

The stages, each a Ray Data job over the previous one's blocks. A group-by groups on a partition
key ``_part`` with ``P`` values (:func:`_parts`), each group a vectorised call over many buckets or
nodes; how many reducer tasks run them is Ray's choice (with the sort shuffle the engine selects,
``num_partitions`` is not used).

1. **signatures** (``map_batches`` over text shards): a shard's MinHash signatures (the step's
   :func:`curation.steps.minhash_dedup.signatures`, so any worker gives the local values), kept as a
   ``fixed_size_list<uint32>[num_perm]`` column in Ray's object store, materialised once.
2. **band keys -> candidate pairs** (``map_batches`` then ``groupby(part).map_groups``): one record
   ``(band, key, index)`` per active row and band, partitioned by ``key mod P``; inside a partition,
   every ``(band, key)`` bucket links its members to its lowest index -- exactly the local
   :func:`curation.minhash.candidate_pairs` edges. A second group-by (on the edge's smaller node)
   removes the pairs several bands found, which gives the local ``candidate_pairs`` count.
3. **connected components** by large-star / small-star rounds (:mod:`curation.components`), two
   group-bys a round until no partition changes anything; the result is a star per cluster centred
   on its smallest row, which the driver collects (two integers per row in a cluster). When the
   candidate pairs are few (at most :data:`DRIVER_EDGES`, 32 MB; ``$RECIPE_KIT_RAY_DRIVER_EDGES``
   overrides it), the driver takes them and runs
   scipy's components instead, as GraphFrames does under its broadcast threshold: each round is two
   shuffles, a few seconds of fixed cost even for a handful of edges.
4. **the keep rule** on the driver (the step's own ``_keepers`` over the labels: it needs only the
   cluster label and, for ``longest`` / ``highest_score``, the texts' lengths or the cluster members'
   metadata), then
   **scores**: a group-by on the kept row brings each dropped row's signature next to its kept row's
   and measures their agreement (the local ``estimate_jaccard``).

What one process holds: a worker, one shard of texts and signatures, or one partition of band
records (active rows x bands / P records of 24 bytes) or of edges; the driver, the row ids (with the
rows in shards, ``curation.ray_shards``: the workers cut the representatives' texts from their shards,
and the keep rule's lengths come back with the signatures; without shards, the texts too), one label
per representative row and the edges of the rows in clusters -- not the rows x num_perm signature
matrix (512 MB at 1M rows and 128 permutations) that the local step holds.
Shuffle volume: stage 2 moves rows x bands x 24 bytes (1M rows, 9 bands: 216 MB); stage 3 moves the
candidate edges, a small multiple of the rows in clusters, per round.

``verify: true`` needs the texts of every candidate pair; that runs the graph on the driver (the
signatures still as Ray tasks), and says so.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from curation import components as cc
from curation.steps.base import Decisions, Step

RECORDS_PER_PART = 2_000_000  # band records per partition of stage 2, at most (about 48 MB)
DRIVER_EDGES = 2_000_000  # at most this many candidate pairs (32 MB): components on the driver, no rounds
DRIVER_EDGES_ENV = "RECIPE_KIT_RAY_DRIVER_EDGES"  # overrides DRIVER_EDGES (0: always the rounds)


def minhash_dedup(engine, step: Step, inp) -> Decisions:
    """``inp``: a :class:`curation.ray_input.StepInput` (or a table). Sharded, the driver plans from the
    row ids alone and the workers cut the representatives' texts from their shards; else the plan's
    texts are made on the driver and shipped."""
    import ray

    from curation.rows import dataset_of

    step.ctx.engine = engine
    p = step.params
    sharded = getattr(inp, "sharded", False)
    if not sharded or p.verify or not inp.num_rows:
        rows = dataset_of(inp if isinstance(inp, pa.Table) else inp.table())
        if not len(rows):
            return step.decide(rows)
        if p.verify:
            engine.say("minhash_dedup verify: signatures as Ray tasks; pairs and components on the driver (they need the texts)")
            return step.decide(rows)
        plan = step.plan(rows)
        blocks = engine.shard_tables(pa.table({"text": pa.array(plan.texts, pa.large_string())}))
        texts, shards = ray.data.from_arrow(blocks), len(blocks)
    else:
        plan = step.plan_of_ids(inp.column("id"))
        rows = _ShardRows(inp)
        rep = np.full(inp.num_rows, -1, dtype=np.int64)  # row -> its representative number (-1: an upsampled copy)
        rep[plan.rep_rows] = np.arange(plan.m)
        texts = inp.texts(p.field).map_batches(_representatives, fn_kwargs={"rep": [ray.put(rep)]},
                                               batch_format="pyarrow", batch_size=None)
        shards = len(inp.selection.store.files)
    m = plan.m
    parts = _parts(engine, m * plan.bands)
    sig = texts.map_batches(
        _sign, fn_kwargs={"num_perm": p.num_perm, "seed": plan.seed, "ngram": p.ngram, "unit": p.unit,
                          "expect": engine.per_worker(shards)},
        batch_format="pyarrow", batch_size=None).materialize()
    active = _column(sig, "active", m).astype(bool)
    if plan.texts is None and p.keep == "longest":
        plan.lengths = _column(sig, "length", m)

    records = sig.map_batches(_band_records, fn_kwargs={"bands": plan.bands, "rows": plan.rws, "parts": parts},
                              batch_format="pyarrow", batch_size=None)
    edges = _grouped(records, _bucket_edges, parts)
    edges = _grouped(edges.map_batches(_by_node, fn_kwargs={"parts": parts, "column": "a"}, batch_format="pyarrow",
                                       batch_size=None), _unique_edges, parts).materialize()
    n_candidates = edges.count()
    driver_edges = int(os.environ.get(DRIVER_EDGES_ENV, DRIVER_EDGES))
    if n_candidates > driver_edges:
        labels, rounds = _components(edges, m, parts)
        how = f"components in {rounds} large/small-star round(s)"
    else:
        labels = cc.labels_by_min(m, *_edges_of(edges))
        how = f"components on the driver (at most {driver_edges:,} edges, {16 * n_candidates / 1e6:.1f} MB)"
    engine.say(f"minhash_dedup: {m:,} signatures, {n_candidates:,} candidate pairs by band-key shuffle "
               f"({parts} partitions), {how}")

    def similarity(kept: np.ndarray, dropped: np.ndarray) -> np.ndarray:
        return _scores(sig, kept, dropped, m, parts)

    return step.finish(rows, plan, labels, active, n_candidates, 0, similarity)


def _parts(engine, records: int) -> int:
    return max(2 * engine.cpus, -(-records // RECORDS_PER_PART))


def _grouped(ds, fn, parts: int):
    return ds.groupby("_part", num_partitions=parts).map_groups(fn, batch_format="pyarrow")


def _column(ds, name: str, n: int) -> np.ndarray:
    """Column ``name`` of ``ds`` in ``_index`` order (checked complete)."""
    from curation.ray_engine import gathered

    return gathered(ds.select_columns(["_index", name]), n, "signatures").column(name).to_numpy()


def _edges_of(ds) -> tuple[np.ndarray, np.ndarray]:
    a, b = [], []
    for batch in ds.select_columns(["a", "b"]).iter_batches(batch_format="numpy", batch_size=None):
        a.append(batch["a"])
        b.append(batch["b"])
    return (np.concatenate(a).astype(np.int64), np.concatenate(b).astype(np.int64)) if a else (np.zeros(0, np.int64),) * 2


def _changed(ds) -> bool:
    """Whether any partition changed the graph: one sum on the cluster, not the flags to the driver."""
    return bool(ds.sum("_changed") or 0)


def _components(edges, m: int, parts: int, max_rounds: int = 200) -> tuple[np.ndarray, int]:
    """Large-star / small-star rounds over the edge dataset until no partition changes anything."""
    for rounds in range(1, max_rounds + 1):
        large = _grouped(edges.map_batches(_both_ways, fn_kwargs={"parts": parts}, batch_format="pyarrow", batch_size=None),
                         _large_star, parts).materialize()
        small = _grouped(large.map_batches(_by_node, fn_kwargs={"parts": parts, "column": "b"}, batch_format="pyarrow",
                                           batch_size=None), _small_star, parts).materialize()
        edges = small
        if not (_changed(large) or _changed(small)):
            a, b = _edges_of(edges)
            return cc.labels_of_stars(m, *_unique(a, b)), rounds
    raise RuntimeError(f"ray minhash_dedup: connected components did not converge in {max_rounds} rounds")


def _unique(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(a):
        return a, b
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _scores(sig, kept: np.ndarray, dropped: np.ndarray, m: int, parts: int) -> np.ndarray:
    """The signature agreement of each (kept, dropped) pair, grouped by the kept row."""
    import ray

    group = np.full(m, -1, dtype=np.int64)
    group[dropped] = kept
    group[kept] = kept
    ref = ray.put(group)
    involved = sig.map_batches(_with_group, fn_kwargs={"group": [ref], "parts": parts}, batch_format="pyarrow",
                               batch_size=None)
    scored = _grouped(involved, _pair_scores, parts)
    out = _column_of(scored, "score")
    where = {int(i): s for i, s in zip(*out)}
    return np.array([where[int(d)] for d in dropped], dtype=np.float64)


def _column_of(ds, name: str) -> tuple[np.ndarray, np.ndarray]:
    index, values = [], []
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        index.append(batch["_index"])
        values.append(batch[name])
    return (np.concatenate(index), np.concatenate(values)) if index else (np.zeros(0, np.int64), np.zeros(0))


# ---------------------------------------------------------------------- worker side
def _signature_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return arr.flatten().to_numpy().reshape(len(arr), arr.type.list_size)


def _representatives(batch: pa.Table, rep: list) -> pa.Table:
    """A shard's representative rows (not upsampled copies), ``_index`` their representative number."""
    import ray

    r = ray.get(rep[0])[batch.column("_index").to_numpy()]
    keep = r >= 0
    return pa.table({"_index": pa.array(r[keep]), "text": batch.column("text").filter(pa.array(keep))})


def _sign(batch: pa.Table, num_perm: int, seed: int, ngram: int, unit: str, expect: int = 1) -> pa.Table:
    import pyarrow.compute as pc

    from curation import kernels
    from curation.minhash import EMPTY
    from curation.ray_engine import _fault_for_tests
    from curation.steps.minhash_dedup import signatures

    _fault_for_tests()
    kernels.expect(expect)  # this worker's share of the shards: the kernels' start weighed against all of it
    if not batch.num_rows:
        sig = np.zeros((0, num_perm), dtype=np.uint32)
    else:
        sig = signatures(batch.column("text").to_pylist(), num_perm=num_perm, seed=seed, ngram=ngram, unit=unit)
    return pa.table({"_index": batch.column("_index"), "active": pa.array(sig[:, 0] != EMPTY if len(sig) else [], pa.bool_()),
                     "sig": pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel(), pa.uint32()), num_perm),
                     # the text's length in characters (the keep rule ``longest``, when the driver has no texts)
                     "length": pc.utf8_length(batch.column("text")).cast(pa.int64())})


class _ShardRows:
    """What ``MinHashDedup.finish`` needs of the rows when the driver does not hold them: their count
    and the metadata of a few (``keep: highest_score``'s cluster members), read from their shards."""

    def __init__(self, inp):
        self.inp = inp

    def __len__(self) -> int:
        return self.inp.num_rows

    def metadata_at(self, index: np.ndarray) -> list:
        return self.inp.rows_at(np.asarray(index, dtype=np.int64), ["metadata"]).column("metadata").to_pylist()


def _band_records(batch: pa.Table, bands: int, rows: int, parts: int) -> pa.Table:
    from curation.minhash import band_keys

    active = batch.column("active").to_numpy(zero_copy_only=False)
    index = batch.column("_index").to_numpy()[active]
    keys = band_keys(_signature_matrix(batch.column("sig"))[active], bands, rows)  # (rows, bands)
    return pa.table({"band": pa.array(np.repeat(np.arange(bands, dtype=np.int16)[None, :], len(index), 0).ravel()),
                     "key": pa.array(keys.ravel()), "_index": pa.array(np.repeat(index, bands)),
                     "_part": pa.array((keys.ravel() % np.uint64(parts)).astype(np.int64))})


def _edge_table(a: np.ndarray, b: np.ndarray, changed: bool | None = None) -> pa.Table:
    cols = {"a": pa.array(a, pa.int64()), "b": pa.array(b, pa.int64())}
    if changed is not None:
        cols["_changed"] = pa.array(np.full(len(a), int(changed), dtype=np.int8))
    return pa.table(cols)


def _bucket_edges(group: pa.Table) -> pa.Table:
    """In one partition: each (band, key) bucket's members linked to its lowest index."""
    band = group.column("band").to_numpy()
    key = group.column("key").to_numpy()
    index = group.column("_index").to_numpy()
    order = np.lexsort((index, key, band))
    band, key, index = band[order], key[order], index[order]
    new = np.r_[True, (key[1:] != key[:-1]) | (band[1:] != band[:-1])]
    head = index[np.maximum.accumulate(np.where(new, np.arange(len(index)), 0))]
    return _edge_table(head[~new], index[~new])


def _by_node(batch: pa.Table, parts: int, column: str) -> pa.Table:
    return batch.select(["a", "b"]).append_column("_part", pa.array(cc.partition_of(batch.column(column).to_numpy(), parts)))


def _unique_edges(group: pa.Table) -> pa.Table:
    return _edge_table(*_unique(group.column("a").to_numpy(), group.column("b").to_numpy()))


def _both_ways(batch: pa.Table, parts: int) -> pa.Table:
    a, b = batch.column("a").to_numpy(), batch.column("b").to_numpy()
    src, dst = np.r_[a, b], np.r_[b, a]
    return pa.table({"src": src, "dst": dst, "_part": cc.partition_of(src, parts)})


def _large_star(group: pa.Table) -> pa.Table:
    return _edge_table(*cc.large_star(group.column("src").to_numpy(), group.column("dst").to_numpy()))


def _small_star(group: pa.Table) -> pa.Table:
    # grouped by the larger endpoint b: src = b, dst = a
    return _edge_table(*cc.small_star(group.column("b").to_numpy(), group.column("a").to_numpy()))


def _with_group(batch: pa.Table, group: list, parts: int) -> pa.Table:
    import ray

    g = ray.get(group[0])[batch.column("_index").to_numpy()]
    sel = pa.array(g >= 0)
    out = batch.select(["_index", "sig"]).filter(sel)
    g = g[g >= 0]
    return out.append_column("_group", pa.array(g)).append_column("_part", pa.array(cc.partition_of(g, parts)))


def _pair_scores(group: pa.Table) -> pa.Table:
    """In one partition: each dropped row's signature agreement with its kept row's."""
    index = group.column("_index").to_numpy()
    kept = group.column("_group").to_numpy()
    sig = _signature_matrix(group.column("sig"))
    pos = {int(i): k for k, i in enumerate(index)}
    dropped = np.flatnonzero(index != kept)
    partner = np.array([pos[int(kept[k])] for k in dropped], dtype=np.int64)
    score = (sig[dropped] == sig[partner]).mean(axis=1) if len(dropped) else np.zeros(0)
    return pa.table({"_index": pa.array(index[dropped], pa.int64()), "score": pa.array(score, pa.float64())})
