"""IFEval constraint checks, dispatched from JSON ground truths (both layouts)."""

import json

import pytest

from eval.ifeval import IFEvalError, ifeval_score, parse_constraint
from eval.verifiers import get_verifier


def gt(func_name, **kwargs):
    return json.dumps({"func_name": func_name, "kwargs": kwargs})


@pytest.mark.parametrize("completion,truth,expected", [
    ("one two three four five", gt("validate_word_constraint", N=5, quantifier="at least"), 1.0),
    ("one two three", gt("validate_word_constraint", N=5, quantifier="at least"), 0.0),
    ("one two three", gt("validate_word_constraint", N=3, quantifier="at most"), 1.0),
    ("one two three four", gt("validate_word_constraint", N=3, quantifier="at most"), 0.0),
    ("a " * 11, gt("validate_word_constraint", N=10, quantifier="around"), 1.0),
    ("Apples and Pears are fruit.", gt("verify_keywords", keyword_list=["apples", "pears"]), 1.0),
    ("Apples only.", gt("verify_keywords", keyword_list=["apples", "pears"]), 0.0),
    ("no commas here", gt("validate_no_commas"), 1.0),
    ("one, two", gt("validate_no_commas"), 0.0),
    ('{"a": [1, 2]}', gt("validate_json_format"), 1.0),
    ('```json\n{"a": 1}\n```', gt("validate_json_format"), 1.0),
    ("{a: 1}", gt("validate_json_format"), 0.0),
    ("first\n* * *\nsecond\n* * *\nthird", gt("verify_paragraph_count", N=3), 1.0),
    ("first\n* * *\n\n* * *\nthird", gt("verify_paragraph_count", N=3), 0.0),
    ("* a\n* b\n- c", gt("verify_bullet_points", N=3), 1.0),
    ("* a\n* b", gt("verify_bullet_points", N=3), 0.0),
    ("That is all. Any other questions?", gt("validate_end", end_phrase="Any other questions?"), 1.0),
    ("Any other questions? No.", gt("validate_end", end_phrase="Any other questions?"), 0.0),
    ("all lower case", gt("validate_lowercase"), 1.0),
    ("Not lower", gt("validate_lowercase"), 0.0),
    ("ALL UPPER", gt("validate_uppercase"), 1.0),
    ("Intro\n\nSecond para", gt("validate_paragraphs", N=2, first_word="Second", i=2), 1.0),
    ("<<Ode>> text", gt("validate_title"), 1.0),
    ('"quoted"', gt("validate_quotation"), 1.0),
    ("yes\n******\nno", gt("validate_two_responses"), 1.0),
    ("body\nP.S. hello", gt("verify_postscript", postscript_marker="P.S."), 1.0),
    ("the cat and the dog", gt("verify_keyword_frequency", word="the", N=2), 1.0),
    ("Section 1 a Section 2 b", gt("validate_sections", N=2, section_splitter="Section"), 1.0),
    ("*one* and *two*", gt("validate_highlighted_sections", N=2), 1.0),
    ("Hi [name] at [address]", gt("validate_placeholders", N=2), 1.0),
])
def test_checks(completion, truth, expected):
    assert ifeval_score(completion, truth) == expected
    assert get_verifier("ifeval")(completion, truth) == expected


def test_flat_layout_with_nulls():
    """Tülu 3's RLVR data: arguments at the top level, unused ones null."""
    truth = json.dumps({"func_name": "validate_word_constraint", "N": 2, "quantifier": "at most",
                        "keyword_list": None, "end_phrase": None})
    assert parse_constraint(truth) == ("validate_word_constraint", {"N": 2, "quantifier": "at most"})
    assert ifeval_score("two words", truth) == 1.0


@pytest.mark.parametrize("truth,match", [
    ("not json", "JSON"),
    (json.dumps({"kwargs": {}}), "func_name"),
    (gt("validate_lowercse"), "did you mean 'validate_lowercase'"),
    (gt("validate_word_constraint", N=3), "wrong arguments"),
    (gt("validate_word_constraint", N=3, quantifier="exactly"), "quantifier"),
])
def test_bad_ground_truth_is_a_clear_error(truth, match):
    with pytest.raises(IFEvalError, match=match):
        ifeval_score("some text", truth)
