"""The curation phase: sources -> mixtures -> selection steps -> the run directory's curated files.

Every node is served from the content-addressed cache when its key is there (``recipe.cache``, passed
in: this package never imports ``recipe``). Steps decide, this module applies: each step's
decisions become ledger records and only kept rows go on. The run directory then gets, as one unit
(``curation.run_commit``): ``datasets/<mixture>.parquet``, ``ledger/`` (one record per row
per step, quarantined records included; a partitioned folder, ``curation.ledger_folder``), ``curation.json`` (per-source stats, outcome by source,
the funnel) and, last, ``run.json``. A source whose every record is malformed still gets its
quarantine written and committed as a failed curation, so ``recipe audit R --reason CODE`` shows it.

Rows move as Arrow tables from end to end: cached Parquet is read with ``pyarrow.parquet``, a
mixture's draw is rebuilt from its sources and copy counts (``mixture.assemble``), the steps narrow
a :class:`~curation.selection.Selection` (the mixture's table and the kept rows' indices; row-local
steps decide over shards of it on every CPU, ``curation.row_local``), a step's ledger part is saved
in its cache entry already split by id bucket and copied into the run's ``ledger/``, and the stage
dataset is written a row group at a time (``curation.stage_datasets``). Only steps without a batch
form get a ``datasets.Dataset``, a zero-copy view of the same table.
"""

from __future__ import annotations

import json
import time
from functools import partial
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation import ledger as ledger_mod
from curation import ledger_folder
from curation import run_commit
from curation.console import outcome_table, progress, say
from curation import engine_rows
from curation.files import atomic_write_text
from curation.columns import table_of
from curation.composition import composition
from curation.ledger import write_parquet

LEDGER_INDEX = "ledger/index.json"  # what run.json commits for the ledger folder
from curation.mixture import cached_rows, copies_detail, ids_digest, mix
from curation.engine import make_engine
from curation.rows import dataset_of
from curation.selection import Selection
from curation.stage_datasets import StageDatasets
from curation.stage_paths import stage_location
from curation.sources import NoValidRows, load_source
from curation.steps import STEPS
from curation.steps.base import StepContext, StepError


KEPT_FILE = "kept.npy"  # a step entry's kept rows: int64 indices into its input, in output order
COPIES_FILE = "copies.npz"  # a mixture entry's draw: each source's copy counts (sources.json gives their order)
TOKENS_FILE = "row_tokens.npy"  # a mixture entry's whitespace tokens per mixed row (the card's composition)


