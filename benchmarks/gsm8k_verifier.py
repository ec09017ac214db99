"""Does the ``gsm8k`` verifier agree with GSM8K's own reference answers? (issue 3)

Every test problem is loaded through the product's path (``curation.sources.load_source`` with
``format: gsm8k``, so the ground truth is what a recipe would train and evaluate against), and the
full reference solution (the worked answer text ending in ``#### N``, kept in
``metadata.solution``) is scored as if it were a model's completion. A verifier that reads answers
the way the data writes them scores 100%; every disagreement is listed with its row id.

    python benchmarks/gsm8k_verifier.py [--path /work/shared/data/gsm8k/test.jsonl]
Writes benchmarks/results/gsm8k_verifier.json.
"""

import argparse
import json
import time
from pathlib import Path

from curation.sources import load_source
from eval.verifiers import get_verifier
from recipe.schema import FileSource

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default=str(ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gsm8k_verifier.json"))
    args = ap.parse_args()

    started = time.time()
    result = load_source("gsm8k_test", FileSource(path=args.path, format="gsm8k"))
    rows = result.rows
    verify = get_verifier("gsm8k")
    failures = []
    for row in rows:
        solution = json.loads(row["metadata"])["solution"]
        if verify(solution, row["ground_truth"]) != 1.0:
            failures.append({"id": row["id"], "ground_truth": row["ground_truth"], "solution_tail": solution[-120:]})
    n = len(rows)
    report = {
        "data": args.path,
        "records": result.stats["records"],
        "quarantined": result.stats["quarantined"],
        "quarantine_reasons": sorted({q["reason"] for q in result.quarantine}),
        "scored": n,
        "agree": n - len(failures),
        "agreement": (n - len(failures)) / n if n else None,
        "failures": failures,
        "seconds": round(time.time() - started, 2),
        "command": "python benchmarks/gsm8k_verifier.py --path " + args.path,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"gsm8k verifier vs reference solutions: {report['agree']}/{n} = {100 * report['agreement']:.2f}% "
          f"(records {report['records']}, quarantined {report['quarantined']}) -> {args.out}")


if __name__ == "__main__":
    main()
