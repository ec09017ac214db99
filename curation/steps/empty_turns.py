"""``empty_turns``: drop rows with empty, whitespace-only or (optionally) truncated turns.

Rows built by the loaders already reject empty turns (``curation.rows.make_row`` quarantines them),
but rows can still arrive with turns that are empty in effect: only invisible characters
(zero-width spaces, BOM, NBSP), or a chat whose last turn is not the assistant's. With
``check_truncation: true`` the final response is also checked for truncation, the usual sign of a
generation cut at a token limit: it ends on a letter or digit (no terminal punctuation, closing
bracket/quote or code fence) AND has at least ``min_words_for_truncation`` words -- short answers
such as "Paris" or "42" legitimately lack a full stop.

Reason codes: ``empty_turn:<field>[<i>]`` (``field`` is messages/prompt/chosen/rejected),
``no_assistant_turn``, ``empty_ground_truth``, ``truncated_response:<last 20 chars>``.
Score: the number of problems found in the row (0 for kept rows).

Row-local: the checks are per-row Python over the turn columns of each shard (``to_pylist`` of
the columns it reads, not row-by-row access to a dataset).
"""

from __future__ import annotations

import re

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curation.steps import STEPS
from curation.steps.base import Decisions, Step

# whitespace plus the invisible format characters that make a turn look non-empty
_INVISIBLE = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff\u00ad]+")


class EmptyTurnsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    check_truncation: bool = False
    min_words_for_truncation: int = Field(20, ge=1)
    terminal: str = Field(".!?…。！？\"'”’)]}>`*:;", description="characters a complete response may end with")


def _blank(text) -> bool:
    return text is None or not _INVISIBLE.sub("", text)


@STEPS.register("empty_turns")
class EmptyTurns(Step):
    name = "empty_turns"
    version = "1"
    Params = EmptyTurnsParams
    row_local = True
    per_row_python = True
    _COLUMNS = ("kind", "messages", "prompt", "chosen", "rejected", "ground_truth", "text")

    def _problems(self, row) -> list[str]:
        p = self.params
        out: list[str] = []
        kind = row["kind"]
        fields = {"chat": ["messages"], "preference": ["prompt", "chosen", "rejected"],
                  "verifiable": ["prompt"]}.get(kind, [])
        for f in fields:
            for i, m in enumerate(row[f] or []):
                if _blank(m["content"]):
                    out.append(f"empty_turn:{f}[{i}]")
        if kind == "text" and _blank(row["text"]):
            out.append("empty_turn:text")
        if kind == "chat" and (not row["messages"] or row["messages"][-1]["role"] != "assistant"):
            out.append("no_assistant_turn")
        if kind == "verifiable" and _blank(row["ground_truth"]):
            out.append("empty_ground_truth")
        if p.check_truncation:
            final = None
            if kind == "chat" and row["messages"] and row["messages"][-1]["role"] == "assistant":
                final = row["messages"][-1]["content"]
            elif kind == "preference" and row["chosen"]:
                final = row["chosen"][-1]["content"]
            elif kind == "text":
                final = row["text"]
            if final and not _blank(final):
                end = final.rstrip()
                if end.endswith("```"):
                    pass
                elif end[-1].isalnum() and len(end.split()) >= p.min_words_for_truncation and end[-1] not in p.terminal:
                    out.append("truncated_response:" + end[-20:].replace("\n", " ").replace(":", " "))
        return out

    def decide_batch(self, table) -> Decisions:
        n = table.num_rows
        keep = np.ones(n, dtype=bool)
        score = np.zeros(n)
        reason: list[str | None] = [None] * n
        rows = table.select([c for c in self._COLUMNS if c in table.column_names]).to_pylist()
        for i, row in enumerate(rows):
            problems = self._problems({c: row.get(c) for c in self._COLUMNS})
            if problems:
                keep[i] = False
                score[i] = len(problems)
                reason[i] = problems[0]
        return Decisions(keep=keep, score=score, reason=reason,
                         extras={"check_truncation": self.params.check_truncation})
