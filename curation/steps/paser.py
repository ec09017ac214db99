"""``paser``: PASER (He et al. 2025, "PASER: Post-Training Data Selection for Efficient Pruned Large
Language Model Recovery"; BokwaiHo/PASER@72b7fe7 ``paser.py``), reference/methods.md section 5.

Selects, from a pool of ``chat`` rows, the ``budget`` rows (a count or a fraction of the pool) that
best recover a pruned ("degraded") model towards the original one::

    - paser:
        budget: 0.1                               # or a row count, e.g. 20000 as the paper
        num_clusters: 10
        original: base                            # the recipe's base model (default), or a path
        degraded: {prune: {sparsity: 0.5, modules: mlp}}   # built in-process, or a model path

A row's *instruction* is its user turns, its *response* its assistant turns. The steps:

1. **Embed** the instructions with SBERT all-MiniLM-L6-v2 (``curation.embed``, offline).
2. **Manifold** (``manifold: diffusion``, the paper's): the diffusion kernel
   K_ij = exp(-||e_i - e_j||^2 / 2 sigma^2), sigma the median pairwise distance, the random-walk
   Laplacian L = I - D^-1 K, and its ``num_clusters`` eigenvectors of smallest eigenvalue as each
   row's coordinates. ``manifold: umap`` (needs ``pip install 'recipe-kit[umap]'``) takes UMAP
   coordinates (umap-learn, ``num_clusters`` dimensions, centred) instead.
3. **NMF spectral clustering**: S = |U U^T| factorised by scikit-learn's ``NMF(num_clusters,
   init='random')``; a row's cluster is the argmax of its row of W.
4. **Capability degradation**: for each row, JSD(softmax(original logits) || softmax(degraded
   logits)) per token position, averaged over the row's positions; a cluster's CDS is the mean
   over its rows.
5. **Budget**: B_c = floor(B * CDS_c / sum_c CDS_c), as the paper (the floors may leave up to K-1
   rows unused; a cluster smaller than its share cannot spend it: ``unused_budget`` in the extras).
6. **Within a cluster**, rows in descending efficiency IES = JSD / log(cost), cost = (instruction
   tokens + response tokens)^2.
7. **Concept consistency**: a row's concepts are the RAKE keyphrases of instruction + response
   (``curation.keyphrases``). Walking the ranked rows, a row is rejected when two of its concepts
   are both already in the concept graph but not connected; an accepted row adds a clique over its
   concepts (nodes enter only through edges, as the code's ``add_edge``); the cluster stops at B_c.

Fixes of the official code, each a unit or a mathematical mix-up (stated, and why):

* **JSD is a mean over token positions, not a sum** over positions x vocabulary: the code's
  ``torch.sum`` makes a row's "degradation" grow with its length, so CDS and IES ranked long rows
  first and mixed length into the efficiency score that already divides by cost.
* **cost counts tokens on both sides**: the code adds instruction *tokens* to output *characters*
  (``len(sample['output'])``); here both are tokens of the original's tokenizer (untruncated, the
  row's real training cost), and the total is at least 2 tokens so log(cost) > 0.
* **the Laplacian's eigenvectors come from a symmetric matrix**: ``eigsh`` assumes symmetry, and
  the code hands it the non-symmetric I - D^-1 K. We take the same eigenpairs exactly through the
  symmetric normalised kernel D^-1/2 K D^-1/2 (same eigenvalues; psi = D^-1/2 v are the random-walk
  eigenvectors), its largest eigenvalues (= L's smallest) with a seeded start vector.
* **one JSD per row**: the code computes each row's JSD twice (for CDS and again for IES), on the
  instruction only; the same per-row value serves both here.
* **numerically safe JSD**: p log(p/m) is computed from log-softmax (``logaddexp``), so a zero
  probability never turns the divergence into NaN as p * log(p / m) does in float16.

Other deviations, stated: ``degradation_tokens: all`` (default) measures the JSD on every position
of the row as the model sees it in training (chat template of the original's tokenizer when it has
one, else instruction and response joined by a blank line), ``response`` on the positions that
predict response tokens, and ``instruction`` on the bare instruction text as the official code
does; a model trained with assistant-only loss has never learnt to predict prompt tokens, so the
instruction alone would measure noise. Clusters are filled in descending CDS order (the code walks
cluster ids, which NMF numbers arbitrarily), so the most degraded clusters claim concepts first.
sigma is the median of the off-diagonal distances (the code's median includes the n zero self
distances). NMF is seeded with the recipe seed (the code: 0). Pools larger than ``kernel_rows`` are
clustered on a seeded sample of that many rows and the others placed by the Nyström extension of
the diffusion eigenvectors (psi_j(x) = sum_i P(x, i) psi_j(i) / mu_j) and ``NMF.transform``; the
paper's dense n x n kernel does not fit memory at 52K rows.

Ledger: every row gets a reason -- kept ``paser_selected:cluster=C jsd=J``; dropped
``paser_budget:cluster=C jsd=J`` (its cluster's budget was spent) or
``paser_concept_conflict:cluster=C jsd=J conflict=A|B``; the score is the IES. ``work/rows.parquet``
holds cluster, JSD, IES, tokens and concepts per row. Extras: the cluster table (size, CDS, budget,
selected, conflicts, example instructions) and a 2-D map (UMAP; PCA when umap-learn is missing)
of the pool coloured by cluster with the selected rows marked, which the data card renders.

Why our own code: no library ships PASER (the clustering is in ``curation.paser_clusters``, the
scores and the selection walk in ``curation.paser_scores``); scikit-learn (NMF), scipy (``eigsh``), transformers
(logits) and sentence-transformers (embeddings) do the heavy lifting.
"""

