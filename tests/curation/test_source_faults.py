"""Every malformed input is quarantined or named (issue: trustworthy runs §2): broken gzip files,
folders with a bad line, missing local paths, sources with no valid row (quarantine written, so
`recipe audit --reason` works), nested and multi-column `fields`, unknown formats at validate."""

import csv
import gzip
import json

import pytest

from curation.sources import SourceError, load_source
from recipe.schema import FileSource
from tests.conftest import tiny_recipe

GOOD = [{"instruction": f"Say {i}", "input": "", "output": f"{i}"} for i in range(50)]


def _jsonl_gz(path, records):
    with gzip.open(path, "wt") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    return path


def test_truncated_gzip_keeps_what_was_read(tmp_path):
    path = _jsonl_gz(tmp_path / "a.jsonl.gz", GOOD)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    res = load_source("a", FileSource(path=str(path), format="alpaca"))
    assert 0 < len(res.rows) < 50
    (q,) = res.quarantine
    assert q["reason"] == "truncated_file" and "a.jsonl.gz" in q["detail"] and "line" in q["detail"]


def test_plain_text_named_gz_is_named(tmp_path):
    path = tmp_path / "b.jsonl.gz"
    path.write_text("".join(json.dumps(r) + "\n" for r in GOOD))
    with pytest.raises(SourceError) as err:
        load_source("b", FileSource(path=str(path), format="alpaca"))
    assert "not_gzip" in str(err.value) and "b.jsonl.gz" in str(err.value) and "plain text named .gz" in str(err.value)


def test_bad_gzip_header_through_the_cli(tmp_path, cli, write_recipe):
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage-after-a-gzip-magic" * 3)
    r = tiny_recipe(eval={}, stages=[])
    r["sources"]["bad"] = {"path": str(path), "format": "alpaca"}
    r["mixtures"]["sft"]["bad"] = 1.0
    res = cli("curate", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 1 and "Traceback" not in res.output and "Aborted" not in res.output
    assert "c.jsonl.gz" in res.output


def test_folder_with_a_bad_line_is_quarantined_per_file(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for k in range(2):
        with open(folder / f"part-{k}.jsonl", "w") as fh:
            for r in GOOD[k * 10:(k + 1) * 10]:
                fh.write(json.dumps(r) + "\n")
    with open(folder / "part-1.jsonl", "a") as fh:
        fh.write("{not json\n")
    res = load_source("f", FileSource(path=str(folder), format="alpaca"))
    assert len(res.rows) == 20
    (q,) = res.quarantine
    assert q["reason"] == "invalid_json" and q["index"] == "part-1.jsonl:11"


def test_missing_local_folder_is_not_a_hub_failure(tmp_path, monkeypatch, cli, write_recipe):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    r = tiny_recipe(eval={}, stages=[])
    r["sources"]["gone"] = {"path": "data/not_here", "format": "alpaca"}
    r["mixtures"]["sft"]["gone"] = 1.0
    res = cli("curate", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 1 and "no such file or folder" in res.output and "Hub" not in res.output.split("error:")[1][:60]


def test_no_valid_row_names_fields_and_writes_the_quarantine(tmp_path, cli, write_recipe):
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer_text": f"{i}"}) + "\n" for i in range(5)))
    r = tiny_recipe(eval={}, stages=[])
    r["sources"]["qa"] = {"path": str(path), "kind": "chat", "fields": {"prompt": "question", "response": "answer"}}
    r["mixtures"]["sft"]["qa"] = 1.0
    out = tmp_path / "run"
    res = cli("curate", write_recipe(r), "--out", out)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "Missing field(s): answer" in res.output and '"answer_text": "0"' in res.output
    audit = cli("audit", out, "--reason", "missing_field")
    assert audit.exit_code == 0, audit.output
    assert "qa@0" in audit.output and "answer" in audit.output


def test_fields_join_columns_and_follow_paths(tmp_path):
    path = tmp_path / "n.jsonl"
    recs = [{"instruction": "Add", "input": "2 and 3", "instances": [{"output": "5"}]},
            {"instruction": "Say hi", "input": "", "instances": [{"output": "hi"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    spec = FileSource(path=str(path), kind="chat", fields={"prompt": ["instruction", "input"], "response": "instances.0.output"})
    rows = list(load_source("n", spec).rows)
    assert rows[0]["messages"] == [{"role": "user", "content": "Add\n\n2 and 3"}, {"role": "assistant", "content": "5"}]
    assert rows[1]["messages"][0]["content"] == "Say hi"  # the empty part is skipped


@pytest.mark.parametrize("fields,message", [
    ({"chosen": ["a", "b"]}, "not a field of chat rows"),
    ({"messages": ["a", "b"]}, "takes one column or path"),
    ({"promt": "q"}, "did you mean 'prompt'"),
])
def test_fields_errors_at_validate(cli, write_recipe, tmp_path, fields, message):
    r = tiny_recipe()
    r["sources"]["x"] = {"path": str(tmp_path / "x.jsonl"), "kind": "chat", "fields": fields}
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "sources.x" in res.output and message in res.output, res.output


@pytest.mark.parametrize("fmt,message", [("alpacca", "did you mean 'alpaca'"), ("nomodule.here:fmt", "cannot import")])
def test_unknown_format_at_validate(cli, write_recipe, tmp_path, fmt, message):
    r = tiny_recipe()
    r["sources"]["x"] = {"path": str(tmp_path / "x.jsonl"), "format": fmt}
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "sources.x.format" in res.output and message in res.output, res.output


def test_csv_missing_a_column_names_it(tmp_path):
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["instruction", "output"])
        w.writerows([["Say a", "a"], ["Say b", "b"]])
    spec = FileSource(path=str(path), kind="chat", fields={"prompt": "instruction", "response": "response"})
    with pytest.raises(SourceError) as err:
        load_source("t", spec)
    assert "Missing field(s): response" in str(err.value)
