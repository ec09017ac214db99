"""IFEval-style constraint verifier (``verifier: ifeval``).

The ground truth is JSON naming one constraint check and its arguments, in either form::

    {"func_name": "validate_word_constraint", "kwargs": {"N": 50, "quantifier": "at least"}}
    {"func_name": "validate_word_constraint", "N": 50, "quantifier": "at least", "keyword_list": null}

The second (flat, unused arguments null) is the layout of Tülu 3's RLVR data
(``allenai/RLVR-GSM-MATH-IF-Mixed-Constraints``); open-instruct's ``IFEvalVerifier`` drops the null
arguments and calls ``IF_FUNCTIONS_MAP[func_name](response, **kwargs)`` (methods.md §7). The check
names and argument names below are the same as there, so that data dispatches unchanged; the
checks themselves are written here from the IFEval constraint descriptions (Zhou et al. 2023,
"Instruction-Following Evaluation for Large Language Models", Table 1).

Why our own code: no installed package ships these checks. Deviation: ``validate_response_language``
(needs ``langdetect``, not a dependency) is not provided; a ground truth naming it, or any other
unknown check, raises :class:`IFEvalError` (a data error), never a silent 0.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

CHECKS: dict[str, Callable[..., bool]] = {}


class IFEvalError(ValueError):
    """A ground truth that names no known check, or gives it the wrong arguments."""


def _check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def _compare(count: int, N: int, quantifier: str, around: int) -> bool:
    if quantifier == "at least":
        return count >= N
    if quantifier == "at most":
        return count <= N
    if quantifier == "around":
        return abs(count - N) <= around
    raise IFEvalError(f"quantifier must be 'at least', 'at most' or 'around', not {quantifier!r}")


@_check
def validate_word_constraint(text: str, N: int, quantifier: str) -> bool:
    """Answer with at least / around (±10%, at least 1) / at most N words (whitespace-separated)."""
    return _compare(len(text.split()), N, quantifier, max(round(N * 0.1), 1))


@_check
def verify_sentence_constraint(text: str, N: int, quantifier: str) -> bool:
    """At least / around (±1) / at most N sentences (split after . ! ? followed by whitespace)."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    return _compare(len(sentences), N, quantifier, 1)


@_check
def verify_keywords(text: str, keyword_list: list[str]) -> bool:
    """Include every keyword (case-insensitive substring)."""
    low = text.lower()
    return all(k.lower() in low for k in keyword_list)


@_check
def verify_keyword_frequency(text: str, word: str, N: int) -> bool:
    """The word appears exactly N times as a whole word (case-insensitive)."""
    return sum(1 for w in re.findall(r"\b\w+\b", text.lower()) if w == word.lower()) == N


@_check
def validate_forbidden_words(text: str, forbidden_words: list[str]) -> bool:
    """None of the words occurs (case-insensitive substring)."""
    low = text.lower()
    return not any(w.lower() in low for w in forbidden_words)


@_check
def verify_letter_frequency(text: str, letter: str, N: int) -> bool:
    """The letter occurs exactly N times (case-sensitive)."""
    if len(letter) != 1:
        raise IFEvalError(f"letter must be one character, not {letter!r}")
    return text.count(letter) == N


@_check
def verify_paragraph_count(text: str, N: int) -> bool:
    """Exactly N non-empty paragraphs separated by the markdown divider ``* * *``."""
    cleaned = "\n".join(line.strip() for line in text.splitlines()).strip()
    parts = cleaned.split("* * *")
    return all(p.strip() for p in parts) and len(parts) == N


@_check
def validate_paragraphs(text: str, N: int, first_word: str, i: int) -> bool:
    """N paragraphs separated by blank lines, the i-th (1-based) starting with ``first_word``."""
    parts = text.split("\n\n")
    return len(parts) == N and 1 <= i <= N and parts[i - 1].strip().startswith(first_word)


@_check
def verify_bullet_points(text: str, N: int) -> bool:
    """Exactly N markdown bullet lines (starting with ``*`` or ``-``)."""
    return sum(1 for line in text.splitlines() if line.strip().startswith(("*", "-"))) == N


@_check
def verify_postscript(text: str, postscript_marker: str) -> bool:
    """A postscript starting with the marker (e.g. ``P.S.``) with some text after it."""
    at = text.find(postscript_marker)
    return at >= 0 and len(text[at:].strip()) > len(postscript_marker)


@_check
def validate_placeholders(text: str, N: int) -> bool:
    """At least N placeholders in square brackets, like ``[address]``."""
    return len(re.findall(r"\[(.*?)\]", text)) >= N


@_check
def validate_title(text: str) -> bool:
    """A title wrapped in double angular brackets, like ``<<poem of joy>>``."""
    return re.search(r"<<[^<>]+>>", text) is not None


@_check
def validate_choice(text: str, options: list[str]) -> bool:
    """The answer contains one of the options."""
    return any(str(o) in text for o in options)


