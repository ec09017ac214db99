"""Mixtures: draw a seeded share of each source and record the outcome by source.

A mixture entry is a fraction (``0.5``: half the rows, sampled without replacement), an
upsampling factor (``2.0``: every row twice; ``2.5``: twice plus a seeded half), a count (``1000``:
that many rows, without replacement), or the explicit ``{fraction|upsample|count: ...}``. An
integer means a count, so ``1`` is one row, not "all of it" (open-instruct's trap): the runner
warns about it, and asking for more rows than a source has without upsampling is an error.
Copies made by upsampling get ids ``<id>#<k>`` so they stay distinct and traceable.

Every source row gets a ledger record: ``sampled`` (kept, with its copy count) or
``not_sampled``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np


class MixtureError(ValueError):
    pass


@dataclass
class Share:
    mode: str  # fraction | upsample | count
    value: float

    @classmethod
    def parse(cls, value: Any) -> "Share":
        if isinstance(value, dict) or hasattr(value, "model_dump"):
            d = value if isinstance(value, dict) else value.model_dump(exclude_none=True)
            (mode, v), = ((k, v) for k, v in d.items() if v is not None)
            return cls(mode, float(v))
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
    rows: datasets.Dataset
    table: list[dict] = field(default_factory=list)  # outcome by source
    ledger: dict[str, dict] = field(default_factory=dict)  # source -> {ids, copies}


def token_count(ds: datasets.Dataset) -> int:
    """Whitespace tokens of all text in a canonical dataset (model-free, for the mixture table)."""
    from curation.rows import row_text

    return sum(len(row_text(r).split()) for r in ds)


def mix(name: str, entries: dict[str, Any], sources: dict[str, datasets.Dataset], seed: int) -> MixtureResult:
    """Draw each source's share; concatenate; shuffle with ``seed``."""
    rng = np.random.default_rng(seed)
    parts, table, ledger = [], [], {}
    for src, raw_share in entries.items():
        share = Share.parse(raw_share)
        ds = sources[src]
        n = len(ds)
        want = share.target_rows(n)
        if want > n and share.mode != "upsample":
            raise MixtureError(
                f"mixture {name!r} asks for {want} rows of source {src!r}, which has {n} valid rows; "
                f"lower the count, or upsample explicitly with {{upsample: {want / n:.2f}}}"
            )
        if share.mode == "upsample":
            whole, frac = divmod(share.value, 1.0)
            copies = np.full(n, int(whole), dtype=int)
            extra = rng.choice(n, size=int(round(n * frac)), replace=False) if frac > 0 else []
            copies[extra] += 1
        else:
            copies = np.zeros(n, dtype=int)
            copies[rng.choice(n, size=want, replace=False)] = 1
        index = np.repeat(np.arange(n), copies)
        picked = ds.select(index)
        copy_no = np.concatenate([np.arange(c) for c in copies]) if len(index) else np.array([], dtype=int)
        if share.mode == "upsample":
            ids = [rid if k == 0 else f"{rid}#{k}" for rid, k in zip(picked["id"], copy_no)]
            picked = picked.remove_columns("id").add_column("id", ids).select_columns(ds.column_names)
        parts.append(picked)
        ledger[src] = {"ids": ds["id"], "copies": copies.tolist()}
        table.append({"source": src, "mode": share.mode, "share": share.value, "available": n,
                      "target_rows": want, "observed_rows": len(picked), "observed_tokens": token_count(picked)})
    rows = datasets.concatenate_datasets(parts) if parts else None
    total_rows = sum(t["observed_rows"] for t in table) or 1
    total_tokens = sum(t["observed_tokens"] for t in table) or 1
    total_target = sum(t["target_rows"] for t in table) or 1
    for t in table:
        t["target_ratio"] = t["target_rows"] / total_target
        t["observed_ratio"] = t["observed_rows"] / total_rows
        t["token_ratio"] = t["observed_tokens"] / total_tokens
    rows = rows.shuffle(seed=seed).flatten_indices()
    return MixtureResult(rows, table, ledger)
