"""Generation throughput of the ``accuracy`` metric vs lm-evaluation-harness's ``HFLM.generate_until``.

The full GSM8K test set (1,319 questions, ../shared/data/gsm8k/test.jsonl) through a tiny local model
(random-init Llama, hidden 128, 4 layers, the quickstart's size; tokenizer trained on the questions):
the same rendered prompts (the model's chat template, generation prompt), the same greedy decoding
and max new tokens, the same batch size, side by side in one process (alternating order, best of
``--reps``). Ours sorts prompts by length and left-pads each batch (eval/generation.py); HFLM sorts
by length too (its ``Collator``) and pads left. Also reported: how many greedy outputs agree.

    python benchmarks/eval_throughput.py [--limit N] [--reps 2]

Writes benchmarks/results/eval_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gsm8k", default=str(ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curation.sources import load_source
    from eval.generation import generate, render
    from recipe.schema import FileSource
    from training.tiny_model import build_tiny_model

    torch.set_num_threads(os.cpu_count() or 1)
    rows = load_source("gsm8k_test", FileSource(path=args.gsm8k, format="gsm8k")).rows
    if args.limit:
        rows = rows.select(range(args.limit))
    tmp = Path(tempfile.mkdtemp(prefix="eval_tp_"))
    build_tiny_model(tmp, [p[0]["content"] for p in rows["prompt"]], vocab_size=512, hidden_size=128, num_layers=4,
                     num_heads=4, intermediate_size=512, max_position_embeddings=1024)
    tok = AutoTokenizer.from_pretrained(tmp)
    model = AutoModelForCausalLM.from_pretrained(tmp).eval()
    texts = [render(tok, p) for p in rows["prompt"]]
    n = len(texts)

    def ours():
        return [o[0] for o in generate(model, tok, texts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)]

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size, max_length=1024)
    gen_kwargs = {"until": [tok.eos_token], "max_gen_toks": args.max_new_tokens, "do_sample": False}

    def theirs():
        reqs = [Instance(request_type="generate_until", doc={}, arguments=(t, dict(gen_kwargs)), idx=i)
                for i, t in enumerate(texts)]
        return lm.generate_until(reqs, disable_tqdm=True)

    times = {"recipe_kit": [], "lm_eval": []}
    outs = {}
    for rep in range(args.reps):
        order = (("recipe_kit", ours), ("lm_eval", theirs)) if rep % 2 == 0 else (("lm_eval", theirs), ("recipe_kit", ours))
        for name, fn in order:
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
            print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    agree = sum(a.strip() == b.strip() for a, b in zip(outs["recipe_kit"], outs["lm_eval"]))
    best = {k: min(v) for k, v in times.items()}
    result = {"command": "python benchmarks/eval_throughput.py " + " ".join(sys.argv[1:]), "questions": n,
              "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "reps": args.reps,
              "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
              "rows_per_s": {k: round(n / v, 1) for k, v in best.items()},
              "ratio_ours_over_lm_eval": round((n / best["recipe_kit"]) / (n / best["lm_eval"]), 3),
              "greedy_outputs_identical": agree, "threads": torch.get_num_threads(),
              "batching": "both sort prompts by token length and left-pad each batch; greedy, max_new_tokens, "
                          "the same rendered prompts"}
    out = ROOT / "benchmarks" / "results" / "eval_throughput.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
