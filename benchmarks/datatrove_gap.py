"""Why datatrove keeps 47% of the curate_scale rows and we keep 95%: its drop reasons, counted.

Runs datatrove's ``GopherRepetitionFilter(language="en")`` (the filter in ``datatrove_chain.py``)
over ``card_scale.make_source`` rows and counts each drop reason, and, for the top-n-gram drops,
how many had a most frequent n-gram that occurs only ONCE. datatrove's ``find_top_duplicate``
multiplies the most common n-gram's length by its count without requiring a repeat, so in a short
text a single bigram already covers more than 20% of the characters; our ``repetition`` step
counts the top n-gram only when it repeats (``curation/steps/repetition.py``), which is what the
statistic is for (Rae et al. 2021, Gopher, Table A1: repetition removal).

Run with a Python that has datatrove[processing] and spacy:

    /tmp/dtvenv/bin/python benchmarks/datatrove_gap.py --rows 20000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from card_scale import make_source  # noqa: E402


def main() -> None:
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherRepetitionFilter
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    args = ap.parse_args()
    f, tok = GopherRepetitionFilter(language="en"), load_word_tokenizer("en")
    reasons: Counter = Counter()
    single = 0
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pool.jsonl"
        make_source(src, args.rows)
        for i, line in enumerate(src.open()):
            text = json.loads(line)["body"]
            r = f.filter(Document(text=text, id=str(i)))
            if r is True or (isinstance(r, tuple) and r[0]):
                reasons["kept"] += 1
                continue
            reason = r[1] if isinstance(r, tuple) else "dropped"
            reasons[reason] += 1
            if reason.startswith("top_"):
                n, words = int(reason.split("_")[1]), tok.word_tokenize(text)
                grams = Counter(" ".join(words[j:j + n]) for j in range(len(words) - n + 1))
                single += grams.most_common(1)[0][1] == 1
    dropped = args.rows - reasons["kept"]
    print(json.dumps({"rows": args.rows, "reasons": dict(reasons), "dropped": dropped,
                      "top_ngram_drops_whose_top_ngram_occurs_once": single}))


if __name__ == "__main__":
    main()
