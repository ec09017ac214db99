"""fastText helpers shared by the classifier steps (``quality_classifier``, ``preselect``).

fastText (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification") trains and
predicts; this module only writes its training file, loads a ``.bin`` defensively and reads
P(label) for every row. Why our own code: ``fasttext.load_model`` accepts a truncated ``.bin``
without complaint (it reads past the end as zeros), so a half-copied classifier would silently
score every row; :func:`load_classifier` checks the file's size against what its header declares
and raises :class:`~curation.steps.base.StepError` with a clear message instead; and
:func:`train` runs fastText's trainer in a fresh child process, because in a process that has
already run torch it can read stale heap memory and diverge (see its docstring).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from curation.steps.base import StepError

_MAGIC = 793712314  # FASTTEXT_FILEFORMAT_MAGIC_INT32
_SPACE = re.compile(r"\s+")


def one_line(text: str) -> str:
    """fastText reads one example per line: newlines (and runs of spaces) become one space."""
    return _SPACE.sub(" ", text).strip()


def write_training_file(path: Path, texts: Sequence[str], labels: Sequence[str]) -> int:
    """``__label__X text`` lines; returns how many were written (empty texts are skipped)."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for text, label in zip(texts, labels):
            line = one_line(text)
            if line:
                fh.write(f"{label} {line}\n")
                n += 1
    return n


_TRAIN_CHILD = """
import json, sys
import fasttext
a = json.loads(sys.argv[1])
lr = a["lr"]
for attempt in range(a["retries"] + 1):
    try:
        model = fasttext.train_supervised(a["input"], epoch=a["epoch"], lr=lr, wordNgrams=a["word_ngrams"],
                                          dim=a["dim"], bucket=a["bucket"], seed=a["seed"], thread=a["threads"],
                                          verbose=0)
    except RuntimeError as exc:
        if "NaN" not in str(exc):
            print(json.dumps({"error": str(exc)})); sys.exit(0)
        if attempt == a["retries"]:
            print(json.dumps({"nan": lr})); sys.exit(0)
        lr /= 2
        continue
    model.save_model(a["output"])
    print(json.dumps({"lr": lr})); sys.exit(0)
"""


def train(path: Path, output: Path, *, epoch: int, lr: float, word_ngrams: int, dim: int, bucket: int, seed: int,
          threads: int = 1, retries: int = 3):
    """``fasttext.train_supervised`` on ``path``, model saved to ``output``; returns ``(model, lr actually used)``.

    Training runs in a fresh Python child process. fastText 0.9.3's trainer reads heap memory it never
    initialised: in a process whose heap already holds other libraries' freed buffers (torch, an
    encoder, a tokenizer) it "Encountered NaN" at any learning rate, while the same file and seed train
    cleanly in a new process (reproduced by filling freed malloc chunks with NaN bytes: 0/5 runs trained,
    5/5 on a clean heap). Loading and prediction are unaffected, so the parent loads the saved ``.bin``.

    A genuine divergence (NaN on a clean heap) is met with fastText's own remedy, a lower learning rate:
    the rate is halved and training restarted, up to ``retries`` times (the rate used is reported, so the
    data card shows it), then :class:`StepError`.
    """
    import fasttext

    args = {"input": str(path), "output": str(output), "epoch": epoch, "lr": lr, "word_ngrams": word_ngrams,
            "dim": dim, "bucket": bucket, "seed": seed, "threads": threads, "retries": retries}
    proc = subprocess.run([sys.executable, "-c", _TRAIN_CHILD, json.dumps(args)], capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise StepError(f"fastText training failed (exit {proc.returncode}): {' / '.join(tail) or 'no output'}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise StepError(f"fastText training failed: {result['error']}")
    if "nan" in result:
        raise StepError(f"fastText training diverged (NaN) even at lr={result['nan']:g}; lower `lr` or `epoch`, or "
                        f"give more training rows")
    fasttext.FastText.eprint = lambda *a, **k: None  # its "load_model does not return WordVectorModel" notice
    return fasttext.load_model(str(output)), result["lr"]


def _expected_size(model) -> int:
    """Bytes of a non-quantized fastText ``.bin`` with these fields (fastText's FastText::saveModel:
    magic+version, Args (12 int32 + 1 double), Dictionary (3 int32, 2 int64, entries of
    word+NUL+int64+int8), then a bool and a DenseMatrix (2 int64 + floats) for input and output)."""
    entries = list(model.get_words(on_unicode_error="replace")) + list(model.get_labels(on_unicode_error="replace"))
    size = 8 + 12 * 4 + 8 + 3 * 4 + 2 * 8 + sum(len(w.encode("utf-8")) + 1 + 8 + 1 for w in entries)
    size += 1 + 16 + model.get_input_matrix().size * 4 + 1 + 16 + model.get_output_matrix().size * 4
    return size


def load_classifier(path: str | Path, positive_label: str):
    """Load a supervised fastText model; :class:`StepError` if missing, corrupt or lacking the label."""
    import fasttext

    p = Path(path).expanduser()
    if not p.is_file():
        raise StepError(f"fastText model not found: {str(path)!r} (give `model_path` an existing .bin file, "
                        f"or train one from the recipe with `positive:` and `negative:` sources)")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or int.from_bytes(head[:4], "little") != _MAGIC:
        raise StepError(f"{str(path)!r} is not a fastText model (wrong file header); a supervised model saved with "
                        f"fasttext's save_model(...) is needed")
    try:
        fasttext.FastText.eprint = lambda *a, **k: None  # its "load_model does not return WordVectorModel" notice
        model = fasttext.load_model(str(p))
    except (ValueError, RuntimeError, MemoryError) as exc:
        raise StepError(f"cannot read fastText model {str(path)!r}: {exc}") from None
    labels = list(model.get_labels())
    if not labels or not all(l.startswith("__label__") for l in labels):
        raise StepError(f"{str(path)!r} is corrupt or not a supervised fastText classifier (labels: {labels[:5]})")
    if not model.is_quantized():
        try:
            expected = _expected_size(model)
        except ValueError:
            expected = -1
        actual = os.path.getsize(p)
        if expected != actual:
            raise StepError(f"fastText model {str(path)!r} is corrupt or truncated: {actual} bytes, its header "
                            f"describes {expected}; copy or train it again")
    if positive_label not in labels:
        raise StepError(f"fastText model {str(path)!r} has labels {labels}, not {positive_label!r}; set "
                        f"`positive_label:` to the label of the class to keep")
    return model


def positive_probability(model, texts: Sequence[str], positive_label: str, batch: int = 4096,
                         advance=None) -> np.ndarray:
    """P(``positive_label``) for each text (all labels requested, so the probability is exact)."""
    out = np.zeros(len(texts))
    k = len(model.get_labels())
    for start in range(0, len(texts), batch):
        part = [one_line(t) for t in texts[start:start + batch]]
        labels, probs = model.predict(part, k=k)
        for i, (ls, ps) in enumerate(zip(labels, probs)):
            out[start + i] = dict(zip(ls, ps)).get(positive_label, 0.0)
        if advance:
            advance(len(part))
    return np.clip(out, 0.0, 1.0)
