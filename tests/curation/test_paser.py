"""paser (and its pieces: RAKE, the concept graph, the budget, IES, JSD, magnitude pruning, the
diffusion clustering) and random_subset; the three bad inputs end in a clear error through the CLI."""

import math

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from curation.rows import make_row, rows_to_dataset
from curation.steps.base import StepContext, StepError
from tests.conftest import tiny_recipe


# ---------------------------------------------------------------------- RAKE
def test_rake_scores_degree_over_frequency_as_rose_et_al():
    from curation.keyphrases import candidate_phrases, keyphrases, rake

    # the worked example of Rose et al. 2010 (their Table 1.1 scores)
    text = ("Compatibility of systems of linear constraints over the set of natural numbers. Criteria of "
            "compatibility of a system of linear Diophantine equations, strict inequations, and nonstrict "
            "inequations are considered.")
    scores = dict(rake(text))
    assert scores["linear diophantine equations"] == 8.5
    assert scores["linear constraints"] == 4.5
    assert scores["natural numbers"] == scores["strict inequations"] == scores["nonstrict inequations"] == 4.0
    assert keyphrases(text)[0] == "linear diophantine equations"
    # stop words (scikit-learn's list) and every punctuation token split phrases; case is folded
    assert candidate_phrases("Calculate 8 + 5?) The Cat") == [("calculate", "8"), ("5",), ("cat",)]
    assert keyphrases("") == []


# ---------------------------------------------------------------------- concept graph, budget, IES
def test_concept_graph_rejects_known_but_unconnected_pairs():
    from curation.paser_scores import ConceptGraph

    g = ConceptGraph()
    assert g.conflict({"a", "b"}) is None
    g.add({"a", "b"})
    assert g.conflict({"a", "c"}) is None  # c is new: no conflict
    g.add({"a", "c"})
    assert g.conflict({"b", "c"}) == ("b", "c")  # both known, never together
    assert g.conflict({"a", "b", "z"}) is None  # connected, z new
    g.add({"solo"})  # a single concept adds no node (nodes enter through edges, as the code's add_edge)
    assert "solo" not in g.adj and g.edges == 2


def test_budget_is_proportional_to_cds_with_floors():
    from curation.paser_scores import allocate_budget

    assert allocate_budget({0: 0.5, 1: 0.3, 2: 0.2}, 10) == {0: 5, 1: 3, 2: 2}
    assert allocate_budget({0: 0.5, 1: 0.3, 2: 0.2}, 7) == {0: 3, 1: 2, 2: 1}  # floors: 1 row unspent
    with pytest.raises(StepError, match="all JSD = 0"):
        allocate_budget({0: 0.0, 1: 0.0}, 5)


def test_ies_ranks_within_cluster_and_stops_at_the_budget():
    from curation.paser_scores import efficiency, select

    jsd = np.array([0.2, 0.4, 0.4, 0.1, 0.3])
    ies = efficiency(jsd, in_tokens=[3, 3, 30, 3, 3], out_tokens=[1, 1, 30, 1, 1])
    assert ies[1] == pytest.approx(0.4 / math.log(16)) and ies[2] == pytest.approx(0.4 / math.log(3600))
    assert efficiency([0.5], [0], [1])[0] == pytest.approx(0.5 / math.log(4))  # at least 2 tokens: log > 0
    assign = np.array([0, 0, 0, 1, 1])
    keep, why, counts = select(assign, ies, {0: 0.3, 1: 0.2}, {0: 2, 1: 1}, None)
    assert keep.tolist() == [True, True, False, False, True]  # the long row's IES is below the short ones'
    assert why[2] == "budget" and counts["clusters"][0]["over_budget"] == 1
    concepts = [{"x", "y"}, {"x", "q"}, {"y", "q"}, {"u"}, {"v"}]
    keep, why, counts = select(assign, ies, {0: 0.3, 1: 0.2}, {0: 3, 1: 2}, concepts)
    # cluster 0 in IES order: row 1 {x, q} adds x-q, row 0 {x, y} (y new) adds x-y, row 2 {y, q}: both known, unlinked
    assert why[2] == "conflict:q|y" and keep.tolist() == [True, True, False, True, True]


