"""``repetition``: Gopher's repetition filter (Rae et al. 2021, "Scaling Language Models: Methods,
Analysis & Insights from Training Gopher", appendix A.1.1 and Table A1).

For a text of ``L`` characters, with lines split on newlines, paragraphs on blank lines and words
on whitespace, a row is dropped when any of these exceeds its threshold (defaults = Table A1):

============================================  ==========  ===========================
signal                                        default     reason code
============================================  ==========  ===========================
duplicate lines / lines                       0.30        ``dup_line_frac``
duplicate paragraphs / paragraphs             0.30        ``dup_para_frac``
chars in duplicate lines / L                  0.20        ``dup_line_char_frac``
chars in duplicate paragraphs / L             0.20        ``dup_para_char_frac``
chars in the most frequent n-gram / L, n=2,3,4  0.20, 0.18, 0.16  ``top_<n>gram_char_frac``
chars in duplicated n-grams / L, n=5..10      0.15 ... 0.10  ``dup_<n>gram_char_frac``
============================================  ==========  ===========================

"Duplicate" counts every occurrence after the first. For duplicated n-grams, characters covered by
overlapping repeated n-grams count once (the scan skips past a repeat, as datatrove's
``GopherRepetitionFilter`` does). The top n-gram signal only counts an n-gram that occurs at least
twice. Reason: ``<code>:<value>><threshold>`` for the first signal over its threshold, in the
table's order. Score: the largest ``value / threshold`` over all signals (>= 1 means dropped).

Applied to ``field`` (default ``response``: repetition is a failure mode of generated answers).
Gopher set these for web documents; short chat turns rarely trip them, and rows with fewer than
``min_words`` words are not judged (score 0), since fractions of a few words are noise.

Row-local; the signals are per-row Python (the algorithm is), made cheap without changing a value:
n-grams are tuples of words; since an n-gram can only repeat where its (n-1)-gram prefix does,
the scan stops at the first n with no repeated n-gram (every larger n then scores 0); and a text
with no newline and no word twice has every signal 0 without computing any. With numba
(``recipe-kit[fast]``) the ASCII rows with no newline and no repeated n-gram of the smallest n the
options name (99% of ``benchmarks/card_scale.py``'s pool) are found by one compiled pass over the
bytes (``curation.kernels``) and never reach Python; the rows left are judged as before, so the
decisions are the same (a test), and the step then runs in the runner's process rather than on
its workers.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from curation import kernels
from curation.columns import ASCII_SPACE_BYTES, text_column
from curation.shingles import NGRAM_MULT, utf8_buffers
from curation.steps import STEPS
from curation.steps.base import Decisions, Step

_PARA = re.compile(r"\n\s*\n")
_LINE = re.compile(r"\n+")
_BIG = 1e6  # score of a signal whose threshold is 0 and value is not

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]  # a share of a text's characters


class RepetitionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: Literal["all", "prompt", "response"] = "response"
    dup_line_frac: float = Field(0.30, ge=0.0, le=1.0)
    dup_para_frac: float = Field(0.30, ge=0.0, le=1.0)
    dup_line_char_frac: float = Field(0.20, ge=0.0, le=1.0)
    dup_para_char_frac: float = Field(0.20, ge=0.0, le=1.0)
    top_ngram_char_frac: dict[int, Fraction] = Field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    dup_ngram_char_frac: dict[int, Fraction] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    min_words: int = Field(0, ge=0)


def _dup_stats(parts: list[str]) -> tuple[int, int]:
    """(number of duplicate elements, characters in them), first occurrences excluded."""
    seen: set[str] = set()
    n = chars = 0
    for x in parts:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def _ngrams(words: list[str], n: int) -> list[tuple]:
    return list(zip(*(words[i:] for i in range(n))))


def _top_ngram_chars(grams: list[tuple], n: int) -> int:
    """Characters of the most frequent n-gram (joined by spaces) times its count; 0 unless it repeats.
    Ties go to the n-gram seen first (``Counter.most_common``)."""
    if not grams:
        return 0
    gram, count = Counter(grams).most_common(1)[0]
    return (sum(len(w) for w in gram) + n - 1) * count if count > 1 else 0


def _dup_ngram_chars(grams: list[tuple], n: int) -> int:
    seen: set[tuple] = set()
    chars, i = 0, 0
    while i < len(grams):
        gram = grams[i]
        if gram in seen:
            chars += sum(len(w) for w in gram) + n - 1
            i += n  # skip the repeat: overlapping repeated n-grams count their characters once
        else:
            seen.add(gram)
            i += 1
    return chars


def _ngram_signals(words: list[str], p: RepetitionParams) -> dict[tuple[str, int], int]:
    """{("top"|"dup", n): characters} for every n the options name; n past the first n whose
    n-grams are all distinct score 0 without a scan."""
    wanted = sorted(set(p.top_ngram_char_frac) | set(p.dup_ngram_char_frac))
    out: dict[tuple[str, int], int] = {}
    repeats = len(set(words)) < len(words)  # an n-gram (n >= 2) can only repeat if a word does
    for n in wanted:
        grams = _ngrams(words, n) if repeats else []
        if repeats and len(set(grams)) == len(grams):
            repeats, grams = False, []
        if n in p.top_ngram_char_frac:
            out[("top", n)] = _top_ngram_chars(grams, n) if repeats else 0
        if n in p.dup_ngram_char_frac:
            out[("dup", n)] = _dup_ngram_chars(grams, n) if repeats else 0
    return out


def repetition_signals(text: str, p: RepetitionParams, words: list[str] | None = None) -> list[tuple[str, float, float]]:
    """[(code, value, threshold)] in Table A1 order (``words``: ``text.split()``, when already split)."""
    L = max(len(text), 1)
    lines = [l for l in _LINE.split(text.strip()) if l.strip()]
    paras = [q for q in _PARA.split(text.strip()) if q.strip()]
    words = text.split() if words is None else words
    dl, dlc = _dup_stats(lines)
    dp, dpc = _dup_stats(paras)
    out = [
        ("dup_line_frac", dl / max(len(lines), 1), p.dup_line_frac),
        ("dup_para_frac", dp / max(len(paras), 1), p.dup_para_frac),
        ("dup_line_char_frac", dlc / L, p.dup_line_char_frac),
        ("dup_para_char_frac", dpc / L, p.dup_para_char_frac),
    ]
    grams = _ngram_signals(words, p)
    out += [(f"top_{n}gram_char_frac", grams[("top", n)] / L, t) for n, t in sorted(p.top_ngram_char_frac.items())]
    out += [(f"dup_{n}gram_char_frac", grams[("dup", n)] / L, t) for n, t in sorted(p.dup_ngram_char_frac.items())]
    return out


def _rows_to_judge(column: pa.ChunkedArray, p: RepetitionParams, min_words: int) -> np.ndarray:
    """Indices of the rows whose signals need computing: every row but the ASCII ones whose signals are
    all 0 or that are not judged, found by a compiled pass over the bytes (``curation.kernels``)
    instead of a ``split`` and a ``set`` per row: fewer than ``min_words`` words, or no newline (one
    line, one paragraph: the line and paragraph signals are 0) and no repeated n-gram for the
    smallest n the options name (an n-gram repeats only where its (n-1)-gram prefix does, so every
    n-gram signal is 0 too). A hash shared by two different n-grams only sends a row to the loop,
    which then decides it."""
    data, offsets = utf8_buffers(column)
    ascii_rows = np.asarray(pc.string_is_ascii(column.fill_null("")), dtype=bool)
    rows = np.flatnonzero(ascii_rows)
    smallest = min([*p.top_ngram_char_frac, *p.dup_ngram_char_frac], default=1)
    counts, repeated = kernels.compiled().ascii_gram_repeats(data, offsets, rows, ASCII_SPACE_BYTES, NGRAM_MULT[:max(1, smallest)])
    newline = np.asarray(pc.match_substring(column.take(pa.array(rows)), "\n"), dtype=bool)
    judge = ~ascii_rows
    judge[rows] = (counts >= min_words) & (newline | repeated)
    return np.flatnonzero(judge)


@STEPS.register("repetition")
class Repetition(Step):
    name = "repetition"
    version = "1"
    Params = RepetitionParams
    row_local = True
    text_only = True

    @property
    def per_row_python(self) -> bool:  # with the kernels only the rows the prefilter cannot clear are looped over
        return not kernels.enabled()

    def decide_batch(self, table) -> Decisions:
        p = self.params
        column = text_column(table, p.field)
        n = len(column)
        keep = np.ones(n, dtype=bool)
        score = np.zeros(n)
        reason: list[str | None] = [None] * n
        min_words = max(p.min_words, 1)
        # the prefilter when it pays: the loop's split and set per row cost 20-35 ns a byte here, in this one
        # process, and the runner decides a table here in up to 4 shards (row_local.shards): judged by the table
        judged = _rows_to_judge(column, p, min_words) if kernels.use(4 * 20e-9 * column.nbytes) else None
        texts = column.to_pylist() if judged is None else column.take(pa.array(judged)).to_pylist()
        for i, text in zip(range(n) if judged is None else judged.tolist(), texts):
            words = text.split()
            if len(words) < min_words:
                continue
            if "\n" not in text and len(set(words)) == len(words):
                continue  # one line, one paragraph, no word twice: every signal is 0, so score 0, kept
            signals = repetition_signals(text, p, words)
            score[i] = max((v / t if t > 0 else (_BIG if v > 0 else 0.0)) for _, v, t in signals)
            for code, value, thr in signals:
                if value > thr:
                    keep[i] = False
                    reason[i] = f"{code}:{value:.3f}>{thr:g}"
                    break
        return Decisions(keep=keep, score=score, reason=reason, extras={"field": p.field})

    def summarise(self, decisions: Decisions) -> dict:
        counts = Counter(r.split(":", 1)[0] for r in decisions.reason if r)
        return {"field": self.params.field, "dropped_by_signal": dict(counts)}
