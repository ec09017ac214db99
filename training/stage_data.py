"""Canonical rows -> the dataset format each TRL trainer expects.

SFT takes conversational ``messages``: chat rows as they are; verifiable rows become the prompt
plus an assistant turn holding the worked solution when the source kept one (``metadata.solution``,
e.g. GSM8K) or else the ground truth; preference rows contribute prompt + chosen.

DPO takes TRL's conversational preference format (``prompt``, ``chosen``, ``rejected`` message
lists): preference rows as they are; verifiable rows only through the stage's ``pairs:`` option
(``training/pairs.py`` builds the pairs first). RLVR (GRPO) takes ``prompt`` plus the columns the
reward reads (``ground_truth``, ``verifier``, ``id``). :func:`check_stage_data` runs every check
that does not need the model, so the runner can refuse a bad stage before any stage trains.
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


def to_preference(rows: datasets.Dataset) -> datasets.Dataset:
    """Preference rows -> TRL conversational preference columns (``prompt``, ``chosen``, ``rejected``)."""
    kinds = set(rows["kind"])
    if kinds - {"preference"}:
        raise StageDataError(_dpo_kinds_message(kinds))
    return rows.select_columns(["prompt", "chosen", "rejected"])


def _dpo_kinds_message(kinds: set[str]) -> str:
    bad = sorted(kinds - {"preference"})
    hint = ("; verifiable rows become pairs with the stage option `pairs: {rejected: perturb}` (or `sample`)"
            if "verifiable" in bad else "")
    return (f"a dpo stage needs preference rows (prompt, chosen, rejected); this dataset has {bad} rows{hint}. "
            "Chat rows have no rejected answer: use them in an sft stage, or a preference source (e.g. format: hh_rlhf)")


def to_prompts(rows: datasets.Dataset, verifier: str | None = None) -> datasets.Dataset:
    """Verifiable rows -> GRPO's ``prompt`` (messages) plus ``ground_truth``, ``verifier``, ``id``."""
    out = rows.select_columns(["id", "prompt", "ground_truth", "verifier"])
    if verifier is not None:
        out = out.map(lambda _: {"verifier": verifier}, desc="verifier override")
    return out


def check_stage_data(stage, rows: datasets.Dataset) -> None:
    """Everything about a stage's rows that can be checked before training (raises StageDataError)."""
    if len(rows) == 0:
        raise StageDataError(f"the {stage.kind} stage's dataset {stage.data!r} has no rows (every row was dropped?)")
    kinds = set(rows["kind"])
    if stage.kind == "dpo":
        allowed = {"preference", "verifiable"} if getattr(stage, "pairs", None) else {"preference"}
        if kinds - allowed:
            raise StageDataError(f"dataset {stage.data!r}: " + _dpo_kinds_message(kinds))
    elif stage.kind == "rlvr":
        _check_rlvr(stage, rows, kinds)


def _check_rlvr(stage, rows: datasets.Dataset, kinds: set[str]) -> None:
    from collections import Counter

    from curation.registry import UnknownName
    from eval.verifiers import VERIFIERS

    if kinds - {"verifiable"}:
        missing = [(r["id"], r["kind"]) for r in rows.select_columns(["id", "kind"]) if r["kind"] != "verifiable"]
        by_kind = Counter(k for _, k in missing)
        raise StageDataError(
            f"an rlvr stage needs verifiable rows (prompt, ground_truth, verifier); {len(missing)} of {len(rows)} rows of "
            f"dataset {stage.data!r} have no verifier ({', '.join(f'{k}: {n}' for k, n in sorted(by_kind.items()))}; "
            f"e.g. ids {[i for i, _ in missing[:3]]}). Keep only verifiable sources in this mixture")
    names = [stage.verifier] if stage.verifier else sorted(set(rows["verifier"]))
    for name in names:
        try:
            VERIFIERS.get(name)
        except UnknownName as exc:
            where = "the stage's `verifier`" if stage.verifier else "the rows' `verifier` column"
            raise StageDataError(f"dataset {stage.data!r}: {where} names {exc}") from None
    if "ifeval" in names:
        from eval.ifeval import IFEvalError, parse_constraint

        for r in rows.select_columns(["id", "ground_truth", "verifier"]):
            if stage.verifier == "ifeval" or r["verifier"] == "ifeval":
                try:
                    parse_constraint(r["ground_truth"])
                except IFEvalError as exc:
                    raise StageDataError(f"row {r['id']}: {exc}") from None
