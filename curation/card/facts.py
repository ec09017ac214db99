"""The card's facts (``card.json``), gathered from a run directory's files.

Sections follow "Datasheets for Datasets" (Gebru et al., 2018/2021, CACM 64(12)): motivation,
composition, collection process, preprocessing, uses, distribution (licenses) and provenance, plus
the recipe-specific parts: the mixture's target vs observed shares, the selection funnel, and a
contamination report. Tokens here are whitespace tokens of ``row_text`` (model-free, the same
count the mixture table uses); the trainer's own token count is reported next to it under uses.
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.card import provenance
from curation.card.examples import examples
from curation.card.run_files import RunFiles
from curation import composition
from curation.columns import normalised, text_column
from curation.steps.exact_dedup import normalise

CARD_VERSION = 1
NOT_DECLARED = "not declared"
# numeric extras / params that mark a score threshold on a step's score distribution
THRESHOLD_KEYS = ("min", "max", "threshold", "cutoff", "min_score", "max_score", "score_threshold")


def build_facts(run: RunFiles, n_examples: int = 3) -> dict[str, Any]:
    recipe = run.recipe
    facts: dict[str, Any] = {
        "card_version": CARD_VERSION,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": {"name": recipe.get("name"), "description": (recipe.get("description") or "").strip(),
                   "hash": run.recipe_hash, "file": run.recipe_file, "seed": recipe.get("seed")},
    }
    facts["sources"] = _sources(run)
    facts["licenses"] = {s["name"]: s["license"] for s in facts["sources"] if s["roles"]}
    facts["composition"] = {m: _composition(run, m) for m in run.mixtures}
    folders = {m: f"datasets/{m}/*.parquet" for m in run.mixtures if run.dataset_path(m).is_dir()}
    if folders:  # stage datasets written as parts (the Ray engine): the Hub's data_files take a glob
        facts["data_files"] = folders
    facts["mixtures"] = {m: _mixture(run, m) for m in run.mixtures}
    facts["contamination"] = _contamination(run, facts)
    facts["method_sections"] = _method_sections(facts)
    facts["uses"] = _uses(run, facts["composition"])
    facts["evaluation"] = _evaluation(run)
    facts["examples"] = examples(run, n_examples)
    facts["provenance"] = _provenance(run)
    return facts


# ---------------------------------------------------------------------- collection
def _roles(recipe: dict) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = defaultdict(list)
    for mix, entries in (recipe.get("mixtures") or {}).items():
        for src in entries or {}:
            roles[src].append(f"mixture:{mix}")
    for ev, spec in (recipe.get("eval") or {}).items():
        roles[spec.get("source")].append(f"eval:{ev}")
    return roles


def _origin(spec: dict, fingerprint: dict) -> dict:
    if spec.get("generate"):
        options = {k: v for k, v in spec.items() if k not in ("generate", "license")}
        return {"type": "generated", "generator": spec["generate"], "options": options}
    if "sha256" in fingerprint:
        return {"type": "file", "path": spec.get("path"), "sha256": fingerprint["sha256"], "bytes": fingerprint.get("bytes"),
                "files": fingerprint.get("files")}
    return {"type": "hub", "id": spec.get("path"), "name": spec.get("name"), "split": spec.get("split"),
            "revision": spec.get("revision") or "unpinned (latest at load time)"}


def _sources(run: RunFiles) -> list[dict]:
    specs = run.recipe.get("sources") or {}
    roles = _roles(run.recipe)
    out = []
    for name, stats in run.curation.get("sources", {}).items():
        spec = specs.get(name) or {}
        out.append({"name": name, "license": spec.get("license") or NOT_DECLARED, "roles": roles.get(name, []),
                    "kind": spec.get("kind") or spec.get("format") or ("generated" if spec.get("generate") else None),
                    "origin": _origin(spec, stats.get("fingerprint") or {}),
                    "records": stats.get("records"), "valid": stats.get("valid"), "quarantined": stats.get("quarantined", 0),
                    "quarantine_reasons": stats.get("quarantine_reasons") or {}})
    return out


# ---------------------------------------------------------------------- composition
def _composition(run: RunFiles, mixture: str) -> dict:
    """Rows and whitespace tokens by source, rows by kind and skill: what the runner kept in
    ``curation.json`` (``curation.composition``), else counted over the dataset (a run written before)."""
    stored = run.curation.get("mixtures", {}).get(mixture, {}).get("composition")
    return stored if stored is not None else composition.of_table(run.dataset(mixture))


# ---------------------------------------------------------------------- preprocessing
def _score_summary(run: RunFiles, mixture: str, step: str) -> dict | None:
    scores = run.step_scores(mixture, step)[0]  # null -> nan
    scores = scores[np.isfinite(scores)]
    if not len(scores):
        return None
    q = np.quantile(scores, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"n": int(len(scores)), "min": float(scores.min()), "max": float(scores.max()), "mean": float(scores.mean()),
            "p05": float(q[0]), "p25": float(q[1]), "median": float(q[2]), "p75": float(q[3]), "p95": float(q[4])}


def _ledger_reasons(run: RunFiles, mixture: str, step: str) -> dict[str, int]:
    dropped = run.ledger_of(mixture, step, ["reason_code"], where=pc.field("decision") != "keep")
    return {k: v for k, v in composition.counts(dropped.column("reason_code").drop_null()).items() if k}


def thresholds(step: dict) -> dict[str, float]:
    """Numeric thresholds a step declares in its extras (else its params), for the score plot."""
    found = {}
    for source in (step.get("params") or {}, step.get("extras") or {}):
        for k in THRESHOLD_KEYS:
            v = source.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not (k == "min" and v == 0):
                found[k] = float(v)
    return found


def ledger_step(step: dict) -> str:
    return "mixture" if step["step"] == "mixture" else f"{step['index']}:{step['step']}"


def _mixture(run: RunFiles, mixture: str) -> dict:
    info = run.curation["mixtures"][mixture]
    funnel = []
    for step in info.get("funnel", []):
        entry = {"index": None, "params": {}, "extras": {}, "dropped": {}, "score": None, "thresholds": {}, **step}
        entry["ledger_step"] = ledger_step(step)
        entry["dropped_total"] = max(step["rows_in"] - step["rows_out"], 0)  # upsampling can add rows
        if step["step"] == "mixture" and not entry["dropped"]:  # rows the mixture did not draw, by reason
            entry["dropped"] = _ledger_reasons(run, mixture, "mixture")
        if step["step"] != "mixture":
            entry["score"] = _score_summary(run, mixture, entry["ledger_step"])
            entry["thresholds"] = thresholds(step)
        funnel.append(entry)
    return {"rows": info.get("rows"), "dataset_key": info.get("dataset_key"),
            "target_vs_observed": info.get("outcome_by_source", []), "funnel": funnel}


# ---------------------------------------------------------------------- selection methods' own sections
def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return " · ".join(str(v)[:120] for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return value


def _method_sections(facts: dict) -> list[dict]:
    """A step's ``card_section`` extras (``{title, text, table: [{...}], map: {...}}``, e.g. PASER's
    clusters and its 2-D map of the pool) as a section of the card; the map is drawn by the plots."""
    out = []
    for mix, info in facts["mixtures"].items():
        for step in info["funnel"]:
            section = (step.get("extras") or {}).get("card_section")
            if not isinstance(section, dict):
                continue
            table = [r for r in section.get("table") or [] if isinstance(r, dict)]
            columns = list(dict.fromkeys(k for r in table for k in r))
            m = section.get("map") if isinstance(section.get("map"), dict) else None
            out.append({"dataset": mix, "step": step["step"], "index": step.get("index"), "ledger_step": step["ledger_step"],
                        "title": section.get("title") or step["step"], "text": section.get("text") or "",
                        "columns": columns, "rows": [[_cell(r.get(c)) for c in columns] for r in table],
                        "map": {k: m.get(k) for k in ("method", "note", "rows", "of")} if m else None})
    return out


# ---------------------------------------------------------------------- contamination
def _prompts(table) -> pa.ChunkedArray:
    """Normalised prompts (``exact_dedup.normalise`` of ``row_text(r, "prompt")``), distinct."""
    return pc.unique(normalised(text_column(table, "prompt"), True, normalise).combine_chunks())


def _exact_overlap(run: RunFiles, facts: dict) -> list[dict]:
    """For each eval set and stage dataset: rows whose normalised prompt equals an eval prompt."""
    evals = run.recipe.get("eval") or {}
    paths = {name: s.get("rows_path") for name, s in run.curation.get("sources", {}).items()}
    out = []
    if not any((spec or {}).get("source") for spec in evals.values()):
        return out
    datasets_ = {m: _prompts(run.dataset(m, None)) for m in run.mixtures}
    for ev, spec in evals.items():
        src = spec.get("source")
        if src is None:  # an lm_eval task brings its own data
            continue
        try:
            eval_rows = pq.read_table(paths[src]) if paths.get(src) else None
        except Exception:
            eval_rows = None
        if eval_rows is None:
            out.append({"benchmark": ev, "source": src, "dataset": None, "eval_prompts": None,
                        "status": "eval rows unavailable (cache swept)"})
            continue
        eval_prompts = _prompts(eval_rows)
        for mix, prompts in datasets_.items():
            hits = int(pc.sum(pc.is_in(prompts, value_set=eval_prompts)).as_py() or 0)
            out.append({"benchmark": ev, "source": src, "dataset": mix, "eval_prompts": len(eval_prompts),
                        "overlapping_prompts": hits, "share_of_benchmark": hits / max(len(eval_prompts), 1)})
    return out


def _contamination(run: RunFiles, facts: dict) -> dict:
    """Decontamination steps' own reports (extras, read generically) plus an exact-prompt check."""
    reports = []
    for mix, info in facts["mixtures"].items():
        for step in info["funnel"]:
            extras = step.get("extras") or {}
            keys = [k for k in extras if "contamin" in k.lower() or "overlap" in k.lower()]
            if keys or "decontam" in step["step"]:
                reports.append({"dataset": mix, "step": step["step"], "index": step.get("index"), "params": step.get("params"),
                                "dropped": step.get("dropped", {}),
                                "report": {k: extras[k] for k in keys} if keys else extras})
    return {"step_reports": reports, "exact_prompt_overlap": _exact_overlap(run, facts)}


