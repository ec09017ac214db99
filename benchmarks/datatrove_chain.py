"""The curate_scale chain written directly in datatrove, for the side-by-side in ``curate_scale.py``.

Run with a Python that has ``datatrove[processing]``, ``spacy``, ``orjson`` and ``pyarrow`` (not
dependencies of recipe-kit: ``python -m venv /tmp/dtvenv && /tmp/dtvenv/bin/pip install
'datatrove[processing]' spacy orjson pyarrow``; ``curate_scale.py --datatrove-python PATH`` runs this
file with it):

    python benchmarks/datatrove_chain.py IN_DIR OUT_DIR --tasks 2

What a datatrove user writes for our four steps: ``JsonlReader`` (``text_key="body"``), an exact
dedup as a ``LambdaFilter`` over a set of normalised-text hashes (datatrove's own exact dedup is
a multi-stage signature/sort/filter job; in-stream is the cheaper choice), a word-count
``LambdaFilter`` (min 5 words), datatrove's ``GopherRepetitionFilter`` (Gopher's Table A1
thresholds, as ours), a decoding-debris ``LambdaFilter`` (U+FFFD or control characters, as our
``garbage``), and ``ParquetWriter``. Datatrove parallelises over input files, so the input is
split into one file per task; the dedup set is then per task (less work than our global dedup).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
import unicodedata

_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def main() -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import GopherRepetitionFilter, LambdaFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import ParquetWriter

    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--tasks", type=int, default=2)
    args = ap.parse_args()

    seen: set[bytes] = set()

    def first_copy(doc) -> bool:
        text = _SPACE.sub(" ", unicodedata.normalize("NFKC", doc.text).lower()).strip()
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if digest in seen:
            return False
        seen.add(digest)
        return True

    started = time.time()
    LocalPipelineExecutor(
        pipeline=[
            JsonlReader(args.input, text_key="body", id_key="n"),
            LambdaFilter(first_copy),
            LambdaFilter(lambda doc: len(doc.text.split()) >= 5),
            GopherRepetitionFilter(language="en"),
            LambdaFilter(lambda doc: "\ufffd" not in doc.text and not _CONTROL.search(doc.text)),
            ParquetWriter(args.output),
        ],
        tasks=args.tasks, workers=args.tasks, logging_dir=f"{args.output}/.logs",
    ).run()
    print(f"datatrove_seconds {time.time() - started:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
