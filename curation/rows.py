"""Canonical rows: the four row kinds every source is normalised into, and their identity.

The kinds follow TRL's dataset formats (conversational) plus identity columns:

* ``chat``        -- ``messages``: list of ``{role, content}``
* ``preference``  -- ``prompt`` (messages), ``chosen`` and ``rejected`` (assistant messages)
* ``verifiable``  -- ``prompt`` (messages), ``ground_truth`` (str), ``verifier`` (str)
* ``text``        -- ``text`` (str), ``metadata`` (JSON str)

All kinds share one Arrow schema (unused columns are null) so mixtures of sources concatenate
without casting, and every row carries ``id`` (a hash of source name + canonical content, so it
is stable across runs and machines), ``source``, ``kind``, ``skill`` and ``metadata``.

This module is the shared vocabulary of curation, training and eval; it imports nothing of theirs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import datasets
import pyarrow as pa

ROW_KINDS = ("chat", "preference", "verifiable", "text")

_MESSAGE = [{"role": datasets.Value("string"), "content": datasets.Value("string")}]

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "kind": datasets.Value("string"),
        "skill": datasets.Value("string"),
        "messages": _MESSAGE,
        "prompt": _MESSAGE,
        "chosen": _MESSAGE,
        "rejected": _MESSAGE,
        "ground_truth": datasets.Value("string"),
        "verifier": datasets.Value("string"),
        "text": datasets.Value("string"),
        "metadata": datasets.Value("string"),
    }
)

ROLES = ("system", "user", "assistant", "tool")
ARROW_SCHEMA = FEATURES.arrow_schema  # carries the features in its metadata, as datasets writes them


class MalformedRow(ValueError):
    """A source record that cannot become a canonical row. ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def content_of(row: dict[str, Any]) -> Any:
    """The part of a row that defines its identity (everything but id/source/metadata)."""
    kind = row["kind"]
    if kind == "chat":
        return row["messages"]
    if kind == "preference":
        return [row["prompt"], row["chosen"], row["rejected"]]
    if kind == "verifiable":
        return [row["prompt"], row["ground_truth"], row["verifier"]]
    return row["text"]


