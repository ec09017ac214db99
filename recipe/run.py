"""The runner: executes a plan node by node, serving cached nodes and recording every decision.

Order: sources -> base model (tiny init trains its tokenizer on the mixed sources) -> mixtures ->
selection steps -> stages -> evals. Curation nodes are cached by content key (``recipe.cache``);
stages write ``<out>/stages/<i>-<kind>/`` with checkpoints and ``final/`` and are done when their
``stage.json`` holds the current key. The run directory gets ``resolved.yaml``, ``ledger.parquet``
(one record per row per step), ``datasets/<mixture>.parquet`` (what each stage trains on),
``curation.json`` (per-source stats, outcome by source, the funnel), ``manifest.json`` (each
stage's input model, data hash, output and status) and ``eval/results.json``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from curation import ledger as ledger_mod
from curation.mixture import mix
from curation.sources import load_source
from curation.steps import STEPS
from curation.steps.base import StepContext
from recipe.cache import Cache
from recipe.load import LoadedRecipe
from recipe.plan import Node, make_plan, stage_dir


def _quiet_library_bars() -> None:
    """Our rich bars cover curation and eval; the libraries' per-file bars only add noise there.
    The trainer's own step bar (tqdm) stays on."""
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class RunError(Exception):
    """A user-facing failure of a run (bad data for a step, resume refused, ...)."""


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


