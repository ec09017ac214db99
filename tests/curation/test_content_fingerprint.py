"""A curation run's content against a committed fingerprint (issue 15: the columnar rewrite must
not change a single row, decision, score or reason).

The recipe covers what the columnar path touches: JSONL sources of chat and text rows with
non-ASCII text, odd whitespace, exact duplicates, decoding debris, repeated lines, malformed lines
(quarantined); mixtures by fraction, count, upsampling (``#k`` copies) and tokens; and the
row-local steps plus exact and MinHash dedup. The fingerprint hashes every stage dataset (rows in
order, all columns) and the ledger (records in order, all columns), and the mixtures' outcome
tables and funnels from ``curation.json``.

To re-bless after a change that is *meant* to change content (a step's ``version`` bump):
``RECIPE_KIT_BLESS=1 pytest tests/curation/test_content_fingerprint.py``, and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from curation import ledger as ledger_mod

FINGERPRINT = Path(__file__).with_name("content_fingerprint.json")

_ODD = ["\u00a0", "\u3000", "\t", "\u2028", "  ", "\n\n", "\u2009", "\n"]
_RARE = ["\x0b", "\x1c", "\x85"]  # whitespace to Python, control characters to the garbage filter
_WORDS = ["alpha", "Beta", "GAMMA", "delta", "epsilon", "café", "naïve", "Straße", "İstanbul", "ﬁle", "①", "ß",
          "über", "x", "yy", "zzz", "mañana", "θ", "東京", "emoji🙂", "ǅ", "Ⅻ"]


def _text(rng: random.Random, k: int) -> str:
    out = []
    for _ in range(k):
        out.append(rng.choice(_WORDS))
        r = rng.random()
        out.append(rng.choice(_RARE) if r < 0.004 else rng.choice(_ODD) if r < 0.1 else " ")
    return "".join(out).strip()


def write_sources(folder: Path) -> None:
    rng = random.Random(7)
    chat, text = [], []
    for i in range(400):
        r = rng.random()
        if chat and r < 0.08:
            rec = dict(rng.choice(chat))
            if rng.random() < 0.5:  # a near-exact copy: case and whitespace only
                rec = {"q": rec["q"].upper().replace(" ", "  "), "a": rec["a"]}
        elif r < 0.12:
            rec = {"q": _text(rng, 3), "a": "\n".join([_text(rng, 6)] * 4)}  # repeated lines
        elif r < 0.15:
            rec = {"q": _text(rng, 5), "a": _text(rng, 8) + " \ufffd"}  # decoding debris
        elif r < 0.17:
            rec = {"q": _text(rng, 5), "a": _text(rng, 30)}  # truncated-looking
        elif r < 0.19:
            rec = {"q": _text(rng, 5), "a": "\u200b"}  # empty in effect
        else:
            rec = {"q": _text(rng, rng.randint(2, 12)), "a": _text(rng, rng.randint(1, 40)) + rng.choice([".", "", "!"])}
        chat.append(rec)
    for i in range(300):
        r = rng.random()
        if text and r < 0.1:
            text.append(rng.choice(text))
        elif text and r < 0.14:  # a near duplicate: one word changed
            words = rng.choice(text)["body"].split(" ")
            words[rng.randrange(len(words))] = rng.choice(_WORDS)
            text.append({"body": " ".join(words), "meta": i})
        elif r < 0.15:
            line = _text(rng, 9)
            text.append({"body": "\n\n".join([line] * 3 + [_text(rng, 9)]), "meta": i})
        else:
            text.append({"body": _text(rng, rng.randint(1, 60 if rng.random() < 0.7 else 200)), "meta": i})
    lines = [json.dumps(r, ensure_ascii=False) for r in chat]
    lines.insert(17, "{not json")
    lines.insert(99, json.dumps({"q": "no answer"}))
    (folder / "chat.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tl = [json.dumps(r, ensure_ascii=False) for r in text]
    tl.insert(5, json.dumps({"body": "", "meta": -1}))
    tl.insert(50, json.dumps({"body": 3, "meta": -2}))
    (folder / "text.jsonl").write_text("\n".join(tl) + "\n", encoding="utf-8")


def recipe(folder: Path) -> dict:
    return {
        "name": "fingerprint", "seed": 3, "model": {"init": "tiny"},
        "sources": {
            "chat": {"path": str(folder / "chat.jsonl"), "kind": "chat", "fields": {"prompt": "q", "response": "a"},
                     "license": "CC0-1.0", "skill": "talk"},
            "chat2": {"path": str(folder / "chat.jsonl"), "kind": "chat", "fields": {"prompt": "q", "response": "a"},
                      "license": "CC0-1.0", "limit": 150},
            "web": {"path": str(folder / "text.jsonl"), "kind": "text",
                    "fields": {"text": "body", "metadata": "meta"}, "license": "CC0-1.0"},
        },
        "mixtures": {
            "sft": {"chat": 0.8, "chat2": {"upsample": 1.5}},
            "sft_small": {"chat": 300},
            "pre": {"web": {"tokens": 1.0, "max_repetition": 2.0}},
        },
        "selection": {
            "sft": [{"exact_dedup": {}}, {"length": {"unit": "chars", "min": 12, "max": 250}},
                    {"response_length": {"unit": "words", "min": 2}}, {"repetition": {"field": "all"}},
                    {"garbage": {}}, {"empty_turns": {"check_truncation": True}}],
            "sft_small": [{"exact_dedup": {"field": "prompt", "lowercase": False}},
                          {"length": {"unit": "words", "min": 3, "field": "response"}}],
            "pre": [{"exact_dedup": {}}, {"repetition": {"field": "all", "min_words": 5}}, {"garbage": {}},
                    {"length": {"unit": "words", "min": 4}}, {"minhash_dedup": {"threshold": 0.5}}],
        },
    }


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def run_fingerprint(run: Path) -> dict:
    out = {}
    from curation.stage_paths import read_stage

    # a stage dataset's file or its folder of parts (the Ray engine's), under the file's name
    for f in sorted((run / "datasets").iterdir()):
        if f.is_dir() or f.suffix == ".parquet":
            table = read_stage(f).replace_schema_metadata(None)
            out[f"datasets/{f.name.removesuffix('.parquet')}.parquet"] = {"rows": table.num_rows, "sha256": _digest(table.to_pylist())}
    ledger = ledger_mod.read(run / "ledger")
    out["ledger"] = {"rows": ledger.num_rows, "sha256": _digest(ledger.to_pylist())}
    record = json.loads((run / "curation.json").read_text())
    for name, m in sorted(record["mixtures"].items()):
        funnel = [{k: v for k, v in f.items() if k != "seconds"} for f in m["funnel"]]
        out[f"mixture/{name}"] = {"rows": m["rows"], "table": _digest(m["outcome_by_source"]), "funnel": _digest(funnel)}
    return out


def test_curated_content_matches_the_committed_fingerprint(tmp_path, cli):
    write_sources(tmp_path)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe(tmp_path), sort_keys=False))
    res = cli("curate", path, "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    got = run_fingerprint(tmp_path / "run")
    if os.environ.get("RECIPE_KIT_BLESS"):
        FINGERPRINT.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(FINGERPRINT.read_text())
    assert got == want
