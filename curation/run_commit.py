"""A run directory's curation outputs form one unit: ``run.json`` commits them, readers check them.

Why: ``resolved.yaml``, ``curation.json``, the ``ledger/`` folder and ``datasets/<mixture>.parquet`` are
written one after another; a kill or a full disk between two of them used to leave one recipe's
datasets beside another recipe's ledger, and ``recipe card`` published the mix. Now:

1. curation starts by removing ``run.json`` (the run is uncommitted while it writes);
2. every file it writes carries the recipe hash and a fresh ``curation_id`` (the Parquet files in
   their schema metadata, ``curation.json`` as keys, ``resolved.yaml`` in its header);
3. ``run.json`` is written last, atomically: recipe hash, curation id, and each file's size (for the
   ledger folder, its ``index.json``, which lists each part file's size and carries the stamp).

A reader (:func:`check`: the card, ``recipe audit``, ``recipe diff``) refuses a directory without
``run.json`` (curation never finished) or whose files disagree with it, naming each file that
disagrees. A curation that failed on purpose (a source with no valid row) commits with
``status: failed`` so that ``recipe audit --reason`` can still show what was quarantined.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.files import atomic_write_text

RUN_FILE = "run.json"
META_KEY = b"recipe_kit.run"


class RunMismatch(Exception):
    """The run directory's files do not form one committed curation (message names the files)."""


def new_curation_id() -> str:
    return uuid.uuid4().hex[:16]


def stamp(table: pa.Table, recipe_hash: str, curation_id: str) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[META_KEY] = json.dumps({"recipe_hash": recipe_hash, "curation_id": curation_id}).encode()
    return table.replace_schema_metadata(meta)


def parquet_stamp(path: Path) -> dict | None:
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:  # noqa: BLE001 - unreadable: reported by the caller as a mismatch
        return None
    raw = meta.get(META_KEY)
    return json.loads(raw) if raw else None


def uncommit(out: Path) -> None:
    (Path(out) / RUN_FILE).unlink(missing_ok=True)


def commit(out: Path, recipe_hash: str, curation_id: str, files: list[str], status: str = "ok", **extra: Any) -> dict:
    out = Path(out)
    record = {"recipe_hash": recipe_hash, "curation_id": curation_id, "status": status,
              "files": {f: (out / f).stat().st_size for f in files if (out / f).is_file()}, **extra}
    atomic_write_text(out / RUN_FILE, json.dumps(record, indent=1))
    return record


def read(out: Path) -> dict | None:
    path = Path(out) / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def resolved_hash(out: Path) -> str | None:
    path = Path(out) / "resolved.yaml"
    if not path.is_file():
        return None
    first = path.read_text(errors="replace").split("\n", 1)[0]
    return first.split(":", 1)[1].strip() if first.startswith("# recipe hash:") else None


def check(out: Path, allow_failed: bool = False) -> dict:
    """The commit record of ``out`` if every committed file agrees with it; else :class:`RunMismatch`."""
    out = Path(out)
    record = read(out)
    if record is None:
        raise RunMismatch(f"{out}: its curation did not finish (no {RUN_FILE}: a run was killed, ran out of space, or "
                          f"is still running); re-run `recipe curate` (or `recipe train`) with --out {out}")
    if record.get("status") == "failed" and not allow_failed:
        raise RunMismatch(f"{out}: its curation failed ({record.get('error', 'see its output')}); "
                          "`recipe audit --reason CODE` shows what was quarantined")
    h, cid = record.get("recipe_hash"), record.get("curation_id")
    bad: list[str] = []
    if resolved_hash(out) != h:
        bad.append(f"resolved.yaml (recipe {resolved_hash(out)}, not {h})")
    for rel, size in (record.get("files") or {}).items():
        path = out / rel
        if not path.is_file():
            bad.append(f"{rel} (missing)")
            continue
        if rel.endswith(".parquet"):
            try:
                pq.read_schema(path)
            except Exception as exc:  # noqa: BLE001
                bad.append(f"{rel} (unreadable: {str(exc).splitlines()[0][:120]})")
                continue
        if path.stat().st_size != size:
            bad.append(f"{rel} (changed after the commit: {path.stat().st_size} bytes, committed {size})")
            continue
        if rel.endswith(".parquet"):
            st = parquet_stamp(path)
            if st is None or st.get("curation_id") != cid:
                bad.append(f"{rel} (from curation {st.get('curation_id') if st else 'unknown'}, not {cid})")
        elif rel.endswith("/index.json"):  # a partitioned folder (the ledger): every file its index lists
            from curation import ledger_folder

            bad += ledger_folder.problems(path.parent, cid)
        elif rel == "curation.json":
            try:
                got = json.loads(path.read_text()).get("curation_id")
            except ValueError:
                got = "unreadable"
            if got != cid:
                bad.append(f"curation.json (from curation {got}, not {cid})")
    bad += _stage_forms(out, record.get("files") or {})
    if bad:
        raise RunMismatch(f"{out}: the run's files disagree with its commit ({RUN_FILE}: recipe {h}, curation {cid}): "
                          + "; ".join(bad) + f". Re-run `recipe curate` with --out {out} to rebuild them")
    return record


def _stage_forms(out: Path, files: dict) -> list[str]:
    """A stage dataset committed as parts (``datasets/<m>/part-*.parquet``) must have exactly those parts
    and no ``datasets/<m>.parquet`` beside it; one committed as a file, no folder beside it (readers
    take the folder where there is one: ``curation.stage_paths``)."""
    from curation.stage_paths import parts

    bad = []
    folders: dict[str, set[str]] = {}
    singles = set()
    for rel in files:
        bits = rel.split("/")
        if len(bits) == 3 and bits[0] == "datasets" and bits[2].startswith("part-"):
            folders.setdefault(bits[1], set()).add(bits[2])
        elif len(bits) == 2 and bits[0] == "datasets" and bits[1].endswith(".parquet"):
            singles.add(bits[1][: -len(".parquet")])
    for name, listed in folders.items():
        extra = sorted({p.name for p in parts(out / "datasets" / name)} - listed)
        if extra:
            bad.append(f"datasets/{name}/{extra[0]} (a part the commit does not list)")
        if (out / "datasets" / f"{name}.parquet").exists():
            bad.append(f"datasets/{name}.parquet (beside the committed folder datasets/{name}/)")
    for name in singles:
        if (out / "datasets" / name).is_dir():
            bad.append(f"datasets/{name}/ (beside the committed file datasets/{name}.parquet)")
    return bad