class Curation:
    """One recipe's curation over a cache and a run directory.

    ``recipe`` is the validated recipe, ``plan`` its plan (source, mixture and step nodes with keys),
    ``tokenizer_loader`` gives the recipe model's tokenizer to steps that count tokens,
    ``model_loader`` (name -> model dir) the models steps run (``base`` or a path; ``Step.model_refs``)."""

    def __init__(self, recipe, recipe_hash: str, plan, cache, out: Path, console, tokenizer_loader: Callable | None = None,
                 model_loader: Callable | None = None, workers: int | None = None, engine: dict | None = None):
        self.recipe, self.recipe_hash, self.plan, self.cache = recipe, recipe_hash, plan, cache
        self.out, self.console, self.tokenizer_loader = Path(out), console, tokenizer_loader
        self.model_loader = model_loader
        self.workers = workers  # processes for row-local steps (None: every CPU this process may use)
        # where steps run (curation.engine): {"name": local|ray, "address": ..., "num_cpus": ...}
        self.engine_spec = dict(engine or {"name": "local"})
        self.curation_id: str | None = None
        self._fresh: dict[str, pa.Table] = {}  # sources loaded by this run, until its first mixture is drawn

    # ------------------------------------------------------------------ sources
    def source(self, name: str) -> datasets.Dataset:
        """Source ``name``'s canonical rows (loaded into the cache on first use), as a dataset."""
        return dataset_of(self.source_table(name))

    def source_table(self, name: str) -> pa.Table:
        """Source ``name``'s rows, read from its cache entry each time (not held for the whole run); the
        first mixture gets the table the load just made, not a read of what it wrote."""
        entry = self.load_source(name)
        fresh = self._fresh.pop(name, None)
        return fresh if fresh is not None else pq.read_table(entry / "rows.parquet")

    def load_source(self, name: str) -> Path:
        """Source ``name`` into the cache unless it is there; its cache entry."""
        node = self.plan.get("source", name)
        entry = self.cache.path("source", node.key)
        if not self.cache.has("source", node.key):
            say(self.console, node, "loading")
            with progress(self.console) as prog:
                task = prog.add_task(f"source {name}", total=None)
                result = load_source(name, self.recipe.sources[name], seed=self.recipe.seed,
                                     progress=lambda k: prog.advance(task, k))
            with self.cache.write("source", node.key, node.describe) as tmp:
                table = table_of(result.rows)
                if name in next(iter(self.recipe.mixtures.values()), {}):  # kept only for the first draw
                    self._fresh[name] = table
                write_parquet(table, tmp / "rows.parquet")
                del table
                with open(tmp / "quarantine.jsonl", "w") as fh:
                    for q in result.quarantine:
                        fh.write(json.dumps(q, ensure_ascii=False) + "\n")
                (tmp / "stats.json").write_text(json.dumps(result.stats))
            if result.quarantine:
                counts = Counter(q["reason"] for q in result.quarantine)
                self.console.print(f"  [yellow]quarantined {len(result.quarantine)} of {result.stats['records']} records of "
                                   f"{name!r}[/]: " + ", ".join(f"{k} x{v}" for k, v in counts.most_common()))
        return entry

    def source_stats(self, name: str) -> dict:
        entry = self.cache.path("source", self.plan.get("source", name).key)
        stats = json.loads((entry / "stats.json").read_text())
        quarantine = [json.loads(line) for line in (entry / "quarantine.jsonl").read_text().splitlines() if line.strip()]
        return {**stats, "quarantine": quarantine}

    def rows_path(self, name: str) -> Path:
        return (self.cache.path("source", self.plan.get("source", name).key) / "rows.parquet").resolve()

    def _source_files(self, mix_name: str) -> list[Path]:
        return [self.rows_path(s) for s in self.recipe.mixtures[mix_name]]

    # ------------------------------------------------------------------ the phase
    def run(self, resolved_text: str) -> dict[str, datasets.Dataset]:
        """Curate every mixture, then write the run directory's curated files as one committed unit.

        Everything that can fail slowly (sources, mixtures, steps) runs in the cache first; the run
        directory is touched only afterwards, so a failure there leaves the previous run committed."""
        spec = self.engine_spec
        self._engine = make_engine(spec.get("name", "local"), address=spec.get("address"), num_cpus=spec.get("num_cpus"),
                                   shards=spec.get("shards", True),
                                   workers=self.workers, console=self.console)
        if self._engine.name != "local":
            self.console.print(f"engine: {self._engine.describe()}")
        try:
            return self._run(resolved_text)
        finally:
            self._engine.close()

    def _run(self, resolved_text: str) -> dict[str, datasets.Dataset]:
        started = time.time()
        self.curation_id = run_commit.new_curation_id()
        self.timing: list[dict] = []
        self.phase_seconds: dict[str, dict] = {"sources": {}, "mixtures": {}}  # wall seconds outside the steps
        stamp = {"recipe_hash": self.recipe_hash, "curation_id": self.curation_id}
        tables: list[pa.Table] = []
        record: dict[str, Any] = {"recipe_hash": self.recipe_hash, "curation_id": self.curation_id,
                                  "sources": {}, "mixtures": {}}
        for name in self.recipe.sources:
            node = self.plan.get("source", name)
            if node.cached:
                say(self.console, node, "[green]cached[/]")
            t0 = time.perf_counter()
            try:
                self.load_source(name)
            except NoValidRows as exc:
                self._commit_failed(exc, tables, record, stamp, resolved_text)
                raise
            self.phase_seconds["sources"][name] = None if node.cached else round(time.perf_counter() - t0, 3)
            stats = self.source_stats(name)
            record["sources"][name] = {**{k: v for k, v in stats.items() if k != "quarantine"},
                                       "fingerprint": node.describe["content"],
                                       "quarantine_reasons": dict(Counter(q["reason"] for q in stats["quarantine"])),
                                       # where the canonical rows live, so the card and `recipe audit` can show them
                                       "rows_path": str(self.rows_path(name))}
            if stats["quarantine"]:
                tables.append(ledger_mod.quarantine_table(name, stats["quarantine"]))
        out: dict[str, pa.Table] = {}
        for mix_name in self.recipe.mixtures:
            rows, mix_tables, funnel, table, made_of = self._curate_mixture(mix_name)
            tables += mix_tables
            out[mix_name] = rows
            record["mixtures"][mix_name] = {"outcome_by_source": table, "funnel": funnel,
                                            "rows": rows.num_rows, "dataset_key": self.dataset_key(mix_name)}
            if made_of is not None:
                record["mixtures"][mix_name]["composition"] = made_of
        # the run directory, as a unit: uncommitted while its files change, committed last
        run_commit.uncommit(self.out)
        atomic_write_text(self.out / "resolved.yaml", resolved_text)
        t0 = time.perf_counter()
        files = []
        for mix_name, rows in out.items():
            files += engine_rows.write_dataset(self._engine, self.out, mix_name, rows, stamp)
        out.clear()  # the datasets are read back from the files on first use (StageDatasets): no second copy
        self._write_ledger(tables, stamp)
        # wall time of the phase, of each source's load (null: served from the cache), of each mixture's
        # draw (or its rebuild from a cached entry), of each step (``seconds``: its whole turn,
        # ``decide_seconds``: the step's own decide, null when served from the cache) and of the run
        # directory's writes; kept out of the funnel so the card stays the same from run to run
        record["timing"] = {"seconds": round(time.time() - started, 3), "steps": self.timing, **self.phase_seconds,
                            "write_seconds": round(time.perf_counter() - t0, 3)}
        atomic_write_text(self.out / "curation.json", json.dumps(record, indent=1, default=str))
        run_commit.commit(self.out, self.recipe_hash, self.curation_id, files + [LEDGER_INDEX, "curation.json"])
        self.seconds = time.time() - started
        return StageDatasets({name: stage_location(self.out, name) for name in self.recipe.mixtures})

    def _commit_failed(self, exc: NoValidRows, tables: list, record: dict, stamp: dict, resolved_text: str) -> None:
        """A source with no valid row: its quarantine reaches the ledger (``recipe audit --reason``)."""
        run_commit.uncommit(self.out)
        atomic_write_text(self.out / "resolved.yaml", resolved_text)
        tables.append(ledger_mod.quarantine_table(exc.source, exc.quarantine))
        record["status"] = "failed"
        record["error"] = str(exc)
        self._write_ledger(tables, stamp)
        atomic_write_text(self.out / "curation.json", json.dumps(record, indent=1, default=str))
        run_commit.commit(self.out, self.recipe_hash, self.curation_id, [LEDGER_INDEX, "curation.json"],
                          status="failed", error=str(exc)[:500])

    def _write_ledger(self, tables: list, stamp: dict) -> None:
        """The run ledger as its partitioned folder; a single ``ledger.parquet`` an older version left is removed."""
        ledger_mod.write(tables, self.out / "ledger", stamp)
        (self.out / "ledger.parquet").unlink(missing_ok=True)

    def append_ledger_records(self, paths: list[Path]) -> None:
        """Join records written by stages (DPO pairs) to the ledger, replacing earlier stage records,
        and re-commit the run."""
        import pyarrow.compute as pc

        if not paths:
            return
        commit = run_commit.read(self.out) or {}
        stamp = {"recipe_hash": commit.get("recipe_hash", self.recipe_hash),
                 "curation_id": commit.get("curation_id", self.curation_id)}
        path = ledger_mod.location(self.out)
        table = ledger_mod.read(path) if path.exists() else None
        if table is not None:
            table = table.filter(pc.invert(pc.starts_with(table.column("dataset"), "stage:")))
        self._write_ledger(([table] if table is not None else []) + [pq.read_table(p) for p in paths], stamp)
        if commit:
            run_commit.commit(self.out, stamp["recipe_hash"], stamp["curation_id"], list(commit.get("files", {})))

    # ------------------------------------------------------------------ mixtures and steps
    def dataset_key(self, mix_name: str) -> str:
        steps = [n for n in self.plan.of_kind("step") if n.extra["mixture"] == mix_name]
        return steps[-1].key if steps else self.plan.get("mixture", mix_name).key

    def _curate_mixture(self, mix_name: str):
        node = self.plan.get("mixture", mix_name)
        entry = self.cache.path("mixture", node.key)
        t0 = time.perf_counter()
        store = order = None
        if self.cache.has("mixture", node.key):
            say(self.console, node, "[green]cached[/]")
            # on Ray, its shards: the driver reads their narrow columns only
            store = engine_rows.cached_shards(self._engine, self.cache, node, self._source_files(mix_name))
            rows = store.narrow() if store is not None else self._cached_mixture_rows(entry)
            tokens = np.load(entry / TOKENS_FILE).astype(np.int64) if (entry / TOKENS_FILE).exists() else None
            tokens = tokens if tokens is not None and len(tokens) == rows.num_rows else None  # else the card counts
        else:
            say(self.console, node, "mixing")
            entries = self.recipe.mixtures[mix_name]
            # on Ray with shards, the draws stay unshuffled: each shard takes its rows from them (no whole copy)
            result = mix(mix_name, entries, {s: partial(self.source_table, s) for s in entries}, self.recipe.seed,
                         shuffled=not engine_rows.uses_shards(self._engine))
            for t in result.table:
                if t["mode"] == "count" and t["share"] == 1:
                    self.console.print(f"  [yellow]mixtures.{mix_name}.{t['source']} = 1 means ONE row; write 1.0 for all rows[/]")
            parts = []
            for src, info in result.ledger.items():
                copies = info["copies"]
                parts.append(ledger_mod.records_table(
                    mix_name, "mixture", 0, info["ids"], pa.repeat(pa.scalar(src), len(copies)), copies > 0,
                    reason=pa.array(np.where(copies > 0, None, "not_sampled"), pa.string()),
                    detail=copies_detail(copies)))
            with self.cache.write("mixture", node.key, node.describe) as tmp:
                # the draw's copy counts, not the rows: the rows are the sources' (assemble)
                np.savez(tmp / COPIES_FILE, **{f"s{k}": info["copies"] for k, info in enumerate(result.ledger.values())})
                (tmp / "sources.json").write_text(json.dumps([{"source": src, "rows": len(info["ids"]), "ids": ids_digest(info["ids"])}
                                                              for src, info in result.ledger.items()]))
                ledger_mod.save_part(pa.concat_tables(parts), tmp / "decisions")
                (tmp / "table.json").write_text(json.dumps(result.table))
                np.save(tmp / TOKENS_FILE, result.row_tokens.astype(np.int32))
            rows, tokens, order = result.arrow, result.row_tokens, result.order
            del result, parts
        self._fresh.clear()  # a later mixture reads its sources from the cache: no table held through the steps
        self.phase_seconds["mixtures"][mix_name] = round(time.perf_counter() - t0, 3)
        tables: list = [ledger_mod.part_location(entry)]  # ledger parts, linked into the ledger at the end
        table = json.loads((entry / "table.json").read_text())
        self.console.print(outcome_table(mix_name, table))
        funnel = [{"step": "mixture", "rows_in": sum(t["available"] for t in table), "rows_out": rows.num_rows, "dropped": {}}]
        rows = engine_rows.selection(self._engine, self.cache, node, rows, {} if tokens is None else {"tokens": tokens},
                                     self._source_files(mix_name), store, order)
        hashes = None  # the rows' ledger_folder.base_hashes, computed at the first step that runs, then carried
        step_nodes, fused = [n for n in self.plan.of_kind("step") if n.extra["mixture"] == mix_name], {}
        for i, step_node in enumerate(step_nodes):
            rows_in = rows.num_rows
            t0 = time.perf_counter()
            # a run of row-local steps decided in one pass where the engine can (Ray: curation.ray_chain)
            fused = fused or engine_rows.fused_decisions(self._engine, self.cache, step_nodes[i:], rows, self.recipe.seed)
            rows, decisions, extras, seconds, hashes = self._run_step(step_node, rows, hashes, fused.pop(step_node.key, None))
            tables.append(ledger_mod.part_location(self.cache.path("step", step_node.key)))
            codes = drop_codes(decisions)
            del decisions
            funnel.append({"step": step_node.name.split(":", 1)[1], "index": step_node.extra["index"],
                           "params": step_node.describe["params"], "rows_in": rows_in, "rows_out": rows.num_rows,
                           "dropped": codes, "extras": extras})
            self.timing.append({"mixture": mix_name, "step": step_node.name.split(":", 1)[1],
                                "index": step_node.extra["index"], "rows_in": rows_in, "decide_seconds": seconds,
                                "seconds": round(time.perf_counter() - t0, 3)})
            self.console.print(f"  {rows_in} -> {rows.num_rows} rows" + (f"  dropped: {codes}" if codes else ""))
        if rows.store is None and rows.indices is not None and len(rows.indices) < rows.base.num_rows // 2:
            rows.table()  # held until the run's writes: the kept rows, not a base twice their size
        return rows, tables, funnel, table, self._composition(rows)

    @staticmethod
    def _composition(rows: Selection) -> dict | None:
        """The curated rows' composition from the token counts carried from the draw (None where the
        draw has none: a mixture cached by an older version; the card then counts them itself)."""
        tokens = rows.values("tokens")
        if tokens is None:
            return None
        return composition(rows.column("source"), rows.column("kind"), rows.column("skill"), tokens)

    def _cached_mixture_rows(self, entry: Path) -> pa.Table:
        """A cached mixture's rows, rebuilt from its sources and copy counts (``mixture.cached_rows``)."""
        return cached_rows(entry, COPIES_FILE, self.source_table, self.recipe.seed)

    def _run_step(self, node, rows: Selection, hashes: np.ndarray | None = None, fused: tuple | None = None):
        """(kept rows, decision records, extras, seconds its decide took: None when served from the cache,
        the kept rows' id hashes: ``hashes`` of ``rows`` taken along, or None). ``fused``: the step's
        decisions and seconds, already decided with its neighbours (``engine_rows.fused_decisions``)."""
        entry = self.cache.path("step", node.key)
        seconds = None
        if self.cache.has("step", node.key):
            say(self.console, node, "[green]cached[/]")
        else:
            say(self.console, node, "running")
            step_cls = STEPS.get(node.extra["step"])
            params = step_cls.Params.model_validate(node.describe["params"])
            with self.cache.write("step", node.key, node.describe) as tmp, progress(self.console) as prog:
                def on_progress(desc: str, total: int):
                    task = prog.add_task(desc, total=total)
                    return lambda k=1: prog.advance(task, k)

                decisions, seconds = fused or self._decide(node, step_cls, params, rows, tmp, on_progress)
                if len(decisions.keep) != rows.num_rows:
                    raise StepError(f"step {node.name} returned {len(decisions.keep)} decisions for {rows.num_rows} rows")
                table = ledger_mod.records_table(node.extra["mixture"], f"{node.extra['index']}:{node.extra['step']}",
                                                 node.extra["index"] + 1, rows.column("id"), rows.column("source"),
                                                 decisions.keep, decisions.score, decisions.reason,
                                                 position=decisions.order, group=decisions.group)
                hashes = ledger_folder.base_hashes(rows.column("id")) if hashes is None else hashes
                ledger_mod.save_part(table, tmp / "decisions", hashes)
                # kept rows in the step's order when it gives one (iclm), else in input order: a step
                # that only filters keeps an earlier step's order
                kept_indices = np.asarray(decisions.kept_indices(), dtype=np.int64)
                kept = rows.keep(kept_indices)
                if rows.num_rows and not kept.num_rows:
                    raise StepError(f"selection.{node.extra['mixture']}[{node.extra['index']}] ({node.extra['step']}): "
                                    f"dropped all {rows.num_rows} rows ({drop_codes(table)}); loosen its options or remove it")
                # the kept rows as indices into the step's input (itself the previous entry's output), not a
                # copy of every kept row's text: the chain is rebuilt from the mixture's rows by takes
                np.save(tmp / KEPT_FILE, kept_indices)
                (tmp / "extras.json").write_text(json.dumps(decisions.extras, default=str))
            return kept, table, json.loads(json.dumps(decisions.extras, default=str)), seconds, hashes[kept_indices]
        hashes_out = None
        if (entry / KEPT_FILE).exists():
            kept_indices = np.load(entry / KEPT_FILE)
            kept = rows.keep(kept_indices)
            hashes_out = None if hashes is None else hashes[kept_indices]
        else:  # an entry written before the kept indices (it holds the rows themselves)
            kept = Selection(pq.read_table(entry / "rows.parquet"))
        return (kept, ledger_mod.read_part(entry, ["decision", "reason_code"]), json.loads((entry / "extras.json").read_text()),
                seconds, hashes_out)

    def _decide(self, node, step_cls, params, rows: Selection, tmp: Path, on_progress) -> tuple:
        """The step's decisions over ``rows`` on the run's engine, and the seconds they took."""
        ctx = StepContext(seed=self.recipe.seed, workdir=tmp / "work", tokenizer_loader=self.tokenizer_loader,
                          model_loader=self.model_loader, source_loader=self.source, progress=on_progress,
                          cache_root=self.cache.root, engine=self._engine)
        (tmp / "work").mkdir()
        step = step_cls(params, ctx)
        started = time.perf_counter()
        advance = on_progress(f"{node.extra['step']} (row-local)", rows.num_rows) if step.row_local else None
        # a row-local step on this machine decides over shards taken one at a time; any other gets the rows
        # whole (on an engine with a shard store, its workers read the rows: the selection, not a table)
        table_in = (rows if rows.store is not None else
                    rows.view() if step.row_local and self._engine.name == "local" else rows.table())
        decisions = self._engine.decide(step, table_in, on_shard=advance)
        del table_in
        return decisions, round(time.perf_counter() - started, 3)


def drop_codes(decisions: pa.Table) -> dict[str, int]:
    """Reason codes of the dropped records and their counts, in first-seen order (Arrow's
    ``value_counts`` keeps it). Drops only: a selector may also give kept rows a reason
    (paser_selected:cluster=3)."""
    import pyarrow.compute as pc

    dropped = decisions.filter(pc.not_equal(decisions.column("decision"), "keep")).column("reason_code").drop_null()
    return {c["values"]: c["counts"] for c in pc.value_counts(dropped).to_pylist() if c["values"]}
