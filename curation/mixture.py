"""Mixtures: draw a seeded share of each source and record the outcome by source.

A mixture entry is a fraction (``0.5``: half the rows, sampled without replacement), an
upsampling factor (``2.0``: every row twice; ``2.5``: twice plus a seeded half), a count (``1000``:
that many rows, without replacement), or the explicit ``{fraction|upsample|count: ...}``. An
integer means a count, so ``1`` is one row, not "all of it" (open-instruct's trap): the runner
warns about it, and asking for more rows than a source has without upsampling is an error.
Copies made by upsampling get ids ``<id>#<k>`` so they stay distinct and traceable.

A **token mixture** (OLMo-core's ``source_name, target_ratio, max_repetition_ratio``) gives every
source ``{tokens: share, max_repetition: x}`` (shares summing to 1) or ``{tokens: count}``: source i
with a_i available tokens contributes t_i = share_i x T tokens, T the largest total every source can
reach within its repetition cap (min_i a_i x cap_i / share_i), or the stated counts; a source that
cannot reach its target within its cap is an error naming the shortfall. Rows are repeated whole
floor(t_i / a_i) times, then a seeded subset adds rows until t_i is reached. Tokens here are
whitespace tokens (model-free, the unit of the outcome table, so the mix does not depend on a
tokenizer; a BPE tokenizer's count is a near-constant multiple per source), and the outcome table
reports target vs observed tokens.

Every source row gets a ledger record: ``sampled`` (kept, with its copy count) or
``not_sampled``.

Columnar: sources are Arrow tables; a draw of rows at most once is one ``filter``, a draw with
copies one ``take`` of the repeated indices whose copies get their ``#k`` ids by an element-wise
join, and the shuffle is one ``take`` of the permutation ``datasets.Dataset.shuffle(seed)`` draws
(``np.random.default_rng(seed).permutation``), so the rows and their order are those of the
``datasets`` implementation this replaces. The rows follow from the sources, each source's copy
counts and the seed (:func:`assemble`): a mixture's cache entry keeps the counts, not the rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.columns import table_of, text_column, word_counts
from curation.rows import dataset_of


class MixtureError(ValueError):
    pass


@dataclass
class Share:
    mode: str  # fraction | upsample | count
    value: float

    cap: float = 1.0  # token mixtures: max repetitions of the source

    @classmethod
    def parse(cls, value: Any) -> "Share":
        if isinstance(value, dict) or hasattr(value, "model_dump"):
            d = value if isinstance(value, dict) else value.model_dump(exclude_none=True)
            d = {k: v for k, v in d.items() if v is not None}
            cap = float(d.pop("max_repetition", 1.0))
            (mode, v), = d.items()
            return cls(mode, float(v), cap)
        if isinstance(value, bool):
            raise MixtureError("a mixture share is a number, not a boolean")
        if isinstance(value, int):
            return cls("count", float(value))
        if value <= 0:
            raise MixtureError(f"share must be positive, got {value}")
        return cls("fraction", value) if value <= 1.0 else cls("upsample", value)

    def target_rows(self, available: int) -> int:
        if self.mode == "count":
            return int(self.value)
        if self.mode == "fraction":
            return int(round(available * self.value))
        return int(math.floor(available * self.value + 1e-9))


@dataclass
class MixtureResult:
    arrow: pa.Table  # the mixed rows (with ``order``: the draws, not yet in their mixed order)
    table: list[dict] = field(default_factory=list)  # outcome by source
    ledger: dict[str, dict] = field(default_factory=dict)  # source -> {ids (Arrow), copies (numpy)}
    row_tokens: np.ndarray | None = None  # whitespace tokens of each mixed row, in the mixed order
    order: np.ndarray | None = None  # ``mix(..., shuffled=False)``: the mixed rows are ``arrow``'s rows at these

    @property
    def rows(self) -> datasets.Dataset:
        return dataset_of(self.arrow)


def _row_tokens(rows) -> np.ndarray:
    return word_counts(text_column(rows, "all"))


def token_targets(name: str, shares: dict[str, Share], tokens: dict[str, int]) -> dict[str, int]:
    """Target tokens per source of a token mixture (see the module docstring)."""
    if all(s.value <= 1 for s in shares.values()):
        total = min(tokens[src] * s.cap / s.value for src, s in shares.items())
        targets = {src: int(round(s.value * total)) for src, s in shares.items()}
    else:
        targets = {src: int(s.value) for src, s in shares.items()}
    for src, t in targets.items():
        cap = shares[src].cap
        if t > tokens[src] * cap + 1e-9:
            raise MixtureError(f"mixture {name!r} needs {t} tokens of source {src!r}, which has {tokens[src]} "
                               f"(max_repetition {cap:g} allows {int(tokens[src] * cap)}); lower its target or raise "
                               "its max_repetition")
    return targets


def _token_copies(row_tokens: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    available = int(row_tokens.sum())
    whole = target // available if available else 0
    copies = np.full(len(row_tokens), whole, dtype=int)
    left = target - whole * available
    if left > 0:
        order = rng.permutation(len(row_tokens))
        take = int(np.searchsorted(np.cumsum(row_tokens[order]), left) + 1)
        copies[order[:take]] += 1
    return copies


def _drawn(ds: pa.Table, copies: np.ndarray) -> pa.Table:
    """A source's draw: the table itself (every row once), a filter (rows at most once: one pass over
    contiguous runs, 3x faster than a ``take`` of the same indices at 1M rows), or a ``take`` of the
    repeated indices with ``<id>#<k>`` ids on the copies."""
    if len(copies) == ds.num_rows and bool((copies == 1).all()):
        return ds
    if copies.max(initial=0) <= 1:
        return ds.filter(pa.array(copies > 0))
    index = np.repeat(np.arange(len(copies)), copies)
    picked = ds.take(pa.array(index, pa.int64()))
    starts = np.repeat(np.cumsum(copies) - copies, copies)
    copy_no = np.arange(len(index)) - starts  # 0 for a row's first copy, k for its (k+1)-th
    ids = picked.column("id").combine_chunks()
    suffixed = pc.binary_join_element_wise(ids, pa.array(copy_no.astype(str)), "#")
    return picked.set_column(picked.schema.get_field_index("id"), picked.schema.field("id"),
                             pc.if_else(pa.array(copy_no > 0), suffixed, ids))


