"""Verifiers: score a completion against a row's ground truth (1.0 pass, 0.0 fail).

``math`` / ``gsm8k`` follow Tülu 3's GSM8K verifier (open-instruct ``ground_truth_utils.py``):
remove digit-group commas, take the last match of ``[-+]?\\d*\\.\\d+|\\d+``, and compare it with
the ground truth as a lower-cased string (so "72.0" does not match "72", as there). Deviation: in
open-instruct's regex the sign binds only to decimals, so a negative integer answer ("#### -3")
can never match; here a leading ``-``/``+`` belongs to any number it is not a binary operator for
(not preceded by a letter, digit or ``)``), and a ``+`` sign is dropped before comparing. Measured:
GSM8K test reference solutions 1317/1319 -> 1319/1319 (benchmarks/gsm8k_verifier.py). ``exact``
compares stripped strings. ``boxed`` is Tülu 3's MATH verifier (last ``\\boxed{}``, Minerva
"final answer is", last ``$...$``; normalisation and equivalence in :mod:`eval.math_answer`).
``ifeval`` checks an IFEval-style constraint given as JSON ``{func_name, kwargs}``
(:mod:`eval.ifeval`). A user verifier is a dotted path to ``fn(completion, ground_truth)``.
"""

from __future__ import annotations

import re
from typing import Callable

from curation.registry import Registry

Verifier = Callable[[str, str], float]
VERIFIERS: Registry = Registry("verifier")

_THOUSANDS = re.compile(r"(\d),(\d{3})(?!\d)")
_NUMBER = re.compile(r"(?:(?<![\w)])[-+])?(?:\d*\.\d+|\d+)")


def last_number(text: str) -> str | None:
    """The last number in ``text`` after removing thousands separators ("1,234" -> "1234")."""
    prev = None
    while prev != text:  # "1,234,567" needs two passes
        prev, text = text, _THOUSANDS.sub(r"\1\2", text)
    found = _NUMBER.findall(text)
    return found[-1] if found else None


@VERIFIERS.register("math")
@VERIFIERS.register("gsm8k")
def gsm8k_verifier(completion: str, ground_truth: str) -> float:
    answer = last_number(completion)
    if answer is None:
        return 0.0
    truth = ground_truth.replace(",", "").strip().lower()
    return float(answer.lstrip("+").lower() == truth.lstrip("+"))


@VERIFIERS.register("exact")
def exact_verifier(completion: str, ground_truth: str) -> float:
    return float(completion.strip() == ground_truth.strip())


@VERIFIERS.register("boxed")
def boxed_verifier(completion: str, ground_truth: str) -> float:
    from eval.math_answer import candidates, ground_truth_answer, is_equiv

    truth = ground_truth_answer(ground_truth)
    return float(any(is_equiv(c, truth) for c in candidates(completion)))


@VERIFIERS.register("ifeval")
def ifeval_verifier(completion: str, ground_truth: str) -> float:
    from eval.ifeval import ifeval_score

    return ifeval_score(completion, ground_truth)


def get_verifier(name: str) -> Verifier:
    return VERIFIERS.get(name)


def check_verifier_name(name: str, context: str = "") -> None:
    """ValueError (a recipe error at the key) unless ``name`` is a registered verifier or an importable
    dotted path to a function ``(completion, ground_truth) -> float``."""
    from curation.registry import UnknownName

    try:
        fn = VERIFIERS.get(name)
    except UnknownName as exc:
        raise ValueError(f"{context}{exc}") from None
    if not callable(fn) or isinstance(fn, type):
        raise ValueError(f"{context}verifier {name!r} is not a function (completion, ground_truth) -> score")


def extract_answer(verifier: str, completion: str) -> str | None:
    """The answer a verifier reads from a completion (for the eval ledger and majority voting):
    the last number for ``math``/``gsm8k``, the normalised final answer for ``boxed``, the stripped
    text for ``exact``; None where a verifier checks the whole text (``ifeval``, user verifiers)."""
    if verifier in ("math", "gsm8k"):
        answer = last_number(completion)
        return None if answer is None else answer.lstrip("+").lower()
    if verifier == "boxed":
        from eval.math_answer import candidates, normalize

        found = candidates(completion)
        return normalize(found[0]) if found else None
    if verifier == "exact":
        return completion.strip()
    return None
