"""Canonical rows -> the dataset format each TRL trainer expects.

SFT takes conversational ``messages``: chat rows as they are; verifiable rows become the prompt
plus an assistant turn holding the worked solution when the source kept one (``metadata.solution``,
e.g. GSM8K) or else the ground truth; preference rows contribute prompt + chosen.
"""

from __future__ import annotations

import json

import datasets


class StageDataError(ValueError):
    pass


def to_sft(rows: datasets.Dataset) -> datasets.Dataset:
    kinds = set(rows["kind"])
    if "text" in kinds:
        raise StageDataError("an sft stage needs chat, verifiable or preference rows; this dataset has text rows "
                             "(use a `kind: pretrain` stage for plain text)")

    def convert(row):
        if row["kind"] == "chat":
            return {"messages": row["messages"]}
        if row["kind"] == "preference":
            return {"messages": row["prompt"] + row["chosen"]}
        solution = json.loads(row["metadata"] or "{}").get("solution")
        return {"messages": row["prompt"] + [{"role": "assistant", "content": solution or row["ground_truth"]}]}

    return rows.map(convert, remove_columns=rows.column_names, desc="sft format")


def to_text(rows: datasets.Dataset) -> datasets.Dataset:
    """Pretraining takes a ``text`` column. Text rows as they are; other kinds are refused (render
    chat data into text rows in a source if that is really wanted)."""
    kinds = set(rows["kind"])
    if kinds - {"text"}:
        raise StageDataError(f"a pretrain stage needs text rows; this dataset has {sorted(kinds - {'text'})} rows "
                             "(use a `kind: sft` stage for chat/verifiable data, or a source with `kind: text`)")
    empty = sum(1 for t in rows["text"] if not t)
    if empty == len(rows):
        raise StageDataError("every text row of this dataset is empty")
    rows = rows.filter(lambda r: bool(r["text"]), desc="drop empty text") if empty else rows
    return rows.select_columns(["text"])
