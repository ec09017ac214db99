"""Distributed forms of the global steps on Ray Data (the ``DISTRIBUTED`` table), with the local
steps' exact decisions.

``exact_dedup`` -- hash partitioning. A ``map_batches`` pass normalises each shard's texts (the
step's own :func:`curation.columns.normalised`) and gives each row a bucket from a stable 64-bit
hash of its normalised text (``curation.shingles.hash_strings``, over the Arrow buffers: the same in every process,
unlike Python's ``hash``); ``groupby(bucket).map_groups`` then finds, inside each bucket,
the first row (lowest input index) of every distinct text -- equal texts always share a bucket, and
equality is of the texts themselves, so a hash collision only shares a bucket, never merges rows.
The driver gets back two integers per row (index, first index) and writes the step's reasons
(``duplicate_of:<kept id>``). Scale: the shuffle moves each row's normalised text once; one
``map_groups`` call holds one bucket (about rows / buckets texts, :data:`BUCKET_ROWS`).

``decontaminate`` -- the eval n-gram index broadcast, rows matched per shard:
:mod:`curation.ray_decontaminate`.

``quality_classifier`` -- the classifier trained on the driver, rows scored in an actor pool:
:mod:`curation.ray_quality`.

``semantic_dedup`` -- embeddings in an actor pool, k-means on the driver, the within-cluster passes
by group-by: :mod:`curation.ray_semdedup`.

``minhash_dedup`` -- signatures, band-key shuffle, candidate pairs and connected components as
distributed stages: :mod:`curation.ray_minhash`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.ray_decontaminate import decontaminate
from curation.ray_minhash import minhash_dedup
from curation.ray_quality import quality_classifier
from curation.ray_semdedup import semantic_dedup
from curation.steps.base import Decisions, Step

BUCKET_ROWS = 50_000  # rows per exact-dedup bucket, on average


def exact_dedup(engine, step: Step, inp) -> Decisions:
    """``inp``: a :class:`curation.ray_input.StepInput`; the workers cut ids and texts from their shards,
    the driver holds the ids."""
    p = step.params
    n = inp.num_rows
    if not n:
        return step.decide(inp.table())
    buckets = max(1, -(-n // BUCKET_ROWS))
    keyed = inp.texts(p.field, ids=True).map_batches(_keyed, fn_kwargs={"lowercase": p.lowercase, "buckets": buckets}, batch_format="pyarrow",
                           batch_size=None)
    firsts = keyed.groupby("_bucket", num_partitions=min(buckets, engine.cpus * 2)).map_groups(
        _firsts, batch_format="pyarrow")
    result = pa.concat_tables(list(firsts.iter_batches(batch_format="pyarrow", batch_size=None)))
    order = np.argsort(result.column("_index").to_numpy(), kind="stable")
    index = result.column("_index").to_numpy()[order]
    if len(index) != n or not np.array_equal(index, np.arange(n)):
        raise RuntimeError(f"ray exact_dedup returned {len(index)} rows for {n}")
    first = result.column("first_index").to_numpy()[order]
    dup = result.column("dup").to_numpy(zero_copy_only=False)[order]
    reason: list[str | None] = [None] * n
    where = np.flatnonzero(dup)
    ids = inp.column("id")
    for i, kept_id in zip(where.tolist(), ids.take(pa.array(first[where])).to_pylist()):
        reason[i] = f"duplicate_of:{kept_id}"
    engine.say(f"exact_dedup: hash-partitioned into {buckets} bucket(s)")
    return Decisions(keep=~dup, reason=reason, extras={"unique_texts": int((first == np.arange(n)).sum())})


def _keyed(batch: pa.Table, lowercase: bool, buckets: int) -> pa.Table:
    from curation.columns import normalised
    from curation.shingles import hash_strings
    from curation.steps.exact_dedup import normalise

    norm = normalised(pa.chunked_array(batch.column("text").chunks), lowercase, normalise)
    norm = pa.chunked_array(norm.chunks if isinstance(norm, pa.ChunkedArray) else [norm]).combine_chunks()
    h = hash_strings(norm)
    return pa.table({"_index": batch.column("_index"), "id": batch.column("id"), "norm": norm,
                     "_bucket": pa.array((h % np.uint64(buckets)).astype(np.int64))})


def _firsts(group: pa.Table) -> pa.Table:
    """In one bucket: each row's first row (lowest index) with the same normalised text, and whether
    it is a duplicate (upsampled copies of one base row, ``id#k``, are not)."""
    group = group.take(pc.sort_indices(group, [("_index", "ascending")]))
    index = group.column("_index").to_numpy()
    encoded = pc.dictionary_encode(group.column("norm").combine_chunks().cast(pa.large_string()))
    codes = np.asarray(encoded.indices, dtype=np.int64)
    first_pos = np.full(len(encoded.dictionary), len(index), dtype=np.int64)
    np.minimum.at(first_pos, codes, np.arange(len(index)))
    first = first_pos[codes]
    bases = pc.replace_substring_regex(group.column("id"), "(?s)#.*", "").to_numpy(zero_copy_only=False)
    dup = (np.arange(len(index)) != first) & (bases != bases[first])
    return pa.table({"_index": pa.array(index), "first_index": pa.array(index[first]), "dup": pa.array(dup)})


DISTRIBUTED = {"exact_dedup": exact_dedup, "minhash_dedup": minhash_dedup, "decontaminate": decontaminate,
               "semantic_dedup": semantic_dedup, "quality_classifier": quality_classifier}
