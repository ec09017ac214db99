"""``decontaminate`` on GSM8K test questions planted among Alpaca rows: recall and false-positive rate.

Data: /work/shared/data/gsm8k/test.jsonl (the eval source, 1,319 questions) and
/work/shared/data/alpaca/alpaca_5000.json (the clean training rows). Planted leaks, 200 questions
each (disjoint), as the user turn of a chat row:

* ``verbatim``   -- the question as is;
* ``reformat``   -- "QUESTION: <QUESTION IN UPPER CASE, punctuation respaced> Answer step by step.";
* ``instruction``-- Alpaca-style framing: "Below is an instruction ... ### Instruction:\\nSolve the
                    following problem.\\n\\n### Input:\\n<question, lower case, no commas>\\n\\n### Response:";
* ``numbers``    -- the question with every number changed (same digit count, another value), as
                    math benchmarks often leak;
* ``paraphrase`` -- the question with 25% of its words replaced (a harder, partial leak; reported
                    separately: whether to call it contamination is the threshold's job).

Recall = leaked rows dropped / leaked rows, per kind; false-positive rate = clean Alpaca rows
dropped / clean rows; wrong-item = dropped leaks attributed to a different GSM8K item.

Run:  python benchmarks/decontam_gsm8k.py
Writes benchmarks/results/decontam_gsm8k.json and .md.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curation.rows import make_row, rows_to_dataset  # noqa: E402
from curation.steps.base import StepContext  # noqa: E402
from curation.steps.decontaminate import Decontaminate, DecontaminateParams  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"


def reformat(q: str) -> str:
    return "QUESTION: " + q.upper().replace(",", " ,").replace("?", " ?").replace(".", " .") + " Answer step by step."


def instruction(q: str) -> str:
    return ("Below is an instruction that describes a task, paired with an input that provides further context. "
            "Write a response that appropriately completes the request.\n\n### Instruction:\nSolve the following problem.\n\n"
            f"### Input:\n{q.lower().replace(',', '')}\n\n### Response:")


def paraphrase(q: str, rng: random.Random, frac: float = 0.25) -> str:
    words = q.split()
    for i in rng.sample(range(len(words)), max(1, int(len(words) * frac))):
        words[i] = rng.choice(["some", "many", "the", "several", "each", "total", "person", "items"])
    return " ".join(words)


def change_numbers(q: str, rng: random.Random) -> str:
    def other(m):
        digits = m.group(0)
        while True:
            new = "".join(rng.choice("0123456789") for _ in digits)
            if len(digits) > 1 and new[0] == "0":
                continue
            if new != digits:
                return new
    return re.sub(r"\d+", other, q)


def chat(user: str, assistant: str, tag: str):
    return make_row("chat", "train", messages=[{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
                    metadata={"tag": tag})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gsm8k", default=str(SHARED / "gsm8k" / "test.jsonl"))
    ap.add_argument("--alpaca", default=str(SHARED / "alpaca" / "alpaca_5000.json"))
    ap.add_argument("--per-kind", type=int, default=200)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.8])
    args = ap.parse_args()
    rng = random.Random(0)
    gsm = [json.loads(l) for l in Path(args.gsm8k).read_text().splitlines() if l.strip()]
    alp = [d for d in json.loads(Path(args.alpaca).read_text()) if d["output"].strip()]
    evalset = rows_to_dataset([make_row("verifiable", "gsm8k_test", prompt=[{"role": "user", "content": g["question"]}],
                                        ground_truth=g["answer"], verifier="gsm8k") for g in gsm])
    rows = [chat(d["instruction"] + ("\n" + d["input"] if d["input"] else ""), d["output"], "clean") for d in alp]
    kinds = {"verbatim": lambda q: q, "reformat": reformat, "instruction": instruction,
             "numbers": lambda q: change_numbers(q, rng), "paraphrase": lambda q: paraphrase(q, rng)}
    with_numbers = [i for i, g in enumerate(gsm) if re.search(r"\d", g["question"])]
    picks = rng.sample(with_numbers, args.per_kind * len(kinds))
    for j, kind in enumerate(kinds):
        for k in picks[j * args.per_kind:(j + 1) * args.per_kind]:
            rows.append(chat(kinds[kind](gsm[k]["question"]), "Let me think step by step.", f"{kind}:{k}"))
    rng.shuffle(rows)
    ds = rows_to_dataset(rows)
    tags = [json.loads(m)["tag"] for m in ds["metadata"]]
    item_id = evalset["id"]
    ctx = StepContext(source_loader=lambda name: evalset)
    results = []
    settings = [(m, thr, numbers) for numbers in (True, False)
                for m, thrs in (("ngram", args.thresholds), ("exact", [1.0])) for thr in thrs]
    for mode, thr, numbers in settings:
        t0 = time.perf_counter()
        d = Decontaminate(DecontaminateParams(against=["gsm8k_test"], mode=mode, threshold=thr,
                                              normalize_numbers=numbers), ctx).decide(ds)
        secs = time.perf_counter() - t0
        res = {"mode": mode, "threshold": thr if mode == "ngram" else None, "normalize_numbers": numbers,
               "seconds": round(secs, 3)}
        clean = [i for i, t in enumerate(tags) if t == "clean"]
        res["false_positive_rate"] = round(float((~d.keep[clean]).mean()), 5)
        res["false_positives"] = int((~d.keep[clean]).sum())
        for kind in kinds:
            idx = [i for i, t in enumerate(tags) if t.startswith(kind + ":")]
            res[f"recall_{kind}"] = round(float((~d.keep[idx]).mean()), 4)
        wrong = 0
        for i, t in enumerate(tags):
            if t != "clean" and not d.keep[i] and not d.reason[i].endswith(item_id[int(t.split(":")[1])]):
                wrong += 1
        res["wrong_item"] = wrong
        rep = d.extras["contamination"]["gsm8k_test"]
        res["report"] = {k: rep[k] for k in ("eval_items", "eval_items_hit", "rows_hit")}
        results.append(res)
        print(json.dumps(res), flush=True)
    lines = ["| mode | threshold | numbers normalised | recall verbatim | recall reformat | recall instruction | recall numbers changed | recall paraphrase (25% words) | false-positive rate | wrong item | seconds |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['mode']} | {r['threshold'] if r['threshold'] is not None else '-'} | {'yes' if r['normalize_numbers'] else 'no'} | "
                     f"{r['recall_verbatim']:.3f} | {r['recall_reformat']:.3f} | {r['recall_instruction']:.3f} | "
                     f"{r['recall_numbers']:.3f} | {r['recall_paraphrase']:.3f} | "
                     f"{r['false_positive_rate']:.4f} ({r['false_positives']}/{len(alp)}) | {r['wrong_item']} | {r['seconds']} |")
    table = "\n".join(lines)
    print(table)
    cmd = "python benchmarks/decontam_gsm8k.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "decontam_gsm8k.json").write_text(json.dumps({"command": cmd, "clean_rows": len(alp),
                                                             "leaks_per_kind": args.per_kind, "results": results}, indent=2))
    (RESULTS / "decontam_gsm8k.md").write_text(
        f"# decontaminate: GSM8K test questions planted in Alpaca\n\n`{cmd}`\n\n{len(alp)} clean Alpaca rows + "
        f"{args.per_kind} leaked GSM8K test questions per kind; eval source: all {len(gsm)} GSM8K test questions; "
        f"word 8-grams, field prompt. \"numbers normalised\" is the step's `normalize_numbers` (default on).\n\n{table}\n")


if __name__ == "__main__":
    main()
