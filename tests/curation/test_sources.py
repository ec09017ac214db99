"""Sources -> canonical rows: formats, field mapping, quarantine of malformed records."""

import gzip
import json

import pytest

from curation.formats import gsm8k_final_answer, parse_transcript
from curation.rows import MalformedRow
from curation.sources import SourceError, load_source
from recipe.schema import FileSource
from tests.conftest import needs_shared
from curation import ledger as ledger_mod


def _jsonl(path, records, raw_lines=()):
    with open(path, "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        for line in raw_lines:
            fh.write(line + "\n")
    return path


def test_alpaca_format(tmp_path):
    p = _jsonl(tmp_path / "a.jsonl", [{"instruction": "Add", "input": "2 and 3", "output": "5"},
                                      {"instruction": "Say hi", "input": "", "output": "hi"}])
    res = load_source("alp", FileSource(path=str(p), format="alpaca"))
    rows = list(res.rows)
    assert [r["kind"] for r in rows] == ["chat", "chat"]
    assert rows[0]["messages"][0]["content"] == "Add\n\n2 and 3"
    assert rows[1]["messages"] == [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]
    assert all(r["source"] == "alp" and len(r["id"]) == 16 for r in rows)


def test_ids_are_stable_and_repeats_distinct(tmp_path):
    rec = {"instruction": "x", "input": "", "output": "y"}
    p = _jsonl(tmp_path / "a.jsonl", [rec, rec])
    a = load_source("s", FileSource(path=str(p), format="alpaca")).rows["id"]
    b = load_source("s", FileSource(path=str(p), format="alpaca")).rows["id"]
    assert a == b and a[1] == a[0] + ".1"


def test_gsm8k_answer_parsing():
    assert gsm8k_final_answer("... so 3\n#### 1,234") == "1234"
    assert gsm8k_final_answer("#### -5") == "-5"
    with pytest.raises(MalformedRow) as e:
        gsm8k_final_answer("no final line")
    assert e.value.reason == "unparsable_answer"


def test_gsm8k_format_quarantines_unparsable(tmp_path):
    p = _jsonl(tmp_path / "g.jsonl", [{"question": "q1", "answer": "work\n#### 72"},
                                      {"question": "q2", "answer": "work\n#### seventy"}])
    res = load_source("g", FileSource(path=str(p), format="gsm8k"))
    assert len(res.rows) == 1 and res.rows[0]["ground_truth"] == "72" and res.rows[0]["verifier"] == "gsm8k"
    assert [q["reason"] for q in res.quarantine] == ["unparsable_answer"]


def test_hh_rlhf_transcripts():
    msgs = parse_transcript("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: ok")
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]


def test_hh_rlhf_preference(tmp_path):
    rec = {"chosen": "\n\nHuman: q?\n\nAssistant: good", "rejected": "\n\nHuman: q?\n\nAssistant: bad"}
    bad = {"chosen": "\n\nHuman: q?\n\nAssistant: good", "rejected": "\n\nHuman: other?\n\nAssistant: bad"}
    p = tmp_path / "h.jsonl.gz"
    with gzip.open(p, "wt") as fh:
        fh.write(json.dumps(rec) + "\n" + json.dumps(bad) + "\n")
    res = load_source("hh", FileSource(path=str(p), format="hh_rlhf"))
    row = res.rows[0]
    assert row["kind"] == "preference" and row["prompt"] == [{"role": "user", "content": "q?"}]
    assert row["chosen"][0]["content"] == "good" and row["rejected"][0]["content"] == "bad"
    assert [q["reason"] for q in res.quarantine] == ["prompt_mismatch"]


def test_real_hh_rlhf_loads():
    path = needs_shared("hh_rlhf", "harmless_base_test.jsonl.gz")
    res = load_source("hh", FileSource(path=str(path), format="hh_rlhf"))
    assert len(res.rows) > 2000
    assert res.stats["records"] == len(res.rows) + len(res.quarantine)


def test_real_gsm8k_loads_all_rows():
    path = needs_shared("gsm8k", "test.jsonl")
    res = load_source("gsm", FileSource(path=str(path), format="gsm8k"))
    assert len(res.rows) == 1319 and not res.quarantine


def test_field_mapping_verifiable_csv(tmp_path):
    p = tmp_path / "v.csv"
    p.write_text("q,a\nWhat is 1+1?,2\nWhat is 2+2?,4\n")
    spec = FileSource(path=str(p), kind="verifiable", fields={"prompt": "q", "ground_truth": "a"}, verifier="math")
    res = load_source("v", spec)
    assert res.rows["ground_truth"] == ["2", "4"] and res.rows[0]["prompt"][0]["role"] == "user"


