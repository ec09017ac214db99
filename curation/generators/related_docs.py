"""``related_docs``: seeded ``text`` documents about invented people, several documents per person.

For In-Context Pretraining's miniature (``curation/steps/iclm.py``; recipes/miniatures/iclm.yaml):
a corpus where documents are *related* -- they share an entity -- and where a held-out task needs a
fact stated in a related document, so packing related documents into one context window can help.

Every person (entity) has a made-up name, a pronoun and seven attributes drawn at random (home city,
job, pet, favourite colour, food, instrument, sport; real words, so a sentence encoder sees what two
documents share). A document names the person once, then states ``facts`` of the attributes, each
once, in a random order and with one of several phrasings, referring to the person by pronoun::

    A note on Kalomi. She works as a baker. Her pet is a parrot. Home for her is Lisbon.

So inside one document nothing repeats: copying from earlier in the context only pays when an
earlier document in the same window was about the same person -- which randomly packed windows
almost never hold and ICLM-ordered windows often do. A model trained on the latter can learn to
copy names and facts across documents (an induction-style mechanism); the held-out ``pairs`` layout
measures exactly that on people never seen in training.

Layouts (``layout``):

* ``docs`` -- one row per document; ``docs_per_entity`` documents per person (training data).
* ``pairs`` -- one row per person: a document, ``separator``, then a second document about the
  *same* person whose facts are all among the first one's (the second half is predictable only
  from the first: the task that needs the context).
* ``unrelated_pairs`` -- the control: the second document is about another person, so the context
  cannot help (and copying from it would hurt).

Train and test persons are disjoint by construction (a person is in the test split when a hash of
its index falls in ``test_fraction``; names are unique across both splits of one seed; give train
and test sources the same ``seed``). Pairs have ``skill`` = their layout, documents none.
``metadata`` holds ``entity`` (the person's name), the ``facts`` stated and, for pairs,
``second_entity`` and ``context_chars`` (where the second document starts), so an analysis can
check an ordering against the true entities or score the second half alone.
"""

from __future__ import annotations

import hashlib
import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.generators import GENERATORS
from curation.rows import make_row

VALUES = {
    "city": ["Lisbon", "Oslo", "Cairo", "Lima", "Dublin", "Kyoto", "Nairobi", "Quito", "Vienna", "Prague",
             "Madrid", "Hanoi", "Seoul", "Athens", "Havana", "Dakar", "Perth", "Boston", "Denver", "Naples",
             "Bergen", "Tunis", "Sofia", "Riga", "Porto", "Minsk", "Accra", "Zagreb", "Turin", "Bogota"],
    "job": ["baker", "pilot", "nurse", "lawyer", "farmer", "chemist", "plumber", "teacher", "dentist", "tailor",
            "painter", "sailor", "miner", "banker", "jeweler", "carpenter", "surgeon", "librarian", "florist",
            "welder", "potter", "butcher", "cashier", "courier", "gardener"],
    "pet": ["parrot", "rabbit", "turtle", "hamster", "goat", "ferret", "pony", "gecko", "donkey", "beagle",
            "poodle", "canary", "lizard", "goldfish", "tortoise", "piglet", "llama", "duck", "owl", "kitten"],
    "color": ["red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "gray", "teal", "maroon",
              "violet", "indigo", "crimson", "olive", "silver"],
    "food": ["pizza", "sushi", "curry", "tacos", "soup", "pasta", "salad", "dumplings", "pancakes", "noodles",
             "risotto", "kebab", "falafel", "waffles", "chili", "porridge", "omelette", "paella"],
    "instrument": ["violin", "piano", "flute", "drums", "guitar", "cello", "trumpet", "harp", "banjo", "oboe",
                   "clarinet", "accordion", "saxophone", "ukulele", "tuba"],
    "sport": ["tennis", "rugby", "hockey", "golf", "cricket", "boxing", "rowing", "fencing", "cycling", "skiing",
              "karate", "archery", "surfing", "handball", "volleyball"],
}
ATTRIBUTES = tuple(VALUES)
# {S}/{s}: subject pronoun (capitalised / not), {P}/{p}: possessive, {O}: object pronoun, {v}: the value
PHRASES = {
    "city": ["{S} lives in {v}.", "Home for {O} is {v}.", "{P} house is in {v}.", "{S} has an apartment in {v}."],
    "job": ["{S} works as a {v}.", "By trade {s} is a {v}.", "{P} job is {v}.", "{S} earns a living as a {v}."],
    "pet": ["{P} pet is a {v}.", "{S} keeps a {v} at home.", "{S} owns a {v}.", "At home a {v} waits for {O}."],
    "color": ["{P} favourite colour is {v}.", "{S} loves the colour {v}.", "{S} always wears {v}.",
              "{S} painted the door {v}."],
    "food": ["{P} favourite dish is {v}.", "{S} cooks {v} every week.", "{S} orders {v} whenever {s} can.",
             "For dinner {s} wants {v}."],
    "instrument": ["{S} plays the {v}.", "{S} practises the {v} daily.", "{P} instrument is the {v}.",
                   "{S} took lessons on the {v}."],
    "sport": ["{S} plays {v} on weekends.", "{P} sport is {v}.", "{S} trains for {v}.", "{S} watches {v} on TV."],
}
INTROS = ["A note on {N}.", "This is about {N}.", "Meet {N}.", "Some facts on {N}.", "Here is {N}.", "We met {N}."]
PRONOUNS = {"she": {"S": "She", "s": "she", "P": "Her", "p": "her", "O": "her"},
            "he": {"S": "He", "s": "he", "P": "His", "p": "his", "O": "him"}}
