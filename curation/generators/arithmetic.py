"""``arithmetic``: seeded verifiable arithmetic problems in several skills, with disjoint splits.

The quickstart needs data without files. Each skill (``add``, ``sub``, ``mul``, ``div``) draws
operands in ``[0, max_operand]``; a problem is phrased with one of a few templates (plain
"What is 3 + 4?" and short word problems). Train and test are disjoint by construction: a problem
(skill, a, b) belongs to the test split when a hash of it falls in the lowest ``test_fraction``,
independent of the seed, so any train and test source of the same generator never share a problem
(the held-out accuracy measures generalisation, not recall). Train rows are drawn with replacement
(duplicates happen, as in real pools; ``exact_dedup`` removes them); test rows are distinct.
Rows are ``verifiable`` (prompt, ground_truth, verifier ``math``) with the skill set, ``chat``
with the answer as the assistant turn, or ``preference`` (the answer chosen, a near miss rejected).
"""

from __future__ import annotations

import hashlib
import random
from typing import Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.generators import GENERATORS
from curation.rows import make_row

_OPS = {
    "add": (lambda a, b: a + b, "+", "plus"),
    "sub": (lambda a, b: a - b, "-", "minus"),
    "mul": (lambda a, b: a * b, "*", "times"),
    "div": (lambda a, b: a // b, "/", "divided by"),
}

_TEMPLATES = {
    "plain": ["What is {a} {sym} {b}?"],
    "word": [
        "What is {a} {sym} {b}?",
        "Compute {a} {word} {b}.",
        "Calculate {a} {sym} {b}.",
    ],
}


class ArithmeticParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(1000, gt=0, description="rows to generate")
    skills: list[Literal["add", "sub", "mul", "div"]] = ["add", "sub", "mul"]
    max_operand: int = Field(19, ge=1, le=10**6)
    min_operand: int = Field(0, ge=0, description="the smallest operand (e.g. 10 for two-digit problems only)")
    skill_label: str | None = Field(None, description="label every row's skill with this instead of the operation "
                                                       "(e.g. add2 for two-digit addition)")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    templates: Literal["plain", "word"] = "word"
    as_chat: bool = Field(False, description="emit chat rows (answer as assistant turn) instead of verifiable")
    as_preference: bool = Field(False, description="emit preference rows: chosen = the answer, rejected = a near miss "
                                                   "(answer ± 1..3, or its digits reversed)")
    offset: int = Field(0, ge=0, description="test split: skip the first N of the shuffled problems (disjoint sets "
                                              "from one pool: validation with offset 0, a test set after it)")
    seed: int | None = Field(None, description="defaults to the recipe seed")

    @model_validator(mode="after")
    def _range(self):
        if self.min_operand > self.max_operand:
            raise ValueError(f"min_operand {self.min_operand} is above max_operand {self.max_operand}")
        return self


def _in_test(skill: str, a: int, b: int, fraction: float) -> bool:
    h = int(hashlib.sha256(f"{skill}:{a}:{b}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def _problems(skill: str, max_operand: int, min_operand: int = 0) -> Iterator[tuple[int, int]]:
    for a in range(min_operand, max_operand + 1):
        for b in range(min_operand, max_operand + 1):
            if skill == "sub" and b > a:
                continue  # non-negative answers
            if skill == "div" and (b == 0 or a % b):
                continue  # exact division only
            yield a, b


def answer(skill: str, a: int, b: int) -> int:
    return _OPS[skill][0](a, b)


def _near_miss(value: int, rng: random.Random) -> str:
    """A plausible wrong answer (the rejected side of a pair): off by 1..3, or the digits reversed."""
    if value >= 10 and rng.random() < 0.3 and str(value)[::-1] != str(value):
        return str(int(str(value)[::-1]))
    wrong = value + rng.choice([-3, -2, -1, 1, 2, 3])
    return str(wrong if wrong >= 0 else value + 1)


@GENERATORS.register("arithmetic")
def generate(params: ArithmeticParams, *, source: str, split: str, seed: int) -> list[dict]:
    """Return canonical rows for ``split`` ('train' or 'test')."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    rng = random.Random(params.seed if params.seed is not None else seed)
    pools = {
        s: [p for p in _problems(s, params.max_operand, params.min_operand)
            if _in_test(s, *p, params.test_fraction) == (split == "test")]
        for s in params.skills
    }
    empty = [s for s, pool in pools.items() if not pool]
    if empty:
        raise ValueError(f"skills {empty} have no {split} problems at max_operand={params.max_operand}; raise it")
    picks: list[tuple[str, int, int]] = []
    if split == "train":
        for i in range(params.n):
            skill = params.skills[i % len(params.skills)]
            picks.append((skill, *rng.choice(pools[skill])))
    else:
        every = [(s, a, b) for s, pool in pools.items() for a, b in pool]
        rng.shuffle(every)
        if params.offset + params.n > len(every):
            raise ValueError(f"offset {params.offset} + n {params.n} exceeds the {len(every)} distinct test problems at "
                             f"max_operand={params.max_operand}; lower n or raise max_operand")
        picks = every[params.offset: params.offset + params.n]
    rows = []
    for op, a, b in picks:
        fn, sym, word = _OPS[op]
        skill = params.skill_label or op
        template = rng.choice(_TEMPLATES[params.templates])
        question = template.format(a=a, b=b, sym=sym, word=word)
        result = str(fn(a, b))
        meta = {"a": a, "b": b, "split": split}
        if params.as_preference:
            rows.append(
                make_row(
                    "preference",
                    source,
                    prompt=[{"role": "user", "content": question}],
                    chosen=[{"role": "assistant", "content": result}],
                    rejected=[{"role": "assistant", "content": _near_miss(int(result), rng)}],
                    skill=skill,
                    metadata=meta,
                )
            )
        elif params.as_chat:
            rows.append(
                make_row(
                    "chat",
                    source,
                    messages=[{"role": "user", "content": question}, {"role": "assistant", "content": result}],
                    skill=skill,
                    metadata=meta,
                )
            )
        else:
            rows.append(
                make_row(
                    "verifiable",
                    source,
                    prompt=[{"role": "user", "content": question}],
                    ground_truth=result,
                    verifier="math",
                    skill=skill,
                    metadata=meta,
                )
            )
    return rows


generate.Params = ArithmeticParams  # type: ignore[attr-defined]


def _row_kind(params: ArithmeticParams) -> str:
    return "preference" if params.as_preference else "chat" if params.as_chat else "verifiable"


generate.row_kind = _row_kind  # type: ignore[attr-defined]  (the kind of rows it emits, for `recipe validate`)
