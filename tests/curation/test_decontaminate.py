"""decontaminate: n-gram containment of eval items in training rows, exact mode, the report, bad input."""

import json

import pytest

from curation.rows import make_row, rows_to_dataset
from curation.steps.base import StepContext, StepError
from curation.steps.decontaminate import Decontaminate, DecontaminateParams

Q1 = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
      "for her friends every day with four. How many eggs does she sell?")
Q2 = "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?"
Q3 = "What is 2+2?"  # shorter than 8 words: matched by its whole word sequence


def _chat(u, a="Sure, here it is."):
    return make_row("chat", "train", messages=[{"role": "user", "content": u}, {"role": "assistant", "content": a}])


def _evalset():
    return rows_to_dataset([make_row("verifiable", "bench", prompt=[{"role": "user", "content": q}], ground_truth="1",
                                     verifier="gsm8k") for q in (Q1, Q2, Q3)])


def _decide(train, **kw):
    ev = _evalset()
    ctx = StepContext(source_loader=lambda name: {"bench": ev}[name])
    return Decontaminate(DecontaminateParams(against=["bench"], **kw), ctx).decide(rows_to_dataset(train)), ev


def test_verbatim_and_reformatted_leaks_are_caught():
    train = [
        _chat(Q1),                                                             # verbatim
        _chat("QUESTION: " + Q2.upper().replace(".", " ;") + "\nAnswer step by step."),  # other format + casing
        _chat("Below is an instruction. ### Instruction: solve this -- " + Q1.replace("'", "’") + " Thanks!"),
        _chat("Write a poem about ducks laying eggs every morning in the farm."),  # shares words, not 8-grams
        _chat("what is 2 + 2 ?"),                                              # short item, other spacing
        _chat("What is 2 times 3?"),
    ]
    d, ev = _decide(train)
    assert d.keep.tolist() == [False, False, False, True, False, True]
    assert d.reason[0] == f"ngram_overlap:bench:1.00:{ev[0]['id']}"
    assert d.reason[1].startswith("ngram_overlap:bench:1.00:") and d.reason[1].endswith(ev[1]["id"])
    assert d.reason[4].endswith(ev[2]["id"])
    assert d.score[0] == 1.0 and d.score[3] < 0.5
    rep = d.extras["contamination"]["bench"]
    assert rep["rows_hit"] == 4 and rep["eval_items_hit"] == 3 and rep["eval_items"] == 3
    assert rep["examples"][0]["eval_item_id"] == ev[0]["id"] and rep["examples"][0]["row_id"]


def test_partial_overlap_against_threshold():
    half = " ".join(Q1.split()[:16])  # the first ~half of the item
    train = [_chat("Intro text. " + half)]
    low, _ = _decide(train, threshold=0.9)
    high, _ = _decide(train, threshold=0.3)
    assert low.keep.tolist() == [True] and high.keep.tolist() == [False]
    assert 0.3 < low.score[0] < 0.9


def test_field_selects_the_compared_text():
    train = [_chat("Please help.", Q2)]  # the leak is in the response
    assert _decide(train, field="prompt")[0].keep.tolist() == [True]
    assert _decide(train, field="response")[0].keep.tolist() == [False]


def test_exact_mode_matches_normalised_whole_text_only():
    train = [_chat(Q2.lower().replace(",", "")), _chat("Question: " + Q2)]
    d, ev = _decide(train, mode="exact")
    assert d.keep.tolist() == [False, True]
    assert d.reason[0] == f"exact_match:bench:{ev[1]['id']}"


def test_missing_source_at_run_time_is_a_step_error():
    ctx = StepContext(source_loader=lambda name: {}[name])
    with pytest.raises(StepError, match="not defined"):
        Decontaminate(DecontaminateParams(against=["nope"]), ctx).decide(rows_to_dataset([_chat("x")]))


def test_reads_sources_joins_the_cache_key():
    assert Decontaminate.reads_sources(DecontaminateParams(against=["a", "b"])) == ["a", "b"]


def test_unknown_eval_source_is_a_recipe_error(cli, write_recipe):
    from tests.conftest import tiny_recipe

    r = tiny_recipe()
    r["selection"]["sft"] = [{"decontaminate": {"against": ["arith_test", "arith_tset"]}}]
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2, res.output
    assert "selection.sft[0].decontaminate.against[1]" in res.output
    assert "arith_test" in res.output and "Traceback" not in res.output


def test_bad_threshold_is_a_recipe_error(cli, write_recipe):
    from tests.conftest import tiny_recipe

    r = tiny_recipe()
    r["selection"]["sft"] = [{"decontaminate": {"against": ["arith_test"], "threshold": 0}}]
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "selection.sft[0].decontaminate.threshold" in res.output


def test_real_gsm8k_leaks_in_alpaca():
    from tests.conftest import needs_shared

    gsm = [json.loads(l) for l in needs_shared("gsm8k", "test.jsonl").read_text().splitlines()[:200]]
    alp = [a for a in json.loads(needs_shared("alpaca", "alpaca_5000.json").read_text())[:500] if a["output"].strip()]
    train = [_chat(a["instruction"] + ("\n" + a["input"] if a["input"] else ""), a["output"]) for a in alp]
    train += [_chat(f"Solve the following math word problem.\n\nProblem: {g['question'].lower()}\nThink step by step.")
              for g in gsm[:20]]
    ev = rows_to_dataset([make_row("verifiable", "gsm8k_test", prompt=[{"role": "user", "content": g["question"]}],
                                   ground_truth=g["answer"], verifier="gsm8k") for g in gsm])
    ctx = StepContext(source_loader=lambda name: ev)
    d = Decontaminate(DecontaminateParams(against=["gsm8k_test"]), ctx).decide(rows_to_dataset(train))
    assert (~d.keep[: len(alp)]).sum() == 0 and (~d.keep[len(alp):]).all()


def test_changed_numbers_still_match_but_templates_do_not():
    changed = Q1.replace("16", "23").replace("three", "3")  # every number of the question changed
    train = [_chat(changed), _chat("What is 7+9?")]  # the second shares only the short item's template
    d, _ = _decide(train)
    assert not d.keep[0] and d.keep[1]
    assert d.reason[0].startswith("ngram_overlap:bench:")
    off, _ = _decide(train, normalize_numbers=False)
    assert off.score[0] < d.score[0]  # each changed number broke every n-gram spanning it
    assert d.extras["normalize_numbers"] is True
