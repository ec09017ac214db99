"""RAKE keyphrases (Rose, Engel, Cramer & Cowley 2010, "Automatic Keyword Extraction from Individual
Documents", in *Text Mining: Applications and Theory*, ch. 1), with scikit-learn's English stop words.

PASER's concept-consistency graph takes a sample's concepts to be its RAKE keyphrases
(BokwaiHo/PASER@72b7fe7 ``paser.py``: ``rake_nltk.Rake()`` with its defaults). The algorithm:

1. Candidate phrases: the lower-cased text is split into word tokens, and a phrase is a maximal
   run of words containing no stop word and no punctuation.
2. Word score: deg(w) / freq(w), where freq(w) counts w's occurrences in candidate phrases and
   deg(w) sums the lengths (in words) of the candidate phrases it occurs in (its co-occurrences,
   itself included) -- RAKE's default "degree to frequency ratio".
3. Phrase score: the sum of its words' scores; phrases are ranked by score (ties: first occurrence).

Why our own code (a few lines): ``rake-nltk`` needs NLTK's stop-word list and sentence tokenizer,
which NLTK downloads at run time; nothing may be downloaded here. Differences from ``rake-nltk``'s
defaults, stated: the stop words are scikit-learn's ``ENGLISH_STOP_WORDS`` (318 words) instead of
NLTK's English list (179); every non-word token (``?``, ``...``, ``),``) is a phrase delimiter,
where ``rake-nltk`` only drops single punctuation characters (a token like ``?)`` survives there as
a "word"); sentences need no separate split, since sentence punctuation already delimits phrases.
"""

from __future__ import annotations

import re
from collections import defaultdict

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

_TOKEN = re.compile(r"\w+|[^\w\s]+")
_WORD = re.compile(r"\w+")


def candidate_phrases(text: str, stop_words=ENGLISH_STOP_WORDS) -> list[tuple[str, ...]]:
    """Maximal runs of non-stop words between stop words and punctuation, in text order."""
    phrases: list[tuple[str, ...]] = []
    current: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        if _WORD.fullmatch(token) and token not in stop_words:
            current.append(token)
            continue
        if current:
            phrases.append(tuple(current))
            current = []
    if current:
        phrases.append(tuple(current))
    return phrases


def rake(text: str, stop_words=ENGLISH_STOP_WORDS) -> list[tuple[str, float]]:
    """``[(phrase, score)]`` of the distinct candidate phrases, best first."""
    phrases = candidate_phrases(text, stop_words)
    freq: dict[str, int] = defaultdict(int)
    degree: dict[str, int] = defaultdict(int)
    for phrase in phrases:
        for word in phrase:
            freq[word] += 1
            degree[word] += len(phrase)
    first: dict[str, int] = {}
    for i, phrase in enumerate(phrases):
        first.setdefault(" ".join(phrase), i)
    scored = {" ".join(p): sum(degree[w] / freq[w] for w in p) for p in phrases}
    return sorted(scored.items(), key=lambda kv: (-kv[1], first[kv[0]]))


def keyphrases(text: str, stop_words=ENGLISH_STOP_WORDS) -> list[str]:
    """The ranked keyphrases of ``text`` (every candidate phrase, as ``rake-nltk``'s
    ``get_ranked_phrases``, without repeats)."""
    return [p for p, _ in rake(text, stop_words)]