def test_verifier_column_routes_tulu3_rlvr_rows(tmp_path):
    """Tülu 3's RLVR data names each row's verifier in its `dataset` column (gsm8k, MATH, ifeval);
    `verifier_map` renames MATH to our MATH-style verifier, and every row then scores its own way."""
    from eval.verifiers import get_verifier

    constraint = json.dumps({"func_name": "validate_lowercase", "N": None, "quantifier": None})
    records = [
        {"messages": [{"role": "user", "content": "Janet has 3 apples and buys 4. How many?"}], "ground_truth": "7",
         "dataset": "gsm8k"},
        {"messages": [{"role": "user", "content": "Simplify 2/4."}], "ground_truth": "\\frac{1}{2}", "dataset": "MATH"},
        {"messages": [{"role": "user", "content": "Say hello in lower case."}], "ground_truth": constraint,
         "dataset": "ifeval"},
    ]
    p = _jsonl(tmp_path / "rlvr.jsonl", records)
    spec = FileSource(path=str(p), kind="verifiable", verifier_map={"MATH": "boxed"},
                      fields={"prompt": "messages", "ground_truth": "ground_truth", "verifier": "dataset",
                              "skill": "dataset"})
    rows = list(load_source("tulu3_rlvr", spec).rows)
    assert [r["verifier"] for r in rows] == ["gsm8k", "boxed", "ifeval"]
    assert [r["skill"] for r in rows] == ["gsm8k", "MATH", "ifeval"]  # the skill keeps the data's own label
    passing = ["She has 3 + 4 = 7 apples.", "The answer is $\\boxed{\\frac{1}{2}}$.", "hello there"]
    failing = ["She has 8 apples.", "The answer is $\\boxed{2}$.", "Hello There"]
    for row, good, bad in zip(rows, passing, failing):
        verify = get_verifier(row["verifier"])
        assert verify(good, row["ground_truth"]) == 1.0 and verify(bad, row["ground_truth"]) == 0.0


def test_verifier_map_checks_names_and_needs_a_column():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="'MATH' maps to.*unknown verifier 'boxd'"):
        FileSource(path="x.jsonl", kind="verifiable", fields={"verifier": "dataset"}, verifier_map={"MATH": "boxd"})
    with pytest.raises(ValidationError, match="also give `fields.verifier`"):
        FileSource(path="x.jsonl", kind="verifiable", verifier="math", verifier_map={"MATH": "boxed"})


def test_parquet_chat_messages(tmp_path):
    import datasets

    p = tmp_path / "c.parquet"
    datasets.Dataset.from_list([{"conv": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]).to_parquet(str(p))
    res = load_source("c", FileSource(path=str(p), kind="chat", fields={"messages": "conv"}))
    assert res.rows[0]["messages"][1] == {"role": "assistant", "content": "b"}


def test_malformed_jsonl_lines_quarantined_valid_kept(tmp_path):
    good = [{"instruction": f"i{k}", "input": "", "output": f"o{k}"} for k in range(5)]
    p = _jsonl(tmp_path / "m.jsonl", good, raw_lines=['{"instruction": "broken', '[1, 2]',
                                                       json.dumps({"instruction": "x", "input": "", "output": 7}),
                                                       json.dumps({"instruction": "y", "input": ""}),
                                                       json.dumps({"instruction": "z", "input": "", "output": "   "})])
    res = load_source("m", FileSource(path=str(p), format="alpaca"))
    assert len(res.rows) == 5
    reasons = sorted(q["reason"] for q in res.quarantine)
    assert reasons == ["empty_assistant_turn", "invalid_json", "missing_field", "not_an_object", "wrong_type"]
    assert res.stats == {"records": 10, "valid": 5, "quarantined": 5}


@pytest.mark.parametrize("gz", [False, True])
def test_lines_that_are_not_utf8_are_quarantined_valid_kept(tmp_path, gz):
    good = [json.dumps({"instruction": f"i{k}", "input": "", "output": f"o{k}"}).encode() for k in range(4)]
    bad = b'{"instruction": "caf\xe9 \xff\xfe", "input": "", "output": "x"}'  # latin-1 bytes, not UTF-8
    data = b"\n".join(good[:2] + [bad] + good[2:]) + b"\n"
    p = tmp_path / ("m.jsonl.gz" if gz else "m.jsonl")
    p.write_bytes(gzip.compress(data) if gz else data)
    res = load_source("m", FileSource(path=str(p), format="alpaca"))
    assert res.rows["messages"][2][0]["content"] == "i2" and len(res.rows) == 4
    (q,) = res.quarantine
    assert q["reason"] == "invalid_utf8" and q["index"] == 3 and "caf\ufffd" in q["raw"]
    assert res.stats == {"records": 5, "valid": 4, "quarantined": 1}


def test_csv_that_is_not_utf8_names_the_cause(tmp_path):
    p = tmp_path / "v.csv"
    p.write_bytes(b"q,a\nWhat \xff is 1+1?,2\n")
    spec = FileSource(path=str(p), kind="verifiable", fields={"prompt": "q", "ground_truth": "a"}, verifier="math")
    with pytest.raises(SourceError, match="cannot be read: .*UTF-?8"):
        load_source("v", spec)


def test_invalid_utf8_through_the_cli_is_counted_not_a_traceback(cli, write_recipe, tmp_path):

    from tests.conftest import tiny_recipe

    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "\xff", "input": "", "output": "c"}\n')
    r = tiny_recipe()
    r["sources"]["m"] = {"path": str(p), "format": "alpaca"}
    r["mixtures"]["sft"] = {"m": 1.0}
    res = cli("curate", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert "quarantined 1 of 2 records" in res.output and "invalid_utf8" in res.output
    led = ledger_mod.read(tmp_path / "run" / "ledger").to_pandas()
    assert list(led[led.decision == "quarantine"].reason_code) == ["invalid_utf8"]


def test_empty_assistant_turn_in_chat(tmp_path):
    p = _jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
                                      {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}])
    res = load_source("c", FileSource(path=str(p), kind="chat", fields={"messages": "messages"}))
    assert len(res.rows) == 1 and res.quarantine[0]["reason"] == "empty_assistant_turn"
    assert "hi" in res.quarantine[0]["raw"]  # the raw record is kept, nothing is lost


