"""PASER's scores and selection (He et al. 2025, sections 3.2-3.4; used by ``curation.steps.paser``): the
per-position Jensen-Shannon divergence between the original and the degraded model (capability
degradation), the budget per cluster B_c = floor(B * CDS_c / sum CDS), the efficiency
IES = JSD / log(cost) and the concept-consistency graph walk. Fixes of the official code (JSD a mean
over positions, cost in tokens on both sides) are stated in ``curation.steps.paser``'s docstring.
"""

from __future__ import annotations

import math

import numpy as np

from curation.steps.base import StepError

# ---------------------------------------------------------------------- degradation
def jsd_per_position(logits_p, logits_q):
    """Jensen-Shannon divergence (nats) of softmax(p) and softmax(q) at every position (last dim = vocab)."""
    import torch

    lp = torch.log_softmax(logits_p.float(), dim=-1)
    lq = torch.log_softmax(logits_q.float(), dim=-1)
    lm = torch.logaddexp(lp, lq) - math.log(2.0)
    out = 0.5 * ((lp.exp() * (lp - lm)).sum(-1) + (lq.exp() * (lq - lm)).sum(-1))
    return out.clamp_min(0.0)


def _ids(tokenizer, out) -> list[int]:
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def score_span(tokenizer, messages: list[dict], instruction: str, response: str, mode: str,
               max_length: int, chat_template: str | None = None) -> tuple[list[int], int, int]:
    """Token ids of what is scored, and the [start, end) of the positions whose next-token
    distributions the JSD averages (position t predicts token t + 1)."""
    if mode == "instruction":
        ids = _ids(tokenizer, tokenizer(instruction, add_special_tokens=True))[:max_length]
        return ids, 0, len(ids)
    if chat_template or getattr(tokenizer, "chat_template", None):
        ids = _ids(tokenizer, tokenizer.apply_chat_template(messages, tokenize=True, chat_template=chat_template))
        first = next((j for j, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
        prompt = _ids(tokenizer, tokenizer.apply_chat_template(messages[:first], tokenize=True, add_generation_prompt=True,
                                                               chat_template=chat_template)) if mode == "response" else []
    else:
        prompt = _ids(tokenizer, tokenizer(instruction + "\n\n", add_special_tokens=True))
        ids = prompt + _ids(tokenizer, tokenizer(response, add_special_tokens=False))
    ids = ids[:max_length]
    if mode == "response":
        start, end = max(len(prompt) - 1, 0), len(ids) - 1
        if end > start:
            return ids, start, end
    return ids, 0, len(ids)


def row_jsd(original, degraded, batches: list[list[int]], spans: list[tuple[int, int]], pad_id: int,
            batch_size: int, advance=None) -> np.ndarray:
    """Mean per-position JSD of each token sequence between the two models."""
    import torch

    device = next(original.parameters()).device
    out = np.zeros(len(batches))
    order = sorted(range(len(batches)), key=lambda i: len(batches[i]))
    for a in range(0, len(order), batch_size):
        idx = order[a:a + batch_size]
        width = max(len(batches[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, :len(batches[i])] = torch.tensor(batches[i])
            mask[r, :len(batches[i])] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            jsd = jsd_per_position(original(input_ids=ids, attention_mask=mask).logits,
                                   degraded(input_ids=ids, attention_mask=mask).logits).cpu().numpy()
        for r, i in enumerate(idx):
            start, end = spans[i]
            out[i] = float(jsd[r, start:end].mean()) if end > start else 0.0
        if advance:
            advance(len(idx))
    return out


# ---------------------------------------------------------------------- budget, efficiency, concepts
def allocate_budget(cds: dict[int, float], budget: int) -> dict[int, int]:
    """B_c = floor(B * CDS_c / sum CDS) (the paper's allocation; floors may leave rows unspent)."""
    total = sum(cds.values())
    if total <= 0:
        raise StepError("paser: the degraded model's next-token distributions equal the original's on every row (all "
                        "JSD = 0), so there is no degradation to allocate the budget by; check that `degraded` really "
                        "is a pruned copy of `original`")
    return {c: int(math.floor(budget * v / total + 1e-9)) for c, v in cds.items()}


def efficiency(jsd: np.ndarray, in_tokens: np.ndarray, out_tokens: np.ndarray) -> np.ndarray:
    """IES = JSD / log(cost), cost = (instruction tokens + response tokens)^2, at least 2 tokens."""
    n = np.maximum(np.asarray(in_tokens) + np.asarray(out_tokens), 2).astype(np.float64)
    return np.asarray(jsd, dtype=np.float64) / np.log(n ** 2)


class ConceptGraph:
    """PASER's concept-consistency graph (undirected, adjacency sets)."""

    def __init__(self):
        self.adj: dict[str, set[str]] = {}

    def conflict(self, concepts) -> tuple[str, str] | None:
        """The first pair of concepts both in the graph but not connected (None: consistent)."""
        present = sorted(c for c in set(concepts) if c in self.adj)
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                if b not in self.adj[a]:
                    return a, b
        return None

    def add(self, concepts) -> None:
        """A clique over the concepts (a single concept adds nothing: nodes enter through edges)."""
        cs = sorted(set(concepts))
        if len(cs) < 2:
            return
        for a in cs:
            self.adj.setdefault(a, set()).update(b for b in cs if b != a)

    @property
    def edges(self) -> int:
        return sum(len(v) for v in self.adj.values()) // 2


def select(assign: np.ndarray, ies: np.ndarray, cds: dict[int, float], budgets: dict[int, int],
           concepts: list[set[str]] | None) -> tuple[np.ndarray, list[str], dict]:
    """Walk clusters (descending CDS) and their rows (descending IES); keep until the cluster's budget
    is spent, rejecting rows whose concepts conflict. Returns keep, a reason code per row
    (selected | budget | conflict:A|B), and per-cluster counts."""
    n = len(assign)
    keep = np.zeros(n, dtype=bool)
    why = ["budget"] * n
    graph = ConceptGraph()
    counts = {c: {"selected": 0, "concept_conflicts": 0, "over_budget": 0} for c in cds}
    for c in sorted(cds, key=lambda c: (-cds[c], c)):
        members = np.flatnonzero(assign == c)
        members = members[np.argsort(-ies[members], kind="stable")]
        for i in members:
            if counts[c]["selected"] >= budgets[c]:
                counts[c]["over_budget"] += 1
                continue
            if concepts is not None:
                pair = graph.conflict(concepts[i])
                if pair is not None:
                    why[i] = f"conflict:{pair[0]}|{pair[1]}"
                    counts[c]["concept_conflicts"] += 1
                    continue
                graph.add(concepts[i])
            keep[i] = True
            why[i] = "selected"
            counts[c]["selected"] += 1
    return keep, why, {"clusters": counts, "graph_nodes": len(graph.adj), "graph_edges": graph.edges}