def ids_digest(ids) -> str:
    """A digest of a source's id column (its rows, in order), kept beside a mixture's copy counts so a
    cached draw is never applied to other rows."""
    from curation.shingles import hash_strings

    ids = pa.chunked_array([ids]) if isinstance(ids, pa.Array) else ids
    h = hash_strings(ids.combine_chunks()) if len(ids) else np.zeros(0, np.uint64)
    weights = np.arange(1, len(h) + 1, dtype=np.uint64)  # order matters: position-weighted, wrapping sum
    return f"{int((h * weights).sum(dtype=np.uint64)):016x}"


def assemble(sources: dict[str, Any], copies: dict[str, np.ndarray], seed: int, shuffled: bool = True) -> pa.Table:
    """The mixed rows from each source's copy counts (in ``copies``' order; sources are tables or
    functions returning one), shuffled with ``seed``: what :func:`mix` returns, rebuilt from what a
    mixture's cache entry keeps (the copies), so the entry does not hold a copy of every row.
    ``shuffled=False``: the draws, before the shuffle's ``take`` (:func:`shuffle_order` gives the
    order), for a caller that takes them a shard at a time instead of copying them whole."""
    parts = []
    for src, c in copies.items():
        table = table_of(sources[src]() if callable(sources[src]) else sources[src])
        parts.append(_drawn(table, np.asarray(c, dtype=np.int64)))
        del table
    rows = pa.concat_tables(parts)
    del parts
    return rows.take(pa.array(shuffle_order(rows.num_rows, seed))) if shuffled else rows


def shuffle_order(n: int, seed: int) -> np.ndarray:
    """The mixed rows' order: a permutation of the concatenated draws (= ``Dataset.shuffle(seed)``)."""
    return np.random.default_rng(seed).permutation(n)


