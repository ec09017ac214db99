"""Ledger layouts for ``recipe audit`` of one id, side by side in one run (issue 16, item 4).

A ledger like a 1M-row curation's: every row has one record per step (5 steps: mixture and four
filters; ids are 16-hex content hashes, as the runner makes them; a few percent dropped with a
reason), written by :mod:`curation.ledger`'s writer settings (zstd, 128k-row groups). Layouts:

* ``single_file`` -- today's ``ledger.parquet``, records in pipeline order;
* ``single_file_bloom`` -- the same with a Parquet Bloom filter on ``row_id``;
* ``by_step_and_shard`` -- a folder, one part per step and 50k-row shard (what a distributed
  writer produces without thought);
* ``by_id_bucket`` -- a folder partitioned by ``bucket = crc32(base id) mod 64`` (hive style), so
  a look-up of one id names its bucket and reads 1/64 of the ledger;
* ``ledger_folder`` -- what ``recipe curate`` now writes (:mod:`curation.ledger_folder`): a part per
  step, each split by id bucket, written by ``curation.ledger.write`` and read by
  ``ledger.records_of`` (the look-up ``recipe audit`` makes) and ``ledger.read_step`` (the card's).

For the two layouts recipe-kit has written (``single_file``, ``ledger_folder``), also the write
seconds and the read of one step's records (what the card's score summary and plots read).

For each: bytes on disk, and the look-up of 20 random ids (each with its ``#k`` copies, the filter
``recipe audit`` uses) through ``pyarrow.dataset`` with that filter: median seconds.

    python benchmarks/ledger_lookup.py --rows 1000000

Writes ``benchmarks/results/ledger_lookup.{json,md}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from curation import ledger  # noqa: E402
from curation.ledger import ROW_GROUP_ROWS, records_table  # noqa: E402

STEPS = ["mixture", "0:exact_dedup", "1:length", "2:repetition", "3:garbage"]
BUCKETS = 64
SHARD = 50_000


def _ids(n: int) -> list[str]:
    return [hashlib.sha256(f"pool:{i}".encode()).hexdigest()[:16] for i in range(n)]


def _records(ids: list[str], rng) -> list[pa.Table]:
    n = len(ids)
    parts = []
    for k, step in enumerate(STEPS):
        keep = rng.random(n) > (0.0 if step == "mixture" else 0.02)
        reason = np.where(keep, None, f"{step.split(':')[-1]}_reason:detail").tolist()
        parts.append(records_table("mix", step, k, pa.array(ids), pa.repeat(pa.scalar("pool"), n), keep,
                                   score=rng.random(n), reason=reason))
    return parts


def _bucket(ids: pa.Array) -> np.ndarray:
    return np.array([zlib.crc32(i.split("#", 1)[0].encode()) % BUCKETS for i in ids.to_pylist()], dtype=np.int32)


def write_layouts(parts: list[pa.Table], folder: Path) -> dict[str, Path]:
    out, writes = {}, {}
    path = folder / "single_file.parquet"
    t0 = time.perf_counter()
    ledger.write(parts, path)
    writes["single_file"] = time.perf_counter() - t0
    out["single_file"] = path
    path = folder / "single_file_bloom.parquet"
    with pq.ParquetWriter(path, parts[0].schema, compression="zstd",
                          bloom_filter_options={"row_id": {"ndv": ROW_GROUP_ROWS, "fpp": 0.01}}) as w:
        for t in parts:
            w.write_table(t, row_group_size=ROW_GROUP_ROWS)
    out["single_file_bloom"] = path
    d = folder / "by_step_and_shard"
    d.mkdir()
    for k, t in enumerate(parts):
        for s in range(0, t.num_rows, SHARD):
            pq.write_table(t.slice(s, SHARD), d / f"step={k:03d}-shard={s // SHARD:05d}.parquet", compression="zstd",
                           row_group_size=ROW_GROUP_ROWS)
    out["by_step_and_shard"] = d
    d = folder / "by_id_bucket"
    whole = pa.concat_tables(parts)
    whole = whole.append_column("bucket", pa.array(_bucket(whole.column("row_id").combine_chunks())))
    pads.write_dataset(whole, d, format="parquet", partitioning=pads.partitioning(pa.schema([("bucket", pa.int32())]), flavor="hive"),
                       file_options=pads.ParquetFileFormat().make_write_options(compression="zstd"),
                       max_rows_per_group=ROW_GROUP_ROWS, existing_data_behavior="overwrite_or_ignore")
    out["by_id_bucket"] = d
    t0 = time.perf_counter()
    out["ledger_folder"] = ledger.write(parts, folder / "ledger", {"recipe_hash": "r", "curation_id": "c"})
    writes["ledger_folder"] = time.perf_counter() - t0
    return out, writes


def lookup(layout: str, path: Path, row_id: str) -> int:
    rid = pads.field("row_id")
    expr = (rid == row_id) | pc.starts_with(rid, pattern=row_id + "#")
    if layout == "by_id_bucket":
        ds = pads.dataset(path, format="parquet", partitioning="hive")
        expr = (pads.field("bucket") == zlib.crc32(row_id.encode()) % BUCKETS) & expr
    elif layout == "ledger_folder":
        return ledger.records_of(path, [row_id]).num_rows
    else:
        ds = pads.dataset(path, format="parquet")
    return ds.to_table(filter=expr).num_rows


def size_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    ids = _ids(args.rows)
    parts = _records(ids, rng)
    targets = [ids[i] for i in rng.choice(args.rows, args.lookups, replace=False)]
    results = {"command": f"python benchmarks/ledger_lookup.py --rows {args.rows}", "rows": args.rows,
               "records": sum(t.num_rows for t in parts), "layouts": {}}
    tmp = Path(tempfile.mkdtemp())
    try:
        layouts, writes = write_layouts(parts, tmp)
        for name, path in layouts.items():
            lookup(name, path, targets[0])  # warm the page cache: every layout read from memory alike
            times, found = [], []
            for t in targets:
                t0 = time.perf_counter()
                found.append(lookup(name, path, t))
                times.append(time.perf_counter() - t0)
            assert all(f == len(STEPS) for f in found), (name, found)
            results["layouts"][name] = {"mb": round(size_bytes(path) / 1e6, 1), "lookup_median_s": round(statistics.median(times), 4),
                                        "lookup_max_s": round(max(times), 4)}
            if name in writes:
                reads = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    n = ledger.read_step(path, "mix", STEPS[2], ["row_id", "score", "decision"]).num_rows
                    reads.append(time.perf_counter() - t0)
                results["layouts"][name].update(write_s=round(writes[name], 2), read_one_step_s=round(statistics.median(reads), 3))
                assert n == args.rows
            print(name, results["layouts"][name], flush=True)
    finally:
        shutil.rmtree(tmp)
    base = results["layouts"]["single_file"]["lookup_median_s"]
    for v in results["layouts"].values():
        v["speedup_vs_single_file"] = round(base / v["lookup_median_s"], 2)
    out = ROOT / "benchmarks" / "results"
    (out / "ledger_lookup.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# Ledger layouts for `recipe audit` of one id\n\n`{results['command']}`: {results['records']:,} records "
             f"({len(STEPS)} per row), zstd, 128k-row groups, {args.lookups} look-ups of random ids (with their `#k` "
             "copies), warm page cache. Write and one-step read (median of 3): the layouts recipe-kit writes.\n",
             "| layout | MB | median look-up s | max s | speed-up | write s | read one step s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in results["layouts"].items():
        lines.append(f"| {name} | {v['mb']} | {v['lookup_median_s']} | {v['lookup_max_s']} | {v['speedup_vs_single_file']} "
                     f"| {v.get('write_s', '-')} | {v.get('read_one_step_s', '-')} |")
    (out / "ledger_lookup.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
