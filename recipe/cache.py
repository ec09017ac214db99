"""Content-addressed cache: each step's output lives under the hash of what produced it.

The key of an entry is the sha256 of a JSON description of everything its output depends on
(step config, input keys, the step's code version, the tokenizer where it matters). An entry is
built in a temporary folder next to its final place and renamed into place only after it is
complete (``rename`` is atomic on one file system), so a run killed mid-step leaves at most a
``*.tmp-*`` folder, which no later run trusts. A temp folder's name says who writes it
(``<key>.tmp-<host>-<pid>-<ns>``): :meth:`Cache.sweep` removes only those whose writer is gone, so a
second process on the same cache (another ``recipe curate``, a ``recipe plan``) never deletes the
entry a live run is writing. Two processes that build the same key race harmlessly: the first
complete entry wins and the other's copy (same key, same content) is discarded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager

from curation.files import WriteError, describe_os_error, owner_alive, temp_tag
from pathlib import Path
from typing import Any, Iterator

COMPLETE = "_COMPLETE.json"


def stable_hash(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class Cache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(exc.errno, describe_os_error(exc, self.root)) from None

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / COMPLETE).is_file()

    def sweep(self) -> int:
        """Remove temporary folders whose writer is gone (killed runs on this host); return how many.
        A live writer's folder, or one made on another host, is left alone."""
        removed = 0
        for tmp in self.root.glob("*/*.tmp-*"):
            if owner_alive(tmp.name.split(".tmp-", 1)[1]) is False:
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
        return removed

    @contextmanager
    def write(self, kind: str, key: str, describe: dict | None = None) -> Iterator[Path]:
        """Yield a temp folder to fill; on success it becomes the entry, on error it is removed."""
        final = self.path(kind, key)
        tmp = final.parent / f"{key}.tmp-{temp_tag()}"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
        except OSError as exc:
            raise WriteError(exc.errno, describe_os_error(exc, final.parent)) from None
        try:
            yield tmp
            (tmp / COMPLETE).write_text(json.dumps({"kind": kind, "key": key, "describe": describe, "time": time.time()}, default=str))
            if self.has(kind, key):  # a racing writer finished the same key first: keep its entry
                shutil.rmtree(tmp, ignore_errors=True)
                return
            if final.exists():  # an incomplete leftover (no marker)
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.has(kind, key):  # not a racing writer that got there first
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, WriteError):
                raise
            raise WriteError(exc.errno, describe_os_error(exc, exc.filename or final)) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