def mixed_values(values: dict[str, np.ndarray], copies: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """Per-row values of each source (``values[src][i]`` for its row ``i``) in the order :func:`assemble`
    puts the mixed rows: each source's rows repeated by their copies (what ``_drawn`` takes), the
    sources in ``copies``' order, then :func:`shuffle_order`."""
    parts = [np.repeat(np.asarray(values[src]), np.asarray(c, dtype=np.int64)) for src, c in copies.items()]
    joined = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return joined[shuffle_order(len(joined), seed)]


def mix(name: str, entries: dict[str, Any], sources: dict[str, Any], seed: int, shuffled: bool = True) -> MixtureResult:
    """Draw each source's share (sources: Arrow tables or datasets, or functions returning one, which
    lets the sources' tables go before the shuffle copies the draws); concatenate; shuffle with ``seed``
    (``shuffled=False``: leave the draws in place and give the shuffle as ``order``).
    The whitespace tokens of a row-share mixture's outcome table are counted on a thread while the
    draws are assembled (both run in Arrow and numpy kernels that release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(seed)
    sources = {src: table_of(sources[src]() if callable(sources[src]) else sources[src]) for src in entries}
    table, ledger, all_copies = [], {}, {}
    shares = {src: Share.parse(v) for src, v in entries.items()}
    token_mode = any(s.mode == "tokens" for s in shares.values())
    row_tokens = {src: _row_tokens(sources[src]) for src in entries} if token_mode else {}
    targets = token_targets(name, shares, {s: int(t.sum()) for s, t in row_tokens.items()}) if token_mode else {}
    for src in entries:
        share = shares[src]
        n = sources[src].num_rows
        want = share.target_rows(n) if not token_mode else 0
        if token_mode:
            copies = _token_copies(row_tokens[src], targets[src], rng)
            want = int(copies.sum())
        elif want > n and share.mode != "upsample":
            raise MixtureError(
                f"mixture {name!r} asks for {want} rows of source {src!r}, which has {n} valid rows; "
                f"lower the count, or upsample explicitly with {{upsample: {want / n:.2f}}}"
            )
        elif share.mode == "upsample":
            whole, frac = divmod(share.value, 1.0)
            copies = np.full(n, int(whole), dtype=int)
            extra = rng.choice(n, size=int(round(n * frac)), replace=False) if frac > 0 else []
            copies[extra] += 1
        else:
            copies = np.zeros(n, dtype=int)
            copies[rng.choice(n, size=want, replace=False)] = 1
        all_copies[src] = np.asarray(copies, dtype=np.int64)
        ledger[src] = {"ids": sources[src].column("id"), "copies": all_copies[src]}
        table.append({"source": src, "mode": share.mode, "share": share.value, "available": n,
                      "target_rows": want, "observed_rows": int(all_copies[src].sum())})
    with ThreadPoolExecutor(max_workers=1) as pool:
        counted = {src: pool.submit(_row_tokens, sources[src]) for src in entries if not token_mode}
        rows = assemble(sources, all_copies, seed, shuffled)
        sources.clear()  # only the draws (and the id columns the ledger keeps) stay alive for the shuffle's copy
        for entry in table:
            src = entry["source"]
            tokens = row_tokens[src] if token_mode else counted.pop(src).result()
            row_tokens[src] = tokens
            entry["observed_tokens"] = int(np.dot(tokens, all_copies[src]))
            if token_mode:
                entry.update(available_tokens=int(tokens.sum()), target_tokens=targets[src], max_repetition=shares[src].cap,
                             repetitions=round(entry["observed_tokens"] / max(1, int(tokens.sum())), 3))
    total_rows = sum(t["observed_rows"] for t in table) or 1
    total_tokens = sum(t["observed_tokens"] for t in table) or 1
    total_target = sum(t["target_rows"] for t in table) or 1
    total_target_tokens = sum(t.get("target_tokens", 0) for t in table) or 1
    for t in table:
        t["target_ratio"] = t["target_rows"] / total_target
        t["observed_ratio"] = t["observed_rows"] / total_rows
        t["token_ratio"] = t["observed_tokens"] / total_tokens
        if "target_tokens" in t:  # a token mixture: the ratios that matter are of tokens
            t["target_token_ratio"] = t["target_tokens"] / total_target_tokens
    return MixtureResult(rows, table, ledger, mixed_values(row_tokens, all_copies, seed),
                         None if shuffled else shuffle_order(rows.num_rows, seed))


def cached_rows(entry, copies_file: str, source_table, seed: int) -> pa.Table:
    """A cached mixture's rows (its cache entry ``entry``): assembled from its sources
    (``source_table(name)``) and the copy counts in ``copies_file``, checked to be the rows the counts
    were drawn from, or read from the rows an entry written before the copy counts holds."""
    import json
    from functools import partial
    from pathlib import Path

    import pyarrow.parquet as pq

    entry = Path(entry)
    if not (entry / copies_file).exists():
        return pq.read_table(entry / "rows.parquet")
    drawn = [d if isinstance(d, dict) else {"source": d} for d in json.loads((entry / "sources.json").read_text())]
    with np.load(entry / copies_file) as saved:
        copies = {d["source"]: saved[f"s{k}"] for k, d in enumerate(drawn)}

    def source(d: dict) -> pa.Table:  # the rows the counts were drawn from, or a clear error
        table = source_table(d["source"])
        if "ids" in d and (table.num_rows != d["rows"] or ids_digest(table.column("id")) != d["ids"]):
            raise MixtureError(f"source {d['source']!r} no longer holds the {d['rows']} rows its cached mixture "
                               f"{entry.name[:12]} was drawn from (a Hub source without a pinned revision changed?); "
                               f"pin `revision:` or remove {entry} and re-run")
        return table

    return assemble({d["source"]: partial(source, d) for d in drawn}, copies, seed)


def copies_detail(copies: np.ndarray) -> pa.Array:
    """A draw's ledger detail: ``copies=<k>`` for rows drawn more than once, null for the others."""
    detail = np.full(len(copies), None, dtype=object)
    many = np.flatnonzero(copies > 1)
    detail[many] = [f"copies={c}" for c in copies[many].tolist()]
    return pa.array(detail, pa.string())
