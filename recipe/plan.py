"""Plan a run: every node (source, model init, mixture, selection step, stage, eval) with the
content hash of what it depends on, and whether its output is already cached.

Keys chain: a step's key includes its input's key, so editing a filter changes the keys of that
filter and of everything after it, and editing a stage's ``lr`` changes only that stage's key and
those of later stages and evals. Code versions (the loader's, each step's ``version``) are part
of the keys so a changed implementation never serves a stale entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.sources import LOADER_VERSION, source_fingerprint
from curation.steps import STEPS
from curation.steps.base import StepContext
from recipe.cache import Cache, stable_hash
from recipe.load import LoadedRecipe
from training.stage_loop import stage_dir  # noqa: F401 (re-exported)

TINY_BUILDER_VERSION = "1"
EVAL_VERSION = "2"  # 2: several metrics per eval, the eval ledger
STAGE_VERSION = "2"  # 2: the key holds the global batch, validation data and a path model's content


@dataclass
class Node:
    kind: str  # source | model | mixture | step | stage | eval
    name: str
    key: str
    describe: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    nodes: list[Node]

    def get(self, kind: str, name: str) -> Node:
        for n in self.nodes:
            if n.kind == kind and n.name == name:
                return n
        raise KeyError((kind, name))

    def of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.nodes if n.kind == kind]


def stage_done(out: Path, index: int, kind: str, key: str) -> bool:
    import json

    marker = stage_dir(out, index, kind) / "stage.json"
    if not marker.is_file() or not (stage_dir(out, index, kind) / "final").is_dir():
        return False
    info = json.loads(marker.read_text())
    return info.get("key") == key and info.get("status") == "done"


def shared_stage(cache: Cache, key: str) -> Path | None:
    """The ``final/`` of a stage with this key trained in another run directory on the same cache
    (``recipe sweep`` variants share their common stages), when it is still that stage's output."""
    import json

    if not cache.has("stage", key):
        return None
    try:
        final = Path(json.loads((cache.path("stage", key) / "link.json").read_text())["final"])
        info = json.loads((final.parent / "stage.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    return final if info.get("key") == key and info.get("status") == "done" and final.is_dir() else None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model", "vocab.json", "merges.txt")


def local_model_fingerprint(path: str) -> dict[str, Any] | None:
    """For a local model directory: sha256 of its tokenizer and chat-template files (a changed
    template or tokenizer must invalidate token-dependent steps), and size + mtime of the other
    files (hashing multi-GB weights on every plan would be too slow). None for a Hub id."""
    import hashlib

    root = Path(path).expanduser()
    if not root.is_dir():
        return None
    out: dict[str, Any] = {}
    for f in sorted(p for p in root.iterdir() if p.is_file()):
        if f.name in TOKENIZER_FILES:
            out[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
        else:
            st = f.stat()
            out[f.name] = [st.st_size, int(st.st_mtime)]
    return out


def _path_model_key(path: str) -> str:
    """A model named by path: its content identity (local files), not the path string alone."""
    return stable_hash({"path": path, "local": local_model_fingerprint(path)})


def make_plan(loaded: LoadedRecipe, cache: Cache, out: Path, num_processes: int = 1) -> Plan:
    """``num_processes``: the launch's process count, which sets each stage's global batch."""
    r, resolved = loaded.recipe, loaded.resolved
    nodes: list[Node] = []
    source_keys: dict[str, str] = {}
    for name, spec in r.sources.items():
        fp = source_fingerprint(spec)
        describe = {"source": resolved["sources"][name], "content": fp, "loader": LOADER_VERSION, "seed": r.seed}
        key = stable_hash(describe)
        source_keys[name] = key
        nodes.append(Node("source", name, key, describe, cache.has("source", key)))

    trained_sources = sorted({s for entries in r.mixtures.values() for s in entries})
    if r.model.init == "tiny":
        describe = {"model": resolved["model"], "sources": {s: source_keys[s] for s in trained_sources},
                    "seed": r.seed, "builder": TINY_BUILDER_VERSION}
        model_key = stable_hash(describe)
        nodes.append(Node("model", "base", model_key, describe, cache.has("model", model_key)))
    else:
        describe = {"path": r.model.path, "revision": r.model.revision, "dtype": r.model.dtype,
                    "local": local_model_fingerprint(r.model.path)}
        model_key = stable_hash(describe)
        nodes.append(Node("model", "base", model_key, describe, True, {"path": r.model.path}))

    dataset_keys: dict[str, str] = {}
    for mix, entries in r.mixtures.items():
        describe = {"entries": resolved["mixtures"][mix], "sources": {s: source_keys[s] for s in entries}, "seed": r.seed}
        key = stable_hash(describe)
        nodes.append(Node("mixture", mix, key, describe, cache.has("mixture", key)))
        prev = key
        for i, item in enumerate(r.selection.get(mix, [])):
            (step_name, options), = item.items()
            step_cls = STEPS.get(step_name)
            params = step_cls.Params.model_validate(options or {})
            step = step_cls(params, StepContext(seed=r.seed))
            reads = step_cls.reads_sources(params)
            describe = {"step": step_name, "params": params.model_dump(mode="json"), "version": step_cls.version,
                        "input": prev, "seed": r.seed,
                        "tokenizer": model_key if step.uses_tokenizer else None,
                        "reads": {s: source_keys.get(s) for s in reads}}
            inputs = step_cls.cache_inputs(params)
            if inputs:  # only when present, so the keys of steps without file inputs do not change
                describe["inputs"] = inputs
            refs = step_cls.model_refs(params)
            if refs:  # models the step runs: the base model's node key, a path's content identity
                describe["models"] = {ref: model_key if ref == "base" else _path_model_key(ref) for ref in refs}
            key = stable_hash(describe)
            nodes.append(Node("step", f"{mix}[{i}]:{step_name}", key, describe, cache.has("step", key),
                              {"mixture": mix, "index": i, "step": step_name}))
            prev = key
        dataset_keys[mix] = prev

    model_keys = {"base": model_key}
    names = r.stage_names()
    prev_model = "base"
    for i, (stage, sname) in enumerate(zip(r.stages, names)):
        refs = stage.model_refs()
        start = prev_model if refs["from"] == "previous" else refs["from"]
        describe = {"stage": resolved["stages"][i], "data": dataset_keys[stage.data] if stage.data is not None else None,
                    "model": model_keys.get(start) or _path_model_key(start), "seed": r.seed, "version": STAGE_VERSION,
                    # the batch an update sees: a --gpus change is a different training run
                    "global_batch": stage.batch_size * stage.grad_accum * num_processes}
        for key, ref in refs.items():  # a stated extra model (DPO's ref) is an input too
            if key != "from" and ref != "previous":
                describe[f"{key}_model"] = model_keys.get(ref) or _path_model_key(ref)
        if stage.validation is not None:
            v = stage.validation.data
            describe["validation_data"] = dataset_keys.get(v) or source_keys.get(v)
        if stage.hooks:  # editing a hook (or its code version) re-runs this stage and what follows
            from training.hooks import HOOKS

            describe["hooks"] = [{name: HOOKS.get(name).version} for item in stage.hooks for name in item]
        key = stable_hash(describe)
        for item in stage.hooks:  # a hook's costly cached preparation (a Skill-it graph estimate) is a node too
            (hname, hopts), = item.items()
            cls = HOOKS.get(hname)
            cost = cls.plan_cost(cls.Params.model_validate(hopts or {}), stage)
            if cost:
                hdescribe = {"hook": hname, "version": cls.version, "options": hopts, "data": describe["data"],
                             "model": describe["model"], "validation": describe.get("validation_data"),
                             "stage": {k: resolved["stages"][i][k] for k in ("lr", "batch_size", "max_length")}}
                hkey = stable_hash(hdescribe)
                nodes.append(Node("hook", f"{sname}:{hname}", hkey, hdescribe, cache.has("hook", hkey),
                                  {"stage": sname, "hook": hname, "cost": cost}))
        done = stage_done(out, i, stage.kind, key)
        shared = None if done else shared_stage(cache, key)
        nodes.append(Node("stage", sname, key, describe, done or shared is not None,
                          {"index": i, "start": start, "kind": stage.kind, "shared_final": str(shared) if shared else None}))
        model_keys[sname] = key
        prev_model = sname

    from eval.metrics import METRICS

    starts = {"base": None, **{n.name: n.extra["start"] for n in nodes if n.kind == "stage"}}
    for ev, spec in r.eval.items():
        metrics = {name: METRICS.get(name) for name, _ in spec.metric_entries()}
        refs = sorted({ref for name, opts in spec.metric_entries() for ref in
                       getattr(metrics[name], "model_refs", lambda p: [])(metrics[name].Params.model_validate(opts))})
        for model_name, mkey in model_keys.items():
            describe = {"eval": resolved["eval"][ev], "source": source_keys.get(spec.source), "model": mkey,
                        "version": EVAL_VERSION, "metrics": {n: m.version for n, m in metrics.items()}}
            if spec.fewshot is not None:
                describe["fewshot"] = source_keys[spec.fewshot.source]
            if refs:
                describe["refs"] = {ref: model_keys[ref] for ref in refs}
            key = stable_hash(describe)
            nodes.append(Node("eval", f"{ev}@{model_name}", key, describe, cache.has("eval", key),
                              {"eval": ev, "model": model_name, "suite": spec.suite, "start": starts.get(model_name)}))
    return Plan(nodes)