# ---------------------------------------------------------------------- JSD and pruning
def test_jsd_is_zero_for_identical_distributions_and_bounded():
    import torch

    from curation.paser_scores import jsd_per_position

    a = torch.randn(2, 5, 50)
    assert float(jsd_per_position(a, a).abs().max()) < 1e-6
    b = torch.randn(2, 5, 50)
    d = jsd_per_position(a, b)
    assert float(d.min()) > 0 and float(d.max()) <= math.log(2) + 1e-6
    assert torch.allclose(d, jsd_per_position(b, a), atol=1e-6)
    sharp = torch.full((1, 1, 4), -1e4)
    sharp[..., 0] = 1e4  # a one-hot distribution: zero probabilities must not give NaN
    assert math.isfinite(float(jsd_per_position(sharp, torch.zeros(1, 1, 4))))


def test_magnitude_pruning_hits_the_sparsity_on_the_selected_modules_only(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from curation.prune import PruneError, magnitude_prune, selected_modules, sparsity_of

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = magnitude_prune(model, 0.5, "mlp")
    assert report["achieved_sparsity"] == 0.5 and report["matrices"] == 6  # 2 layers x gate/up/down
    assert sparsity_of(model, "mlp") == 0.5
    mlp = {f"{n}.weight" for n, _ in selected_modules(model, "mlp")}
    for name, p in model.named_parameters():
        if name in mlp:  # the zeros are the smallest magnitudes of that matrix
            w0 = before[name].abs().flatten()
            kept = p.detach().flatten() != 0
            assert int((~kept).sum()) == w0.numel() // 2 and w0[~kept].max() <= w0[kept].min()
        else:
            assert torch.equal(p, before[name]), name  # attention, norms, embeddings untouched
    other = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    magnitude_prune(other, 0.5, "mlp")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))  # deterministic
    assert not any("lm_head" in n for n, _ in selected_modules(model, "all-linear"))
    attn = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    magnitude_prune(attn, 0.25, "attention")
    assert sparsity_of(attn, "attention") == 0.25 and sparsity_of(attn, "mlp") == 0.0
    with pytest.raises(PruneError):
        magnitude_prune(attn, 0.5, "convolutions")


def test_jsd_is_zero_between_a_model_and_itself_and_positive_after_pruning(tiny_model_dir):
    import copy

    from curation.lm_loss import load_scoring_model
    from curation.prune import magnitude_prune
    from curation.paser_scores import row_jsd, score_span

    model, tok = load_scoring_model(str(tiny_model_dir))
    msgs = [[{"role": "user", "content": f"What is {a} + {a}?"}, {"role": "assistant", "content": str(2 * a)}]
            for a in range(6)]
    spans = [score_span(tok, m, m[0]["content"], m[1]["content"], "all", 64) for m in msgs]
    seqs, bounds = [s[0] for s in spans], [(s[1], s[2]) for s in spans]
    same = row_jsd(model, copy.deepcopy(model), seqs, bounds, tok.pad_token_id, batch_size=4)
    assert np.abs(same).max() < 1e-7
    pruned = copy.deepcopy(model)
    magnitude_prune(pruned, 0.5, "mlp")
    assert (row_jsd(model, pruned, seqs, bounds, tok.pad_token_id, batch_size=4) > 0).all()
    ids, start, end = score_span(tok, msgs[0], msgs[0][0]["content"], "0", "response", 64)
    assert 0 < start < end < len(ids)  # only the positions that predict the answer


# ---------------------------------------------------------------------- clustering
def _blobs(n_per=30, k=3, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:k] * 3
    emb = np.concatenate([c + 0.15 * rng.standard_normal((n_per, dim)) for c in centres])
    return emb, np.repeat(np.arange(k), n_per)


@pytest.mark.parametrize("kernel_rows", [1000, 45])  # exact kernel, and a sample + Nyström extension
def test_diffusion_nmf_clustering_recovers_separated_groups(kernel_rows):
    from curation.paser_clusters import cluster_pool

    emb, truth = _blobs()
    assign, info = cluster_pool(emb, 3, "diffusion", seed=0, kernel_rows=kernel_rows, max_iter=400)
    for c in range(3):  # each true group falls in one cluster
        assert len(set(assign[truth == c].tolist())) == 1
    assert len(set(assign.tolist())) == 3 and info["nystrom_rows"] == max(0, 90 - kernel_rows)
    assert info["laplacian_eigenvalues"][0] == pytest.approx(0, abs=1e-8)  # the constant eigenvector


