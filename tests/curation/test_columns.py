"""curation.columns: the Arrow forms equal the per-row Python they replace, on every row kind."""

import random

import numpy as np
import pytest

from curation import columns
from curation.rows import make_row, row_text, rows_to_dataset
from curation.steps.exact_dedup import normalise

_PIECES = ["alpha", "Beta", "café", "İstanbul", "ﬁle", "Straße", "東京", "ǅ", "\u00a0", "\u3000", "\t", "\x0b", "\x1c",
           "\x85", "\u2028", "  ", "\n", "\n\n", "x", "🙂", "\u200b"]


def _t(rng, k):
    return "".join(rng.choice(_PIECES) + rng.choice([" ", "", "\n"]) for _ in range(k)).strip() or "z"


def _rows(n=300, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(["chat", "preference", "verifiable", "text"])
        if kind == "chat":
            msgs = ([{"role": "system", "content": _t(rng, 3)}] if rng.random() < 0.3 else [])
            for _ in range(rng.randint(1, 3)):
                msgs += [{"role": "user", "content": _t(rng, 4)}, {"role": "assistant", "content": _t(rng, 5)}]
            out.append(make_row("chat", "s", messages=msgs))
        elif kind == "preference":
            out.append(make_row("preference", "s", prompt=[{"role": "user", "content": _t(rng, 4)}],
                                chosen=[{"role": "assistant", "content": _t(rng, 3)}],
                                rejected=[{"role": "assistant", "content": _t(rng, 6) + " no"}]))
        elif kind == "verifiable":
            out.append(make_row("verifiable", "s", prompt=[{"role": "user", "content": _t(rng, 4)}],
                                ground_truth=str(i), verifier="exact"))
        else:
            out.append(make_row("text", "s", text=_t(rng, rng.randint(1, 30))))
    return rows_to_dataset(out)


@pytest.mark.parametrize("field", ["all", "prompt", "response"])
def test_text_column_equals_row_text(field):
    ds = _rows()
    want = [row_text(r, field) for r in ds]
    assert columns.text_column(ds, field).to_pylist() == want
    # across batch boundaries and on a shuffled (indices-mapped) dataset
    shuffled = ds.shuffle(seed=1)
    old = columns.BATCH_ROWS
    columns.BATCH_ROWS = 7
    try:
        assert columns.text_column(shuffled, field).to_pylist() == [row_text(r, field) for r in shuffled]
    finally:
        columns.BATCH_ROWS = old


def test_counts_and_normalisation_equal_python():
    texts = columns.text_column(_rows(seed=2), "all")
    py = texts.to_pylist()
    assert columns.word_counts(texts).tolist() == [len(t.split()) for t in py]
    assert columns.char_counts(texts).tolist() == [len(t) for t in py]
    for lower in (True, False):
        assert columns.normalised(texts, lower, normalise).to_pylist() == [normalise(t, lower) for t in py]
    ascii_only = [t.encode("ascii", "ignore").decode() for t in py]
    import pyarrow as pa

    assert columns.normalised(pa.array(ascii_only), True, normalise).to_pylist() == [normalise(t) for t in ascii_only]
    odd = ascii_only + ["", " ", "a", " a ", "\x1c\x1fb\x0bc ", None]
    sliced = pa.array(odd).slice(3)  # an offset into the buffers
    assert columns.word_counts(sliced).tolist() == [len((t or "").split()) for t in odd[3:]]


def test_python_whitespace_class_is_complete():
    assert all(c.isspace() for c in columns.PY_SPACE)
    assert len(columns.PY_SPACE) == sum(1 for c in range(0x110000) if chr(c).isspace())
    assert columns.word_counts(np.array(["a\x1cb\x85c\u3000d"], dtype=object)).tolist() == [4]
