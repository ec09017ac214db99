"""Read a run directory's files: the one place the card, ``recipe audit`` and ``recipe diff`` open them.

A run directory (``recipe curate``/``recipe train --out DIR``) holds ``resolved.yaml`` (first line
``# recipe hash: ...``), ``ledger/`` (``ledger.parquet`` before the folder), ``curation.json``, ``datasets/<mixture>.parquet`` and,
after training, ``manifest.json`` and ``eval/results.json``. Everything here reads files only: no
recipe is re-run and nothing from ``recipe`` is imported. A missing or unreadable file raises
:class:`RunFilesError` (or the ledger's :class:`~curation.ledger.LedgerError`) with the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from curation import ledger as ledger_mod
from curation import run_commit
from curation.row_ids import base_id
from curation.stage_paths import read_stage, stage_files, stage_location


class RunFilesError(Exception):
    """A run directory that lacks a file the card needs, or holds a corrupt one."""


def _json(path: Path, required: bool) -> dict | None:
    if not path.is_file():
        if required:
            raise RunFilesError(f"no {path.name} in {path.parent}: run `recipe curate` (or `recipe train`) with --out {path.parent} first")
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFilesError(f"{path} is not valid JSON ({exc}); re-run `recipe curate` to rebuild it") from None


@dataclass
class RunFiles:
    out: Path
    curation: dict = field(default_factory=dict)
    manifest: dict | None = None
    eval_results: dict | None = None
    resolved_text: str = ""
    recipe_hash: str = ""

    commit: dict = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)  # files from another recipe than the curation (left out)
    _scores: dict = field(default_factory=dict, repr=False)  # step_scores, read once per step

    @classmethod
    def open(cls, out: str | Path, allow_failed: bool = False) -> "RunFiles":
        """Open a committed run directory (``curation.run_commit``): refused, naming the files, when its
        curation did not finish or its files disagree. A ``manifest.json`` (and the eval results with it)
        written by a run of another recipe than the committed curation is left out and listed in ``stale``."""
        out = Path(out)
        if not out.is_dir():
            raise RunFilesError(f"{out} is not a run directory (it does not exist); give the --out of a `recipe curate` run")
        resolved = out / "resolved.yaml"
        if not resolved.is_file():
            raise RunFilesError(f"no resolved.yaml in {out}: is it a run directory? run `recipe curate` with --out {out} first")
        try:
            commit = run_commit.check(out, allow_failed=allow_failed)
        except run_commit.RunMismatch as exc:
            raise RunFilesError(str(exc)) from None
        text = resolved.read_text()
        recipe_hash = commit["recipe_hash"]
        stale = []
        manifest = _json(out / "manifest.json", False)
        if manifest is not None and manifest.get("recipe_hash") != recipe_hash:
            stale.append("manifest.json")
            manifest = None
        evals = _json(out / "eval" / "results.json", False)
        if evals is not None and (evals.get("recipe_hash") not in (None, recipe_hash) or "evals" not in evals):
            stale.append("eval/results.json")
            evals = None
        return cls(out=out, curation=_json(out / "curation.json", True), manifest=manifest, eval_results=evals,
                   resolved_text=text, recipe_hash=recipe_hash, commit=commit, stale=stale)

    # ------------------------------------------------------------------ recipe
    @cached_property
    def recipe(self) -> dict:
        try:
            data = yaml.safe_load(self.resolved_text) or {}
        except yaml.YAMLError as exc:
            raise RunFilesError(f"{self.out / 'resolved.yaml'} is not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise RunFilesError(f"{self.out / 'resolved.yaml'} does not hold a recipe")
        return data

    @property
    def recipe_file(self) -> str | None:
        lines = self.resolved_text.splitlines()
        return lines[1].split(":", 1)[1].strip() if len(lines) > 1 and lines[1].startswith("# from:") else None

    @property
    def mixtures(self) -> list[str]:
        return list(self.curation.get("mixtures", {}))

    # ------------------------------------------------------------------ ledger and datasets
    @property
    def ledger_path(self) -> Path:
        return ledger_mod.location(self.out)

    @cached_property
    def ledger(self) -> pa.Table:
        """The whole ledger in record order (what the card's whole-run views need)."""
        table = ledger_mod.read(self.ledger_path)
        missing = [c for c in ledger_mod.REQUIRED if c not in table.column_names]  # optional ones read as null
        if missing:
            raise ledger_mod.LedgerError(f"the ledger at {self.ledger_path} lacks columns {missing}; "
                                         "re-run `recipe curate` to rebuild it")
        return table

    def ledger_of(self, dataset: str, step: str | None = None, columns: list[str] | None = None, where=None) -> pa.Table:
        """One dataset's (or one of its steps') records, those matching the ``pyarrow.dataset`` expression
        ``where``, in order: only those parts of the ledger folder."""
        return ledger_mod.read_step(self.ledger_path, dataset, step, columns, where)

    def step_scores(self, dataset: str, step: str):
        """(score per record, NaN where null; kept per record) of one step: read once for the card's
        summary and its histogram (9 bytes a record, held while the card is written)."""
        import numpy as np

        cache = self._scores
        if (dataset, step) not in cache:
            part = self.ledger_of(dataset, step, ["score", "decision"])
            cache[dataset, step] = (np.asarray(part.column("score").to_numpy(zero_copy_only=False), dtype=float),
                                    np.asarray(pc.equal(part.column("decision"), "keep"), dtype=bool))
        return cache[dataset, step]

    def records_of(self, ids: list[str]) -> pa.Table:
        """Every record of ``ids`` and of their ``#k`` copies: only their buckets' files (``recipe audit``)."""
        return ledger_mod.records_of(self.ledger_path, ids)

    @property
    def ledger_records_count(self) -> int:
        return ledger_mod.num_records(self.ledger_path)

    def dataset_path(self, mixture: str) -> Path:
        """The stage dataset's file, or its folder of parts (``curation.stage_datasets``)."""
        return stage_location(self.out, mixture)

    def has_dataset(self, mixture: str) -> bool:
        return bool(stage_files(self.dataset_path(mixture)))

    def dataset(self, mixture: str, columns: list[str] | None = None) -> pa.Table:
        path = self.dataset_path(mixture)
        if not self.has_dataset(mixture):
            raise RunFilesError(f"no stage dataset {path}; re-run `recipe curate` with --out {self.out}")
        try:
            return read_stage(path, columns=columns)
        except Exception as exc:
            raise RunFilesError(f"{path} is unreadable ({str(exc).splitlines()[0]}); re-run `recipe curate`") from None

    def first_ids(self, mixture: str, n: int) -> list[str]:
        """The first ``n`` ids of a stage dataset (none where it is missing), from its first row groups only."""
        path = self.dataset_path(mixture)
        ids: list[str] = []
        try:
            for f in stage_files(path):
                for batch in pq.ParquetFile(f).iter_batches(batch_size=max(1, n), columns=["id"]):
                    ids += batch.column("id").to_pylist()[: n - len(ids)]
                    if len(ids) >= n:
                        return ids
        except Exception as exc:
            raise RunFilesError(f"{path} is unreadable ({str(exc).splitlines()[0]}); re-run `recipe curate`") from None
        return ids

    def datasets_holding(self, ids: list[str]) -> dict[str, list[str]]:
        """Per stage dataset, which of ``ids`` it holds: a filtered scan of its id column (what
        ``recipe audit`` of one row needs), not every id of every dataset in a Python set."""
        import pyarrow.dataset as pads

        out = {}
        for m in self.mixtures:
            files = stage_files(self.dataset_path(m))
            if files:
                found = pads.dataset([str(f) for f in files], format="parquet").to_table(
                    columns=["id"], filter=pads.field("id").isin(ids))
                present = set(found.column("id").to_pylist())
                out[m] = [i for i in ids if i in present]
        return out

    @cached_property
    def dataset_ids(self) -> dict[str, set[str]]:
        return {m: set(self.dataset(m, ["id"]).column("id").to_pylist()) for m in self.mixtures if self.has_dataset(m)}

    # ------------------------------------------------------------------ source rows
    def source_row_paths(self) -> list[Path]:
        """Where canonical source rows live: the paths curation.json records, else the default cache."""
        paths = [Path(s["rows_path"]) for s in self.curation.get("sources", {}).values() if s.get("rows_path")]
        paths = [p for p in paths if p.is_file()]
        if not paths:
            paths = sorted((self.out / "cache" / "source").glob("*/rows.parquet"))
        return paths

    def source_rows(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Canonical rows by id (upsampled copies ``<id>#k`` resolve to their base row): each source
        file's id column is scanned, then only the row groups holding a wanted id are read."""
        wanted = {base_id(i) for i in ids}
        found: dict[str, dict[str, Any]] = {}
        for path in self.source_row_paths():
            if not wanted - set(found):
                break
            try:
                found.update(_rows_with_ids(path, wanted - set(found)))
            except Exception:
                continue  # a swept or damaged cache entry: the card says the row text is unavailable
        return {i: found[base_id(i)] for i in ids if base_id(i) in found}


def _rows_with_ids(path: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """The rows of one Parquet file whose id is in ``wanted``, holding one row group at a time (ids
    are content hashes, so row-group statistics cannot prune: the id column says where they are)."""
    import numpy as np

    pf = pq.ParquetFile(path)
    value_set = pa.array(sorted(wanted), pa.string())
    hits = np.flatnonzero(np.asarray(pc.is_in(pf.read(columns=["id"]).column("id"), value_set=value_set), dtype=bool))
    if not len(hits):
        return {}
    bounds = np.cumsum([pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    out = {}
    for g in sorted(set(np.searchsorted(bounds, hits, side="right").tolist())):
        group = pf.read_row_group(g)
        for row in group.filter(pc.is_in(group.column("id"), value_set=value_set)).to_pylist():
            out[row["id"]] = row
    return out
