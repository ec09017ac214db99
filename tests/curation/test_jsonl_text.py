"""The streamed text column of a JSON Lines file: the reader's column in one chunk, the bad rows'
records whole, and None wherever the tolerant readers must take the file."""

import json

import pyarrow.json as paj
import pytest

from curation import jsonl_text, source_columns
from curation.sources import load_source
from recipe.schema import FileSource

_TEXTS = ["plain", 'quote " here', "tab\tnew\nline", "café 東京 🙂", "", "  \u3000 ", None, "x" * 300]


def _write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(jsonl_text, "BLOCK_SIZE", 1024)  # many blocks for a few hundred records


def test_streamed_column_equals_the_whole_file_reader(tmp_path, small_blocks, monkeypatch):
    records = [{"body": t, "n": i} for i, t in enumerate(_TEXTS * 60)]
    path = _write(tmp_path / "t.jsonl", records)
    monkeypatch.setattr(jsonl_text, "MAX_CHUNK_BYTES", 4096)  # several chunks, as past 2 GiB of text
    col = jsonl_text.read_text_column(str(path), "body")
    whole = paj.read_json(path).column("body")
    assert col.rows == len(records) and col.text.num_chunks > 1
    assert col.text.combine_chunks().equals(whole.combine_chunks())
    for chunk in col.text.chunks:
        chunk.validate(full=True)
    bad = [i for i, r in enumerate(records) if r["body"] is None or not r["body"].strip()]
    assert sorted(col.records) == bad
    assert all(col.records[i] == records[i] for i in bad)  # the whole record, its other fields too


def test_one_chunk_when_it_fits_and_the_limit_stops_the_read(tmp_path, small_blocks):
    records = [{"body": t} for t in _TEXTS * 60]
    path = _write(tmp_path / "t.jsonl", records)
    col = jsonl_text.read_text_column(str(path), "body")
    assert col.text.num_chunks == 1
    limited = jsonl_text.read_text_column(str(path), "body", limit=37)
    assert limited.rows == 37 and limited.text.to_pylist() == [r["body"] for r in records[:37]]


def test_a_field_the_first_block_lacks_goes_to_the_tolerant_readers(tmp_path):
    """Not every record held whole as a dict in memory: the tolerant readers quarantine them one by one."""
    assert jsonl_text.read_text_column(str(_write(tmp_path / "t.jsonl", [{"a": 1}, {"a": 2}])), "body") is None


def test_a_record_longer_than_a_block_is_read_with_larger_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl_text, "BLOCK_SIZE", 1024)
    monkeypatch.setattr(jsonl_text, "RETRY_BLOCK_SIZES", (4096, 1 << 20))
    records = [{"body": "a" * 200}, {"body": "b" * 50_000}, {"body": "c"}]
    col = jsonl_text.read_text_column(str(_write(tmp_path / "t.jsonl", records)), "body")
    assert col.text.to_pylist() == [r["body"] for r in records]


@pytest.mark.parametrize("tail", [b'{"body": "y", "extra": 1}\n', b'{"body": 5}\n', b'{"body": "\xff\xfe"}\n', b"{not json\n"])
def test_what_the_stream_cannot_read_goes_to_the_tolerant_readers(tmp_path, small_blocks, tail):
    path = _write(tmp_path / "t.jsonl", [{"body": "x" * 40} for _ in range(200)])
    path.write_bytes(path.read_bytes() + tail)
    assert jsonl_text.read_text_column(str(path), "body") is None


@pytest.mark.parametrize("max_chunk", [jsonl_text.MAX_CHUNK_BYTES, 4096])
def test_a_streamed_source_equals_the_general_loader(tmp_path, small_blocks, monkeypatch, max_chunk):
    """Through ``load_source``: many blocks (and several chunks, as past 2 GiB of text) give the rows,
    ids, quarantine and stats of the per-record loader."""
    monkeypatch.setattr(jsonl_text, "MAX_CHUNK_BYTES", max_chunk)
    monkeypatch.setattr(source_columns, "PARALLEL_MIN_ROWS", 50)  # the ids' two-process path over chunks too
    monkeypatch.setattr(source_columns, "ID_CHUNK", 64)
    records = [{"body": t, "n": i} for i, t in enumerate(_TEXTS * 40)]
    spec = FileSource(path=str(_write(tmp_path / "t.jsonl", records)), kind="text", fields={"text": "body"},
                      license="CC0-1.0")
    streamed = []
    real = jsonl_text.read_text_column
    monkeypatch.setattr(jsonl_text, "read_text_column", lambda *a: streamed.append(1) or real(*a))
    fast = load_source("src", spec)
    assert streamed
    with monkeypatch.context() as m:
        m.setattr(source_columns, "applies", lambda *a: False)
        slow = load_source("src", spec)
    assert fast.rows.to_list() == slow.rows.to_list()
    assert fast.quarantine == slow.quarantine and len(fast.quarantine) == 3 * 40
    assert fast.stats == slow.stats
