"""The columnar text-source loader gives exactly the rows, ids, quarantine and stats of the
general per-record loader."""

import json

import pytest

from curation import source_columns
from curation.sources import load_source
from recipe.schema import FileSource

_AWKWARD = ['plain text', 'quote " and backslash \\ here', "tab\tnew\nline\r\n", "bell \x07 and \x1b esc \x0c ff",
            "unicode café 東京 🙂 \u2028 sep", "", "   \u3000\u00a0 ", None, "plain text", "plain text", "\\n literal",
            "ends with backslash \\", '"', "\x00 nul"]


def _write(tmp_path, records):
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    return p


def _both(monkeypatch, name, spec):
    fast = load_source(name, spec)
    with monkeypatch.context() as m:
        m.setattr(source_columns, "applies", lambda *a: False)
        slow = load_source(name, spec)
    return fast, slow


@pytest.mark.parametrize("fields,limit", [({"text": "body"}, None), ({"text": "body", "skill": "sk", "metadata": ["n", "tag"]}, None), ({"text": "body", "skill": "flag"}, None),
                                          ({"text": "body", "metadata": "n"}, 9), ({"text": "nope"}, None)])
def test_columnar_text_source_equals_the_general_loader(tmp_path, monkeypatch, fields, limit):
    records = [{"body": t, "n": i, "tag": ["a", None][i % 2], "sk": [1, 2, None][i % 3], "flag": [True, False][i % 2]} for i, t in enumerate(_AWKWARD * 3)]
    spec = FileSource(path=str(_write(tmp_path, records)), kind="text", fields=fields, limit=limit, license="CC0-1.0")
    called = []
    real = source_columns.load_text_rows
    monkeypatch.setattr(source_columns, "load_text_rows", lambda *a: called.append(1) or real(*a))
    if fields["text"] == "nope":
        from curation.sources import NoValidRows

        with pytest.raises(NoValidRows):
            load_source("src", spec)
        return
    fast, slow = _both(monkeypatch, "src", spec)
    assert called, "the columnar path was not taken"
    assert fast.rows.to_list() == slow.rows.to_list()
    assert fast.quarantine == slow.quarantine
    assert fast.stats == slow.stats
    assert limit or any(r["id"].endswith(".2") for r in fast.rows.to_list())  # repeated records numbered


def test_columnar_path_skips_what_it_cannot_map(tmp_path):
    from datasets import Features, Value

    spec = FileSource(path="x.jsonl", kind="text", fields={"text": "a.b"}, license="CC0-1.0")
    assert not source_columns.applies(spec, "fields", Features({"a": Value("string")}))
    spec = FileSource(path="x.jsonl", kind="chat", fields={"prompt": "q", "response": "a"}, license="CC0-1.0")
    assert not source_columns.applies(spec, "fields", Features({"q": Value("string")}))


def test_ids_hashed_in_two_processes_equal_those_hashed_in_one(monkeypatch):
    """A large column's second half is hashed by a forked child; the ids are the serial ones, and a
    child that fails leaves them the same (the parent hashes that half)."""
    import os

    import pyarrow as pa

    text = pa.array([t or "x" for t in _AWKWARD] * 700, pa.string())
    serial = source_columns._hex_ids("s", text)
    monkeypatch.setattr(source_columns, "PARALLEL_MIN_ROWS", 100)
    monkeypatch.setattr(source_columns, "ID_CHUNK", 1000)
    import curation.row_local as row_local
    monkeypatch.setattr(row_local, "available_cpus", lambda: 2)
    real_fork, forks = os.fork, []

    def counted_fork():
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counted_fork)
    assert source_columns._ids("s", text).to_pylist() == serial
    assert len(forks) == 1  # the second half was hashed by a child
    monkeypatch.setattr(os, "fork", lambda: (_ for _ in ()).throw(OSError("no fork")))
    assert source_columns._ids("s", text).to_pylist() == serial
    monkeypatch.setattr(os, "fork", real_fork)
    monkeypatch.setattr(source_columns, "_hex_ids", lambda src, t, real=source_columns._hex_ids: (
        os._exit(3) if os.getpid() != parent else real(src, t)))
    parent = os.getpid()
    assert source_columns._ids("s", text).to_pylist() == serial
    # a child that hangs past its deadline is killed and its half hashed here
    monkeypatch.setattr(source_columns, "CHILD_SECONDS_PER_ROW", 0.0)
    monkeypatch.setattr(source_columns, "_child_succeeded", lambda pid, deadline_s, real=source_columns._child_succeeded:
                        real(pid, 0.2))
    monkeypatch.setattr(source_columns, "_hex_ids", lambda src, t, real=source_columns._hex_ids: (
        __import__("time").sleep(60) if os.getpid() != parent else real(src, t)))
    assert source_columns._ids("s", text).to_pylist() == serial