def row_id(source: str, row: dict[str, Any]) -> str:
    """Stable id: sha256 of the source name and the canonical content, 16 hex chars."""
    payload = json.dumps([source, row["kind"], content_of(row)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _check_messages(messages: Any, field: str, need_assistant_last: bool = False) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise MalformedRow("empty_turns" if messages == [] else "wrong_type", f"{field} must be a non-empty list of messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise MalformedRow("wrong_type", f"{field}[{i}] must be {{role, content}}")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise MalformedRow("bad_role", f"{field}[{i}].role={role!r}")
        if not isinstance(content, str):
            raise MalformedRow("wrong_type", f"{field}[{i}].content is {type(content).__name__}, not str")
        if not content.strip():
            raise MalformedRow(f"empty_{role}_turn", f"{field}[{i}] is empty")
        out.append({"role": role, "content": content})
    if need_assistant_last and out[-1]["role"] != "assistant":
        raise MalformedRow("no_assistant_turn", f"{field} does not end with an assistant turn")
    return out


def _check_text(value: Any, field: str) -> str:
    if value is None:
        raise MalformedRow("missing_field", field)
    if not isinstance(value, str):
        raise MalformedRow("wrong_type", f"{field} is {type(value).__name__}, not str")
    if not value.strip():
        raise MalformedRow("empty_field", field)
    return value


def make_row(
    kind: str,
    source: str,
    *,
    messages: list | None = None,
    prompt: list | None = None,
    chosen: list | None = None,
    rejected: list | None = None,
    ground_truth: Any = None,
    verifier: str | None = None,
    text: str | None = None,
    skill: str | None = None,
    metadata: dict | None = None,
) -> dict[str, Any]:
    """Validate the fields of one row kind and return a canonical row with its id.

    Raises :class:`MalformedRow` with a reason code for anything a trainer would choke on.
    """
    row: dict[str, Any] = {k: None for k in FEATURES}
    row.update(kind=kind, source=source, skill=skill, metadata=json.dumps(metadata or {}, sort_keys=True))
    if kind == "chat":
        row["messages"] = _check_messages(messages, "messages", need_assistant_last=True)
    elif kind == "preference":
        row["prompt"] = _check_messages(prompt, "prompt")
        row["chosen"] = _check_messages(chosen, "chosen")
        row["rejected"] = _check_messages(rejected, "rejected")
        if row["chosen"] == row["rejected"]:
            raise MalformedRow("identical_pair", "chosen equals rejected")
    elif kind == "verifiable":
        row["prompt"] = _check_messages(prompt, "prompt")
        if ground_truth is None or (isinstance(ground_truth, str) and not ground_truth.strip()):
            raise MalformedRow("missing_field", "ground_truth")
        if isinstance(ground_truth, (dict, list)):
            ground_truth = json.dumps(ground_truth, sort_keys=True)
        row["ground_truth"] = str(ground_truth)
        if not verifier:
            raise MalformedRow("missing_field", "verifier")
        row["verifier"] = verifier
    elif kind == "text":
        row["text"] = _check_text(text, "text")
    else:
        raise ValueError(f"unknown row kind {kind!r}; expected one of {ROW_KINDS}")
    row["id"] = row_id(source, row)
    return row


def disambiguate_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give repeated content within one source distinct ids: ``<id>``, ``<id>.1``, ``<id>.2``...

    The first occurrence keeps the content hash, so ids stay stable across runs; a later identical
    record is still its own row (a dedup step, not the loader, decides to drop it, with a record).
    """
    seen: dict[str, int] = {}
    for row in rows:
        n = seen.get(row["id"], 0)
        seen[row["id"]] = n + 1
        if n:
            row["id"] = f"{row['id']}.{n}"
    return rows


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Canonical rows (ids already distinct) -> an Arrow table with the shared schema."""
    return pa.Table.from_pylist([{k: r.get(k) for k in FEATURES} for r in rows], schema=ARROW_SCHEMA)


def dataset_of(table: pa.Table) -> datasets.Dataset:
    """A ``datasets.Dataset`` over an Arrow table of canonical rows, without copying it."""
    from datasets.fingerprint import generate_random_fingerprint
    from datasets.table import InMemoryTable

    if table.schema.metadata != ARROW_SCHEMA.metadata and table.schema.remove_metadata() == ARROW_SCHEMA.remove_metadata():
        table = table.replace_schema_metadata(ARROW_SCHEMA.metadata)
    # a fingerprint given, not computed: datasets would otherwise hash the whole table through dill
    # (4.3 s of a 1M-row curation); an in-memory table has no cache file for it to name
    return datasets.Dataset(InMemoryTable(table), fingerprint=generate_random_fingerprint())


def rows_to_dataset(rows: Iterable[dict[str, Any]]) -> datasets.Dataset:
    """Canonical rows -> a ``datasets.Dataset`` with the shared schema (empty allowed)."""
    return dataset_of(rows_to_table(disambiguate_ids(list(rows))))


def row_text(row: dict[str, Any], field: str = "all") -> str:
    """A row's text for text-level steps (dedup, length, overlap).

    ``field``: ``prompt`` (user/system side), ``response`` (assistant side / chosen / answer),
    or ``all`` (both, turn by turn).
    """
    kind = row["kind"]
    if kind == "text":
        return row["text"] or ""
    if kind == "chat":
        msgs = row["messages"] or []
        prompt = [m["content"] for m in msgs if m["role"] != "assistant"]
        response = [m["content"] for m in msgs if m["role"] == "assistant"]
    elif kind == "preference":
        prompt = [m["content"] for m in row["prompt"] or []]
        response = [m["content"] for m in (row["chosen"] or []) + (row["rejected"] or [])]
    else:  # verifiable
        prompt = [m["content"] for m in row["prompt"] or []]
        response = [row["ground_truth"] or ""]
    if field == "prompt":
        return "\n".join(prompt)
    if field == "response":
        return "\n".join(response)
    return "\n".join(prompt + response)


def row_texts(rows: datasets.Dataset, field: str = "all", batch_size: int = 10000) -> list[str]:
    """``row_text`` of every row of a dataset, read in Arrow batches (far faster than ``rows[i]``)."""
    out: list[str] = []
    for batch in rows.iter(batch_size=batch_size):
        keys = list(batch)
        out.extend(row_text(dict(zip(keys, vals)), field) for vals in zip(*(batch[k] for k in keys)))
    return out
