"""Verifiers: gsm8k/math (Tülu 3 last-number rule), exact, boxed (MATH), registry errors."""

import pytest

from curation.registry import UnknownName
from eval.math_answer import candidates, is_equiv, last_boxed, normalize
from eval.verifiers import get_verifier


@pytest.mark.parametrize("completion,truth,expected", [
    ("The answer is 1,234.", "1234", 1.0),
    ("She pays $1,234,567 in total", "1234567", 1.0),
    ("so 3 + 4 = 7", "7", 1.0),
    ("7 apples, then 8", "7", 0.0),            # last number wins
    ("-5", "-5", 1.0),                         # open-instruct's regex loses this sign (see eval/verifiers.py)
    ("It was -3 degrees.\n#### -3", "-3", 1.0),
    ("-2.5", "-2.5", 1.0),
    ("8-3", "3", 1.0),                         # a minus between numbers is an operator, not a sign
    ("(2)-3", "3", 1.0),
    ("+5", "5", 1.0),
    ("72.0", "72", 0.0),                       # string compare, as in open-instruct
    ("no number here", "3", 0.0),
    ("#### 18", "18", 1.0),
])
def test_gsm8k(completion, truth, expected):
    assert get_verifier("gsm8k")(completion, truth) == expected
    assert get_verifier("math")(completion, truth) == expected


def test_exact():
    assert get_verifier("exact")("  yes \n", "yes") == 1.0
    assert get_verifier("exact")("yes.", "yes") == 0.0


def test_last_boxed_balanced_braces():
    assert last_boxed(r"first \boxed{1} then \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert last_boxed(r"\fbox{x^{2}}") == "x^{2}"
    assert last_boxed(r"\boxed 5$") == "5"
    assert last_boxed("nothing") is None
    assert last_boxed(r"\boxed{unclosed") is None


def test_candidates_three_formats():
    minerva = "So x=3.\nFinal Answer: The final answer is $\\frac{3}{4}$. I hope it is correct."
    assert r"\frac{3}{4}" in candidates(minerva)
    assert candidates("the result is $x^2+1$ indeed") == ["x^2+1"]


@pytest.mark.parametrize("a,b", [
    (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    ("0.5", r"\frac12"),
    ("1/2", r"\frac{1}{2}"),
    (r"\left(1,2\right)", "(1, 2)"),
    (r"90^\circ", "90"),
    (r"5 \text{ cm}", "5"),
    (r"\$10", "10"),
    ("x = 4", "4"),
    (r"\sqrt3", r"\sqrt{3}"),
    ("1,000", "1000"),
    (".5", "0.5"),
    (r"\text{(A)}", "(A)"),
])
def test_equivalent(a, b):
    assert is_equiv(a, b), (normalize(a), normalize(b))


@pytest.mark.parametrize("a,b", [("0.51", r"\frac12"), ("2", "3"), (r"\sqrt{2}", r"\sqrt{3}"), ("(1,2)", "(2,1)")])
def test_not_equivalent(a, b):
    assert not is_equiv(a, b)


def test_boxed_verifier():
    v = get_verifier("boxed")
    assert v(r"We get $x = 2$, so the answer is \boxed{\dfrac{3}{6}}.", r"\frac{1}{2}") == 1.0
    assert v(r"Final Answer: The final answer is $12$. I hope it is correct.", "12") == 1.0
    assert v(r"the total is $14$", "12") == 0.0
    # a ground truth given as a full MATH solution: its last \boxed{} is the answer
    assert v(r"\boxed{7}", r"Adding, we get $3+4=\boxed{7}$.") == 1.0
    assert v("no final answer", "7") == 0.0


def test_unknown_verifier_is_clear():
    with pytest.raises(UnknownName) as exc:
        get_verifier("gsm8")
    assert "did you mean 'gsm8k'" in str(exc.value)
    with pytest.raises(UnknownName) as exc:
        get_verifier("no_such_module_xyz:fn")
    assert "cannot import" in str(exc.value)


def test_gsm8k_reference_solutions_all_pass():
    """The real GSM8K test set, loaded the product's way: every reference solution verifies."""
    import json

    from tests.conftest import needs_shared
    from curation.sources import load_source
    from recipe.schema import FileSource

    path = needs_shared("gsm8k", "test.jsonl")
    rows = load_source("gsm8k_test", FileSource(path=str(path), format="gsm8k")).rows
    verify = get_verifier("gsm8k")
    failed = [r["id"] for r in rows if verify(json.loads(r["metadata"])["solution"], r["ground_truth"]) != 1.0]
    assert len(rows) == 1319 and failed == []
