"""Concurrent and interrupted runs never corrupt or kill each other (issue: trustworthy runs §3).

- a second `recipe curate` on the same --out while one runs is refused with who holds it;
- `recipe plan` (or any process on the same cache) never deletes a live run's temp entries;
- a run killed between the dataset and ledger writes leaves a run that `recipe card` refuses,
  naming the files, and a directory whose files disagree is refused the same way;
- a full or read-only directory is a clear error naming the path, with nothing half-written."""

import errno
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import ROOT, tiny_recipe


def _write(tmp_path, r, name="r.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


def _slow_recipe(seconds):
    r = tiny_recipe(eval={}, stages=[])
    r["selection"] = {"sft": [{"tests.recipes.slow_step:SlowKeepAll": {"seconds": seconds}}]}
    return r


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _wait(pred, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_two_curates_and_a_plan_on_one_out_dir(tmp_path, cli):
    path = _write(tmp_path, _slow_recipe(6))
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "recipe.cli", "curate", str(path), "--out", str(out)],
                             env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    step_dir = out / "cache" / "step"
    assert _wait(lambda: step_dir.is_dir() and any(step_dir.glob("*.tmp-*/work"))), "the first curate never reached its step"
    live = next(step_dir.glob("*.tmp-*"))
    planned = cli("plan", path, "--out", out)  # used to sweep (delete) the live entry
    assert planned.exit_code == 0, planned.output
    assert live.is_dir(), "recipe plan deleted a live run's temp entry"
    second = cli("curate", path, "--out", out)
    assert second.exit_code == 1 and "Traceback" not in second.output
    assert "in use by another recipe command" in second.output and f"pid {first.pid}" in second.output
    assert first.wait(timeout=180) == 0, first.stdout.read()[-3000:]
    assert json.loads((out / "run.json").read_text())["status"] == "ok"
    again = cli("curate", path, "--out", out)  # the lock went with its holder
    assert again.exit_code == 0, again.output


def test_kill_between_dataset_and_ledger_then_card(tmp_path, cli, monkeypatch):
    r = tiny_recipe(eval={}, stages=[])
    path = _write(tmp_path, r)
    out = tmp_path / "out"
    assert cli("curate", path, "--out", out).exit_code == 0
    good_commit = (out / "run.json").read_text()

    from curation import ledger

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):  # the process dies after datasets/*.parquet, before the ledger
        raise Killed

    monkeypatch.setattr(ledger, "write", killed)
    path_b = _write(tmp_path, tiny_recipe(eval={}, stages=[], seed=7), "b.yaml")
    with pytest.raises(Killed):
        cli("curate", path_b, "--out", out)
    monkeypatch.undo()
    res = cli("card", out)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "did not finish" in res.output and "run.json" in res.output
    # an old commit next to newer files (e.g. restored by hand): every disagreeing file is named
    (out / "run.json").write_text(good_commit)
    res = cli("card", out)
    assert res.exit_code == 1 and "disagree" in res.output
    assert "resolved.yaml" in res.output and "datasets/sft.parquet" in res.output
    for cmd in (("audit", out, "--reason", "duplicate_of"), ("diff", out, out)):
        res = cli(*cmd)
        assert res.exit_code == 1 and "disagree" in res.output, cmd


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_directory(tmp_path, cli, monkeypatch, code):
    path = _write(tmp_path, tiny_recipe(eval={}, stages=[]))
    out = tmp_path / "out"
    assert cli("curate", path, "--out", out).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".recipe.lock"}

    import pyarrow.parquet as pq

    real = pq.write_table

    def full(table, where, *a, **k):
        if str(where).endswith(".parquet") or ".parquet.tmp" in str(where):
            raise OSError(code, os.strerror(code), str(where))
        return real(table, where, *a, **k)

    monkeypatch.setattr(pq, "write_table", full)
    r2 = tiny_recipe(eval={}, stages=[], seed=3)  # new keys: every node writes
    res = cli("curate", _write(tmp_path, r2, "r2.yaml"), "--out", out)
    monkeypatch.undo()
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "cannot write" in res.output and os.strerror(code) in res.output
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert not leftovers, leftovers
    cache = out / "cache"
    assert all((d / "_COMPLETE.json").is_file() for kind in cache.iterdir() for d in kind.iterdir())
    changed = [p for p, t in before.items() if not p.exists() or p.stat().st_mtime_ns != t]
    assert not changed, changed  # the failure came before any run file was touched
    assert cli("card", out).exit_code == 0  # so the earlier run is still whole and committed


def test_sweep_keeps_live_entries_and_removes_dead_ones(tmp_path):
    from curation.files import temp_tag
    from recipe.cache import Cache

    cache = Cache(tmp_path)
    (tmp_path / "step").mkdir()
    live = tmp_path / "step" / f"abc.tmp-{temp_tag()}"
    live.mkdir()
    dead_pid = 2 ** 22 + 12345  # above pid_max on Linux: no such process
    host = temp_tag().split("-")[0]
    dead = tmp_path / "step" / f"abc.tmp-{host}-{dead_pid}-1"
    dead.mkdir()
    other_host = tmp_path / "step" / f"abc.tmp-otherhost-{dead_pid}-1"
    other_host.mkdir()
    assert cache.sweep() == 1
    assert live.is_dir() and not dead.exists() and other_host.is_dir()


def test_racing_writers_of_one_key(tmp_path):
    from recipe.cache import Cache

    cache = Cache(tmp_path)
    with cache.write("step", "k1") as first:
        (first / "out.txt").write_text("first")
        with cache.write("step", "k1") as second:  # a second process builds the same key meanwhile
            (second / "out.txt").write_text("second")
    assert cache.has("step", "k1")
    assert (cache.path("step", "k1") / "out.txt").read_text() == "second"  # the first complete entry wins
    assert not list((tmp_path / "step").glob("*.tmp-*"))


def test_temp_names_are_unique_per_writer(tmp_path):
    from curation.files import atomic_path

    with atomic_path(tmp_path / "ledger.parquet") as a:
        with atomic_path(tmp_path / "ledger.parquet") as b:
            assert a != b and ".tmp-" in a.name
            b.write_text("b")
        a.write_text("a")
    assert (tmp_path / "ledger.parquet").read_text() == "a"