from __future__ import annotations

import importlib.util
import json
import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.budget import BUDGET_HELP, Budget, BudgetError, budget_rows
from curation.columns import ids_of
from curation.embed import DEFAULT_MODEL, embed, resolve_model
from curation.prune import MODULE_CHOICES, Modules
from curation.steps import STEPS
from curation.paser_clusters import UMAP_MISSING, cluster_pool, map_2d
from curation.paser_scores import allocate_budget, efficiency, row_jsd, score_span, select
from curation.steps.base import Decisions, Step, StepError



class PruneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sparsity: float = Field(0.5, gt=0, lt=1, description="share of each selected weight matrix set to zero")
    modules: Modules = Field("mlp", description=f"which linear layers: {', '.join(MODULE_CHOICES)}")


class DegradedByPruning(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prune: PruneSpec


class PaserParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budget: Budget = Field(description=BUDGET_HELP)
    num_clusters: int = Field(10, ge=1, description="K of the spectral clustering (10 in the paper)")
    manifold: Literal["diffusion", "umap"] = Field("diffusion", description="diffusion kernel (paper) or UMAP coordinates")
    original: str = Field("base", description="the unpruned model: `base` (the recipe's base model) or a model path")
    degraded: str | DegradedByPruning = Field(
        description="the pruned model: a model path, or {prune: {sparsity, modules}} to prune the original in-process")
    concept_filter: bool = Field(True, description="reject rows whose concepts conflict with the concept graph")
    degradation_tokens: Literal["all", "response", "instruction"] = Field(
        "all", description="positions the JSD averages over: the whole row, the response, or the bare instruction (code)")
    max_length: int = Field(256, ge=2, description="tokens of a row scored for the JSD (the paper's cutoff 256)")
    chat_template_path: str | None = Field(
        None, description="a Jinja chat template to render rows with (as the training stage does); default: the "
                          "original's own template, else instruction and response joined by a blank line")
    embedding_model: str = Field(DEFAULT_MODEL, description="sentence-transformers model name (offline) or local path")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="dtype the two models run in")
    batch_size: int = Field(8, ge=1)
    kernel_rows: int = Field(4000, ge=10, description="rows the n x n kernel is computed on; more: Nyström extension")
    nmf_max_iter: int = Field(400, ge=10)
    map: Literal["umap", "pca", "none"] = Field("umap", description="the card's 2-D map of the pool (PCA if umap is missing)")
    map_points: int = Field(3000, ge=10, description="rows drawn on the map (a seeded sample of the pool)")
    examples: int = Field(3, ge=0, description="example instructions per cluster in the card")

    @model_validator(mode="after")
    def _umap_available(self):
        if self.manifold == "umap" and importlib.util.find_spec("umap") is None:
            raise ValueError(f"manifold: umap needs umap-learn, and {UMAP_MISSING}; or use manifold: diffusion")
        return self


# ---------------------------------------------------------------------- the step
def _turns(messages, roles) -> str:
    return "\n".join(m["content"] for m in messages or [] if m["role"] in roles)


