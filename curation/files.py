"""Files written so that a reader never sees half of one, and two writers never share a temp name.

Every file a run publishes (the ledger, stage datasets, ``curation.json``, ``run.json``, the card) is
written to a temporary name unique to this process and moment (``.<name>.tmp-<host>-<pid>-<ns>``)
next to its final place, then renamed over it (atomic on one file system). A kill, a full disk or a
read-only directory leaves at most a temp file, which no reader opens; the error names the path.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_HOST = socket.gethostname().replace("-", "_") or "host"


def temp_tag() -> str:
    """``<host>-<pid>-<ns>``: who made a temp entry (so a sweep can tell a live writer's from a dead one's)."""
    return f"{_HOST}-{os.getpid()}-{time.time_ns()}"


def owner_alive(tag: str) -> bool | None:
    """Whether the process named by a :func:`temp_tag` still runs (None: another host, or no tag)."""
    parts = tag.split("-")
    if len(parts) == 3:
        host, pid = parts[0], parts[1]
    elif len(parts) == 2:  # the older ``<pid>-<ns>`` form: this host
        host, pid = _HOST, parts[0]
    else:
        return None
    if host != _HOST or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class WriteError(OSError):
    """A file or folder could not be written (read-only, full disk, permissions): names the path."""


def describe_os_error(exc: OSError, path: str | Path | None = None) -> str:
    where = path or exc.filename or "a file"
    return (f"cannot write {where}: {exc.strerror or exc}; nothing was half-written (the previous files are "
            "intact). Free space or fix the permissions, or give another --out / --cache-dir")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; rename it to ``path`` on success, remove it on any error."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(exc.errno, describe_os_error(exc, path.parent)) from None
    tmp = path.with_name(f".{path.name}.tmp-{temp_tag()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        if isinstance(exc, WriteError):
            raise
        raise WriteError(exc.errno, describe_os_error(exc, path)) from None
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def remove_path(p: str | Path) -> None:
    """Remove a file or a folder, if there: a missing path is not an error, one that cannot be removed is."""
    p = Path(p)
    try:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise WriteError(exc.errno, describe_os_error(exc, p)) from None


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except OSError:
            pass


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temp folder beside ``path``; on success swap it in for ``path`` (the old folder is
    renamed aside, the new one renamed in, the old one removed), on any error remove it. A reader
    sees the old folder, none for an instant, or the new one: never a mix of the two."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(exc.errno, describe_os_error(exc, path.parent)) from None
    for kind in ("tmp", "old"):  # a killed writer's leftovers (hidden, never read): removed once it is gone
        for stale in path.parent.glob(f".{path.name}.{kind}-*"):
            if owner_alive(stale.name.split(f".{kind}-", 1)[1]) is False:
                _remove(stale)
    tag = temp_tag()
    tmp, old = path.with_name(f".{path.name}.tmp-{tag}"), path.with_name(f".{path.name}.old-{tag}")
    try:
        tmp.mkdir()
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as exc:
        _restore(tmp, old, path)
        if isinstance(exc, WriteError):
            raise
        raise WriteError(exc.errno, describe_os_error(exc, path)) from None
    except BaseException:
        _restore(tmp, old, path)
        raise
    _remove(old)


def _restore(tmp: Path, old: Path, path: Path) -> None:
    _remove(tmp)
    if old.exists() and not path.exists():
        os.replace(old, path)