_SYL = ["ka", "lo", "mi", "ren", "tor", "vi", "sa", "pe", "dun", "ar", "bel", "co", "fi", "gor", "hal", "is",
        "mu", "ne", "ro", "ta", "zu", "el", "om", "qui", "ba", "dre", "jo", "ly"]


class RelatedDocsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(500, gt=0, description="persons (entities); rows are documents (docs) or pairs")
    layout: Literal["docs", "pairs", "unrelated_pairs"] = "docs"
    docs_per_entity: list[int] = Field([3, 5], min_length=2, max_length=2, description="[min, max] documents per "
                                       "person (layout docs)")
    facts: list[int] = Field([3, 4], min_length=2, max_length=2, description="[min, max] attributes a document states")
    separator: str = Field("\n\n", description="between the two documents of a pair")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int | None = Field(None, description="defaults to the recipe seed")

    @model_validator(mode="after")
    def _ranges(self):
        for key in ("docs_per_entity", "facts"):
            lo, hi = getattr(self, key)
            if not 1 <= lo <= hi:
                raise ValueError(f"{key}: give [min, max] with 1 <= min <= max")
        if self.facts[1] > len(ATTRIBUTES):
            raise ValueError(f"facts: a person has {len(ATTRIBUTES)} attributes")
        return self


def _in_test(seed: int, k: int, fraction: float) -> bool:
    h = int(hashlib.sha256(f"related:{seed}:{k}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def _person(seed: int, k: int, taken: set[str]) -> dict:
    rng = random.Random(f"person:{seed}:{k}")
    while True:
        name = "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 3))).capitalize()
        if name not in taken:
            taken.add(name)
            break
    return {"name": name, "pronoun": rng.choice(sorted(PRONOUNS)), "facts": {a: rng.choice(VALUES[a]) for a in ATTRIBUTES}}


def document(person: dict, attributes: list[str], rng: random.Random) -> str:
    """A document naming ``person`` once and stating each of ``attributes`` once (in that order)."""
    pro = PRONOUNS[person["pronoun"]]
    parts = [rng.choice(INTROS).format(N=person["name"])]
    for a in attributes:
        parts.append(rng.choice(PHRASES[a]).format(v=person["facts"][a], **pro))
    return " ".join(parts)


def _persons(params: RelatedDocsParams, seed: int, split: str) -> list[dict]:
    """The first ``n`` persons of this split (names unique across both splits of the seed)."""
    taken: set[str] = set()
    out, k = [], 0
    while len(out) < params.n:
        k += 1
        p = _person(seed, k, taken)  # every index draws a name, so both splits see the same names taken
        if _in_test(seed, k, params.test_fraction) == (split == "test"):
            out.append(p)
    return out


@GENERATORS.register("related_docs")
def generate(params: RelatedDocsParams, *, source: str, split: str, seed: int) -> list[dict]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    seed = params.seed if params.seed is not None else seed
    rng = random.Random(f"docs:{seed}:{split}:{params.layout}")
    persons = _persons(params, seed, split)
    rows = []
    lo, hi = params.facts
    for i, person in enumerate(persons):
        if params.layout == "docs":
            for _ in range(rng.randint(*params.docs_per_entity)):
                attrs = rng.sample(ATTRIBUTES, rng.randint(lo, hi))
                rows.append(make_row("text", source, text=document(person, attrs, rng),
                                     metadata={"entity": person["name"], "facts": attrs}))
            continue
        first = rng.sample(ATTRIBUTES, rng.randint(max(lo, 2), hi))
        context = document(person, first, rng)
        if params.layout == "pairs":
            other, attrs = person, rng.sample(first, max(1, len(first) - 1))
        else:
            other = persons[(i + 1 + rng.randrange(len(persons) - 1)) % len(persons)] if len(persons) > 1 else person
            attrs = rng.sample(ATTRIBUTES, max(1, len(first) - 1))
        text = context + params.separator + document(other, attrs, rng)
        rows.append(make_row("text", source, text=text, skill=params.layout,
                             metadata={"entity": person["name"], "second_entity": other["name"], "facts": attrs,
                                       "context_chars": len(context) + len(params.separator)}))
    return rows


generate.Params = RelatedDocsParams  # type: ignore[attr-defined]
generate.row_kind = lambda params: "text"  # type: ignore[attr-defined]
