"""curation.selection: a mixture's rows narrowed by indices give the same rows, shards, decisions and
stage file as the materialised tables they replace."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation import ledger
from curation.row_local import decide_table
from curation.rows import make_row, rows_to_table
from curation.selection import Selection
from curation.steps.base import StepContext
from curation.steps.length import Length


def _table(n=5000):
    rng = np.random.default_rng(0)
    return rows_to_table([make_row("text", "s", text=" ".join(["w"] * int(k))) for k in rng.integers(1, 12, n)])


def test_narrowed_rows_shards_and_file_equal_the_taken_table(tmp_path):
    base = _table()
    rng = np.random.default_rng(1)
    first = np.flatnonzero(rng.random(base.num_rows) > 0.3)
    second = rng.permutation(len(first))[: len(first) // 2]  # a reordering step's output
    sel = Selection(base).keep(first).keep(second)
    want = base.take(pa.array(first)).take(pa.array(second))
    assert sel.num_rows == want.num_rows and sel.column("id").to_pylist() == want.column("id").to_pylist()
    view = sel.view()
    for a, k in ((0, 10), (100, 333), (sel.num_rows - 5, 50)):
        assert view.slice(a, k).to_pylist() == want.slice(a, k).to_pylist()
    sel.write(tmp_path / "d.parquet", {b"k": b"v"}, ledger.write_parquet, row_group_rows=256)
    back = pq.read_table(tmp_path / "d.parquet")
    assert back.to_pylist() == want.to_pylist() and back.schema.metadata[b"k"] == b"v"
    assert pq.ParquetFile(tmp_path / "d.parquet").num_row_groups == -(-want.num_rows // 256)
    assert sel.table().to_pylist() == want.to_pylist() and sel.indices is None  # materialised once, then the base
    all_rows = Selection(base).keep(np.arange(base.num_rows))
    assert all_rows.indices is None and all_rows.view() is base  # keeping everything in order copies nothing


def test_a_row_local_step_decides_the_same_over_a_view():
    base = _table()
    sel = Selection(base).keep(np.flatnonzero(np.arange(base.num_rows) % 3 != 0))
    step = Length(Length.Params(unit="words", min=4), StepContext(seed=0))
    over_view = decide_table(step, sel.view(), pool=1)
    over_table = decide_table(step, sel.table(), pool=1)
    assert over_view.keep.tolist() == over_table.keep.tolist() and over_view.reason == over_table.reason
    assert over_view.extras == over_table.extras
