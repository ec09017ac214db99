"""``garbage``: drop rows with decoding debris: U+FFFD replacement characters (text that was not
valid UTF-8 when decoded), control characters, or a high share of non-printable characters.

Counted on ``field`` (default ``all``):

* ``replacement_char`` -- U+FFFD count above ``max_replacement_chars`` (default 0: any);
* ``control_char``     -- C0/C1 control characters other than tab, newline and carriage return
  (category Cc) above ``max_control_chars`` (default 0: any);
* ``non_printable``    -- share of characters that are Cc (other than tab/newline/CR), Cs
  (lone surrogates), Co (private use), Cn (unassigned) or U+FFFD, above ``max_non_printable_frac``
  (default 0.1). Format characters (Cf: zero-width joiners in emoji, soft hyphens) and non-ASCII
  spaces are ordinary text and not counted.

Checked in that order; the reason is ``<code>:<count or fraction>``. Score: the non-printable
fraction. Similar in spirit to the character-ratio filters of Gopher / C4 / Data-Juicer
(``special_characters_filter``); the exact rules here are ours.

Row-local and columnar: an ASCII row's non-printable count is one Arrow regex count (its only
such characters are C0 controls and DEL); other rows, and the reasons of flagged rows, in Python.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import numpy as np
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from curation.columns import char_counts, text_column
from curation.steps import STEPS
from curation.steps.base import Decisions, Step

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BAD_CATEGORIES = {"Cc", "Cs", "Co", "Cn"}
_ASCII_BAD = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # non_printable_count of an ASCII string counts these


class GarbageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: Literal["all", "prompt", "response"] = "all"
    max_replacement_chars: int = Field(0, ge=0)
    max_control_chars: int = Field(0, ge=0)
    max_non_printable_frac: float = Field(0.1, ge=0.0, le=1.0)


def non_printable_count(text: str) -> int:
    stripped = text.replace("\n", "").replace("\t", "").replace("\r", "").replace(" ", "")
    if stripped.isprintable() and "\ufffd" not in stripped:  # fast path: the usual case
        return 0
    return sum(1 for c in stripped if c == "\ufffd" or unicodedata.category(c) in _BAD_CATEGORIES)


@STEPS.register("garbage")
class Garbage(Step):
    name = "garbage"
    version = "1"
    Params = GarbageParams
    row_local = True

    def decide_batch(self, table) -> Decisions:
        p = self.params
        texts = text_column(table, p.field)
        n = len(texts)
        bad = np.asarray(pc.count_substring_regex(texts, _ASCII_BAD), dtype=np.int64)
        non_ascii = np.flatnonzero(~np.asarray(pc.string_is_ascii(texts), dtype=bool))
        if len(non_ascii):
            bad[non_ascii] = [non_printable_count(t) for t in texts.take(non_ascii).to_pylist()]
        score = bad / np.maximum(char_counts(texts), 1)
        keep = np.ones(n, dtype=bool)
        reason: list[str | None] = [None] * n
        flagged = np.flatnonzero(bad)
        for i, t in zip(flagged.tolist(), texts.take(flagged).to_pylist()):
            repl = t.count("\ufffd")
            ctrl = len(_CONTROL.findall(t))
            if repl > p.max_replacement_chars:
                reason[i] = f"replacement_char:{repl}"
            elif ctrl > p.max_control_chars:
                reason[i] = f"control_char:{ctrl}"
            elif score[i] > p.max_non_printable_frac:
                reason[i] = f"non_printable:{score[i]:.3f}"
            keep[i] = reason[i] is None
        return Decisions(keep=keep, score=score, reason=reason, extras={"field": p.field})
