"""Data-card scale: card generation time and size, and ledger size vs selected data, at 100k rows.

A generated text source of N rows (default 100,000: random-word paragraphs with ~3% exact
duplicates, ~1% too-short rows, ~0.5% rows with repeated lines and ~0.3% with U+FFFD debris) goes
through four cheap steps (exact_dedup, length, repetition, garbage) with `recipe curate`; then
`recipe card` rewrites the card from the run's files, timed on its own. Reports the card's time
and size, and the ledger folder's bytes vs datasets/<mixture>.parquet bytes (target: ledger < 2x data).

    python benchmarks/card_scale.py            # writes benchmarks/results/card_scale.{json,md}
    python benchmarks/card_scale.py --rows 20000
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def make_source(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    rows: list[str] = []
    with open(path, "w") as fh:
        for i in range(n):
            r = rng.random()
            if rows and r < 0.03:
                text = rng.choice(rows)  # exact duplicate
            elif r < 0.04:
                text = " ".join(rng.choices(vocab, k=2))  # too short
            elif r < 0.045:
                line = " ".join(rng.choices(vocab, k=8))
                text = "\n".join([line] * 4 + [" ".join(rng.choices(vocab, k=8))])  # repeated lines
            elif r < 0.048:
                text = " ".join(rng.choices(vocab, k=20)) + " \ufffd\ufffd"  # decoding debris
            else:
                text = " ".join(rng.choices(vocab, k=rng.randint(8, 40)))
            if len(rows) < 5000:
                rows.append(text)
            fh.write(json.dumps({"body": text, "n": i}) + "\n")


def recipe(source: Path) -> dict:
    return {
        "name": "card_scale", "seed": 0, "model": {"init": "tiny"},
        "sources": {"pool": {"path": str(source), "kind": "text", "fields": {"text": "body"}, "license": "CC0-1.0"}},
        "mixtures": {"pool_mix": {"pool": 1.0}},
        "selection": {"pool_mix": [{"exact_dedup": {}}, {"length": {"unit": "words", "min": 5}},
                                   {"repetition": {"field": "all"}}, {"garbage": {}}]},
    }


def run(cmd: list[str]) -> float:
    started = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.time() - started


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "card_scale")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_source(tmp / "pool.jsonl", args.rows)
        (tmp / "r.yaml").write_text(yaml.safe_dump(recipe(tmp / "pool.jsonl"), sort_keys=False))
        out = tmp / "run"
        recipe_bin = str(Path(sys.executable).parent / "recipe")
        curate_s = run([recipe_bin, "curate", str(tmp / "r.yaml"), "--out", str(out)])  # includes one card
        card_s = run([recipe_bin, "card", str(out)])
        audit_id = json.loads((out / "card" / "card.json").read_text())["examples"]["datasets"]["pool_mix"]["kept"][0]["id"]
        audit_s = run([recipe_bin, "audit", str(out), audit_id])
        sys.path.insert(0, str(ROOT))
        from curation import ledger as ledger_mod

        cur = json.loads((out / "curation.json").read_text())
        ledger_bytes = sum(p.stat().st_size for p in (out / "ledger").glob("*.parquet"))
        data_bytes = (out / "datasets" / "pool_mix.parquet").stat().st_size
        result = {
            "rows": args.rows, "steps": ["exact_dedup", "length", "repetition", "garbage"],
            "funnel": [{k: s[k] for k in ("step", "rows_in", "rows_out", "dropped")} for s in cur["mixtures"]["pool_mix"]["funnel"]],
            "ledger_records": ledger_mod.num_records(out / "ledger"),
            "selected_rows": cur["mixtures"]["pool_mix"]["rows"],
            "curate_seconds_incl_card": round(curate_s, 2), "card_seconds": round(card_s, 2),
            "audit_seconds": round(audit_s, 2),
            "card_bytes": dir_bytes(out / "card"), "index_html_bytes": (out / "card" / "index.html").stat().st_size,
            "ledger_bytes": ledger_bytes, "dataset_bytes": data_bytes, "ledger_to_data": round(ledger_bytes / data_bytes, 3),
        }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".json").write_text(json.dumps(result, indent=1))
    md = ["# Data-card scale", "", f"Command: `python benchmarks/card_scale.py --rows {args.rows}` (2-core shared CPU box).", "",
          "| measure | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in result.items() if k not in ("funnel", "steps")]
    md += ["", "Funnel: " + "; ".join(f"{s['step']} {s['rows_in']}->{s['rows_out']}" for s in result["funnel"])]
    args.results.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
