"""Curation at scale: `recipe curate` of the four cheap filters at 100k and 1M rows, end to end,
side by side with the same chain written in datatrove (issue 15).

The source is ``card_scale.make_source`` (random-word paragraphs with ~3% exact duplicates, ~1%
too-short rows, ~0.5% repeated lines, ~0.3% U+FFFD debris), the chain exact_dedup -> length
(>= 5 words) -> repetition (Gopher) -> garbage. For each size it reports

* rows/s end to end: rows / wall time of the whole ``recipe curate`` process (interpreter start,
  imports, loading, the chain, every Parquet write, the data card), and the peak RSS of the largest
  process (GNU time; a worker's peak is its own);
* framework overhead: the share of the curation phase's wall time outside the steps' decide
  (``curation.json`` ``timing``), and that share once the source's load (JSON parse, row ids, its
  cache entry: reading, which any tool pays) is set aside, with the phase's split into load, draw,
  apply (each step's ledger part and kept rows) and write;
* memory against the rows' Arrow size (the source table's in-memory bytes), with the process's
  RSS after imports (measured once: ``recipe --help`` under GNU time) subtracted as well;
* ``recipe card R`` and ``recipe audit R ID``: seconds and peak RSS;
* datatrove (``benchmarks/datatrove_chain.py``, run with ``--datatrove-python``) on the same rows,
  split into one file per task: our rows/s over theirs.

    python benchmarks/curate_scale.py --rows 100000 1000000 --datatrove-python /tmp/dtvenv/bin/python

Writes ``benchmarks/results/curate_scale.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from card_scale import make_source, recipe  # noqa: E402


# what `recipe curate` has imported before it reads a row (pyarrow, numpy, datasets, pandas, the card's matplotlib)
LIBRARIES = "import recipe.run, curation.pipeline, curation.card.writer"


def timed(cmd: list[str], **kw) -> dict:
    """Run ``cmd`` under GNU time: wall seconds, peak RSS (MB), and its stdout+stderr."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=ROOT, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr).group(1)
    parts = [float(x) for x in wall.split(":")]
    seconds = parts[-1] + 60 * parts[-2] + (3600 * parts[-3] if len(parts) == 3 else 0)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(rss, 1), "output": proc.stdout + proc.stderr}


