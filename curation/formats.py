"""Declarative field mapping from arbitrary records to canonical rows, and built-in formats.

A source declares ``kind`` and ``fields`` (canonical field -> column name), or a named ``format``
for common layouts (``alpaca``, ``gsm8k``, ``hh_rlhf``, ``sharegpt``). A format is a function
``(record, spec) -> canonical row`` registered in ``FORMATS``; it raises
:class:`~curation.rows.MalformedRow` for a record it cannot convert, which the source loader
quarantines with the reason. No dataset is special-cased outside this file.
"""

from __future__ import annotations

import re
from typing import Any

from curation.registry import Registry
from curation.rows import MalformedRow, make_row

FORMATS: Registry = Registry("format")


def _get(record: dict, column: str | list[str], required: bool = True) -> Any:
    """The value at ``column``: a column name, a dotted path into nested records and lists
    (``instances.0.output``), or a list of those whose texts are joined into one turn with a blank
    line, empty parts skipped (``[instruction, input]``)."""
    if isinstance(column, list):
        parts = [_get(record, c, required=False) for c in column]
        bad = [c for c, v in zip(column, parts) if v is not None and not isinstance(v, str)]
        if bad:
            raise MalformedRow("wrong_type", f"{bad[0]} is not text (fields joined into one turn must be text)")
        texts = [v for v in parts if v and v.strip()]
        if not texts:
            if required:
                raise MalformedRow("missing_field", " + ".join(column))
            return None
        return "\n\n".join(texts)
    value: Any = record
    for part in column.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            if required:
                raise MalformedRow("missing_field", column)
            return None
    if required and value is None:
        raise MalformedRow("missing_field", column)
    return value


def _as_messages(value: Any, default_role: str) -> list[dict]:
    """A string becomes one message of ``default_role``; a list of messages is normalised."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if isinstance(value, list):
        out = []
        for m in value:
            if isinstance(m, dict) and "from" in m and "value" in m:  # ShareGPT style
                role = {"human": "user", "gpt": "assistant", "system": "system"}.get(m["from"], m["from"])
                out.append({"role": role, "content": m["value"]})
            else:
                out.append(m)
        return out
    raise MalformedRow("wrong_type", f"expected text or a list of messages, got {type(value).__name__}")


def _skill(record: dict, spec) -> str | None:
    if spec.fields.get("skill"):
        value = _get(record, spec.fields["skill"], required=False)
        return None if value is None else str(value)
    return spec.skill


def _metadata(record: dict, spec) -> dict:
    keep = spec.fields.get("metadata")
    if not keep:
        return {}
    columns = [keep] if isinstance(keep, str) else keep  # a list here names several columns to keep
    return {c: _get(record, c, required=False) for c in columns}


# Canonical fields a `fields:` mapping may name, per row kind; those in TEXT_FIELDS may be a list of
# columns joined into one turn. `skill` and `metadata` (a column or a list of columns) fit every kind.
KIND_FIELDS = {"chat": {"messages", "system", "prompt", "response"}, "preference": {"prompt", "chosen", "rejected"},
               "verifiable": {"prompt", "ground_truth", "verifier"}, "text": {"text"}}
TEXT_FIELDS = {"system", "prompt", "response", "ground_truth", "text"}


def check_fields(kind: str | None, fields: dict) -> str | None:
    """A problem with a source's ``fields`` mapping for its row kind (None: fine)."""
    import difflib

    allowed = KIND_FIELDS.get(kind or "", set().union(*KIND_FIELDS.values())) | {"skill", "metadata"}
    for name, column in fields.items():
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"{name!r} is not a field of {kind or 'any'} rows (fields: {', '.join(sorted(allowed))}){hint}"
        if isinstance(column, list):
            if name not in TEXT_FIELDS | {"metadata"}:
                return (f"{name!r} takes one column or path (a list joins text columns into one turn, which "
                        f"{', '.join(sorted(TEXT_FIELDS))} accept)")
            if not column or not all(isinstance(c, str) and c for c in column):
                return f"{name!r}: give a non-empty list of column names"
    return None


