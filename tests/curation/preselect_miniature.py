"""The PreSelect miniature (methods.md section 6), shared by the test and the benchmark.

Several tiny Llamas, one per training length (0, a few, more, many plain-torch AdamW steps on
"good" text: short arithmetic statements), each with a synthetic benchmark score (its accuracy
proxy exp(-loss) on held-out good text, which grows with training). The pool mixes more good
documents with noise documents (random letters): good documents' losses fall as the models get
better (perfect concordance), noise documents' do not, so PreSelect should keep good ones.
"""

from __future__ import annotations

import math
import random
from pathlib import Path


def good_doc(rng: random.Random, n: int = 6) -> str:
    parts = []
    for _ in range(n):
        a, b = rng.randrange(10), rng.randrange(10)
        op = rng.choice(["+", "*"])
        parts.append(f"What is {a} {op} {b}? {a + b if op == '+' else a * b}.")
    return " ".join(parts)


def noise_doc(rng: random.Random, n_words: int = 20) -> str:
    letters = "qxzjkvwyfgpbh"
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(3, 8))) for _ in range(n_words))


def build_models(out: Path, steps=(0, 15, 40, 120), seed: int = 0) -> list[dict]:
    """Save one model per training length under ``out/model-<steps>``; return [{path, score, steps}]."""
    import torch

    from training.tiny_model import build_tiny_model

    rng = random.Random(seed)
    train = [good_doc(rng) for _ in range(400)]
    bench = [good_doc(rng) for _ in range(40)]
    vocab_texts = train + [noise_doc(rng) for _ in range(100)]
    base = build_tiny_model(out / "base", vocab_texts, vocab_size=300, hidden_size=48, num_layers=2, num_heads=2,
                            intermediate_size=96, seed=seed)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend on a shared 2-core machine
    try:
        return _train_checkpoints(out, base, train, bench, steps, seed, rng)
    finally:
        torch.set_num_threads(threads)


def _train_checkpoints(out, base, train, bench, steps, seed, rng) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def batch(texts):
        enc = tok([tok.bos_token + t for t in texts], return_tensors="pt", padding=True, add_special_tokens=False)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        return enc, labels

    def bench_score() -> float:
        model.eval()
        with torch.no_grad():
            enc, labels = batch(bench)
            loss = float(model(**enc, labels=labels).loss)
        model.train()
        return math.exp(-loss) * 100  # a "benchmark" in 0..100 that rises as the loss falls

    out_models, done = [], 0
    model.train()
    for target in sorted(steps):
        while done < target:
            enc, labels = batch(rng.sample(train, 16))
            loss = model(**enc, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            done += 1
        path = out / f"model-{target}"
        model.save_pretrained(path)
        tok.save_pretrained(path)
        out_models.append({"path": str(path), "score": round(bench_score(), 3), "steps": target})
    return out_models


def pool(n_good: int = 60, n_noise: int = 60, seed: int = 1) -> list[tuple[str, bool]]:
    rng = random.Random(seed)
    docs = [(good_doc(rng, rng.randint(3, 8)), True) for _ in range(n_good)]
    docs += [(noise_doc(rng, rng.randint(10, 30)), False) for _ in range(n_noise)]
    rng.shuffle(docs)
    return docs
