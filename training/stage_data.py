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