def split_conversations(prompt: list[dict] | None, chosen: list[dict], rejected: list[dict]):
    """(prompt, chosen responses, rejected responses) of a preference record, in whichever layout.

    Two layouts occur: responses only (``chosen``/``rejected`` hold the assistant turns, ``prompt``
    the turns before), and whole conversations (``chosen``/``rejected`` start with the prompt turns
    themselves, as in Tülu 3's preference mixtures, which *also* carry a ``prompt`` string). In the
    second layout the shared prefix of the two conversations is the prompt and is stripped from the
    responses; keeping both would make TRL render the user turn twice and count it in DPO's length
    normalisation. A declared ``prompt`` must then agree with the prefix (the same turns, or the
    text of its last user turn), else the record is quarantined (``prompt_mismatch``)."""
    if chosen and rejected and chosen[0].get("role") == "assistant" and rejected[0].get("role") == "assistant":
        if prompt is None:
            raise MalformedRow("missing_field", "prompt (chosen and rejected hold responses only)")
        return prompt, chosen, rejected
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    prefix = chosen[:n]
    if not prefix or prefix[-1].get("role") == "assistant":
        raise MalformedRow("prompt_mismatch", "chosen and rejected are conversations that do not share their prompt "
                                              "turns (they must differ only in the final assistant turns)")
    if prompt is not None and prompt != prefix:
        users = [m for m in prefix if m.get("role") == "user"]
        said = "\n".join(str(m.get("content", "")) for m in prompt).strip()
        if not users or str(users[-1].get("content", "")).strip() != said:
            raise MalformedRow("prompt_mismatch", "the prompt field differs from the conversation's turns before "
                                                  "the responses")
    return prefix, chosen[n:], rejected[n:]


@FORMATS.register("fields")
def from_fields(record: dict, spec) -> dict:
    """Generic mapping: ``spec.kind`` plus ``spec.fields`` naming the record's columns."""
    f, kind, src = spec.fields, spec.kind, spec.name
    common = {"skill": _skill(record, spec), "metadata": _metadata(record, spec)}
    if kind == "chat":
        if "messages" in f:
            messages = _as_messages(_get(record, f["messages"]), "user")
        else:
            messages = []
            if f.get("system") and _get(record, f["system"], required=False):
                messages.append({"role": "system", "content": _get(record, f["system"])})
            messages += _as_messages(_get(record, f.get("prompt", "prompt")), "user")
            messages += _as_messages(_get(record, f.get("response", "response")), "assistant")
        return make_row("chat", src, messages=messages, **common)
    if kind == "preference":
        chosen = _as_messages(_get(record, f.get("chosen", "chosen")), "assistant")
        rejected = _as_messages(_get(record, f.get("rejected", "rejected")), "assistant")
        prompt = None
        if "prompt" in f or "prompt" in record:
            prompt = _as_messages(_get(record, f.get("prompt", "prompt")), "user")
        prompt, chosen, rejected = split_conversations(prompt, chosen, rejected)
        return make_row("preference", src, prompt=prompt, chosen=chosen, rejected=rejected, **common)
    if kind == "verifiable":
        verifier = _get(record, f["verifier"]) if "verifier" in f else spec.verifier
        verifier = spec.verifier_map.get(verifier, verifier)
        return make_row(
            "verifiable",
            src,
            prompt=_as_messages(_get(record, f.get("prompt", "prompt")), "user"),
            ground_truth=_get(record, f.get("ground_truth", "ground_truth")),
            verifier=verifier,
            **common,
        )
    if kind == "text":
        return make_row("text", src, text=_get(record, f.get("text", "text")), **common)
    raise ValueError(f"unknown kind {kind!r}")


