"""The training phase: every stage of a recipe, in order, each as a job (``training.job``).

For each stage the loop (in the ``recipe`` process, never inside a launched job):

1. checks every unfinished stage's rows, validation sets and lengths before the first one trains;
2. refuses to silently discard a stage's resumable checkpoints (``--resume`` continues them,
   ``--restart`` discards them);
3. prepares the stage's data: the curated dataset, or what the kind's ``prepare`` makes of it (DPO
   pairs from verifiable rows, recorded in the ledger once), and the validation sets, as Parquet;
4. writes ``job.json`` and runs it with ``training.job.run_job``, in-process or under
   ``accelerate launch`` / ``torchrun`` (``--gpus N``): the same function on the same file;
5. records the outcome in ``stage.json`` and ``manifest.json`` (rewritten at every status change, so
   a killed run leaves a manifest that says which stage was running).

A finished stage is also indexed in the cache (``stage/<key>/link.json`` -> its ``final/``), so another
run directory on the same cache (a ``recipe sweep`` variant) whose stage has the same key reuses it.

``run`` is the runner (duck-typed: ``recipe``, ``loaded``, ``out``, ``console``, ``plan``, ``cache``,
``model_dir_of``, ``rows_of``, ``load_policy``, ``say``, ``timings``, ``launch``, ``curation_id``,
``tokenizer``, ``append_ledger_records``); this module never imports ``recipe``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from training.job import RESULT_FILE, run_job, write_job
from training.kinds import STAGE_KINDS
from training.stage_data import StageDataError, check_stage_data


class StageLoopError(RuntimeError):
    """A user-facing failure of the training phase (resume refused, a launched stage failed, ...)."""


def stage_dir(out: Path, index: int, kind: str) -> Path:
    return Path(out) / "stages" / f"{index}-{kind}"


def adapter_mode(stage) -> str:
    """A start model that is an unmerged LoRA adapter: a LoRA stage keeps training that adapter, a
    full fine-tuning stage merges it first (``training.models.load_model``)."""
    return "train" if stage.peft is not None else "merge"


class StageLoop:
    def __init__(self, run):
        self.run = run
        self.recipe = run.recipe
        self.out = Path(run.out)

    # ------------------------------------------------------------------ the loop
    def train(self, curated: dict, resume: bool = False, restart: bool = False) -> None:
        run, launch = self.run, self.run.launch
        nodes = run.plan.of_kind("stage")
        manifest = {"recipe_hash": run.loaded.hash, "curation_id": run.curation_id,
                    "base_model": str(run.model_dir_of("base")), "stages": [],
                    "launch": launch.model_dump() if launch else None}
        for node in nodes:
            i, kind = node.extra["index"], node.extra["kind"]
            stage = self.recipe.stages[i]
            sdir = stage_dir(self.out, i, kind)
            manifest["stages"].append({
                "name": node.name, "kind": kind, "key": node.key, "from": node.extra["start"],
                "input_model": str(run.model_dir_of(node.extra["start"])), "data": stage.data,
                "data_key": node.describe["data"], "rows": len(curated[stage.data]) if stage.data is not None else None,
                "output": str(sdir / "final"), "adapter_only": bool(stage.peft and not stage.merge),
                "status": "done" if node.cached else "pending"})
        self._write_manifest(manifest)
        self.check_all(nodes, curated, resume, restart)  # a bad stage fails here, before any stage trains
        for node, entry in zip(nodes, manifest["stages"]):
            if node.cached:
                shared = node.extra.get("shared_final")
                run.say(node, f"[green]done (cached{', trained in ' + str(Path(shared).parent.parent.parent) if shared else ''})[/]")
                if shared:
                    entry["output"] = shared
                continue
            self._run_one(node, entry, curated, resume, manifest)
        self._append_stage_ledgers([Path(n.extra["shared_final"]).parent if n.extra.get("shared_final")
                                    else stage_dir(self.out, n.extra["index"], n.extra["kind"]) for n in nodes])

    def _run_one(self, node, entry: dict, curated: dict, resume: bool, manifest: dict) -> None:
        from training.common import resume_checkpoint

        run = self.run
        i, kind = node.extra["index"], node.extra["kind"]
        stage = self.recipe.stages[i]
        sdir = stage_dir(self.out, i, kind)
        resume_here = resume and self._check_resume(sdir, node)
        if not resume_here:
            _clear_checkpoints(sdir)  # a fresh start never trusts an older run's checkpoints, hook logs or exposure
            import shutil

            shutil.rmtree(sdir / "hooks", ignore_errors=True)
            for stale in ("exposure.parquet", "exposure_ledger.parquet"):
                (sdir / stale).unlink(missing_ok=True)
        run.say(node, "resuming" if resume_here else "training")
        started = time.time()
        self._write_stage_marker(sdir, node, "running")
        entry["status"] = "running"
        if resume_here:
            entry["resumed_from"] = resume_checkpoint(sdir, warn=lambda m: run.console.print(f"  [yellow]warning:[/] {m}"))
        self._write_manifest(manifest)
        rows = curated[stage.data] if stage.data is not None else None  # None: a kind without data (prune)
        job = self.prepare_job(node, entry["input_model"], rows, resume_here)
        job_path = write_job(job, sdir)
        (sdir / RESULT_FILE).unlink(missing_ok=True)
        if run.launch:
            entry["launch_command"] = self._launch(job_path)
        else:
            self._in_process(job)
        result = json.loads((sdir / RESULT_FILE).read_text())
        metrics = result["metrics"]
        summary_file = sdir / "hooks" / "summary.json"
        if summary_file.is_file():  # hooks' decisions over time, exposure: the card plots these
            summary = json.loads(summary_file.read_text())
            entry["exposure"] = summary.pop("_exposure", None)
            entry["extras"] = {f"{h}_{k}": v for h, vals in summary.items() for k, v in (vals or {}).items()}
        self._write_stage_marker(sdir, node, "done", metrics=metrics)
        run.timings[f"stage:{node.name}"] = time.time() - started
        entry.update(status="done", metrics=metrics, seconds=time.time() - started)
        if not (sdir / "lr_schedule.png").is_file():
            _plot_logged_lr(sdir)
        self._write_manifest(manifest)
        with run.cache.write("stage", node.key, node.describe) as tmp:  # other runs on this cache may reuse it
            (tmp / "link.json").write_text(json.dumps({"final": str((sdir / "final").resolve())}))

    # ------------------------------------------------------------------ checks before training
    def check_all(self, nodes, curated: dict, resume: bool, restart: bool) -> None:
        from training.common import resume_checkpoint

        for node in nodes:
            if node.cached:
                continue
            i = node.extra["index"]
            stage = self.recipe.stages[i]
            where = f"stages[{i}] ({node.name})"
            if stage.data is None:  # a kind without data (prune): nothing to check
                continue
            try:
                check_stage_data(stage, curated[stage.data])
                for name, rows in self.validation_sets(stage).items():
                    if len(rows) == 0:
                        raise StageDataError(f"validation set {name!r} has no rows")
                    stage.check_rows(rows)
                problem = stage.length_problem(curated[stage.data], self.run.tokenizer())
                if problem:
                    raise StageDataError(problem)
                from training.hooks import HOOKS
                from training.hooks.install import hook_entries

                for name, options in hook_entries(stage):
                    cls = HOOKS.get(name)
                    problem = cls.check_rows(cls.Params.model_validate(options), curated[stage.data],
                                             self.validation_sets(stage), stage)
                    if problem:
                        raise StageDataError(problem)
            except StageDataError as exc:
                raise StageDataError(f"{where}: {exc}") from None
            if self.run.launch is not None:
                from training.hooks import HOOKS
                from training.hooks.install import hook_entries

                for name, _ in hook_entries(stage):
                    if self.run.launch.profile not in HOOKS.get(name).launchers:
                        raise StageLoopError(f"{where}: hook {name!r} cannot run under launch profile "
                                             f"{self.run.launch.profile!r} (it supports {sorted(HOOKS.get(name).launchers)})")
            sdir = stage_dir(self.out, i, node.extra["kind"])
            ckpt = resume_checkpoint(sdir)
            if ckpt and not resume and not restart:
                raise StageLoopError(
                    f"{where} has a resumable checkpoint from an earlier run ({ckpt}); `recipe train --resume` "
                    "continues it, `recipe train --restart` discards it and trains the stage from the start")

    def validation_sets(self, stage) -> dict[str, Any]:
        """Named validation sets of a stage: its ``validation.data`` rows, split by skill or source."""
        spec = stage.validation
        if spec is None:
            return {}
        rows = self.run.rows_of(spec.data)
        if spec.by is None:
            sets = {"validation": rows}
        else:
            values = rows[spec.by]
            missing = sum(v is None for v in values)
            if missing:
                raise StageDataError(f"validation.by: {spec.by}: {missing} of {len(rows)} rows of {spec.data!r} have no "
                                     f"{spec.by} (declare `skill:` on the source, or a `fields.skill` column)")
            sets = {v: rows.select([j for j, x in enumerate(values) if x == v]) for v in sorted(set(values))}
        if spec.max_rows:
            sets = {k: v.shuffle(seed=stage.effective_seed(self.recipe.seed)).select(range(min(spec.max_rows, len(v))))
                    for k, v in sets.items()}
        return sets

    # ------------------------------------------------------------------ the job
    def prepare_job(self, node, start_model: str, rows, resume: bool) -> dict:
        """Single-process data preparation, then the job: dataset files, models, options."""
        run = self.run
        i, kind_name = node.extra["index"], node.extra["kind"]
        stage = self.recipe.stages[i]
        sdir = stage_dir(self.out, i, kind_name)
        data_dir = sdir / "data"
        kind = STAGE_KINDS.get(kind_name)
        # the stage dataset: its file, or its folder of parts (curation.stage_paths) as a list of files
        train_path = _train_files(self.out, stage.data) if stage.data is not None else None
        if kind.prepare is not None and rows is not None:
            def load_start():
                from training.models import load_model, load_tokenizer

                with run.load_policy():
                    return (load_model(start_model, dtype=self.recipe.model.dtype, adapter=adapter_mode(stage)),
                            load_tokenizer(start_model))

            prepared = kind.prepare(stage, rows, seed=self.recipe.seed, stage_name=stage.name or node.name,
                                    stage_dir=sdir, load_start_model=load_start)
            if prepared is not rows:
                train_path = _write_rows(prepared, data_dir / "train.parquet")
                rows = prepared
        rows, hook_inputs = self._prepare_hooks(stage, node, rows, sdir, start_model)
        if hook_inputs.pop("_rows_changed", False):
            train_path = _write_rows(rows, data_dir / "train.parquet")
        validation = {name: str(_write_rows(v, data_dir / f"validation-{_safe(name)}.parquet"))
                      for name, v in self.validation_sets(stage).items()}
        models = {}
        for key, ref in stage.model_refs().items():
            if key != "from" and ref != "previous":
                mdir = run.model_dir_of(ref)
                models[key] = str(Path(mdir).resolve()) if Path(mdir).exists() else str(mdir)
        m = self.recipe.model
        return {"stage": run.loaded.resolved["stages"][i], "start_model": str(start_model),
                "adapter": adapter_mode(stage), "models": models, "dtype": m.dtype,
                "revisions": {m.path: m.revision} if m.path else {}, "trust_remote_code": m.trust_remote_code,
                "datasets": {"train": (train_path if isinstance(train_path, list) else str(train_path)) if train_path else None,
                             "validation": validation},
                "stage_dir": str(sdir.resolve()), "seed": self.recipe.seed, "resume": resume,
                "continued": node.extra["start"] != "base", "run_name": f"{self.recipe.name}/{node.name}",
                "hook_inputs": hook_inputs}

    def _prepare_hooks(self, stage, node, rows, sdir: Path, start_model: str):
        """Each hook's single-process preparation (a transform of the rows, inputs it needs)."""
        from training.hooks.base import Hook, HookContext
        from training.hooks.install import hook_entries

        from training.hooks import HOOKS

        inputs: dict = {}
        for name, options in hook_entries(stage):
            cls = HOOKS.get(name)
            if cls.prepare.__func__ is Hook.prepare.__func__:
                continue
            keys = {n.extra["hook"]: n.key for n in self.run.plan.of_kind("hook") if n.extra["stage"] == node.name}
            inputs.update(start_model=str(start_model), cache_key=keys.get(name))
            hctx = HookContext(stage=stage, seed=stage.effective_seed(self.recipe.seed), stage_dir=sdir,
                               validation=self.validation_sets(stage), inputs=inputs, run=self.run)
            new = cls.prepare(cls.Params.model_validate(options), rows, hctx)
            if new is not rows:
                rows, inputs["_rows_changed"] = new, True
        for k in ("start_model", "cache_key"):
            inputs.pop(k, None)
        return rows, inputs

    def _in_process(self, job: dict) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.enable_progress_bar()  # the trainer's step bar
        try:
            run_job(job)
        finally:
            hf_logging.disable_progress_bar()

    def _launch(self, job_path: Path) -> list[str]:
        import os
        import subprocess

        from training.launch import LaunchError, launch_command
        from training.models import has_gpu

        try:
            cmd = launch_command(self.run.launch, job_path, gpu=has_gpu())
        except LaunchError as exc:
            raise StageLoopError(str(exc)) from None
        self.run.console.print("  [dim]$ " + " ".join(cmd) + "[/]")
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.getcwd(), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        proc = subprocess.run(cmd, env=env)
        if proc.returncode != 0 or not (job_path.parent / RESULT_FILE).is_file():
            raise StageLoopError(f"the launched stage {job_path.parent.name} failed (exit {proc.returncode}); its output is "
                                 "above; re-run with --resume to continue from its last checkpoint")
        return cmd

    # ------------------------------------------------------------------ records
    def _write_manifest(self, manifest: dict) -> None:
        from curation.files import atomic_write_text

        atomic_write_text(self.out / "manifest.json", json.dumps(manifest, indent=1, default=str))

    def _write_stage_marker(self, sdir: Path, node, status: str, **extra) -> None:
        from curation.files import atomic_write_text

        atomic_write_text(sdir / "stage.json", json.dumps({"key": node.key, "status": status, "describe": node.describe,
                                                           **extra}, indent=1, default=str))

    def _check_resume(self, sdir: Path, node) -> bool:
        from training.common import resume_checkpoint

        marker = sdir / "stage.json"
        if not marker.is_file() or resume_checkpoint(sdir) is None:
            return False
        old = json.loads(marker.read_text())
        if old.get("key") != node.key:
            changed = _changed_keys(old.get("describe", {}), node.describe)
            raise StageLoopError(f"cannot resume stage {node.name}: the recipe changed since its checkpoint "
                                 f"({', '.join(changed) or 'inputs changed'}); run with --restart to start it over")
        return True

    def _append_stage_ledgers(self, sdirs) -> None:
        """Stages that derive rows (a DPO stage's ``pairs:``) write ledger records in their stage dir;
        they join the run's ledger (replacing any earlier copies of stage records) and the run is
        re-committed with the ledger's new size."""
        paths = []
        for d in map(Path, sdirs):
            paths += [p for p in (d / "ledger.parquet", d / "exposure_ledger.parquet") if p.is_file()]
            paths += sorted((d / "hooks").glob("*/ledger.parquet"))
        self.run.append_ledger_records(paths)


def _write_rows(rows, path: Path) -> Path:
    from curation.files import atomic_path

    with atomic_path(path) as tmp:
        rows.to_parquet(str(tmp))
    return path.resolve()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


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


def _train_files(out: Path, mixture: str) -> Path | list[str]:
    """A stage dataset's path for the job: its file, or its parts' paths in row order."""
    from curation.stage_paths import stage_files, stage_location

    where = stage_location(out, mixture).resolve()
    return [str(f.resolve()) for f in stage_files(where)] if where.is_dir() else where
