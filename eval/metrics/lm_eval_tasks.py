"""``lm_eval``: named lm-evaluation-harness tasks on the model in memory, through its Python API.

``lm_eval.simple_evaluate(model=HFLM(pretrained=<the loaded model>, tokenizer=<its tokenizer>),
tasks=..., num_fewshot=..., limit=..., apply_chat_template=..., fewshot_as_multiturn=...,
log_samples=True)`` -- every option that changed default between lm-eval releases
(``fewshot_as_multiturn``: False in 0.4.9, True in 0.4.12) is passed explicitly. Local task YAMLs
(``dataset_path: json`` with ``data_files``) are found through ``include_path``, so tasks run
offline. The eval's ``prefix`` reaches lm-eval as (the end of) its ``system_instruction``, which
lm-eval puts before every context. Values are reported as ``<task>/<metric>,<filter>`` with lm-eval's standard errors; each
logged sample becomes an eval-ledger record (``<task>:<doc_id>``, its prompt hash, the filtered
response, the first metric's score). Optional dependency: ``pip install 'recipe-kit[eval]'``
(lm-eval >= 0.4.10, whose task index is built once per lm-eval version and cached, so ``recipe
validate`` can name unknown tasks and near matches).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from eval.metrics import METRICS
from eval.metrics.base import EvalContext, Metric, MetricError, MetricResult

INSTALL = "pip install 'recipe-kit[eval]'  (lm-eval >= 0.4.10)"


class LmEvalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(min_length=1, description="lm-eval task (or group) names")
    num_fewshot: int | None = Field(None, ge=0, description="None: each task's own default")
    limit: int | float | None = Field(None, gt=0, description="examples per task (a float: a fraction)")
    apply_chat_template: bool = True
    fewshot_as_multiturn: bool = True
    system_instruction: str | None = None
    include_path: str | None = Field(None, description="a folder of local task YAMLs")
    gen_kwargs: dict[str, str | int | float | bool] | None = None
    batch_size: int = Field(8, ge=1)
    confirm_run_unsafe_code: bool = Field(False, description="tasks that execute generated code (humaneval)")

    @field_validator("include_path")
    @classmethod
    def _folder(cls, path):
        if path is not None and not Path(path).expanduser().is_dir():
            raise ValueError(f"{path}: no such folder of task YAMLs")
        return path


def _lm_eval():
    try:
        import lm_eval
    except ImportError:
        raise MetricError(f"the lm_eval metric needs lm-evaluation-harness: {INSTALL}") from None
    return lm_eval


def _cache_file() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "recipe-kit"
    return root / f"lm_eval_tasks-{_lm_eval().__version__}.json"


def known_tasks(include_path: str | None, wanted: list[str]) -> list[str]:
    """Task names lm-eval knows: those under ``include_path``, then (only if some wanted name is not
    there) its built-in index, built once and cached per lm-eval version."""
    _lm_eval()
    from lm_eval.tasks import TaskManager

    local = set(TaskManager(include_defaults=False, include_path=include_path).all_tasks) if include_path else set()
    if set(wanted) <= local:
        return sorted(local)
    cache = _cache_file()
    try:
        builtin = set(json.loads(cache.read_text()))
    except (OSError, ValueError):
        builtin = set(TaskManager().all_tasks)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(sorted(builtin)))
        except OSError:
            pass
    return sorted(local | builtin)


def check_tasks(params: LmEvalParams) -> None:
    """ValueError naming unknown tasks and their near names (a recipe error at validate)."""
    import difflib

    known = known_tasks(params.include_path, params.tasks)
    unknown = [t for t in params.tasks if t not in known]
    if unknown:
        hints = {t: difflib.get_close_matches(t, known, n=3) for t in unknown}
        raise ValueError("unknown lm-eval task(s): " + "; ".join(
            f"{t!r}" + (f" (near: {', '.join(h)})" if h else "") for t, h in hints.items()))


@METRICS.register("lm_eval")
class LmEval(Metric):
    name = "lm_eval"
    Params = LmEvalParams
    row_kinds = frozenset({"chat", "preference", "verifiable", "text"})
    needs_source = False

    @classmethod
    def validate(cls, params: LmEvalParams) -> None:
        try:
            check_tasks(params)
        except MetricError as exc:
            raise ValueError(str(exc)) from None

    def evaluate(self, model, tokenizer, rows, ctx: EvalContext) -> MetricResult:
        _lm_eval()
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        p = self.params
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=p.batch_size)
        local_only = bool(p.include_path) and set(p.tasks) <= set(
            TaskManager(include_defaults=False, include_path=p.include_path).all_tasks)
        tm = TaskManager(include_path=p.include_path, include_defaults=not local_only)
        out = lm_eval.simple_evaluate(
            model=lm, tasks=list(p.tasks), num_fewshot=p.num_fewshot, limit=p.limit, task_manager=tm,
            apply_chat_template=p.apply_chat_template, fewshot_as_multiturn=p.fewshot_as_multiturn,
            system_instruction=(p.system_instruction or "") + (ctx.spec.prefix or "") or None,
            gen_kwargs=p.gen_kwargs, log_samples=True, random_seed=ctx.seed, numpy_random_seed=ctx.seed,
            torch_random_seed=ctx.seed, fewshot_random_seed=ctx.seed, bootstrap_iters=1000,
            confirm_run_unsafe_code=p.confirm_run_unsafe_code)
        values, stderr, items, n = {}, {}, [], 0
        for task, res in (out.get("results") or {}).items():
            for key, value in res.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool) or "_stderr," in key or "," not in key:
                    continue
                values[f"{task}/{key}"] = float(value)
                se = res.get(key.replace(",", "_stderr,", 1))
                if isinstance(se, (int, float)):
                    stderr[f"{task}/{key}"] = float(se)
        for task, samples in (out.get("samples") or {}).items():
            n += len(samples)
            for s in samples:
                metric_keys = [k for k in s if k in (out.get("configs", {}).get(task, {}).get("metric_list_names") or [])]
                score = next((float(s[k]) for k in ("exact_match", "acc", "prompt_level_strict_acc", *metric_keys)
                              if isinstance(s.get(k), (int, float, bool))), None)
                resp = s.get("filtered_resps") or s.get("resps")
                items.append({"item_id": f"{task}:{s.get('doc_id')}", "prompt_hash": str(s.get("prompt_hash", "")),
                              "output": json.dumps(resp, default=str)[:2000], "answer": None, "score": score})
        if not values:
            raise MetricError(f"lm-eval returned no metric for tasks {p.tasks}")
        return MetricResult(values=values, stderr=stderr, n=n, items=items,
                            extras={"lm_eval_version": lm_eval.__version__, "n-shot": out.get("n-shot"),
                                    "versions": out.get("versions"), "tasks": list(p.tasks)})