@FORMATS.register("alpaca")
def alpaca(record: dict, spec) -> dict:
    """instruction / input / output -> chat (user: instruction + blank line + input)."""
    instruction = _get(record, "instruction")
    extra = _get(record, "input", required=False)
    if not isinstance(instruction, str) or (extra is not None and not isinstance(extra, str)):
        raise MalformedRow("wrong_type", "instruction and input must be text")
    user = instruction + (f"\n\n{extra}" if extra and extra.strip() else "")
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": _get(record, "output")}]
    return make_row("chat", spec.name, messages=messages, skill=_skill(record, spec), metadata=_metadata(record, spec))


_FINAL_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)$")


def gsm8k_final_answer(solution: str) -> str:
    """The number after ``####`` with thousands commas removed ("1,234" -> "1234")."""
    match = _FINAL_ANSWER.search(solution)
    if not match:
        raise MalformedRow("unparsable_answer", "no '#### <number>' line")
    value = match.group(1).replace(",", "").replace("$", "").strip()
    if not _NUMBER.match(value):
        raise MalformedRow("unparsable_answer", f"final answer {match.group(1)!r} is not a number")
    return value


@FORMATS.register("gsm8k")
def gsm8k(record: dict, spec) -> dict:
    """question / answer (with ``#### N``) -> verifiable (default) or chat (full solution)."""
    question, solution = _get(record, "question"), _get(record, "answer")
    if not isinstance(question, str) or not isinstance(solution, str):
        raise MalformedRow("wrong_type", "question and answer must be text")
    final = gsm8k_final_answer(solution)
    meta = {**_metadata(record, spec), "solution": solution}
    if spec.kind == "chat":
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
        return make_row("chat", spec.name, messages=messages, skill=_skill(record, spec), metadata=meta)
    return make_row(
        "verifiable",
        spec.name,
        prompt=[{"role": "user", "content": question}],
        ground_truth=final,
        verifier=spec.verifier or "gsm8k",
        skill=_skill(record, spec),
        metadata=meta,
    )


_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def parse_transcript(transcript: str) -> list[dict]:
    """"\\n\\nHuman: ...\\n\\nAssistant: ..." -> messages. Text before the first marker is an error."""
    if not isinstance(transcript, str):
        raise MalformedRow("wrong_type", "transcript must be text")
    parts = _TURN.split(transcript)
    if parts[0].strip():
        raise MalformedRow("unparsable_transcript", "text before the first 'Human:' marker")
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    if not messages:
        raise MalformedRow("unparsable_transcript", "no 'Human:'/'Assistant:' turns")
    return messages


@FORMATS.register("hh_rlhf")
def hh_rlhf(record: dict, spec) -> dict:
    """Anthropic hh-rlhf chosen/rejected transcripts -> preference (shared prompt, last turns differ).

    With ``kind: chat`` the chosen transcript becomes a chat row.
    """
    chosen = parse_transcript(_get(record, "chosen"))
    if spec.kind == "chat":
        return make_row("chat", spec.name, messages=chosen, skill=_skill(record, spec))
    rejected = parse_transcript(_get(record, "rejected"))
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise MalformedRow("no_assistant_turn", "a transcript does not end with an Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise MalformedRow("prompt_mismatch", "chosen and rejected transcripts differ before the last turn")
    return make_row(
        "preference",
        spec.name,
        prompt=chosen[:-1],
        chosen=chosen[-1:],
        rejected=rejected[-1:],
        skill=_skill(record, spec),
    )


@FORMATS.register("sharegpt")
def sharegpt(record: dict, spec) -> dict:
    """``conversations: [{from, value}]`` -> chat."""
    messages = _as_messages(_get(record, spec.fields.get("messages", "conversations")), "user")
    return make_row("chat", spec.name, messages=messages, skill=_skill(record, spec))


# The row kind each format produces when the source does not say.
DEFAULT_KIND = {"alpaca": "chat", "gsm8k": "verifiable", "hh_rlhf": "preference", "sharegpt": "chat"}