def split_jsonl(src: Path, folder: Path, parts: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = src.read_text().splitlines(keepends=True)
    step = -(-len(lines) // parts)
    for i in range(parts):
        (folder / f"part-{i}.jsonl").write_text("".join(lines[i * step:(i + 1) * step]))


def one_size(n: int, tmp: Path, bin_dir: Path, datatrove_python: str | None, tasks: int, libs_mb: float) -> dict:
    import pyarrow.parquet as pq

    src = tmp / f"pool_{n}.jsonl"
    make_source(src, n)
    (tmp / "r.yaml").write_text(yaml.safe_dump(recipe(src), sort_keys=False))
    run = tmp / f"run_{n}"
    curate = timed([str(bin_dir / "recipe"), "curate", str(tmp / "r.yaml"), "--out", str(run)])
    cur = json.loads((run / "curation.json").read_text())
    phase = cur["timing"]["seconds"]
    decide = sum(s["decide_seconds"] or 0 for s in cur["timing"]["steps"])
    arrow_mb = pq.read_table(cur["sources"]["pool"]["rows_path"]).nbytes / 2**20
    card = timed([str(bin_dir / "recipe"), "card", str(run)])
    audit_id = pq.read_table(run / "datasets" / "pool_mix.parquet", columns=["id"]).column("id")[n // 3 % 1000].as_py()
    audit = timed([str(bin_dir / "recipe"), "audit", str(run), audit_id])
    out = {
        "rows": n, "selected_rows": cur["mixtures"]["pool_mix"]["rows"],
        "curate_seconds": curate["seconds"], "rows_per_second": round(n / curate["seconds"]),
        "curate_peak_rss_mb": curate["peak_rss_mb"], "rows_arrow_mb": round(arrow_mb, 1),
        "peak_over_arrow": round(curate["peak_rss_mb"] / arrow_mb, 2),
        # the peak less what the process holds before it reads a row (the interpreter and the libraries
        # `recipe curate` imports), over the rows' Arrow bytes: the part that grows with the data
        "peak_past_libraries_over_arrow": round((curate["peak_rss_mb"] - libs_mb) / arrow_mb, 2),
        "curation_phase_seconds": phase, "decide_seconds": round(decide, 2),
        "framework_overhead_share": round(1 - decide / phase, 3),
        # where the rest of the phase goes (curation.json timing): reading the source (parse, ids, its
        # cache entry), the mixture's draw, applying each step's decisions (its ledger part, the kept
        # rows), the run directory's writes
        "load_seconds": round(sum(v or 0 for v in cur["timing"].get("sources", {}).values()), 2),
        "mix_seconds": round(sum(v or 0 for v in cur["timing"].get("mixtures", {}).values()), 2),
        "apply_seconds": round(sum((s.get("seconds") or 0) - (s["decide_seconds"] or 0) for s in cur["timing"]["steps"]), 2),
        "write_seconds": cur["timing"].get("write_seconds"),
        "steps": {s["step"]: s["decide_seconds"] for s in cur["timing"]["steps"]},
    }
    out["overhead_share_past_load"] = round(1 - decide / max(1e-9, phase - out["load_seconds"]), 3)
    out |= {
        "card_seconds": card["seconds"], "card_peak_rss_mb": card["peak_rss_mb"],
        "audit_seconds": audit["seconds"], "audit_peak_rss_mb": audit["peak_rss_mb"],
        "ledger_mb": round(sum(p.stat().st_size for p in (run / "ledger").glob("*.parquet")) / 2**20, 1),
    }
    print(json.dumps(out), flush=True)
    if datatrove_python:
        split_jsonl(src, tmp / f"dt_in_{n}", tasks)
        dt = timed([datatrove_python, str(ROOT / "benchmarks" / "datatrove_chain.py"), str(tmp / f"dt_in_{n}"),
                    str(tmp / f"dt_out_{n}"), "--tasks", str(tasks)])
        kept = sum(pq.ParquetFile(f).metadata.num_rows for f in (tmp / f"dt_out_{n}").glob("*.parquet"))
        out.update(datatrove_seconds=dt["seconds"], datatrove_rows_per_second=round(n / dt["seconds"]),
                   datatrove_peak_rss_mb=dt["peak_rss_mb"], datatrove_selected_rows=kept,
                   ours_over_datatrove=round(dt["seconds"] / curate["seconds"], 2))
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--datatrove-python", default=None, help="a Python with datatrove[processing] and spacy")
    ap.add_argument("--tasks", type=int, default=2, help="datatrove tasks (= input files = processes)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "curate_scale")
    args = ap.parse_args()
    bin_dir = Path(sys.executable).parent
    base = timed([str(bin_dir / "recipe"), "--help"])
    libs = timed([sys.executable, "-c", LIBRARIES])
    with tempfile.TemporaryDirectory() as tmp:
        sizes = [one_size(n, Path(tmp), bin_dir, args.datatrove_python, args.tasks, libs["peak_rss_mb"]) for n in args.rows]
    result = {"command": "python benchmarks/curate_scale.py " + " ".join(sys.argv[1:]),
              "steps": ["exact_dedup", "length", "repetition", "garbage"],
              "cli_import_rss_mb": base["peak_rss_mb"], "libraries_rss_mb": libs["peak_rss_mb"], "sizes": sizes}
    if len(sizes) > 1:
        a, b = sizes[0], sizes[-1]
        result["growth"] = {"rows": round(b["rows"] / a["rows"], 1), "seconds": round(b["curate_seconds"] / a["curate_seconds"], 2)}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    keys = [k for k in sizes[0] if k != "steps"]
    md = ["# Curation at scale (issue 15)", "", f"Command: `{result['command']}` (this 2-core machine).", "",
          f"`recipe --help` peak RSS (the CLI's imports): {base['peak_rss_mb']} MB. The libraries `recipe curate` "
          f"imports before it reads a row (`python -c \"{LIBRARIES}\"`): {libs['peak_rss_mb']} MB.", "",
          "| measure | " + " | ".join(f"{s['rows']:,} rows" for s in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    md += [f"| {k} | " + " | ".join(str(s.get(k, "")) for s in sizes) + " |" for k in keys]
    md += ["", "Decide seconds per step: " + "; ".join(f"{s['rows']:,} rows: {s['steps']}" for s in sizes)]
    args.results.with_suffix(".md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
