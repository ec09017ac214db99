"""response_length, repetition (Gopher), empty_turns, garbage: decisions, reason codes, scores."""

import datasets

from curation.rows import FEATURES, make_row, rows_to_dataset
from curation.steps.base import StepContext
from curation.steps.empty_turns import EmptyTurns, EmptyTurnsParams
from curation.steps.garbage import Garbage, GarbageParams
from curation.steps.repetition import Repetition, RepetitionParams, repetition_signals
from curation.steps.response_length import ResponseLength, ResponseLengthParams


def _chat(u, a):
    return make_row("chat", "s", messages=[{"role": "user", "content": u}, {"role": "assistant", "content": a}])


def _raw(**row):
    """A row that bypasses make_row's checks (as rows from a user step or plug-in source could)."""
    base = {k: None for k in FEATURES}
    base.update(id=row.pop("id", "r"), source="s", metadata="{}")
    base.update(row)
    return base


def test_response_length_words_and_reasons():
    ds = rows_to_dataset([_chat("a long prompt " * 20, "short"), _chat("q", "one two three four"), _chat("q", "w " * 50)])
    d = ResponseLength(ResponseLengthParams(unit="words", min=2, max=10), StepContext()).decide(ds)
    assert d.keep.tolist() == [False, True, False]
    assert d.reason[0] == "response_too_short:1<2" and d.reason[2] == "response_too_long:50>10"
    assert d.score.tolist() == [1, 4, 50]


def test_gopher_defaults_are_table_a1():
    p = RepetitionParams()
    assert (p.dup_line_frac, p.dup_para_frac, p.dup_line_char_frac, p.dup_para_char_frac) == (0.30, 0.30, 0.20, 0.20)
    assert p.top_ngram_char_frac == {2: 0.20, 3: 0.18, 4: 0.16}
    assert p.dup_ngram_char_frac == {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


def test_repetition_signals_values():
    text = "a b\na b\nc d"
    sig = {c: v for c, v, _ in repetition_signals(text, RepetitionParams())}
    assert sig["dup_line_frac"] == 1 / 3
    assert sig["dup_line_char_frac"] == 3 / len(text)
    words = " ".join(["alpha beta gamma delta epsilon"] * 4)
    sig = {c: v for c, v, _ in repetition_signals(words, RepetitionParams())}
    # after the first 5 words every 5-gram repeats; the scan skips past each: 3 repeats of 30 characters
    assert abs(sig["dup_5gram_char_frac"] - 3 * 30 / len(words)) < 1e-9


def test_repetition_drops_looping_answers_and_keeps_normal_ones():
    loop = "I am sorry, I cannot help with that. " * 8
    normal = ("Photosynthesis converts light energy into chemical energy. Plants absorb carbon dioxide and water, "
              "and using sunlight they produce glucose and oxygen. The process happens in chloroplasts.")
    lines = "\n".join(["- buy milk", "- buy milk", "- buy milk", "- call mom"])
    d = Repetition(RepetitionParams(), StepContext()).decide(rows_to_dataset([_chat("q", loop), _chat("q", normal), _chat("q", lines)]))
    assert d.keep.tolist() == [False, True, False]
    assert d.reason[0].split(":")[0] in {"top_2gram_char_frac", "dup_5gram_char_frac", "top_3gram_char_frac", "top_4gram_char_frac"}
    assert d.reason[2].startswith("dup_line_frac:")
    assert d.score[0] > 1 and d.score[1] < 1


def test_empty_turns_and_truncation():
    rows = [
        _raw(id="a", kind="chat", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\u200b \n"}]),
        _raw(id="b", kind="chat", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there."}]),
        _raw(id="c", kind="chat", messages=[{"role": "user", "content": "hi"}]),
        _raw(id="d", kind="chat", messages=[{"role": "user", "content": "Explain"},
                                             {"role": "assistant", "content": "The reason is that " + "many words " * 12 + "and then the"}]),
        _raw(id="e", kind="chat", messages=[{"role": "user", "content": "Capital?"}, {"role": "assistant", "content": "Paris"}]),
        _raw(id="f", kind="preference", prompt=[{"role": "user", "content": "q"}], chosen=[{"role": "assistant", "content": " "}],
             rejected=[{"role": "assistant", "content": "no"}]),
    ]
    ds = datasets.Dataset.from_list(rows, features=FEATURES)
    d = EmptyTurns(EmptyTurnsParams(), StepContext()).decide(ds)
    assert d.keep.tolist() == [False, True, False, True, True, False]
    assert d.reason[0] == "empty_turn:messages[1]" and d.reason[2] == "no_assistant_turn"
    assert d.reason[5] == "empty_turn:chosen[0]"
    d = EmptyTurns(EmptyTurnsParams(check_truncation=True), StepContext()).decide(ds)
    assert d.keep.tolist() == [False, True, False, False, True, False]
    assert d.reason[3].startswith("truncated_response:")


def test_garbage_replacement_control_and_nonprintable():
    ds = rows_to_dataset([
        _chat("ok", "Caf\ufffd au lait"),
        _chat("ok", "bell\x07 here"),
        _chat("ok", "Hello 👋🏽 café\u00a0naïve \u200d fine"),
        _chat("ok", "x\ue000\ue001\ue002\ue003"),  # private-use characters
    ])
    d = Garbage(GarbageParams(), StepContext()).decide(ds)
    assert d.keep.tolist() == [False, False, True, False]
    assert d.reason[0] == "replacement_char:1" and d.reason[1] == "control_char:1"
    assert d.reason[3].startswith("non_printable:") and d.score[2] == 0.0
    d = Garbage(GarbageParams(max_replacement_chars=1), StepContext()).decide(ds)
    assert d.keep[0]
