"""The runner: orders the phases of a run and lends them what they share.

Phases, each in its package: curation (``curation.pipeline``: sources -> mixtures -> selection ->
the committed curated files), the base model (a tiny local init trains its tokenizer on the mixed
sources), training (``training.stage_loop``: each stage as a job, in-process or launched) and
evaluation (``eval.runner``). Every node of the plan (``recipe.plan``) has a content key and is
served from the cache (``recipe.cache``) when it is there. The phases receive the runner itself:
its recipe, plan, cache, run directory, console and the helpers below.
"""

from __future__ import annotations

from pathlib import Path

import datasets
from rich.console import Console

from curation.console import make_console, say
from curation.pipeline import Curation
from recipe.cache import Cache
from recipe.load import LoadedRecipe
from recipe.plan import Node, make_plan, stage_dir


def _quiet_library_bars() -> None:
    """Our rich bars cover curation and eval; the libraries' per-file bars only add noise there.
    The trainer's own step bar (tqdm) stays on. transformers is not imported for this (a second
    of a `recipe curate` that never uses it): it reads both settings when it is first imported
    (its bars follow huggingface_hub's switch, its level ``TRANSFORMERS_VERBOSITY``)."""
    import os
    import sys

    from huggingface_hub.utils import disable_progress_bars

    datasets.disable_progress_bars()
    disable_progress_bars()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


class RunError(Exception):
    """A user-facing failure of a run (bad data for a step, resume refused, ...)."""


class Runner:
    def engine_spec(self, engine: str | None, ray_address: str | None) -> dict:
        """The recipe's ``engine:`` with the command line's ``--engine`` / ``--ray-address`` over it."""
        spec = self.recipe.engine.model_dump()
        if engine:
            spec["name"] = engine
        if ray_address:
            spec["address"] = ray_address
            spec["name"] = engine or "ray"
        return spec

    def __init__(self, loaded: LoadedRecipe, out: str | Path | None = None, cache_dir: str | Path | None = None,
                 console: Console | None = None, gpus: int | None = None, workers: int | None = None,
                 engine: str | None = None, ray_address: str | None = None):
        from training.launch import resolve_launch

        self.loaded = loaded
        self.recipe = loaded.recipe
        self.out = Path(out or Path("runs") / self.recipe.name)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cache = Cache(cache_dir or self.out / "cache")
        self.cache.sweep()  # only temp entries whose writer is gone
        self.console = console or make_console()
        _quiet_library_bars()
        self.launch = resolve_launch(self.recipe.launch, gpus)
        self.plan = make_plan(loaded, self.cache, self.out, num_processes=self.launch.num_processes if self.launch else 1)
        self.timings: dict[str, float] = {}
        self.curation = Curation(self.recipe, loaded.hash, self.plan, self.cache, self.out, self.console,
                                 tokenizer_loader=self.tokenizer, model_loader=self.step_model, workers=workers,
                                 engine=self.engine_spec(engine, ray_address))
        self._curated: dict[str, datasets.Dataset] | None = None
        if self.recipe.model.trust_remote_code:
            self.console.print(f"[bold yellow]warning:[/] model.trust_remote_code is true: loading {self.recipe.model.path!r} "
                               "runs Python code from that model's repository on this machine")

    # ------------------------------------------------------------------ shared helpers
    def say(self, node: Node, status: str) -> None:
        say(self.console, node, status)

    def resolved_text(self) -> str:
        return f"# recipe hash: {self.loaded.hash}\n# from: {self.loaded.file}\n" + self.loaded.resolved_yaml()

    def source(self, name: str) -> datasets.Dataset:
        return self.curation.source(name)

    def rows_of(self, name: str) -> datasets.Dataset:
        """A mixture's curated rows, or a source's rows."""
        if name in self.recipe.mixtures:
            return self.curate()[name]
        return self.source(name)

    @property
    def curation_id(self) -> str | None:
        return self.curation.curation_id

    def append_ledger_records(self, paths) -> None:
        self.curation.append_ledger_records(paths)

    def load_policy(self):
        """``model.revision`` (for the base model's path) and ``model.trust_remote_code`` for every load."""
        from training.models import load_policy

        m = self.recipe.model
        return load_policy({m.path: m.revision} if m.path else {}, m.trust_remote_code)

    def tokenizer(self):
        from training.models import load_tokenizer

        with self.load_policy():
            return load_tokenizer(str(self.base_model_dir()))

    # ------------------------------------------------------------------ base model
    def base_model_dir(self) -> Path | str:
        node = self.plan.get("model", "base")
        if self.recipe.model.path:
            return Path(self.recipe.model.path) if Path(self.recipe.model.path).exists() else self.recipe.model.path
        entry = self.cache.path("model", node.key)
        if not self.cache.has("model", node.key):
            from curation.rows import row_texts
            from training.tiny_model import build_tiny_model

            self.say(node, "building tiny model + tokenizer")
            m = self.recipe.model
            names = sorted({s for e in self.recipe.mixtures.values() for s in e}) or list(self.recipe.sources)
            texts = [t for n in names for t in row_texts(self.source(n))]
            with self.cache.write("model", node.key, node.describe) as tmp:
                build_tiny_model(tmp, texts, vocab_size=m.vocab_size, hidden_size=m.hidden_size, num_layers=m.num_layers,
                                 num_heads=m.num_heads, intermediate_size=m.intermediate_size,
                                 max_position_embeddings=m.max_position_embeddings, seed=self.recipe.seed)
        return entry

    def step_model(self, name: str) -> Path | str:
        """A model a curation step names (``Step.model_refs``): ``base`` or a path / Hub id. Stages'
        outputs do not exist yet when curation runs, so a step cannot name one."""
        return self.base_model_dir() if name == "base" else name

    def model_dir_of(self, model_name: str) -> Path | str:
        if model_name == "base":
            return self.base_model_dir()
        names = self.recipe.stage_names()
        if model_name in names:
            shared = self.plan.get("stage", model_name).extra.get("shared_final")
            if shared:  # trained by another run on this cache (a sweep's shared stage)
                return Path(shared)
            i = names.index(model_name)
            return stage_dir(self.out, i, self.recipe.stages[i].kind) / "final"
        return model_name  # a path

    # ------------------------------------------------------------------ phases
    def curate(self) -> dict[str, datasets.Dataset]:
        """Sources, mixtures and selection; the run directory's curated files, committed as a unit."""
        if self._curated is None:
            self._curated = self.curation.run(self.resolved_text())
            self.timings["curate"] = self.curation.seconds
        return self._curated

    def train(self, resume: bool = False, restart: bool = False) -> None:
        """Curate, then run every unfinished stage in order (``training.stage_loop``)."""
        from training.stage_loop import StageLoop

        from eval.runner import check_sources

        curated = self.curate()
        self.base_model_dir()
        check_sources(self)  # an eval that cannot score its rows fails now, not after training
        StageLoop(self).train(curated, resume=resume, restart=restart)

    def evaluate(self, only_available: bool = False, stage: str | None = None, suite: str | None = None,
                 model: str | None = None) -> dict:
        """Every eval node (``eval.runner``); ``stage``/``suite`` select, ``model`` evaluates a path instead."""
        from eval.runner import evaluate, evaluate_path

        if model is not None:
            return evaluate_path(self, model, suite=suite)
        return evaluate(self, only_available=only_available, stage=stage, suite=suite)
