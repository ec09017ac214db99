"""One writer per run directory: ``<out>/.recipe.lock``, held with ``flock`` for a command's lifetime.

``recipe curate``, ``train`` and ``eval`` write the run directory; a second such command on the same
``--out`` while the first runs is refused at once with who holds it (pid, host, command, since when),
never a traceback or a corrupted run. ``flock`` is released by the kernel when its holder dies, so a
killed run never leaves a stale lock. Readers (``plan``, ``card``, ``audit``, ``diff``) take no lock:
they check the run's commit instead (``curation.run_commit``).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

LOCK_NAME = ".recipe.lock"


class RunLocked(RuntimeError):
    pass


class RunLock:
    def __init__(self, out: Path):
        self.path = Path(out) / LOCK_NAME
        self._fh = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            try:
                info = json.loads(holder)
                who = (f"pid {info['pid']} on {info['host']}, `{info['command']}`, since {info['since']}")
            except (ValueError, KeyError):
                who = "another process"
            raise RunLocked(f"run directory {self.path.parent} is in use by another recipe command ({who}); wait for "
                            "it to finish, or give this run another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "command": " ".join(["recipe", *sys.argv[1:]])[:300],
                             "since": _dt.datetime.now().isoformat(timespec="seconds")}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