@_check
def validate_highlighted_sections(text: str, N: int) -> bool:
    """At least N markdown-highlighted sections, like ``*highlighted section*``."""
    return len([m for m in re.findall(r"\*([^*\n]+)\*", text) if m.strip()]) >= N


@_check
def validate_sections(text: str, N: int, section_splitter: str) -> bool:
    """At least N sections, each marked ``<splitter> <number>`` (e.g. ``Section 1``)."""
    return len(re.findall(re.escape(section_splitter) + r"\s?\d+", text, flags=re.IGNORECASE)) >= N


@_check
def validate_json_format(text: str) -> bool:
    """The entire output is JSON (a markdown ```json fence around it is allowed)."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.S | re.I)
    try:
        json.loads(fenced.group(1) if fenced else body)
    except ValueError:
        return False
    return True


@_check
def validate_repeat_prompt(text: str, original_prompt: str) -> bool:
    """The answer starts by repeating the request verbatim."""
    return text.strip().startswith(original_prompt.strip())


@_check
def validate_two_responses(text: str) -> bool:
    """Two different responses separated by exactly one ``******``."""
    if text.count("******") != 1:
        return False
    first, second = (p.strip() for p in text.split("******"))
    return bool(first) and bool(second) and first != second


@_check
def validate_uppercase(text: str) -> bool:
    """All capital letters."""
    return text == text.upper()


@_check
def validate_lowercase(text: str) -> bool:
    """All lowercase letters, no capitals."""
    return text == text.lower()


@_check
def validate_frequency_capital_words(text: str, N: int, quantifier: str) -> bool:
    """All-capital words appear at least / around (±10%, at least 1) / at most N times."""
    return _compare(len(re.findall(r"\b[A-Z]{2,}\b", text)), N, quantifier, max(round(N * 0.1), 1))


@_check
def validate_end(text: str, end_phrase: str) -> bool:
    """The answer ends with this exact phrase (trailing whitespace ignored)."""
    return text.rstrip().endswith(end_phrase.strip())


@_check
def validate_quotation(text: str) -> bool:
    """The entire answer is wrapped in double quotes."""
    body = text.strip()
    return len(body) >= 2 and body.startswith('"') and body.endswith('"')


@_check
def validate_no_commas(text: str) -> bool:
    """No commas anywhere."""
    return "," not in text


def parse_constraint(ground_truth: str) -> tuple[str, dict[str, Any]]:
    """Ground truth JSON -> (check name, keyword arguments without nulls)."""
    try:
        spec = json.loads(ground_truth)
    except (TypeError, ValueError):
        raise IFEvalError(f"an ifeval ground truth is JSON {{func_name, kwargs}}; got {str(ground_truth)[:80]!r}") from None
    if not isinstance(spec, dict) or "func_name" not in spec:
        raise IFEvalError(f"an ifeval ground truth needs 'func_name'; got {str(ground_truth)[:80]!r}")
    name = spec.pop("func_name")
    kwargs = spec.pop("kwargs", None) or {}
    kwargs = {**{k: v for k, v in spec.items() if v is not None}, **{k: v for k, v in kwargs.items() if v is not None}}
    if name not in CHECKS:
        import difflib

        close = difflib.get_close_matches(str(name), list(CHECKS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise IFEvalError(f"unknown ifeval check {name!r}{hint} Known: {', '.join(sorted(CHECKS))}")
    return name, kwargs


def ifeval_score(completion: str, ground_truth: str) -> float:
    """1.0 when the completion satisfies the constraint, else 0.0."""
    name, kwargs = parse_constraint(ground_truth)
    try:
        return float(bool(CHECKS[name](completion, **kwargs)))
    except TypeError as exc:
        raise IFEvalError(f"ifeval check {name!r} got wrong arguments {sorted(kwargs)}: {exc}") from None


def parse_constraints(ground_truth: str) -> list[tuple[str, dict[str, Any]]]:
    """One constraint (an object) or several (a JSON list of objects: IFEval prompts carry 1-3)."""
    try:
        spec = json.loads(ground_truth)
    except (TypeError, ValueError):
        raise IFEvalError(f"an ifeval ground truth is JSON {{func_name, kwargs}}; got {str(ground_truth)[:80]!r}") from None
    items = spec if isinstance(spec, list) else [spec]
    return [parse_constraint(json.dumps(item)) for item in items]


def loose_variants(response: str) -> list[str]:
    """IFEval's loose reading (Zhou et al. 2023, section 3): the response, without its first line,
    without its last line, without both, and each of those with ``*`` removed (markdown emphasis)."""
    lines = response.split("\n")
    bases = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    out = []
    for b in bases + [b.replace("*", "") for b in bases]:
        if b not in out:
            out.append(b)
    return out


def follows(response: str, name: str, kwargs: dict[str, Any], loose: bool = False) -> bool:
    variants = loose_variants(response) if loose else [response]
    try:
        return any(v.strip() and bool(CHECKS[name](v, **kwargs)) for v in variants)
    except TypeError as exc:
        raise IFEvalError(f"ifeval check {name!r} got wrong arguments {sorted(kwargs)}: {exc}") from None
