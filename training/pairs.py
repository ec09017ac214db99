"""Preference pairs from verifiable rows (a DPO stage's ``pairs:`` option).

A verifiable row has a prompt and a checkable answer but no rejected response, so a DPO stage fed
verifiable rows (the quickstart's arithmetic) needs pairs made for it:

* **chosen** = the worked solution the source kept (``metadata.solution``, e.g. GSM8K) or else the
  ground truth itself (arithmetic: "7").
* **rejected** (``pairs.rejected``):
  - ``perturb``: chosen with its final answer (the last occurrence of the ground-truth number)
    replaced by a wrong number, ground truth + a seeded non-zero offset in [-3, 3] (non-negative
    when the truth is). Cheap and deterministic; the pair differs only in the answer.
  - ``sample``: ``num_samples`` completions sampled from the stage's starting model; the first
    one that the row's verifier fails is the rejected answer (on-policy negatives, as in
    rejection-sampling preference data). When every sample passes, the perturbed answer is used
    instead and the record says so.
* Every pair is checked with the row's verifier (chosen must pass, rejected must fail); a row
  that cannot give such a pair (a non-numeric ground truth to perturb, a chosen that fails its
  own verifier) is dropped with a reason.

Why here and not a curation step: the step protocol decides keep/drop and never rewrites rows, and
``sample`` needs the stage's starting model. Every source row gets a record in the ledger schema
(``<stage_dir>/ledger.parquet``: dataset ``stage:<name>``, step ``pairs``, keep/drop + reason, the
rejected answer's origin in ``detail``), which the runner appends to the run's ledger; the pairs
themselves are written to ``<stage_dir>/pairs.jsonl``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import datasets

from curation.rows import make_row, rows_to_dataset

_NUM = re.compile(r"^[-+]?\d+(\.\d+)?$")


def _wrong_number(truth: str, rng: random.Random) -> str | None:
    t = truth.strip()
    if not _NUM.match(t):
        return None
    decimals = len(t.split(".")[1]) if "." in t else 0
    value = float(t)
    offsets = [o for o in (-3, -2, -1, 1, 2, 3) if value < 0 or value + o >= 0]
    wrong = value + rng.choice(offsets)
    return f"{wrong:.{decimals}f}" if decimals else str(int(wrong))


def _perturb(chosen: str, truth: str, rng: random.Random) -> str | None:
    wrong = _wrong_number(truth, rng)
    if wrong is None:
        return None
    at = chosen.rfind(truth.strip())
    if at < 0:  # the solution writes the answer differently ("1,234"): answer with the wrong number alone
        return wrong
    return chosen[:at] + wrong + chosen[at + len(truth.strip()):]


def _sample(model, tokenizer, prompts: list[list[dict]], spec, seed: int) -> list[list[str]]:
    import torch

    torch.manual_seed(seed)
    old_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out: list[list[str]] = []
    try:
        model.eval()
        for start in range(0, len(prompts), 16):
            batch = prompts[start:start + 16]
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in batch]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                gen = model.generate(**enc, do_sample=True, temperature=spec.temperature, top_k=0,
                                     max_new_tokens=spec.max_new_tokens, num_return_sequences=spec.num_samples,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            texts_out = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for i in range(len(batch)):
                out.append([t.strip() for t in texts_out[i * spec.num_samples:(i + 1) * spec.num_samples]])
    finally:
        tokenizer.padding_side = old_side
    return out


def pairs_from_verifiable(rows: datasets.Dataset, spec, *, seed: int, stage_name: str, stage_dir: Path,
                          model=None, tokenizer=None) -> datasets.Dataset:
    """Preference rows (canonical) for the verifiable rows of ``rows``; preference rows pass through."""
    from curation import ledger as ledger_mod
    from eval.verifiers import get_verifier

    rng = random.Random(seed)
    keep_rows = [r for r in rows if r["kind"] == "preference"]
    ver = [r for r in rows if r["kind"] == "verifiable"]
    samples = _sample(model, tokenizer, [r["prompt"] for r in ver], spec, seed) if spec.rejected == "sample" and ver else None
    ids, sources, keep, reasons, details, written = [], [], [], [], [], []
    for i, r in enumerate(ver):
        verify = get_verifier(r["verifier"])
        meta = json.loads(r["metadata"] or "{}")
        chosen = meta.get("solution") or r["ground_truth"]
        rejected, origin, reason = None, None, None
        if verify(chosen, r["ground_truth"]) != 1.0:
            reason = "chosen_fails_verifier"
        else:
            if samples is not None:
                rejected = next((s for s in samples[i] if s and verify(s, r["ground_truth"]) < 1.0), None)
                origin = "sampled" if rejected is not None else None
            if rejected is None:
                rejected = _perturb(chosen, r["ground_truth"], rng)
                origin = "perturbed" if samples is None else "perturbed_fallback"
            if rejected is None:
                reason = "no_wrong_answer:ground truth is not a number to perturb"
            elif verify(rejected, r["ground_truth"]) >= 1.0:
                reason, rejected = "rejected_passes_verifier", None
        ids.append(r["id"])
        sources.append(r["source"])
        keep.append(reason is None)
        reasons.append(reason)
        details.append(origin)
        if reason is None:
            pair = make_row("preference", r["source"], prompt=r["prompt"],
                            chosen=[{"role": "assistant", "content": chosen}],
                            rejected=[{"role": "assistant", "content": rejected}], skill=r["skill"],
                            metadata={**meta, "pair_of": r["id"], "rejected_from": origin})
            keep_rows.append(pair)
            written.append({"row_id": r["id"], "pair_id": pair["id"], "rejected_from": origin,
                            "chosen": chosen, "rejected": rejected})
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    table = ledger_mod.records_table(f"stage:{stage_name}", "pairs", 0, ids, sources, keep, reason=reasons, detail=details)
    ledger_mod.write([table], stage_dir / "ledger.parquet")
    with open(stage_dir / "pairs.jsonl", "w") as fh:
        for w in written:
            fh.write(json.dumps(w, ensure_ascii=False) + "\n")
    return rows_to_dataset(keep_rows)
