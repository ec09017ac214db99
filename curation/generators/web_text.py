"""``web_text``: seeded synthetic web documents from several hosts, each host with its own style.

For the training-time methods' miniatures (MeCo's metadata conditioning, mixtures by token share,
mid-training) without downloading a web crawl: a document is ``text`` with ``metadata.url``
(``https://<host>/<path>``) and ``skill`` = its host's style, so the host is informative about the
text -- what MeCo's conditioning exploits -- and per-host validation losses are possible.

Styles (each a few templates over its own vocabulary and shared entity names):
``encyclopedia`` (definitions, dates, places), ``news`` (dated reports), ``forum`` (questions and
answers), ``recipes`` (ingredient lists and steps), ``code`` (small functions). Train and test are
disjoint by construction (a document belongs to the test split when a hash of its seed index falls
in ``test_fraction``). ``noise`` and ``duplicates`` mix in low-quality documents (random characters) and
verbatim repeats, for data-quality methods (``metadata.quality`` says which a document is).
"""

from __future__ import annotations

import hashlib
import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from curation.generators import GENERATORS
from curation.rows import make_row

STYLES = ("encyclopedia", "news", "forum", "recipes", "code")
HOSTS = {"encyclopedia": "en.wikipedia.org", "news": "www.dailynews.com", "forum": "forum.askanything.net",
         "recipes": "www.homecooking.org", "code": "github.com"}
_SYL = ["ka", "lo", "mi", "ren", "tor", "vi", "sa", "pe", "dun", "ar", "bel", "co", "fi", "gor", "hal", "is"]
_PLACES = ["the northern valley", "the river delta", "the old harbor", "the high plateau", "the eastern coast"]
_FOODS = ["flour", "butter", "onion", "garlic", "rice", "tomato", "basil", "lentils", "honey", "lemon"]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 3))).capitalize()


def _sentence(style: str, rng: random.Random, entity: str) -> str:
    if style == "encyclopedia":
        return rng.choice([
            f"{entity} is a settlement in {rng.choice(_PLACES)}, founded in {rng.randint(1200, 1900)}.",
            f"The population of {entity} was {rng.randint(2, 90) * 1000} at the last census.",
            f"{entity} is known for its {rng.choice(['bridges', 'libraries', 'markets', 'observatory'])}.",
        ])
    if style == "news":
        return rng.choice([
            f"On {rng.choice(['Monday', 'Tuesday', 'Friday'])}, officials in {entity} announced a new budget of "
            f"{rng.randint(2, 99)} million.",
            f"Residents of {entity} gathered downtown as the storm moved toward {rng.choice(_PLACES)}.",
            f"The mayor of {entity} said the project would be finished by {rng.randint(2026, 2035)}.",
        ])
    if style == "forum":
        return rng.choice([
            f"Q: how do I get from {entity} to {rng.choice(_PLACES)}? A: take the {rng.randint(2, 40)} bus, it is quicker.",
            f"Q: is {entity} worth a visit? A: yes, go early and skip the crowds.",
            f"Q: what is the best time to see {entity}? A: late spring, honestly.",
        ])
    if style == "recipes":
        a, b = rng.sample(_FOODS, 2)
        return rng.choice([
            f"Mix {rng.randint(1, 5)} cups of {a} with {rng.randint(1, 4)} spoons of {b}.",
            f"Simmer the {a} for {rng.randint(5, 40)} minutes, then add the {b}.",
            f"{entity} style: serve the {a} warm with fresh {b}.",
        ])
    f = entity.lower()
    return rng.choice([
        f"def {f}(x): return x + {rng.randint(1, 99)}",
        f"for i in range({rng.randint(2, 20)}): {f}(i)",
        f"assert {f}({rng.randint(0, 9)}) == {rng.randint(10, 99)}",
    ])


class WebTextParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(1000, gt=0, description="documents to generate")
    styles: list[Literal["encyclopedia", "news", "forum", "recipes", "code"]] = list(STYLES)
    sentences: list[int] = Field([3, 8], min_length=2, max_length=2, description="[min, max] sentences per document")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    noise: float = Field(0.0, ge=0, le=1, description="share of documents replaced by random characters (low quality)")
    duplicates: float = Field(0.0, ge=0, lt=1, description="share of documents that repeat an earlier one verbatim")
    seed: int | None = Field(None, description="defaults to the recipe seed")


def _in_test(seed: int, k: int, fraction: float) -> bool:
    h = int(hashlib.sha256(f"web:{seed}:{k}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


@GENERATORS.register("web_text")
def generate(params: WebTextParams, *, source: str, split: str, seed: int) -> list[dict]:
    seed = params.seed if params.seed is not None else seed
    rows, k = [], 0
    want_test = split == "test"
    while len(rows) < params.n:
        k += 1
        if _in_test(seed, k, params.test_fraction) != want_test:
            continue
        rng = random.Random(f"{seed}:{k}")
        style = params.styles[k % len(params.styles)]
        entity = _name(rng)
        lo, hi = params.sentences
        text = " ".join(_sentence(style, rng, entity) for _ in range(rng.randint(lo, max(lo, hi))))
        url = f"https://{HOSTS[style]}/{entity.lower()}-{k}"
        quality = "clean"
        if rows and rng.random() < params.duplicates:
            text, quality = rng.choice(rows)["text"], "duplicate"
        elif rng.random() < params.noise:
            text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 .,;") for _ in range(len(text)))
            quality = "noise"
        rows.append(make_row("text", source, text=text, skill=style,
                             metadata={"url": url, "style": style, "quality": quality}))
    return rows


generate.Params = WebTextParams  # type: ignore[attr-defined]
generate.row_kind = lambda params: "text"  # type: ignore[attr-defined]

