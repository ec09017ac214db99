"""The run ledger's partitioned folder (curation.ledger_folder): parts by step, files by id bucket,
read back record for record; look-ups open only their buckets; the commit check and the swap."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from curation import ledger, ledger_folder, run_commit
from curation.files import WriteError
from curation.mixture import assemble
from tests.curation.card.conftest import card_recipe

STAMP = {"recipe_hash": "r1", "curation_id": "c1"}


def _parts(n: int = 3000) -> list[pa.Table]:
    rng = np.random.default_rng(0)
    ids = [f"src@{i:05d}" for i in range(n)] + [f"src@{i:05d}#1" for i in range(0, n, 7)]  # upsampled copies
    parts = [ledger.records_table("mix", "mixture", 0, ids, ["src"] * len(ids), np.ones(len(ids), bool))]
    for k, step in enumerate(["0:length", "1:repetition"], start=1):
        keep = rng.random(len(ids)) > 0.1
        parts.append(ledger.records_table("mix", step, k, ids, ["src"] * len(ids), keep, score=rng.random(len(ids)),
                                          reason=np.where(keep, None, f"{step}_reason:x").tolist(),
                                          position=np.where(keep, np.cumsum(keep) - 1, -1)))
    return parts


@pytest.fixture
def small_buckets(monkeypatch):
    monkeypatch.setattr(ledger_folder, "RECORDS_PER_BUCKET", 256)  # 3.4k records a part -> 16 buckets


def test_folder_reads_back_every_record_in_order(tmp_path, small_buckets):
    parts = _parts()
    ledger.write(parts, tmp_path / "ledger", STAMP)
    index = ledger_folder.read_index(tmp_path / "ledger")
    assert [p["buckets"] for p in index["parts"]] == [16, 16, 16] and index["records"] == sum(p.num_rows for p in parts)
    assert [p["pairs"] for p in index["parts"]] == [[["mix", "mixture"]], [["mix", "0:length"]], [["mix", "1:repetition"]]]
    want = pa.concat_tables(parts)
    got = ledger.read(tmp_path / "ledger")
    assert got.schema.names == ledger.SCHEMA.names and got.to_pylist() == want.to_pylist()
    # every file holds only its bucket's ids, and carries the run stamp
    for part in index["parts"]:
        for fname in part["files"]:
            rows = ledger.read(tmp_path / "ledger" / fname)  # one file reads as a plain ledger file
            b = int(fname.rsplit("-", 1)[1].split(".")[0])
            assert {ledger_folder.bucket_of(i, 16) for i in rows.column("row_id").to_pylist()} == {b}
            assert run_commit.parquet_stamp(tmp_path / "ledger" / fname)["curation_id"] == "c1"
    assert ledger.num_records(tmp_path / "ledger") == want.num_rows


def test_lookups_open_only_what_they_need_and_agree_with_a_filter(tmp_path, small_buckets, monkeypatch):
    parts = _parts()
    ledger.write(parts, tmp_path / "ledger", STAMP)
    whole = pa.concat_tables(parts)
    opened = []
    real = ledger_folder._read_files
    monkeypatch.setattr(ledger_folder, "_read_files", lambda f, names, *a: opened.extend(names) or real(f, names, *a))
    got = ledger.records_of(tmp_path / "ledger", ["src@00014"])
    mask = pc.or_(pc.equal(whole.column("row_id"), "src@00014"), pc.equal(whole.column("row_id"), "src@00014#1"))
    assert got.to_pylist() == whole.filter(mask).to_pylist() and got.num_rows == 6  # the row and its copy, 3 steps
    assert len(opened) == 3  # one bucket file per part, of 48
    opened.clear()
    step = ledger.read_step(tmp_path / "ledger", "mix", "0:length", ["row_id", "decision"])
    want = whole.filter(pc.equal(whole.column("step"), "0:length")).select(["row_id", "decision"])
    assert step.to_pylist() == want.to_pylist() and {n[:5] for n in opened} == {"00001"}
    dropped = ledger.read(tmp_path / "ledger", where=pc.field("decision") != "keep")
    assert dropped.to_pylist() == whole.filter(pc.not_equal(whole.column("decision"), "keep")).to_pylist()


def test_commit_check_names_a_missing_or_changed_part(tmp_path, small_buckets):
    ledger.write(_parts(), tmp_path / "ledger", STAMP)
    assert ledger_folder.problems(tmp_path / "ledger", "c1") == []
    assert "from curation c1, not c2" in ledger_folder.problems(tmp_path / "ledger", "c2")[0]
    files = sorted((tmp_path / "ledger").glob("*.parquet"))
    files[0].unlink()
    with files[1].open("ab") as f:
        f.write(b"x")
    bad = ledger_folder.problems(tmp_path / "ledger", "c1")
    assert f"ledger/{files[0].name} (missing)" in bad and any(f"ledger/{files[1].name} (changed" in b for b in bad)


def test_a_failed_write_leaves_the_previous_folder_whole(tmp_path, small_buckets, monkeypatch):
    parts = _parts(500)
    ledger.write(parts, tmp_path / "ledger", STAMP)
    before = ledger.read(tmp_path / "ledger").to_pylist()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ledger_folder.pq, "write_table", boom)
    with pytest.raises(WriteError, match="nothing was half-written"):
        ledger.write(_parts(800), tmp_path / "ledger", STAMP)
    assert ledger.read(tmp_path / "ledger").to_pylist() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger"]  # no temp or old folder left


def test_a_run_with_many_buckets_audits_and_cards_like_one_with_one(tmp_path, write_recipe, cli, monkeypatch):
    path = write_recipe(card_recipe(tmp_path))
    res = cli("curate", path, "--out", tmp_path / "one")
    assert res.exit_code == 0, res.output
    monkeypatch.setattr(ledger_folder, "RECORDS_PER_BUCKET", 8)
    res = cli("curate", path, "--out", tmp_path / "many", "--cache-dir", tmp_path / "cache-many")  # parts are bucketed in the cache
    assert res.exit_code == 0, res.output
    buckets = [max(p["buckets"] for p in ledger_folder.read_index(tmp_path / r / "ledger")["parts"]) for r in ("one", "many")]
    assert buckets[0] == 1 and buckets[1] > 1
    index = ledger_folder.read_index(tmp_path / "many" / "ledger")
    for part in index["parts"]:  # the hashes the runner carries along the steps put every id in its bucket
        for fname in part["files"]:
            ids = ledger.read(tmp_path / "many" / "ledger" / fname).column("row_id").to_pylist()
            assert {ledger_folder.bucket_of(i, part["buckets"]) for i in ids} == {int(fname.rsplit("-", 1)[1][:3])}
    assert ledger.read(tmp_path / "one" / "ledger").to_pylist() == ledger.read(tmp_path / "many" / "ledger").to_pylist()
    assert json.loads((tmp_path / "one" / "run.json").read_text())["files"]["ledger/index.json"] > 0
    led = ledger.read(tmp_path / "one" / "ledger")
    row = led.filter(pc.equal(led.column("decision"), "drop")).column("row_id")[0].as_py()
    outputs = [cli("audit", tmp_path / r, row).output for r in ("one", "many")]
    assert row in outputs[0] and outputs[0].replace("/one", "/many") == outputs[1]
    cards = [json.loads((tmp_path / r / "card" / "card.json").read_text()) for r in ("one", "many")]
    for key in ("mixtures", "examples", "composition", "contamination"):
        assert json.dumps(cards[0][key]).replace("/one", "/many") == json.dumps(cards[1][key]), key


def test_a_run_curated_before_the_folder_still_reads(tmp_path, write_recipe, cli):
    """A run directory from before stop 21 holds one ledger.parquet, committed by name: card, audit
    and diff read it; curating into it again replaces it with the folder."""
    path = write_recipe(card_recipe(tmp_path))
    out = tmp_path / "run"
    assert cli("curate", path, "--out", out).exit_code == 0
    led = ledger.read(out / "ledger")
    commit = json.loads((out / "run.json").read_text())
    stamp = {k: commit[k] for k in ("recipe_hash", "curation_id")}
    ledger.write([led], out / "ledger.parquet", stamp)  # the old layout, as the old runner wrote it
    shutil.rmtree(out / "ledger")
    commit["files"].pop("ledger/index.json")
    commit["files"]["ledger.parquet"] = (out / "ledger.parquet").stat().st_size
    (out / "run.json").write_text(json.dumps(commit))
    assert ledger.location(out) == out / "ledger.parquet"
    row = led.filter(pc.equal(led.column("decision"), "drop")).column("row_id")[0].as_py()
    res = cli("audit", out, row)
    assert res.exit_code == 0 and row in res.output, res.output
    assert cli("card", out).exit_code == 0
    assert cli("curate", path, "--out", out).exit_code == 0  # the new layout replaces the old file
    assert not (out / "ledger.parquet").exists() and ledger.read(out / "ledger").to_pylist() == led.to_pylist()


def test_a_killed_writers_leftover_folders_are_removed_by_the_next_write(tmp_path):
    dead = tmp_path / ".ledger.tmp-nohost-999999999-1"  # an unknown host: left alone
    gone = tmp_path / ".ledger.old-999999999-1"  # this host, a pid that does not run
    for d in (dead, gone):
        d.mkdir()
        (d / "00000-000.parquet").write_bytes(b"half")
    ledger.write(_parts(50), tmp_path / "ledger", STAMP)
    assert dead.exists() and not gone.exists()
    assert ledger.read(tmp_path / "ledger").num_rows == sum(p.num_rows for p in _parts(50))


def test_cache_entries_hold_bucketed_parts_linked_into_the_run_and_old_entries_still_read(tmp_path, write_recipe, cli):
    """A mixture's draw and a step's decisions are bucketed once, in their cache entry (``decisions/``);
    the run's ledger copies those files as they are (a changed one is a clear error); a mixture entry keeps copy counts, not rows. Cache entries from
    before (one ``decisions.parquet``, a mixture's ``rows.parquet``) still serve a run, whose ledger and
    datasets are then the same."""
    path = write_recipe(card_recipe(tmp_path))
    cache = tmp_path / "cache"
    assert cli("curate", path, "--out", tmp_path / "a", "--cache-dir", cache).exit_code == 0
    saved = sorted(cache.rglob("decisions/part.json"))
    assert saved, "no cache entry holds a bucketed part"
    index = ledger_folder.read_index(tmp_path / "a" / "ledger")
    cached = {f.read_bytes() for info in saved for f in info.parent.glob("*.parquet")}
    run_files = [tmp_path / "a" / "ledger" / f for p in index["parts"] for f in p["files"]]
    assert sum(f.read_bytes() in cached for f in run_files) == len(cached)  # the cached files, copied as they are
    assert all(f.stat().st_nlink == 1 for f in run_files)  # copies, not links: the cache is not the run's
    victim = next(info.parent for info in saved)  # a cached part changed after it was written: a clear error
    part_file = next(victim.glob("*.parquet"))
    original = part_file.read_bytes()
    part_file.write_bytes(original + b"junk")
    res = cli("curate", path, "--out", tmp_path / "c", "--cache-dir", cache)
    assert res.exit_code == 1 and "changed after it was cached" in res.output and "Traceback" not in res.output
    part_file.write_bytes(original)
    for info in saved:  # back to the stop-21 layout
        folder = info.parent
        ledger.write_parquet(ledger.read_part(folder.parent), folder.parent / "decisions.parquet")
        shutil.rmtree(folder)
    # a mixture entry from before the copy counts holds its rows
    record = json.loads((tmp_path / "a" / "curation.json").read_text())
    seed = yaml.safe_load((tmp_path / "a" / "resolved.yaml").read_text())["seed"]
    for counts in cache.rglob("copies.npz"):
        names = [d["source"] for d in json.loads((counts.parent / "sources.json").read_text())]
        with np.load(counts) as saved:
            copies = {src: saved[f"s{k}"] for k, src in enumerate(names)}
        rows = assemble({s: pq.read_table(record["sources"][s]["rows_path"]) for s in names}, copies, seed)
        ledger.write_parquet(rows, counts.parent / "rows.parquet")
        counts.unlink()
    assert cli("curate", path, "--out", tmp_path / "b", "--cache-dir", cache).exit_code == 0
    assert ledger.read(tmp_path / "b" / "ledger").to_pylist() == ledger.read(tmp_path / "a" / "ledger").to_pylist()
    assert run_commit.check(tmp_path / "b")
    for rel in sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "datasets").glob("*.parquet")):
        assert pq.read_table(tmp_path / "b" / rel).to_pylist() == pq.read_table(tmp_path / "a" / rel).to_pylist()
