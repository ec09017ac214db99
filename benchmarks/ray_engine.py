"""The Ray engine against the local engine, side by side in one run (issue 16).

Two chains over ``card_scale.make_source`` rows (random-word paragraphs, ~3% exact copies):

* ``row_local``: four row-local filters -- length (words >= 5), repetition (Gopher), garbage,
  length (chars <= 20,000);
* ``minhash``: minhash_dedup (word 5-grams, 128 permutations, threshold 0.8).

Each chain runs as ``recipe curate`` on a fresh cache with: the local engine on one process
(``--workers 1``), the local engine on every CPU (the default), and ``--engine ray`` with a Ray
started by the run on 1 and on 2 CPUs (``engine.num_cpus``). For each it reports the steps' decide
seconds (``curation.json`` timing: the part the engine changes) and their rows/s, the wall time of
the whole process (Ray's start included), the driver's peak RSS (GNU time), the largest Ray
worker's peak RSS (``ps`` sampled every 0.2 s) and the machine's memory in use at its peak over the
start (``/proc/meminfo``, same sampling: driver, workers and object store together).
``ray_2_cpus_driver_ships`` is ``engine.shards=false``: the driver ships each step's rows through the
object store, one Ray job per step (as before stop 25), instead of the workers reading the mixture's
shards with the row-local steps fused into one pass (``curation/ray_chain.py``; a fused step's
``decide_seconds`` is the pass's time shared out evenly).

    python benchmarks/ray_engine.py --rows 100000 1000000

Writes ``benchmarks/results/ray_engine.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from card_scale import make_source  # noqa: E402
from curate_scale import timed  # noqa: E402

CHAINS = {
    "row_local": [{"length": {"unit": "words", "min": 5}}, {"repetition": {"field": "all"}}, {"garbage": {}},
                  {"length": {"unit": "chars", "max": 20000}}],
    "minhash": [{"minhash_dedup": {"threshold": 0.8, "num_perm": 128, "ngram": 5}}],
}
VARIANTS = {
    "local_1_process": ["--workers", "1"],
    "local_all_cpus": [],
    "ray_1_cpu": ["--engine", "ray", "engine.num_cpus=1"],
    "ray_2_cpus": ["--engine", "ray", "engine.num_cpus=2"],
    # the driver ships each step's rows through the object store (engine.shards=false), as before stop 25
    "ray_2_cpus_driver_ships": ["--engine", "ray", "engine.num_cpus=2", "engine.shards=false"],
    "ray_2_cpus_star_rounds": ["--engine", "ray", "engine.num_cpus=2"],  # minhash: components by rounds, not on the driver
}
ENV = {"ray_2_cpus_star_rounds": {"RECIPE_KIT_RAY_DRIVER_EDGES": "0"}}


def _node_used_mb() -> float:
    """This machine's memory in use (MemTotal - MemAvailable), MB: every process, the object store's
    shared memory and the page cache that cannot be dropped included."""
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info[key] = int(value.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


class WorkerPeak:
    """The largest RSS (MB) of any ``ray::`` worker process while running, and the machine's memory in
    use at its peak over what it was at the start (``node_peak``: driver, workers, raylet and the
    object store together)."""

    def __init__(self):
        self.peak = 0.0
        self.node_start = _node_used_mb()
        self.node_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eo", "rss,args"], capture_output=True, text=True).stdout
            for line in out.splitlines()[1:]:
                rss, _, args = line.strip().partition(" ")
                if args.startswith("ray::") and rss.isdigit():
                    self.peak = max(self.peak, int(rss) / 1024)
            self.node_peak = max(self.node_peak, _node_used_mb() - self.node_start)
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_variant(tmp: Path, src: Path, chain: str, variant: str, n: int, bin_dir: Path) -> dict:
    recipe = {"name": f"ray_{chain}", "seed": 0, "model": {"init": "tiny"},
              "sources": {"pool": {"path": str(src), "kind": "text", "fields": {"text": "body"}, "license": "CC0-1.0"}},
              "mixtures": {"mix": {"pool": 1.0}}, "selection": {"mix": CHAINS[chain]}}
    path = tmp / f"{chain}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    out = tmp / f"run_{chain}_{variant}_{n}"
    # the source is loaded (and cached) once per size, outside the timing: the engine changes the steps
    cache = tmp / f"cache_{n}_{chain}_{variant}"
    subprocess.run(["cp", "-r", str(tmp / f"source_cache_{n}"), str(cache)], check=True)
    with WorkerPeak() as workers:
        res = timed([str(bin_dir / "recipe"), "curate", str(path), "--out", str(out), "--cache-dir", str(cache),
                     *VARIANTS[variant]], env={**os.environ, **ENV.get(variant, {})})
    cur = json.loads((out / "curation.json").read_text())
    decide = sum(s["decide_seconds"] for s in cur["timing"]["steps"])
    return {"decide_seconds": round(decide, 2), "step_rows_per_second": round(n * len(CHAINS[chain]) / decide),
            "wall_seconds": res["seconds"], "driver_peak_rss_mb": res["peak_rss_mb"],
            "ray_worker_peak_rss_mb": round(workers.peak, 1) or None, "node_peak_mb": round(workers.node_peak, 1),
            "kept_rows": cur["mixtures"]["mix"]["rows"],
            "steps": {s["step"]: s["decide_seconds"] for s in cur["timing"]["steps"]}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--chains", nargs="+", default=list(CHAINS))
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "ray_engine")
    args = ap.parse_args()
    bin_dir = Path(sys.executable).parent
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.rows:
            src = tmp / f"pool_{n}.jsonl"
            make_source(src, n)
            warm = {"name": "warm", "seed": 0, "model": {"init": "tiny"},
                    "sources": {"pool": {"path": str(src), "kind": "text", "fields": {"text": "body"}, "license": "CC0-1.0"}}}
            (tmp / "warm.yaml").write_text(yaml.safe_dump(warm))
            subprocess.run([str(bin_dir / "recipe"), "curate", str(tmp / "warm.yaml"), "--out", str(tmp / f"warm_{n}"),
                            "--cache-dir", str(tmp / f"source_cache_{n}")], check=True, capture_output=True)
            size = {"rows": n, "chains": {}}
            for chain in args.chains:
                size["chains"][chain] = {}
                for variant in VARIANTS:
                    if variant in ENV and chain != "minhash":
                        continue
                    r = run_variant(tmp, src, chain, variant, n, bin_dir)
                    size["chains"][chain][variant] = r
                    print(json.dumps({"rows": n, "chain": chain, "variant": variant, **r}), flush=True)
                v = size["chains"][chain]
                base = v["local_all_cpus"]["decide_seconds"]
                for name in v:
                    v[name]["speedup_vs_local_all_cpus"] = round(base / v[name]["decide_seconds"], 2)
                kept = {v[name]["kept_rows"] for name in v}
                assert len(kept) == 1, f"engines kept different row counts: {kept}"
            sizes.append(size)
    result = {"command": "python benchmarks/ray_engine.py " + " ".join(sys.argv[1:]), "chains": CHAINS, "sizes": sizes}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    md = ["# Ray engine vs local engine (issue 16)", "", f"Command: `{result['command']}` (this 2-core machine).", "",
          "Decide seconds: the steps' own time (`curation.json` timing), the part the engine changes; wall: the whole "
          "`recipe curate` process with Ray's start. Speed-up: decide time of the local engine on every CPU over this one's.", "",
          "| rows | chain | engine | decide s | step rows/s | speed-up | wall s | driver MB | largest Ray worker MB | machine MB |",
          "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sizes:
        for chain, v in s["chains"].items():
            for name, r in v.items():
                md.append(f"| {s['rows']:,} | {chain} | {name} | {r['decide_seconds']} | {r['step_rows_per_second']:,} | "
                          f"{r['speedup_vs_local_all_cpus']} | {r['wall_seconds']} | {r['driver_peak_rss_mb']} | "
                          f"{r['ray_worker_peak_rss_mb'] or '-'} | {r['node_peak_mb']} |")
    args.results.with_suffix(".md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