def test_missing_file_is_clear(tmp_path):
    from curation.sources import source_fingerprint

    with pytest.raises(SourceError, match="data file not found"):
        source_fingerprint(FileSource(path=str(tmp_path / "none.jsonl"), format="alpaca"))


def test_empty_source_is_an_error(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("")
    with pytest.raises(SourceError, match="yields no valid row"):
        load_source("e", FileSource(path=str(p), format="alpaca"))


def test_all_rows_malformed_names_reasons(tmp_path):
    p = _jsonl(tmp_path / "bad.jsonl", [{"instruction": "a"}, {"instruction": "b"}])
    with pytest.raises(SourceError, match="missing_field x2"):
        load_source("bad", FileSource(path=str(p), format="alpaca"))


def test_arithmetic_generator_splits_are_disjoint():
    from recipe.schema import GeneratedSource

    train = load_source("a", GeneratedSource(generate="arithmetic", split="train", n=3000, max_operand=9), seed=0).rows
    test = load_source("t", GeneratedSource(generate="arithmetic", split="test", n=40, max_operand=9), seed=0).rows
    q = lambda ds: {r["prompt"][0]["content"].split()[-3:][0] + r["prompt"][0]["content"] for r in ds}  # noqa: E731
    key = lambda ds: {(r["skill"], json.loads(r["metadata"])["a"], json.loads(r["metadata"])["b"]) for r in ds}  # noqa: E731
    assert not key(train) & key(test)
    assert set(train["skill"]) == {"add", "sub", "mul"}
    assert q(test)
    for r in test:
        m = json.loads(r["metadata"])
        expected = {"add": m["a"] + m["b"], "sub": m["a"] - m["b"], "mul": m["a"] * m["b"]}[r["skill"]]
        assert r["ground_truth"] == str(expected)


def test_arithmetic_operand_range_label_and_offset():
    from recipe.schema import GeneratedSource

    def gen(**kw):
        return load_source("s", GeneratedSource(generate="arithmetic", **kw), seed=0).rows

    rows = gen(split="train", n=200, skills=["add"], min_operand=10, max_operand=99, skill_label="add2")
    assert set(rows["skill"]) == {"add2"}
    assert all(10 <= json.loads(m)[k] <= 99 for m in rows["metadata"] for k in ("a", "b"))
    # offset: disjoint slices of one shuffled test pool, so validation and test never share a problem
    first = gen(split="test", n=30, skills=["mul"], max_operand=19, seed=1)
    after = gen(split="test", n=40, offset=30, skills=["mul"], max_operand=19, seed=1)
    key = lambda ds: {(json.loads(m)["a"], json.loads(m)["b"]) for m in ds["metadata"]}  # noqa: E731
    assert len(key(first)) == 30 and len(key(after)) == 40 and not key(first) & key(after)
    from curation.generators.arithmetic import ArithmeticParams
    with pytest.raises(ValueError, match="min_operand 20 is above max_operand 9"):
        ArithmeticParams(min_operand=20, max_operand=9)


def test_web_text_noise_and_duplicates_are_marked():
    from recipe.schema import GeneratedSource

    rows = load_source("w", GeneratedSource(generate="web_text", split="train", n=600, noise=0.5,
                                            duplicates=0.3), seed=0).rows
    quality = [json.loads(m)["quality"] for m in rows["metadata"]]
    counts = {q: quality.count(q) for q in ("clean", "noise", "duplicate")}
    assert 120 < counts["duplicate"] < 240 and 150 < counts["noise"] < 300 and counts["clean"] > 100
    texts = list(rows["text"])
    clean = {t for t, q in zip(texts, quality) if q != "duplicate"}
    assert all(t in clean or texts.index(t) < i for i, (t, q) in enumerate(zip(texts, quality)) if q == "duplicate")
    noisy = [t for t, q in zip(texts, quality) if q == "noise"]
    assert all(" the " not in f" {t} " for t in noisy[:20])
