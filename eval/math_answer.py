"""MATH-style final answers: extraction from a completion, normalisation, equivalence.

Used by the ``boxed`` verifier (Tülu 3's MATH verifier, open-instruct ``ground_truth_utils.py``,
methods.md §7): the candidate answers of a completion are (1) the content of the last
``\\boxed{...}`` (or ``\\fbox{...}``), (2) the Minerva format "Final Answer: The final answer is
X. I hope it is correct." (Lewkowycz et al. 2022), and (3) the text between the last two ``$``;
the completion passes when any candidate is equivalent to the ground truth.

Equivalence follows the spirit of Hendrycks et al. 2021's ``is_equiv`` (``strip_string``): both
sides are normalised (``\\left``/``\\right``, ``\\!``, ``\\dfrac``/``\\tfrac`` -> ``\\frac``,
degrees, dollars, percent, trailing units after ``\\text{ ``, ``\\text{..}`` wrappers, short
``x =`` prefixes, ``\\sqrt3`` -> ``\\sqrt{3}``, ``\\frac12`` -> ``\\frac{1}{2}``, integer ``a/b``
-> ``\\frac{a}{b}``, thousands commas, spaces) and compared as strings; when that fails, both are
read as exact rationals (integers, decimals, ``\\frac{a}{b}``, ``a/b``, with sign) and compared as
numbers, so ``0.5`` equals ``\\frac{1}{2}``.

Why our own code: no installed package has it (``math-verify``/``latex2sympy`` are not
dependencies). Deviation from open-instruct: no symbolic (sympy) equivalence, so algebraically
equal but differently written expressions (``2\\sqrt{2}`` vs ``\\sqrt{8}``) do not match.
"""

from __future__ import annotations

import re
from fractions import Fraction


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces), or ``\\boxed X``."""
    at = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if at < 0:
        return None
    rest = text[at:]
    rest = rest[len("\\boxed"):] if rest.startswith("\\boxed") else rest[len("\\fbox"):]
    if rest.startswith(" "):  # "\boxed 5"
        return rest.strip().split("$")[0].split()[0] if rest.strip() else None
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, ch in enumerate(rest):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i]
    return None  # unbalanced


_MINERVA = re.compile(r"final answer is\s*(.+?)\s*(?:\.\s*I hope|$)", re.I | re.S)


def minerva_answer(text: str) -> str | None:
    """X in "The final answer is X. I hope it is correct." (last occurrence)."""
    found = _MINERVA.findall(text)
    if not found:
        return None
    ans = found[-1].strip()
    if ans.startswith("$") and ans.endswith("$") and len(ans) > 1:
        ans = ans.strip("$")
    return ans.rstrip(".").strip() or None


def last_dollar(text: str) -> str | None:
    """The text between the last two ``$``."""
    parts = text.split("$")
    if len(parts) < 3:
        return None
    return parts[-2].strip() or None


def candidates(completion: str) -> list[str]:
    out = []
    for fn in (last_boxed, minerva_answer, last_dollar):
        c = fn(completion)
        if c is not None and c not in out:
            out.append(c)
    return out


def _fix_fracs(s: str) -> str:
    # \frac12 -> \frac{1}{2}, \frac1{2} -> \frac{1}{2}, \frac{1}2 -> \frac{1}{2}
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    return s


def normalize(answer: str) -> str:
    s = answer.strip()
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    if "\\text{ " in s:  # trailing units: "5 \text{ cm}"
        s = s.split("\\text{ ")[0]
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    if s.count("=") == 1 and len(s.split("=")[0].strip()) <= 2:  # "x = 5" -> "5"
        s = s.split("=")[1]
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    if m:
        s = f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}"
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if s.startswith("."):
        s = "0" + s
    return s.rstrip(".")


def as_number(s: str) -> Fraction | None:
    """An exact rational for integers, decimals, ``\\frac{a}{b}`` and ``a/b`` (normalised input)."""
    sign = 1
    if s.startswith("-"):
        sign, s = -1, s[1:]
    try:
        if re.fullmatch(r"\d+(\.\d*)?|\.\d+", s):
            return sign * Fraction(s)
        m = re.fullmatch(r"\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}", s)
        if m and Fraction(m.group(2)) != 0:
            return sign * Fraction(m.group(1)) / Fraction(m.group(2))
    except (ValueError, ZeroDivisionError):
        return None
    return None


def is_equiv(a: str, b: str) -> bool:
    na, nb = normalize(a), normalize(b)
    if na == nb:
        return True
    x, y = as_number(na), as_number(nb)
    return x is not None and y is not None and x == y


def ground_truth_answer(ground_truth: str) -> str:
    """A MATH ground truth is either the answer or a full solution holding ``\\boxed{}``."""
    boxed = last_boxed(ground_truth)
    return boxed if boxed is not None else ground_truth
