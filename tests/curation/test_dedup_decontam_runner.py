"""minhash_dedup and decontaminate through the real runner: `recipe curate` writes their drops to the ledger."""

import json
import random


from tests.conftest import tiny_recipe
from curation import ledger as ledger_mod

WORDS = [f"word{i}" for i in range(2000)]
LEAK = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether?"


def _files(tmp_path):
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(60)) for _ in range(40)]
    train = [{"instruction": "Summarise this.", "input": d, "output": "A summary."} for d in docs]
    for d in docs[:5]:  # near duplicates: one word changed
        w = d.split()
        w[30] = "changed"
        train.append({"instruction": "Summarise this.", "input": " ".join(w), "output": "A summary."})
    train.append({"instruction": "QUESTION: " + LEAK.upper() + " Answer step by step.", "input": "", "output": "72"})
    test = [{"question": LEAK, "answer": "Natalia sold 48/2 = 24 clips in May.\n#### 72"},
            {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
             "answer": "#### 10"}]
    tp, ep = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    tp.write_text("\n".join(json.dumps(r) for r in train) + "\n")
    ep.write_text("\n".join(json.dumps(r) for r in test) + "\n")
    return tp, ep


def test_curate_records_near_duplicates_and_contamination(cli, write_recipe, tmp_path):
    tp, ep = _files(tmp_path)
    r = tiny_recipe()
    r["sources"]["alp"] = {"path": str(tp), "format": "alpaca"}
    r["sources"]["gsm_test"] = {"path": str(ep), "format": "gsm8k"}
    r["mixtures"]["sft"] = {"alp": 1.0}
    r["selection"]["sft"] = [
        {"minhash_dedup": {"threshold": 0.7, "ngram": 5, "field": "prompt"}},
        {"decontaminate": {"against": ["gsm_test"], "ngram": 8}},
    ]
    out = tmp_path / "run"
    res = cli("curate", write_recipe(r), "--out", out)
    assert res.exit_code == 0, res.output
    led = ledger_mod.read(out / "ledger").to_pandas()
    dd = led[(led.step == "0:minhash_dedup") & (led.decision == "drop")]
    assert len(dd) == 5 and dd.reason.str.startswith("near_duplicate_of:").all()
    assert (dd.score > 0.7).all()
    dc = led[(led.step == "1:decontaminate") & (led.decision == "drop")]
    assert len(dc) == 1 and dc.iloc[0].reason.startswith("ngram_overlap:gsm_test:1.00:")
    assert dc.iloc[0].reason_code == "ngram_overlap"
    curation = json.loads((out / "curation.json").read_text())
    funnel = curation["mixtures"]["sft"]["funnel"]
    assert funnel[1]["extras"]["cluster_size_histogram"] == {"2": 5}
    report = funnel[2]["extras"]["contamination"]["gsm_test"]
    assert report["rows_hit"] == 1 and report["eval_items_hit"] == 1 and report["eval_items"] == 2