class Runner:
    def __init__(self, loaded: LoadedRecipe, out: str | Path | None = None, cache_dir: str | Path | None = None,
                 console: Console | None = None):
        self.loaded = loaded
        self.recipe = loaded.recipe
        self.out = Path(out or Path("runs") / self.recipe.name)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cache = Cache(cache_dir or self.out / "cache")
        self.cache.sweep()
        self.console = console or Console()
        _quiet_library_bars()
        self.plan = make_plan(loaded, self.cache, self.out)
        if self.recipe.model.trust_remote_code:
            self.console.print(f"[bold yellow]warning:[/] model.trust_remote_code is true: loading {self.recipe.model.path!r} "
                               "runs Python code from that model's repository on this machine")
        self._sources: dict[str, datasets.Dataset] = {}
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ bookkeeping
    def write_resolved(self) -> None:
        text = f"# recipe hash: {self.loaded.hash}\n# from: {self.loaded.file}\n" + self.loaded.resolved_yaml()
        (self.out / "resolved.yaml").write_text(text)

    def _say(self, node: Node, status: str) -> None:
        self.console.print(f"[bold]{node.kind:8}[/] {node.name:32} [dim]{node.key[:12]}[/]  {status}")

    # ------------------------------------------------------------------ sources
    def source(self, name: str) -> datasets.Dataset:
        if name in self._sources:
            return self._sources[name]
        node = self.plan.get("source", name)
        entry = self.cache.path("source", node.key)
        if not self.cache.has("source", node.key):
            self._say(node, "loading")
            spec = self.recipe.sources[name]
            with _progress(self.console) as prog:
                task = prog.add_task(f"source {name}", total=None)
                result = load_source(name, spec, seed=self.recipe.seed, progress=lambda k: prog.advance(task, k))
            with self.cache.write("source", node.key, node.describe) as tmp:
                result.rows.to_parquet(str(tmp / "rows.parquet"))
                with open(tmp / "quarantine.jsonl", "w") as fh:
                    for q in result.quarantine:
                        fh.write(json.dumps(q, ensure_ascii=False) + "\n")
                (tmp / "stats.json").write_text(json.dumps(result.stats))
            if result.quarantine:
                counts = Counter(q["reason"] for q in result.quarantine)
                self.console.print(f"  [yellow]quarantined {len(result.quarantine)} of {result.stats['records']} records of "
                                   f"{name!r}[/]: " + ", ".join(f"{k} x{v}" for k, v in counts.most_common()))
        ds = datasets.Dataset.from_parquet(str(entry / "rows.parquet"))
        self._sources[name] = ds
        return ds

    def source_stats(self, name: str) -> dict:
        entry = self.cache.path("source", self.plan.get("source", name).key)
        stats = json.loads((entry / "stats.json").read_text())
        quarantine = [json.loads(l) for l in (entry / "quarantine.jsonl").read_text().splitlines() if l.strip()]
        return {**stats, "quarantine": quarantine}

    # ------------------------------------------------------------------ base model
    def base_model_dir(self) -> Path:
        node = self.plan.get("model", "base")
        if self.recipe.model.path:
            return Path(self.recipe.model.path) if Path(self.recipe.model.path).exists() else self.recipe.model.path
        entry = self.cache.path("model", node.key)
        if not self.cache.has("model", node.key):
            from curation.rows import row_text
            from training.tiny_model import build_tiny_model

            self._say(node, "building tiny model + tokenizer")
            m = self.recipe.model
            names = sorted({s for e in self.recipe.mixtures.values() for s in e}) or list(self.recipe.sources)
            texts = [row_text(row) for n in names for row in self.source(n)]
            with self.cache.write("model", node.key, node.describe) as tmp:
                build_tiny_model(tmp, texts, vocab_size=m.vocab_size, hidden_size=m.hidden_size, num_layers=m.num_layers,
                                 num_heads=m.num_heads, intermediate_size=m.intermediate_size,
                                 max_position_embeddings=m.max_position_embeddings, seed=self.recipe.seed)
        return entry

    def _tokenizer(self):
        from training.models import load_tokenizer

        with self.load_policy():
            return load_tokenizer(str(self.base_model_dir()))

    def load_policy(self):
        """``model.revision`` (for the base model's path) and ``model.trust_remote_code`` for every load."""
        from training.models import load_policy

        m = self.recipe.model
        return load_policy({m.path: m.revision} if m.path else {}, m.trust_remote_code)

    # ------------------------------------------------------------------ curation
    def curate(self) -> dict[str, datasets.Dataset]:
        """Run sources, mixtures and selection; write the ledger, stage datasets and curation.json."""
        started = time.time()
        self.write_resolved()
        tables: list[pa.Table] = []
        record: dict[str, Any] = {"recipe_hash": self.loaded.hash, "sources": {}, "mixtures": {}}
        for name in self.recipe.sources:
            node = self.plan.get("source", name)
            if node.cached:
                self._say(node, "[green]cached[/]")
            self.source(name)
            stats = self.source_stats(name)
            record["sources"][name] = {**{k: v for k, v in stats.items() if k != "quarantine"},
                                       "fingerprint": node.describe["content"],
                                       "quarantine_reasons": dict(Counter(q["reason"] for q in stats["quarantine"])),
                                       # where the canonical rows live, so the card and `recipe audit` can show them
                                       "rows_path": str((self.cache.path("source", node.key) / "rows.parquet").resolve())}
            if stats["quarantine"]:
                tables.append(ledger_mod.quarantine_table(name, stats["quarantine"]))
        out: dict[str, datasets.Dataset] = {}
        for mix_name in self.recipe.mixtures:
            rows, mix_tables, funnel, table = self._curate_mixture(mix_name)
            tables += mix_tables
            out[mix_name] = rows
            record["mixtures"][mix_name] = {"outcome_by_source": table, "funnel": funnel,
                                            "rows": len(rows), "dataset_key": self._dataset_key(mix_name)}
            (self.out / "datasets").mkdir(exist_ok=True)
            rows.to_parquet(str(self.out / "datasets" / f"{mix_name}.parquet"))
        ledger_mod.write(tables, self.out / "ledger.parquet")
        (self.out / "curation.json").write_text(json.dumps(record, indent=1, default=str))
        self.timings["curate"] = time.time() - started
        return out

    def _dataset_key(self, mix_name: str) -> str:
        steps = [n for n in self.plan.of_kind("step") if n.extra["mixture"] == mix_name]
        return steps[-1].key if steps else self.plan.get("mixture", mix_name).key

    def _curate_mixture(self, mix_name: str):
        node = self.plan.get("mixture", mix_name)
        entry = self.cache.path("mixture", node.key)
        if self.cache.has("mixture", node.key):
            self._say(node, "[green]cached[/]")
        else:
            self._say(node, "mixing")
            entries = self.recipe.mixtures[mix_name]
            result = mix(mix_name, entries, {s: self.source(s) for s in entries}, self.recipe.seed)
            for t in result.table:
                if t["mode"] == "count" and t["share"] == 1:
                    self.console.print(f"  [yellow]mixtures.{mix_name}.{t['source']} = 1 means ONE row; write 1.0 for all rows[/]")
            parts = []
            for src, info in result.ledger.items():
                copies = info["copies"]
                parts.append(ledger_mod.records_table(
                    mix_name, "mixture", 0, info["ids"], [src] * len(copies), [c > 0 for c in copies],
                    reason=[None if c else "not_sampled" for c in copies],
                    detail=[f"copies={c}" if c > 1 else None for c in copies]))
            with self.cache.write("mixture", node.key, node.describe) as tmp:
                result.rows.to_parquet(str(tmp / "rows.parquet"))
                pq.write_table(pa.concat_tables(parts), tmp / "decisions.parquet")
                (tmp / "table.json").write_text(json.dumps(result.table))
        rows = datasets.Dataset.from_parquet(str(entry / "rows.parquet"))
        tables = [pq.read_table(entry / "decisions.parquet")]
        table = json.loads((entry / "table.json").read_text())
        self._print_outcome(mix_name, table)
        funnel = [{"step": "mixture", "rows_in": sum(t["available"] for t in table), "rows_out": len(rows), "dropped": {}}]
        for step_node in [n for n in self.plan.of_kind("step") if n.extra["mixture"] == mix_name]:
            rows_in = len(rows)
            rows, decisions, extras = self._run_step(step_node, rows)
            tables.append(decisions)
            codes = Counter(c for c in decisions.column("reason_code").to_pylist() if c)
            funnel.append({"step": step_node.name.split(":", 1)[1], "index": step_node.extra["index"],
                           "params": step_node.describe["params"], "rows_in": rows_in, "rows_out": len(rows),
                           "dropped": dict(codes), "extras": extras})
            self.console.print(f"  {rows_in} -> {len(rows)} rows" + (f"  dropped: {dict(codes)}" if codes else ""))
        return rows, tables, funnel, table

    def _run_step(self, node: Node, rows: datasets.Dataset):
        entry = self.cache.path("step", node.key)
        if self.cache.has("step", node.key):
            self._say(node, "[green]cached[/]")
        else:
            self._say(node, "running")
            step_cls = STEPS.get(node.extra["step"])
            params = step_cls.Params.model_validate(node.describe["params"])
            with self.cache.write("step", node.key, node.describe) as tmp, _progress(self.console) as prog:
                def progress(desc: str, total: int):
                    task = prog.add_task(desc, total=total)
                    return lambda k=1: prog.advance(task, k)

                ctx = StepContext(seed=self.recipe.seed, workdir=tmp / "work", tokenizer_loader=self._tokenizer,
                                  source_loader=self.source, progress=progress, cache_root=self.cache.root)
                (tmp / "work").mkdir()
                decisions = step_cls(params, ctx).decide(rows)
                if len(decisions.keep) != len(rows):
                    raise RunError(f"step {node.name} returned {len(decisions.keep)} decisions for {len(rows)} rows")
                table = ledger_mod.records_table(node.extra["mixture"], f"{node.extra['index']}:{node.extra['step']}",
                                                 node.extra["index"] + 1, rows["id"], rows["source"], decisions.keep,
                                                 decisions.score, decisions.reason)
                pq.write_table(table, tmp / "decisions.parquet")
                kept = rows.select([i for i, k in enumerate(decisions.keep) if k])
                kept.to_parquet(str(tmp / "rows.parquet"))
                (tmp / "extras.json").write_text(json.dumps(decisions.extras, default=str))
        rows = datasets.Dataset.from_parquet(str(entry / "rows.parquet"))
        return rows, pq.read_table(entry / "decisions.parquet"), json.loads((entry / "extras.json").read_text())

    def _print_outcome(self, mix_name: str, table: list[dict]) -> None:
        t = Table(title=f"mixture {mix_name}: outcome by source", show_lines=False)
        for col in ("source", "share", "available", "target rows", "observed rows", "target ratio", "observed ratio", "tokens"):
            t.add_column(col, justify="right" if col != "source" else "left")
        for r in table:
            share = {"fraction": f"{r['share']:g} of rows", "upsample": f"x{r['share']:g}", "count": f"{int(r['share'])} rows"}[r["mode"]]
            t.add_row(r["source"], share, str(r["available"]), str(r["target_rows"]), str(r["observed_rows"]),
                      f"{r['target_ratio']:.3f}", f"{r['observed_ratio']:.3f}", str(r["observed_tokens"]))
        self.console.print(t)

    # ------------------------------------------------------------------ stages
    def model_dir_of(self, model_name: str) -> Path | str:
        if model_name == "base":
            return self.base_model_dir()
        names = self.recipe.stage_names()
        if model_name in names:
            i = names.index(model_name)
            return stage_dir(self.out, i, self.recipe.stages[i].kind) / "final"
        return model_name  # a path

    def train(self, resume: bool = False, gpus: int | None = None) -> None:
        """Curate, then run every unfinished stage in order (in-process, or launched when ``gpus``
        or the recipe's ``launch:`` asks for several processes). ``manifest.json`` is rewritten at
        every status change, so a killed run leaves a manifest that says which stage was running."""
        datasets_ = self.curate()
        base = self.base_model_dir()
        launch = self._launch_spec(gpus)
        manifest = {"recipe_hash": self.loaded.hash, "base_model": str(base), "stages": [],
                    "launch": launch.model_dump() if launch else None}
        nodes = self.plan.of_kind("stage")
        for node in nodes:
            i, kind = node.extra["index"], node.extra["kind"]
            stage = self.recipe.stages[i]
            sdir = stage_dir(self.out, i, kind)
            manifest["stages"].append({
                "name": node.name, "kind": kind, "key": node.key, "from": node.extra["start"],
                "input_model": str(self.model_dir_of(node.extra["start"])), "data": stage.data,
                "data_key": node.describe["data"], "rows": len(datasets_[stage.data]),
                "output": str(sdir / "final"), "adapter_only": bool(stage.peft and not stage.merge),
                "status": "done" if node.cached else "pending"})
        self._write_manifest(manifest)
        self._check_stage_data(nodes, datasets_)  # a bad stage fails here, before any stage trains
        for node, entry in zip(nodes, manifest["stages"]):
            i, kind = node.extra["index"], node.extra["kind"]
            stage = self.recipe.stages[i]
            sdir = stage_dir(self.out, i, kind)
            if node.cached:
                self._say(node, "[green]done (cached)[/]")
                continue
            resume_here = resume and self._check_resume(sdir, node)
            if not resume_here:
                _clear_checkpoints(sdir)  # a fresh start never trusts an older run's checkpoints
            self._say(node, "resuming" if resume_here else "training")
            started = time.time()
            self._write_stage_marker(sdir, node, "running")
            entry["status"] = "running"
            if resume_here:
                from training.common import resume_checkpoint

                entry["resumed_from"] = resume_checkpoint(sdir)
            self._write_manifest(manifest)
            continued = node.extra["start"] != "base"
            stage = self._with_resolved_ref(stage)
            if launch:
                metrics, entry["launch_command"] = self._launch_stage(launch, i, stage, entry["input_model"], sdir,
                                                                      resume_here, continued)
            else:
                metrics = self._run_stage(stage, entry["input_model"], datasets_[stage.data], sdir, resume_here,
                                          continued=continued).metrics
            self._write_stage_marker(sdir, node, "done", metrics=metrics)
            self.timings[f"stage:{node.name}"] = time.time() - started
            entry.update(status="done", metrics=metrics, seconds=time.time() - started)
            if not (sdir / "lr_schedule.png").is_file():
                _plot_logged_lr(sdir)
            self._write_manifest(manifest)
        self._append_stage_ledgers([stage_dir(self.out, n.extra["index"], n.extra["kind"]) for n in nodes])

    def _check_stage_data(self, nodes, datasets_) -> None:
        from training.stage_data import check_stage_data

        for node in nodes:
            if not node.cached:
                check_stage_data(self.recipe.stages[node.extra["index"]], datasets_[self.recipe.stages[node.extra["index"]].data])

    def _with_resolved_ref(self, stage):
        """A DPO stage's ``ref`` (base, a stage name, a path) as a model directory; ``previous`` stays
        (the stage runner copies its starting model, or uses the adapter-disabled policy with LoRA)."""
        ref = getattr(stage, "ref", None)
        if ref is None or ref == "previous":
            return stage
        mdir = self.model_dir_of(ref)
        return stage.model_copy(update={"ref": str(Path(mdir).resolve()) if Path(mdir).exists() else str(mdir)})

    def _append_stage_ledgers(self, sdirs) -> None:
        """Stages that derive rows (a DPO stage's ``pairs:``) write ledger records in their stage dir;
        they join the run's ledger (replacing any earlier copies of stage records)."""
        import pyarrow.compute as pc

        parts = [pq.read_table(d / "ledger.parquet") for d in sdirs if (Path(d) / "ledger.parquet").is_file()]
        if not parts:
            return
        path = self.out / "ledger.parquet"
        table = pq.read_table(path) if path.exists() else None
        if table is not None:
            table = table.filter(pc.invert(pc.starts_with(table.column("dataset"), "stage:")))
        ledger_mod.write(([table] if table is not None else []) + parts, path)

    def _write_manifest(self, manifest: dict) -> None:
        tmp = self.out / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, default=str))
        tmp.replace(self.out / "manifest.json")

    def _launch_spec(self, gpus: int | None):
        """The launch to use, or None for in-process: ``--gpus N`` overrides ``launch.num_processes``."""
        from recipe.schema import LaunchSpec

        spec = self.recipe.launch
        if gpus is None and spec is None:
            return None
        spec = (spec or LaunchSpec()).model_copy()
        if gpus is not None:
            spec.num_processes = gpus
        if not spec.num_processes:
            from training.models import has_gpu

            if not has_gpu():
                return None  # a recipe's launch block without a count runs in-process on CPU
            import torch

            spec.num_processes = torch.cuda.device_count() * spec.num_machines
        if spec.num_processes == 1 and spec.num_machines == 1:
            return None
        return spec

    def _stage_job(self, i: int, stage, start_dir, sdir: Path, resume: bool, continued: bool) -> Path:
        """Write what a launched stage needs (``training.launch_stage`` reads it)."""
        job = {"stage": {**self.loaded.resolved["stages"][i], **({"ref": stage.ref} if getattr(stage, "ref", None) else {})},
               "start_model": str(start_dir),
               "adapter": _adapter_mode(stage, start_dir), "dtype": self.recipe.model.dtype,
               "data": str((self.out / "datasets" / f"{stage.data}.parquet").resolve()),
               "stage_dir": str(sdir.resolve()), "seed": self.recipe.seed, "resume": resume, "continued": continued,
               "revisions": {self.recipe.model.path: self.recipe.model.revision} if self.recipe.model.path else {},
               "trust_remote_code": self.recipe.model.trust_remote_code}
        sdir.mkdir(parents=True, exist_ok=True)
        path = sdir / "job.json"
        path.write_text(json.dumps(job, indent=1))
        return path

    def _launch_stage(self, launch, i: int, stage, start_dir, sdir: Path, resume: bool, continued: bool):
        import os
        import subprocess

        from training.launch import LaunchError, launch_command
        from training.models import has_gpu

        job = self._stage_job(i, stage, start_dir, sdir, resume, continued)
        (sdir / "result.json").unlink(missing_ok=True)
        try:
            cmd = launch_command(launch, job, gpu=has_gpu())
        except LaunchError as exc:
            raise RunError(str(exc)) from None
        self.console.print("  [dim]$ " + " ".join(cmd) + "[/]")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                            os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        proc = subprocess.run(cmd, env=env)
        if proc.returncode != 0 or not (sdir / "result.json").is_file():
            raise RunError(f"the launched stage {sdir.name} failed (exit {proc.returncode}); its output is above; "
                           f"re-run with --resume to continue from its last checkpoint")
        return json.loads((sdir / "result.json").read_text())["metrics"], cmd

    def _write_stage_marker(self, sdir: Path, node: Node, status: str, **extra) -> None:
        sdir.mkdir(parents=True, exist_ok=True)
        (sdir / "stage.json").write_text(json.dumps({"key": node.key, "status": status, "describe": node.describe, **extra},
                                                    indent=1, default=str))

    def _check_resume(self, sdir: Path, node: Node) -> bool:
        from training.common import resume_checkpoint

        marker = sdir / "stage.json"
        if not marker.is_file() or resume_checkpoint(sdir) is None:
            return False
        old = json.loads(marker.read_text())
        if old.get("key") != node.key:
            changed = _changed_keys(old.get("describe", {}), node.describe)
            raise RunError(f"cannot resume stage {node.name}: the recipe changed since its checkpoint "
                           f"({', '.join(changed) or 'inputs changed'}); run without --resume to start it over")
        return True

    def _run_stage(self, stage, start_dir, rows, sdir: Path, resume: bool, continued: bool = False):
        from training.models import load_model, load_tokenizer
        from training.stages import run_stage

        from transformers.utils import logging as hf_logging

        dtype = self.recipe.model.dtype
        with self.load_policy():
            model = load_model(str(start_dir), dtype=dtype, adapter=_adapter_mode(stage, start_dir))
            tokenizer = load_tokenizer(str(start_dir))
            hf_logging.enable_progress_bar()  # the trainer's step bar
            try:
                return run_stage(stage, model, tokenizer, rows, sdir, seed=self.recipe.seed, resume=resume,
                                 continued=continued)
            finally:
                hf_logging.disable_progress_bar()

    # ------------------------------------------------------------------ eval
    def evaluate(self, only_available: bool = False) -> dict:
        from eval.accuracy import accuracy
        from training.models import load_model, load_tokenizer

        started = time.time()
        results: dict[str, dict] = {}
        for node in self.plan.of_kind("eval"):
            ev, model_name = node.extra["eval"], node.extra["model"]
            spec = self.recipe.eval[ev]
            entry = self.cache.path("eval", node.key)
            if not self.cache.has("eval", node.key):
                mdir = self.model_dir_of(model_name)
                if only_available and not Path(mdir).exists():
                    continue
                self._say(node, "evaluating")
                rows = self.source(spec.source)
                if spec.limit:
                    rows = rows.select(range(min(spec.limit, len(rows))))
                with self.load_policy():
                    model = load_model(str(mdir), dtype=self.recipe.model.dtype)
                    tokenizer = load_tokenizer(str(mdir))
                model.eval()
                with _progress(self.console) as prog:
                    task = prog.add_task(f"eval {ev} on {model_name}", total=len(rows))
                    res = accuracy(model, tokenizer, rows, verifier=spec.verifier, max_new_tokens=spec.max_new_tokens,
                                   batch_size=spec.batch_size, on_batch=lambda k: prog.advance(task, k))
                with self.cache.write("eval", node.key, node.describe) as tmp:
                    (tmp / "result.json").write_text(json.dumps(res, indent=1))
            else:
                self._say(node, "[green]cached[/]")
            results.setdefault(ev, {})[model_name] = json.loads((entry / "result.json").read_text())
        (self.out / "eval").mkdir(exist_ok=True)
        (self.out / "eval" / "results.json").write_text(json.dumps(results, indent=1))
        self._print_results(results)
        self.timings["eval"] = time.time() - started
        return results

    def _print_results(self, results: dict) -> None:
        t = Table(title="evaluation")
        for col in ("eval", "model", "accuracy", "n", "by skill"):
            t.add_column(col)
        for ev, per_model in results.items():
            for model_name, res in per_model.items():
                skills = " ".join(f"{k}={v:.2f}" for k, v in res["by_skill"].items())
                t.add_row(ev, model_name, f"{res['accuracy']:.3f}", str(res["n"]), skills)
        self.console.print(t)


def _adapter_mode(stage, start_dir) -> str:
    """A start model that is an unmerged LoRA adapter: a LoRA stage keeps training that adapter, a
    full fine-tuning stage merges it first (``training.models.load_model``)."""
    return "train" if stage.peft is not None else "merge"


def _clear_checkpoints(sdir: Path) -> None:
    import shutil

    for ckpt in Path(sdir).glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)


def _plot_logged_lr(sdir: Path) -> None:
    """Fallback plot from the trainer's logged lr (a stage runner that did not call schedules.install)."""
    log = Path(sdir) / "final" / "train_log.json"
    if not log.is_file():
        return
    from training.schedules import plot_schedule

    points = [r["learning_rate"] for r in json.loads(log.read_text()) if "learning_rate" in r]
    if points:
        plot_schedule(points, Path(sdir) / "lr_schedule.png", "learning rate as logged (every logging_steps)")


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _changed_keys(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if old == new else [prefix]