# ---------------------------------------------------------------------- params, umap, random_subset
def test_params_budget_forms_and_umap_missing_names_the_extra(monkeypatch):
    import importlib.util

    from curation.paser_clusters import map_2d
    from curation.steps.paser import PaserParams

    deg = {"prune": {"sparsity": 0.5, "modules": "mlp"}}
    assert PaserParams(budget=20000, degraded=deg).budget == 20000
    assert PaserParams(budget=0.1, degraded=deg).budget == 0.1
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValidationError):
            PaserParams(budget=bad, degraded=deg)
    with pytest.raises(ValidationError):
        PaserParams(budget=0.1, degraded={"prune": {"sparsity": 0.5, "modules": "mlp"}, "extra": 1})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a))
    with pytest.raises(ValidationError, match=r"recipe-kit\[umap\]"):
        PaserParams(budget=0.1, degraded=deg, manifold="umap")
    monkeypatch.setitem(__import__("sys").modules, "umap", None)  # `import umap` now raises ImportError
    xy, method, note = map_2d(np.random.default_rng(0).standard_normal((20, 8)), "umap", 0)
    assert xy.shape == (20, 2) and method == "pca" and "recipe-kit[umap]" in note


def test_random_subset_is_seeded_and_exact():
    from curation.steps.random_subset import RandomSubset, RandomSubsetParams

    ds = rows_to_dataset([make_row("text", "w", text=f"doc {i}") for i in range(50)])
    a = RandomSubset(RandomSubsetParams(budget=0.2), StepContext(seed=3)).decide(ds)
    b = RandomSubset(RandomSubsetParams(budget=10), StepContext(seed=3)).decide(ds)
    assert a.keep.sum() == 10 and (a.keep == b.keep).all()
    assert {r for r, k in zip(a.reason, a.keep) if not k} == {"random_subset_not_drawn"}
    small = RandomSubset(RandomSubsetParams(budget=5), StepContext(seed=3)).decide(ds)
    assert not (small.keep & ~a.keep).any()  # a smaller budget keeps a subset of a larger one's rows
    with pytest.raises(StepError, match="larger than the pool"):
        RandomSubset(RandomSubsetParams(budget=51), StepContext()).decide(ds)


# ---------------------------------------------------------------------- the step
def _pool(n_per: int = 12) -> list:
    rows = []
    for a in range(n_per):
        rows.append(make_row("chat", "pool", skill="add", messages=[
            {"role": "user", "content": f"What is {a} + {a + 1}?"}, {"role": "assistant", "content": str(2 * a + 1)}]))
        rows.append(make_row("chat", "pool", skill="words", messages=[
            {"role": "user", "content": f"Name a colour number {a} for the painting of the old red barn."},
            {"role": "assistant", "content": "Blue, like the evening sky over the quiet harbour."}]))
        rows.append(make_row("chat", "pool", skill="cook", messages=[
            {"role": "user", "content": f"Give cooking step {a} for baking fresh bread at home."},
            {"role": "assistant", "content": "Knead the dough, let it rise, then bake it hot."}]))
    return rows


def test_step_decides_every_row_with_cluster_jsd_and_reason(tiny_model_dir, tmp_path):
    from curation.steps.paser import Paser, PaserParams

    ds = rows_to_dataset(_pool())
    params = PaserParams(budget=0.3, num_clusters=3, original=str(tiny_model_dir),
                         degraded={"prune": {"sparsity": 0.5, "modules": "mlp"}}, map="pca")
    d = Paser(params, StepContext(seed=0, workdir=tmp_path / "work", cache_root=tmp_path)).decide(ds)
    n = len(ds)
    assert d.keep.sum() <= int(0.3 * n) and d.keep.any()
    assert all(r.startswith("paser_selected:cluster=") for r, k in zip(d.reason, d.keep) if k)
    assert all(r.split(":")[0] in ("paser_budget", "paser_concept_conflict") for r, k in zip(d.reason, d.keep) if not k)
    assert all("jsd=" in r for r in d.reason) and np.isfinite(d.score).all()
    table = d.extras["card_section"]["table"]
    assert sum(c["size"] for c in table) == n and sum(c["selected"] for c in table) == d.keep.sum()
    assert d.extras["budget"] == int(0.3 * n) and d.extras["unused_budget"] == d.extras["budget"] - d.keep.sum()
    assert d.extras["card_section"]["map"]["method"] == "pca" and len(d.extras["card_section"]["map"]["x"]) == n
    import pyarrow.parquet as pq

    saved = pq.read_table(tmp_path / "work" / "rows.parquet")
    assert saved.num_rows == n and saved.column("jsd").to_numpy().min() > 0
    assert Paser.model_refs(params) == [str(tiny_model_dir)]