# ---------------------------------------------------------------------- uses
def _uses(run: RunFiles, composition: dict) -> list[dict]:
    stages = (run.manifest or {}).get("stages")
    declared = run.recipe.get("stages") or []
    out = []
    if stages:
        for s in stages:
            m = s.get("metrics") or {}
            out.append({"stage": s["name"], "kind": s["kind"], "dataset": s["data"], "rows": s.get("rows"),
                        "dataset_tokens": composition.get(s["data"], {}).get("tokens"), "status": s.get("status"),
                        "trained_tokens": m.get("num_tokens"), "epochs_seen": m.get("epoch"),
                        "input_model": s.get("input_model"), "data_key": s.get("data_key")})
        return out
    for i, s in enumerate(declared):
        out.append({"stage": s.get("name") or f"{i}-{s.get('kind')}", "kind": s.get("kind"), "dataset": s.get("data"),
                    "rows": composition.get(s.get("data"), {}).get("rows"),
                    "dataset_tokens": composition.get(s.get("data"), {}).get("tokens"), "status": "not run",
                    "trained_tokens": None, "epochs_seen": None, "input_model": None, "data_key": None})
    return out


def _evaluation(run: RunFiles) -> list[dict]:
    """One entry per eval x model x value (eval/results.json), dev and unseen suites first."""
    res = run.eval_results or {}
    out = []
    rank = {s: i for i, s in enumerate(["dev", "unseen"])}
    for ev, e in sorted((res.get("evals") or {}).items(), key=lambda kv: (rank.get(kv[1]["suite"], 9), kv[0])):
        for model in res.get("models", []):
            entry = e["models"].get(model)
            if entry is None:
                continue
            for name, m in entry["metrics"].items():
                for key, value in m["values"].items():
                    out.append({"suite": e["suite"], "eval": ev, "metric": name, "value_name": key, "model": model,
                                "value": value, "stderr": m["stderr"].get(key), "delta": (m.get("delta") or {}).get(key),
                                "n": m.get("n"), "by_skill": (m.get("by_skill") or {}).get(key, {})})
    return out


# ---------------------------------------------------------------------- provenance
def _provenance(run: RunFiles) -> dict:
    return {"recipe_hash": run.recipe_hash, "recipe_file": run.recipe_file, "seed": run.recipe.get("seed"),
            "recipe_kit_version": provenance.version("recipe-kit"), "git": provenance.git_commit(),
            "libraries": provenance.library_versions(), "ledger_records": run.ledger_records_count,
            "resolved_recipe": run.resolved_text}
