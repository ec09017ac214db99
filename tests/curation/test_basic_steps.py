"""exact_dedup and length: decisions and reasons."""

from curation.rows import make_row, rows_to_dataset
from curation.steps.base import Decisions, StepContext
from curation.steps.exact_dedup import ExactDedup, ExactDedupParams
from curation.steps.length import Length, LengthParams

import numpy as np
import pytest


def _chat(u, a):
    return make_row("chat", "s", messages=[{"role": "user", "content": u}, {"role": "assistant", "content": a}])


def test_exact_dedup_keeps_first_and_names_it():
    ds = rows_to_dataset([_chat("Hello  World", "x"), _chat("hello world", "x"), _chat("other", "x"), _chat("Hello World", "x")])
    d = ExactDedup(ExactDedupParams(), StepContext()).decide(ds)
    assert d.keep.tolist() == [True, False, True, False]
    assert d.reason[1] == f"duplicate_of:{ds[0]['id']}" and d.reason[3] == f"duplicate_of:{ds[0]['id']}"


def test_exact_dedup_on_prompt_only():
    ds = rows_to_dataset([_chat("q", "a1"), _chat("q", "a2")])
    assert ExactDedup(ExactDedupParams(field="prompt"), StepContext()).decide(ds).keep.tolist() == [True, False]
    assert ExactDedup(ExactDedupParams(field="all"), StepContext()).decide(ds).keep.tolist() == [True, True]


def test_upsampled_copies_are_not_duplicates():
    ds = rows_to_dataset([_chat("q", "a")])
    row = ds[0]
    copy = dict(row, id=row["id"] + "#1")
    import datasets

    both = datasets.Dataset.from_list([row, copy], features=ds.features)
    assert ExactDedup(ExactDedupParams(), StepContext()).decide(both).keep.tolist() == [True, True]


def test_length_chars_and_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    ds = rows_to_dataset([_chat("a", "b"), _chat("a" * 50, "b" * 50)])
    d = Length(LengthParams(unit="chars", max=20), StepContext()).decide(ds)
    assert d.keep.tolist() == [True, False] and d.reason[1].startswith("too_long:")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    step = Length(LengthParams(unit="tokens", min=6), StepContext(tokenizer_loader=lambda: tok))
    assert step.uses_tokenizer
    d = step.decide(ds)
    assert d.keep.tolist() == [False, True] and d.reason[0].startswith("too_short:")
    assert d.score[1] > d.score[0]


def test_decisions_require_reasons_for_drops():
    with pytest.raises(ValueError, match="without a reason"):
        Decisions(keep=np.array([True, False]))