def test_plan_keys_a_paser_step_by_its_models(tmp_path, tiny_model_dir):
    from recipe.cache import Cache
    from recipe.load import load_recipe
    from recipe.plan import make_plan

    r = tiny_recipe(sources={"pool": {"generate": "arithmetic", "n": 40, "skills": ["add"], "max_operand": 9,
                                      "as_chat": True, "split": "train"}},
                    mixtures={"sft": {"pool": 1.0}}, stages=[], eval={},
                    selection={"sft": [{"paser": {"budget": 0.5, "num_clusters": 2, "map": "none",
                                                  "degraded": {"prune": {"sparsity": 0.5, "modules": "mlp"}}}}]})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    plan = make_plan(load_recipe(path), Cache(tmp_path / "cache"), tmp_path / "out")
    step = plan.get("step", "sft[0]:paser")
    assert step.describe["models"] == {"base": plan.get("model", "base").key}
    other = make_plan(load_recipe(path, [f"selection.sft.0.paser.degraded={tiny_model_dir}"]), Cache(tmp_path / "cache"),
                      tmp_path / "out").get("step", "sft[0]:paser")
    assert set(other.describe["models"]) == {"base", str(tiny_model_dir)} and other.key != step.key


# ---------------------------------------------------------------------- bad input, through the CLI
@pytest.fixture(scope="module")
def other_tokenizer_model(tmp_path_factory):
    from training.tiny_model import build_tiny_model

    texts = [f"Bonjour {i}, comment allez-vous ?" for i in range(200)]
    return build_tiny_model(tmp_path_factory.mktemp("other_tok"), texts, vocab_size=280, hidden_size=32, num_layers=2,
                            num_heads=2, intermediate_size=64)


@pytest.mark.parametrize("options,message", [
    ({"budget": 5000}, "5000 rows is larger than the pool"),
    ({"budget": 0.5, "num_clusters": 500}, "num_clusters: 500 clusters is more than the"),
    ({"budget": 0.5, "degraded": "OTHER"}, "has another tokenizer than the original"),
])
def test_bad_input_is_a_clear_error(options, message, cli, write_recipe, other_tokenizer_model, tmp_path):
    step = {"budget": 0.1, "num_clusters": 2, "map": "none", "degraded": {"prune": {"sparsity": 0.5, "modules": "mlp"}}}
    step.update(options)
    if step["degraded"] == "OTHER":
        step["degraded"] = str(other_tokenizer_model)
    r = tiny_recipe(sources={"pool": {"generate": "arithmetic", "n": 60, "skills": ["add", "sub"], "max_operand": 9,
                                      "as_chat": True, "split": "train"}},
                    mixtures={"sft": {"pool": 1.0}}, selection={"sft": [{"paser": step}]}, stages=[], eval={})
    res = cli("curate", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 1, res.output
    assert message in res.output and "Traceback" not in res.output


def test_card_section_table_and_map_from_step_extras(tmp_path):
    from curation.card.facts import _method_sections
    from curation.card.plots import method_map

    section = {"title": "PASER", "text": "2 clusters", "table": [
        {"cluster": 0, "size": 3, "cds": 0.2, "budget": 1, "examples": ["What is 1 + 1?", "Name a colour"]},
        {"cluster": 1, "size": 1, "cds": 0.1, "budget": 0, "examples": []}],
        "map": {"method": "pca", "note": "PCA instead of UMAP", "rows": 4, "of": 4, "x": [0, 1, 2, 3],
                "y": [0, 1, 0, 1], "cluster": [0, 0, 0, 1], "selected": [True, False, False, False]}}
    facts = {"mixtures": {"sft": {"funnel": [{"step": "mixture"}, {"step": "paser", "index": 0, "ledger_step": "0:paser",
                                                                   "extras": {"card_section": section}}]}}}
    (s,) = _method_sections(facts)
    assert s["columns"] == ["cluster", "size", "cds", "budget", "examples"]
    assert s["rows"][0][-1] == "What is 1 + 1? · Name a colour" and s["map"]["note"] == "PCA instead of UMAP"
    assert method_map("sft / 0: paser", section["map"], tmp_path / "map.png") and (tmp_path / "map.png").stat().st_size
    assert not method_map("x", {"x": [1], "y": []}, tmp_path / "bad.png")
