"""Content-addressed cache: each step's output lives under the hash of what produced it.

The key of an entry is the sha256 of a JSON description of everything its output depends on
(step config, input keys, the step's code version, the tokenizer where it matters). An entry is
built in a temporary folder next to its final place and renamed into place only after it is
complete (``rename`` is atomic on one file system), so a run killed mid-step leaves at most a
``*.tmp-*`` folder, which no later run trusts and which is swept on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

COMPLETE = "_COMPLETE.json"


def stable_hash(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class Cache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / COMPLETE).is_file()

    def sweep(self) -> int:
        """Remove temporary folders left by killed runs; return how many."""
        removed = 0
        for tmp in self.root.glob("*/*.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
        return removed

    @contextmanager
    def write(self, kind: str, key: str, describe: dict | None = None) -> Iterator[Path]:
        """Yield a temp folder to fill; on success it becomes the entry, on error it is removed."""
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f"{key}.tmp-{os.getpid()}-{time.time_ns()}"
        tmp.mkdir()
        try:
            yield tmp
            (tmp / COMPLETE).write_text(json.dumps({"kind": kind, "key": key, "describe": describe, "time": time.time()}, default=str))
            if final.exists():  # an incomplete leftover (no marker) or a racing writer
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