@STEPS.register("paser")
class Paser(Step):
    name = "paser"
    version = "1"
    Params = PaserParams

    @classmethod
    def model_refs(cls, params: PaserParams) -> list[str]:
        refs = [params.original]
        if isinstance(params.degraded, str):
            refs.append(params.degraded)
        return list(dict.fromkeys(refs))

    @classmethod
    def cache_inputs(cls, params: PaserParams) -> dict:
        out = {"embedding_model": resolve_model(params.embedding_model)[1]}
        if params.chat_template_path:
            from curation.steps.base import path_fingerprint

            out["chat_template"] = path_fingerprint(params.chat_template_path)
        return out

    # ------------------------------------------------------------------ models
    def _models(self):
        from curation.lm_loss import load_scoring_model
        from curation.prune import PruneError, magnitude_prune

        p = self.params
        original_dir = str(self.ctx.model(p.original))
        original, tok = load_scoring_model(original_dir, p.dtype)
        if isinstance(p.degraded, str):
            degraded_dir = str(self.ctx.model(p.degraded))
            degraded, tok_d = load_scoring_model(degraded_dir, p.dtype)
            if tok_d.get_vocab() != tok.get_vocab():
                a, b = len(tok.get_vocab()), len(tok_d.get_vocab())
                raise StepError(f"paser: the degraded model {p.degraded!r} has another tokenizer than the original "
                                f"{p.original!r} ({b} vs {a} tokens{'' if a != b else ', same size, other ids'}); the "
                                "JSD compares the two models' next-token distributions over one vocabulary, so give a "
                                "pruned copy of the original (or degraded: {prune: {sparsity: 0.5, modules: mlp}})")
            report = {"path": p.degraded}
        else:
            import copy

            degraded = copy.deepcopy(original)
            try:
                report = magnitude_prune(degraded, p.degraded.prune.sparsity, p.degraded.prune.modules)
            except PruneError as exc:
                raise StepError(f"paser: degraded.prune: {exc}") from None
            degraded.eval()
        v_o = original.get_output_embeddings().weight.shape[0]
        v_d = degraded.get_output_embeddings().weight.shape[0]
        if v_o != v_d:
            raise StepError(f"paser: the degraded model's output layer has {v_d} tokens, the original's {v_o}: they "
                            "must share one tokenizer and vocabulary")
        return original, degraded, tok, original_dir, report

    # ------------------------------------------------------------------ decide
    def decide(self, rows) -> Decisions:
        p, seed = self.params, self.ctx.seed
        n = len(rows)
        if n == 0:
            return Decisions(keep=np.zeros(0, dtype=bool), extras={"pool": 0})
        kinds = set(rows["kind"])
        if kinds != {"chat"}:
            raise StepError(f"paser selects chat rows (instruction = the user turns, response = the assistant turns); "
                            f"this pool also holds {sorted(kinds - {'chat'})} rows")
        try:
            budget = budget_rows(p.budget, n)
        except BudgetError as exc:
            raise StepError(f"paser: {exc}") from None
        if p.num_clusters > n:
            raise StepError(f"paser: num_clusters: {p.num_clusters} clusters is more than the {n} rows of the pool; "
                            f"give at most {n} (the paper uses 10)")
        timings: dict[str, float] = {}
        t0 = time.time()
        original, degraded, tok, original_dir, degraded_report = self._models()
        timings["load_models"] = time.time() - t0

        messages = rows["messages"]
        instructions = [_turns(m, ("user",)) for m in messages]
        responses = [_turns(m, ("assistant",)) for m in messages]
        cache_dir = (self.ctx.cache_root / "embeddings") if self.ctx.cache_root else None
        t0 = time.time()
        emb = embed(instructions, p.embedding_model, cache_dir=cache_dir, normalize=True, progress=self.ctx.progress)
        timings["embed"] = time.time() - t0

        t0 = time.time()
        assign, cluster_info = cluster_pool(emb, p.num_clusters, p.manifold, seed, p.kernel_rows, p.nmf_max_iter)
        timings["cluster"] = time.time() - t0

        # degradation: one JSD per distinct (messages) row, upsampled copies scored once
        t0 = time.time()
        keys = [json.dumps(m, sort_keys=True) for m in messages]
        unique = list(dict.fromkeys(keys))
        where = {k: i for i, k in enumerate(unique)}
        first = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        template = None
        if p.chat_template_path:
            from pathlib import Path

            path = Path(p.chat_template_path).expanduser()
            if not path.is_file():
                raise StepError(f"paser: chat_template_path: {p.chat_template_path}: no such file")
            template = path.read_text()
        seqs, spans = [], []
        for k in unique:
            i = first[k]
            ids, start, end = score_span(tok, list(messages[i]), instructions[i], responses[i], p.degradation_tokens,
                                         p.max_length, template)
            seqs.append(ids)
            spans.append((start, end))
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        advance = self.ctx.progress("paser: degradation (JSD original vs degraded)", len(unique)) if self.ctx.progress else None
        jsd_u = row_jsd(original, degraded, seqs, spans, pad, p.batch_size, advance)
        jsd = jsd_u[[where[k] for k in keys]]
        in_tok = np.array([len(x) for x in tok(instructions, add_special_tokens=False)["input_ids"]])
        out_tok = np.array([len(x) for x in tok(responses, add_special_tokens=False)["input_ids"]])
        ies = efficiency(jsd, in_tok, out_tok)
        timings["degradation"] = time.time() - t0
        del original, degraded

        clusters = sorted(int(c) for c in np.unique(assign))
        cds = {c: float(jsd[assign == c].mean()) for c in clusters}
        budgets = allocate_budget(cds, budget)

        from curation.keyphrases import keyphrases  # scikit-learn's stop words: imported only when run

        t0 = time.time()
        concepts = [set(keyphrases(f"{a}\n{b}")) for a, b in zip(instructions, responses)] if p.concept_filter else None
        keep, why, counts = select(assign, ies, cds, budgets, concepts)
        timings["select"] = time.time() - t0

        reason = []
        for i in range(n):
            tail = f"cluster={assign[i]} jsd={jsd[i]:.4g}"
            if why[i] == "selected":
                reason.append(f"paser_selected:{tail}")
            elif why[i] == "budget":
                reason.append(f"paser_budget:{tail}")
            else:
                reason.append(f"paser_concept_conflict:{tail} conflict={why[i].split(':', 1)[1][:120]}")

        self._write_rows(ids_of(rows), assign, jsd, ies, in_tok, out_tok, keep, reason, concepts)
        extras = self._extras(rows, instructions, emb, assign, jsd, keep, cds, budgets, counts, budget, cluster_info,
                              degraded_report, original_dir, timings)
        return Decisions(keep=keep, score=ies, reason=reason, extras=extras)

    def _write_rows(self, ids, assign, jsd, ies, in_tok, out_tok, keep, reason, concepts) -> None:
        if self.ctx.workdir is None:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.ctx.workdir.mkdir(parents=True, exist_ok=True)
        table = pa.table({"row_id": list(ids), "cluster": assign.astype(np.int32), "jsd": jsd, "ies": ies,
                          "instruction_tokens": in_tok, "response_tokens": out_tok, "keep": keep, "reason": reason,
                          "concepts": [sorted(c) for c in concepts] if concepts is not None else [None] * len(keep)})
        pq.write_table(table, self.ctx.workdir / "rows.parquet")

    def _extras(self, rows, instructions, emb, assign, jsd, keep, cds, budgets, counts, budget, cluster_info,
                degraded_report, original_dir, timings) -> dict:
        p, seed = self.params, self.ctx.seed
        n = len(rows)
        rng = np.random.default_rng(seed)
        skills = rows["skill"]
        table = []
        for c in sorted(cds):
            members = np.flatnonzero(assign == c)
            examples = [instructions[i][:160] for i in members[: p.examples]]
            by_skill = {}
            if any(s for s in skills):
                for s in (skills[i] or "(none)" for i in members):
                    by_skill[s] = by_skill.get(s, 0) + 1
            table.append({"cluster": c, "size": int(len(members)), "cds": cds[c], "budget": budgets[c],
                          **counts["clusters"][c],
                          "top_skill": max(by_skill, key=by_skill.get) if by_skill else None,
                          "examples": examples})
        selected = int(keep.sum())
        section = {
            "title": "PASER: recovery data selection for a pruned model",
            "text": (f"Pool of {n} rows in {len(cds)} clusters ({p.manifold} manifold, NMF spectral clustering); "
                     f"budget {budget} rows allocated by capability degradation (CDS, mean JSD original vs degraded per "
                     f"cluster); {selected} selected, {budget - selected} of the budget unspent "
                     f"({sum(v['concept_conflicts'] for v in counts['clusters'].values())} rows rejected by the "
                     f"concept-consistency graph{'' if p.concept_filter else ', which is off'})."),
            "table": table,
        }
        if p.map != "none":
            idx = np.arange(n) if n <= p.map_points else np.sort(rng.choice(n, p.map_points, replace=False))
            xy, method, note = map_2d(emb[idx].astype(np.float64), p.map, seed)
            section["map"] = {"method": method, "note": note, "rows": int(len(idx)), "of": n,
                              "x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist(),
                              "cluster": assign[idx].tolist(), "selected": keep[idx].tolist()}
        return {
            "pool": n, "budget": int(budget), "selected": selected, "unused_budget": int(budget - selected),
            "num_clusters": len(cds), "num_clusters_requested": p.num_clusters, "manifold": p.manifold,
            **{k: v for k, v in cluster_info.items()},
            "original": original_dir, "degraded": p.degraded if isinstance(p.degraded, str) else degraded_report,
            "embedding_model": resolve_model(p.embedding_model)[1],
            "degradation_tokens": p.degradation_tokens, "mean_jsd": float(jsd.mean()),
            "mean_jsd_selected": float(jsd[keep].mean()) if selected else None,
            "concept_filter": p.concept_filter, "concept_graph_nodes": counts["graph_nodes"],
            "concept_graph_edges": counts["graph_edges"],
            "cds_by_cluster": {str(c): cds[c] for c in sorted(cds)},
            "budget_by_cluster": {str(c): budgets[c] for c in sorted(cds)},
            "selected_by_cluster": {str(c): counts["clusters"][c]["selected"] for c in sorted(cds)},
            "seconds": {k: round(v, 3) for k, v in timings.items()},
            "card_section": section,
        }
