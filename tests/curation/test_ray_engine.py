"""The Ray engine (issue 16): the same recipe gives the same datasets and ledger on ``--engine ray``
as on the local engine, a killed worker changes nothing, and bad engine input fails clearly.

Ray is the optional extra ``recipe-kit[distributed]`` (``scripts/test.sh`` installs it); without it
the tests that need a Ray skip and the missing-extra message is still tested. The Ray these tests
use is a local one, ``ray.init(num_cpus=2)``, started and stopped by the module fixture; the bad
input tests run before it starts (file order), since an engine joins a Ray that is already up.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.curation import test_content_fingerprint as fp
from curation import ledger as ledger_mod


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _fingerprint_recipe(tmp: Path) -> Path:
    fp.write_sources(tmp)
    return _write(tmp / "r.yaml", fp.recipe(tmp))


# ---------------------------------------------------------------------- bad input (no Ray running)
def test_ray_engine_without_the_extra_names_the_pip_command(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # an import of ray now fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    res = cli("curate", _fingerprint_recipe(tmp_path), "--out", tmp_path / "run", "--engine", "ray")
    assert res.exit_code != 0
    assert "pip install 'recipe-kit[distributed]'" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "run" / "ledger").exists()


def test_an_unknown_engine_is_refused(tmp_path, cli):
    res = cli("curate", _fingerprint_recipe(tmp_path), "--out", tmp_path / "run", "--engine", "spark")
    assert res.exit_code != 0 and "not one of local, ray" in res.output


def test_an_unreachable_ray_address_fails_within_seconds(tmp_path, cli):
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    started = time.time()
    res = cli("curate", _fingerprint_recipe(tmp_path), "--out", tmp_path / "run", "--ray-address", "127.0.0.1:9")
    assert res.exit_code != 0
    assert "cannot reach a Ray cluster at 127.0.0.1:9" in res.output and "ray start --head" in res.output
    assert time.time() - started < 30
    assert "Traceback" not in res.output


def test_the_engine_is_in_no_cache_key(tmp_path):
    from recipe.cache import Cache
    from recipe.load import load_recipe
    from recipe.plan import make_plan

    path = _fingerprint_recipe(tmp_path)
    local = load_recipe(path)
    on_ray = load_recipe(path, ["engine.name=ray", "engine.address=auto"])
    assert on_ray.recipe.engine.name == "ray"
    assert local.hash == on_ray.hash
    keys = [[n.key for n in make_plan(r, Cache(tmp_path / "c"), tmp_path / "o").nodes] for r in (local, on_ray)]
    assert keys[0] == keys[1]


# ---------------------------------------------------------------------- on a local Ray
@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    ray = pytest.importorskip("ray")
    from curation.ray_engine import FAULT_ENV

    faults = tmp_path_factory.mktemp("ray_faults")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {FAULT_ENV: str(faults)}})
    yield faults
    ray.shutdown()


def _sorted_ledger(run: Path) -> list[dict]:
    t = ledger_mod.read(run / "ledger")
    t = t.replace_schema_metadata(None)
    return t.sort_by([("dataset", "ascending"), ("step_index", "ascending"), ("row_id", "ascending")]).to_pylist()


def _datasets(run: Path) -> dict[str, list[dict]]:
    """Each stage dataset's rows, by mixture: a file (local) or a folder of parts (Ray), unstamped."""
    from curation.stage_paths import read_stage

    return {f.name.removesuffix(".parquet"): read_stage(f).to_pylist() for f in sorted((run / "datasets").iterdir())
            if not f.name.startswith(".")}


def test_fingerprint_recipe_on_ray_gives_the_committed_local_content(tmp_path, cli, ray_cluster):
    """Every row-local step, exact and MinHash dedup, upsampled copies and quarantined lines; here with
    the driver shipping the rows (``engine.shards=false``), the other tests with the workers reading shards."""
    res = cli("curate", _fingerprint_recipe(tmp_path), "--out", tmp_path / "run", "--engine", "ray", "engine.shards=false")
    assert res.exit_code == 0, res.output
    assert "engine: ray" in res.output and "the driver ships the rows" in res.output
    assert (tmp_path / "run" / "datasets" / "sft.parquet").is_file() and not (tmp_path / "run" / "cache" / "shards").exists()
    assert fp.run_fingerprint(tmp_path / "run") == json.loads(fp.FINGERPRINT.read_text())


def _pool(tmp: Path, n: int = 3000) -> Path:
    """A few thousand text rows: exact copies, one-word near duplicates, short rows, repeated lines,
    decoding debris, one malformed line."""
    rng = random.Random(11)
    rows: list[dict] = []
    for i in range(n):
        r = rng.random()
        if rows and r < 0.06:
            rows.append(dict(rng.choice(rows)))
        elif rows and r < 0.1:
            words = rng.choice(rows)["body"].split(" ")
            words[rng.randrange(len(words))] = "changed"
            rows.append({"body": " ".join(words)})
        elif r < 0.12:
            rows.append({"body": fp._text(rng, 3)})
        elif r < 0.14:
            rows.append({"body": "\n".join([fp._text(rng, 8)] * 4)})
        elif r < 0.15:
            rows.append({"body": fp._text(rng, 12) + " \ufffd"})
        else:
            rows.append({"body": fp._text(rng, rng.randint(8, 80))})
    bench = [{"body": fp._text(rng, 14), "n": k} for k in range(40)]  # eval items, 15 leaked into the pool
    for k in range(15):
        rows[rng.randrange(len(rows))] = {"body": f"Question: {bench[k]['body']} Answer step by step."}
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(100, "{broken")
    (tmp / "pool.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp / "bench.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bench), encoding="utf-8")
    return _write(tmp / "pool.yaml", {
        "name": "ray_pool", "seed": 5, "model": {"init": "tiny"},
        "sources": {"pool": {"path": str(tmp / "pool.jsonl"), "kind": "text", "fields": {"text": "body"},
                             "license": "CC0-1.0"},
                    "bench": {"path": str(tmp / "bench.jsonl"), "kind": "text", "fields": {"text": "body"},
                              "license": "CC0-1.0"}},
        "mixtures": {"mix": {"pool": {"upsample": 1.2}}},
        "selection": {"mix": [{"decontaminate": {"against": ["bench"], "field": "all", "eval_field": "all"}},
                              {"exact_dedup": {}}, {"minhash_dedup": {"threshold": 0.7}}, {"length": {"unit": "words", "min": 5}},
                              {"repetition": {"field": "all"}}, {"garbage": {}}, {"random_subset": {"budget": 2000}}]},
    })


def test_ray_and_local_give_identical_datasets_and_ledgers(tmp_path, cli, ray_cluster, monkeypatch):
    tmp_path = tmp_path / "lr=0.1"  # a folder pyarrow would read as a hive partition column, were it let to
    tmp_path.mkdir()
    recipe = _pool(tmp_path)
    local = cli("curate", recipe, "--out", tmp_path / "local")
    assert local.exit_code == 0, local.output
    on_ray = cli("curate", recipe, "--out", tmp_path / "ray", "--engine", "ray")
    assert on_ray.exit_code == 0, on_ray.output
    assert "random_subset has no distributed form: it runs on the driver" in on_ray.output
    assert "exact_dedup: hash-partitioned" in on_ray.output
    assert "decontaminate: 1 benchmark index(es) broadcast" in on_ray.output
    # the workers read the mixture's shards from the cache and wrote the stage dataset's parts; the three
    # row-local steps in a row ran as one pass over the shards (curation.ray_chain)
    assert "stage dataset written by the workers" in on_ray.output
    assert "length, repetition, garbage: one pass over the shards" in on_ray.output
    assert (tmp_path / "ray" / "datasets" / "mix").is_dir() and not (tmp_path / "ray" / "datasets" / "mix.parquet").exists()
    assert list((tmp_path / "ray" / "cache" / "shards").glob("*/shards.json"))
    assert _datasets(tmp_path / "local") == _datasets(tmp_path / "ray")
    a, b = _sorted_ledger(tmp_path / "local"), _sorted_ledger(tmp_path / "ray")
    assert len(a) == len(b) and a == b
    reasons = {r["reason_code"] for r in a}
    assert {"duplicate_of", "near_duplicate_of", "ngram_overlap"} <= reasons
    quarantined = [r for r in a if r["decision"] == "quarantine"]
    assert quarantined and quarantined == [r for r in b if r["decision"] == "quarantine"]
    # again, every node cached: the mixture is not assembled from its sources (the driver reads its shards'
    # narrow columns) and the workers write the stage dataset from the cached shards
    from curation.pipeline import Curation

    def not_assembled(self, entry):
        raise AssertionError("a cached mixture with cached shards was assembled on the driver")

    monkeypatch.setattr(Curation, "_cached_mixture_rows", not_assembled)
    again = cli("curate", recipe, "--out", tmp_path / "ray", "--engine", "ray")
    assert again.exit_code == 0, again.output
    assert "stage dataset written by the workers" in again.output
    assert _datasets(tmp_path / "local") == _datasets(tmp_path / "ray")
    assert _sorted_ledger(tmp_path / "ray") == a
    # the local engine over the same run directory replaces the folder with the file
    monkeypatch.undo()
    assert cli("curate", recipe, "--out", tmp_path / "ray").exit_code == 0
    assert (tmp_path / "ray" / "datasets" / "mix.parquet").is_file() and not (tmp_path / "ray" / "datasets" / "mix").exists()


def test_a_killed_worker_changes_nothing_and_leaves_no_half_written_entry(tmp_path, cli, ray_cluster):
    (ray_cluster / "armed").write_text("")  # the next shard to start kills its worker (curation.ray_engine)
    try:
        res = cli("curate", _fingerprint_recipe(tmp_path), "--out", tmp_path / "run", "--engine", "ray")
    finally:
        (ray_cluster / "armed").unlink()
    assert (ray_cluster / "fired").exists(), "no worker was killed"
    assert res.exit_code == 0, res.output
    assert "workers read Parquet shards" in res.output
    assert fp.run_fingerprint(tmp_path / "run") == json.loads(fp.FINGERPRINT.read_text())
    assert not list((tmp_path / "run" / "cache").glob("*/*.tmp-*"))


def test_a_row_local_step_holding_a_model_runs_in_an_actor_pool(tmp_path, ray_cluster):
    """A row-local step with a model reference gets the driver's resolved path in each actor."""
    import numpy as np

    from curation import ray_engine
    from curation.steps.base import Decisions, StepContext
    from curation.steps.length import Length

    class NeedsModel(Length):
        name = "length"

        @classmethod
        def model_refs(cls, params):
            return ["base"]

    engine = ray_engine.RayEngine()
    table = pa.table({"kind": ["text"] * 2000, "text": [("w " * (i % 9)).strip() for i in range(2000)]})
    step = Length(Length.Params(unit="words", min=3), StepContext(seed=0))
    want = step.decide_batch(table)
    seen = []
    step = NeedsModel(NeedsModel.Params(unit="words", min=3), StepContext(seed=0, model_loader=lambda r: seen.append(r) or "/m"))
    got = engine.decide(step, table)
    assert seen == ["base"]
    assert isinstance(got, Decisions) and np.array_equal(got.keep, want.keep) and got.reason == want.reason


def test_minhash_components_by_star_rounds_on_ray_match_the_local_step(ray_cluster, monkeypatch):
    """The distributed stages (band-key shuffle, large/small-star rounds, scores by kept row) give the
    local step's decisions, scores and extras, for two keep rules, with chains of near duplicates."""
    import numpy as np

    from curation import ray_minhash
    from curation.ray_engine import RayEngine
    from curation.rows import dataset_of, rows_to_table
    from curation.steps.base import StepContext
    from curation.steps.minhash_dedup import MinHashDedup

    monkeypatch.setattr(ray_minhash, "DRIVER_EDGES", 0)  # always the rounds, never the driver's scipy
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(300)]
    texts: list[str] = []
    for _ in range(1500):
        if texts and rng.random() < 0.35:  # one word changed in an earlier row: chains of near copies
            words = rng.choice(texts).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 40))))
    texts[5] = ""
    ids = [f"r{i}" for i in range(len(texts))]
    ids[6], ids[7] = "r6#0", "r6#1"  # upsampled copies share one decision
    table = rows_to_table([{"id": i, "source": "s", "kind": "text", "text": t, "metadata": "{}"} for i, t in zip(ids, texts)])
    said = []
    engine = RayEngine()
    engine.say = said.append
    for params in ({"threshold": 0.7}, {"threshold": 0.5, "keep": "longest"}):
        want = MinHashDedup(MinHashDedup.Params(**params), StepContext(seed=1)).decide(dataset_of(table))
        got = ray_minhash.minhash_dedup(engine, MinHashDedup(MinHashDedup.Params(**params), StepContext(seed=1)), table)
        assert np.array_equal(got.keep, want.keep) and got.reason == want.reason
        assert np.array_equal(got.score, want.score) and got.extras == want.extras
        assert want.extras["clusters"] > 20 and max(map(int, want.extras["cluster_size_histogram"])) >= 4
    assert any("large/small-star round" in s for s in said), said


def test_semantic_dedup_on_ray_matches_the_local_step(tmp_path, ray_cluster):
    """Embeddings in an actor pool (each with its own fresh vector store), clusters on the driver,
    passes by group-by: the local decisions, with planted near copies dropped."""
    import numpy as np

    from curation.ray_engine import RayEngine
    from curation.rows import dataset_of, rows_to_table
    from curation.steps.base import StepContext
    from curation.steps.semantic_dedup import SemanticDedup
    from tests.curation.test_embed_semdedup import NEAR, TEXTS

    texts = TEXTS + NEAR + [t + " Please answer briefly." for t in TEXTS[:10]]
    rows = [{"id": f"r{i}", "source": "s", "kind": "text", "text": t, "metadata": "{}"} for i, t in enumerate(texts)]
    rows.append(dict(rows[0], id="r0#1"))  # an upsampled copy is never a duplicate of its base row
    table = rows_to_table(rows)
    params = {"n_clusters": 4, "eps": 0.05}
    want = SemanticDedup(SemanticDedup.Params(**params), StepContext(seed=3, cache_root=tmp_path / "a")).decide(dataset_of(table))
    said = []
    engine = RayEngine()
    engine.say = said.append
    step = SemanticDedup(SemanticDedup.Params(**params), StepContext(seed=3, cache_root=tmp_path / "b"))
    got = engine.decide(step, table)
    assert np.array_equal(got.keep, want.keep) and got.reason == want.reason
    np.testing.assert_allclose(got.score, want.score, rtol=0, atol=1e-5)
    assert got.extras["cluster_sizes"] == want.extras["cluster_sizes"]
    assert (~want.keep).sum() >= len(NEAR)
    assert got.reason[-1] != "semantic_duplicate_of:r0" and got.reason[0] != "semantic_duplicate_of:r0#1"
    assert any("clusters' passes by group-by" in s for s in said), said
    assert (tmp_path / "b" / "embeddings").is_dir()  # the actors stored their vectors for the next run
    # from shards (the first holding none of the step's rows): the actors cut the texts, the driver counts
    # distinct texts by their hashes
    from curation.ray_shards import NARROW, ShardStore
    from curation.selection import Selection
    from recipe.cache import Cache

    padded = rows_to_table([dict(rows[0], id=f"pad{i}") for i in range(7)] + rows)
    store = ShardStore.of(Cache(tmp_path / "cache"), "k", {}, padded, shard_rows=7)
    sel = Selection(padded.select([c for c in NARROW if c in padded.column_names]), np.arange(7, padded.num_rows), store=store)
    for params in (params, {"n_clusters": 200, "eps": 0.05}):  # 200 > distinct texts: k from the exact count
        want = SemanticDedup(SemanticDedup.Params(**params), StepContext(seed=3, cache_root=tmp_path / "a")).decide(dataset_of(table))
        step = SemanticDedup(SemanticDedup.Params(**params), StepContext(seed=3, cache_root=tmp_path / "b"))
        got = engine.decide(step, sel)
        assert np.array_equal(got.keep, want.keep) and got.reason == want.reason
        assert got.extras["n_clusters"] == want.extras["n_clusters"]


def test_minhash_on_ray_with_no_tokens_or_no_pairs_keeps_every_row(ray_cluster, monkeypatch):
    """Empty shuffles (no active row; no bucket with two members) give the local step's records."""
    import numpy as np

    from curation import ray_minhash
    from curation.ray_engine import RayEngine
    from curation.rows import dataset_of, rows_to_table
    from curation.steps.base import StepContext
    from curation.steps.minhash_dedup import MinHashDedup

    monkeypatch.setattr(ray_minhash, "DRIVER_EDGES", 0)
    engine = RayEngine()
    for texts in ([""] * 30, [f"unrelated text number {i} with words {i * 7} and {i * 13}" for i in range(60)]):
        table = rows_to_table([{"id": f"r{i}", "source": "s", "kind": "text", "text": t, "metadata": "{}"}
                               for i, t in enumerate(texts)])
        want = MinHashDedup(MinHashDedup.Params(), StepContext(seed=1)).decide(dataset_of(table))
        got = ray_minhash.minhash_dedup(engine, MinHashDedup(MinHashDedup.Params(), StepContext(seed=1)), table)
        assert got.keep.all() and np.array_equal(got.score, want.score) and got.extras == want.extras


def test_quality_classifier_on_ray_trains_once_and_scores_in_an_actor_pool(tmp_path, ray_cluster):
    """Trained on the driver from the recipe's sources, rows scored by actors from the classifier's
    bytes: the local scores and decisions, for both keep rules."""
    import numpy as np

    from curation.ray_engine import RayEngine
    from curation.steps.quality_classifier import QualityClassifier, QualityClassifierParams
    from tests.curation.test_quality_classifier import _ctx, _pool, _sources

    pool, _ = _pool()
    table = pool.data.table
    engine = RayEngine()
    said = []
    engine.say = said.append
    for extra in ({}, {"top_fraction": 0.4}):
        params = QualityClassifierParams(positive=["good"], negative=["web"], epoch=25, **extra)
        want = QualityClassifier(params, _ctx(tmp_path / "a", _sources())).decide(pool)
        got = engine.decide(QualityClassifier(params, _ctx(tmp_path / "b", _sources())), table)
        assert np.array_equal(got.score, want.score) and np.array_equal(got.keep, want.keep) and got.reason == want.reason
        assert got.extras == want.extras
    assert any("rows scored in an actor pool" in s for s in said), said


def test_workers_read_shards_and_write_the_stage_dataset_in_order(tmp_path, ray_cluster):
    """A selection over a shard store: workers' decisions, the rows a driver-side step reads back, and
    the stage dataset's parts (written by the workers in store order; by the driver when a step
    reordered the rows) are those of the same selection held as a table."""
    import numpy as np

    from curation.ray_engine import RayEngine
    from curation.ray_input import StepInput
    from curation.ray_shards import NARROW, ShardStore
    from curation.rows import rows_to_table
    from curation.selection import Selection
    from curation.stage_paths import read_stage
    from curation.steps.base import StepContext
    from curation.rows import dataset_of
    from curation.steps.exact_dedup import ExactDedup
    from curation.steps.length import Length
    from recipe.cache import Cache

    rows = [{"id": f"r{i}", "source": "s", "kind": "text", "text": ("w " * (i % 13)).strip(), "metadata": "{}"}
            for i in range(2500)]
    table = rows_to_table(rows)
    store = ShardStore.of(Cache(tmp_path / "cache"), "k", {}, table, shard_rows=300)
    assert len(store.files) == 9 and store.rows == 2500
    engine = RayEngine()
    said = []
    engine.say = said.append
    rng = np.random.default_rng(0)
    kept = np.sort(300 + rng.choice(2200, 1700, replace=False))  # the first shard has no row left
    narrow = table.select([c for c in NARROW if c in table.column_names])
    for indices in (None, kept):
        sel = Selection(narrow, indices, store=store)
        want_rows = table if indices is None else table.take(pa.array(indices))
        step = Length(Length.Params(unit="words", min=4), StepContext(seed=0))
        want = step.decide_batch(want_rows)
        got = engine.decide(step, sel)
        assert np.array_equal(got.keep, want.keep) and got.reason == want.reason
        assert sel.table().equals(want_rows)
        dedup = ExactDedup(ExactDedup.Params(), StepContext(seed=0))
        want_dups, got_dups = dedup.decide(dataset_of(want_rows)), engine.decide(dedup, sel)
        assert np.array_equal(got_dups.keep, want_dups.keep) and got_dups.reason == want_dups.reason
        assert StepInput(engine, sel).rows_at([5, 1]).column("id").to_pylist() == [want_rows["id"][5].as_py(), want_rows["id"][1].as_py()]
        folder = tmp_path / f"out{0 if indices is None else 1}"
        folder.mkdir()
        names = engine.write_stage(sel, folder, {b"k": b"v"})
        assert len(names) >= 5 and names == sorted(names)
        assert read_stage(folder).replace_schema_metadata(None).equals(want_rows.replace_schema_metadata(None))
        assert pq.read_schema(folder / names[-1]).metadata[b"k"] == b"v"
    shuffled = rng.permutation(kept)  # a step that reorders: one part, by the driver
    folder = tmp_path / "reordered"
    folder.mkdir()
    names = engine.write_stage(Selection(narrow, shuffled, store=store), folder, None)
    assert len(names) == 1 and read_stage(folder).column("id").to_pylist() == table.take(pa.array(shuffled)).column("id").to_pylist()
    assert any("reordered the rows" in s for s in said)


def test_a_ray_curated_run_trains_and_its_card_audit_and_diff_read_the_parts(tmp_path, cli, write_recipe, ray_cluster):
    """A stage dataset written as parts by the workers is what the training job reads (every part, in
    order), what the card's front matter points at, and what ``audit`` and ``diff`` look rows up in."""
    from tests.conftest import tiny_recipe

    path = write_recipe(tiny_recipe(selection={"sft": [{"exact_dedup": {}}, {"length": {"unit": "words", "min": 1}}]}))
    res = cli("train", path, "--out", tmp_path / "ray", "--engine", "ray")
    assert res.exit_code == 0, res.output
    parts = sorted((tmp_path / "ray" / "datasets" / "sft").glob("part-*.parquet"))
    assert parts and not (tmp_path / "ray" / "datasets" / "sft.parquet").exists()
    job = json.loads(next((tmp_path / "ray" / "stages").glob("*/job.json")).read_text())
    assert job["datasets"]["train"] == [str(p.resolve()) for p in parts]
    readme = (tmp_path / "ray" / "card" / "README.md").read_text()
    assert "path: datasets/sft/*.parquet" in readme
    kept = pq.read_table(parts[0]).column("id")[0].as_py()
    res = cli("audit", tmp_path / "ray", kept)
    assert res.exit_code == 0 and "reached stage dataset sft" in res.output, res.output
    assert cli("curate", path, "--out", tmp_path / "local").exit_code == 0
    res = cli("diff", tmp_path / "local", tmp_path / "ray")
    assert res.exit_code == 0, res.output
    assert _datasets(tmp_path / "local") == _datasets(tmp_path / "ray")


def test_minhash_from_shards_plans_from_ids_and_matches_the_local_step(tmp_path, ray_cluster):
    """Sharded, the driver has only ids: the representatives' texts are cut by the workers, the keep
    rule's lengths and metadata come back from the shards; for all three keep rules, with upsampled
    copies and a selection that skips rows, the local step's decisions, scores and extras."""
    import numpy as np

    from curation.ray_engine import RayEngine
    from curation.ray_shards import NARROW, ShardStore
    from curation.rows import dataset_of, rows_to_table
    from curation.selection import Selection
    from curation.steps.base import StepContext
    from curation.steps.minhash_dedup import MinHashDedup
    from recipe.cache import Cache

    rng = random.Random(8)
    vocab = [f"w{i}" for i in range(200)]
    texts: list[str] = []
    for _ in range(1200):
        if texts and rng.random() < 0.3:
            words = rng.choice(texts).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
            texts.append(" ".join(words + [rng.choice(vocab)] * rng.randint(0, 2)))
        else:
            texts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(6, 30))))
    ids = [f"r{i}" for i in range(len(texts))]
    ids[11], ids[12] = "r11#0", "r11#1"
    texts[12] = texts[11]
    table = rows_to_table([{"id": i, "source": "s", "kind": "text", "text": t, "metadata": json.dumps({"q": k % 17})}
                           for k, (i, t) in enumerate(zip(ids, texts))])
    store = ShardStore.of(Cache(tmp_path / "cache"), "k", {}, table, shard_rows=250)
    kept = np.sort(np.random.default_rng(1).choice(len(texts), 1000, replace=False))
    kept = np.union1d(kept, [11, 12])
    sel = Selection(table.select([c for c in NARROW if c in table.column_names]), kept, store=store)
    want_rows = table.take(pa.array(kept))
    engine = RayEngine()
    for params in ({"threshold": 0.6}, {"threshold": 0.5, "keep": "longest"},
                   {"threshold": 0.5, "keep": "highest_score", "score_key": "q"}):
        want = MinHashDedup(MinHashDedup.Params(**params), StepContext(seed=2)).decide(dataset_of(want_rows))
        got = engine.decide(MinHashDedup(MinHashDedup.Params(**params), StepContext(seed=2)), sel)
        assert (~want.keep).sum() > 20
        assert np.array_equal(got.keep, want.keep) and got.reason == want.reason
        assert np.array_equal(got.score, want.score) and got.extras == want.extras


def test_a_path_a_node_does_not_see_is_refused_before_any_step(tmp_path, ray_cluster):
    from curation.engine import EngineError
    from curation.ray_shards import check_visible

    check_visible([tmp_path], always=True)  # every node (here the one) sees it
    with pytest.raises(EngineError, match="does not see .*engine.shards=false"):
        check_visible([tmp_path / "nowhere"], always=True)


def test_the_commit_check_names_a_stage_dataset_form_or_part_it_does_not_list(tmp_path, cli, ray_cluster):
    from curation import run_commit

    res = cli("curate", _fingerprint_recipe(tmp_path), "--out", tmp_path / "run", "--engine", "ray")
    assert res.exit_code == 0, res.output
    run = tmp_path / "run"
    run_commit.check(run)
    parts = sorted((run / "datasets" / "sft").glob("part-*.parquet"))
    stray = run / "datasets" / "sft" / "part-999999999999.parquet"
    stray.write_bytes(parts[0].read_bytes())
    with pytest.raises(run_commit.RunMismatch, match="part-999999999999.parquet .a part the commit does not list"):
        run_commit.check(run)
    stray.unlink()
    (run / "datasets" / "sft.parquet").write_bytes(parts[0].read_bytes())
    with pytest.raises(run_commit.RunMismatch, match="beside the committed folder"):
        run_commit.check(run)


def test_a_chain_of_row_local_steps_in_one_pass_gives_each_step_its_own_decisions(tmp_path, ray_cluster):
    """Each step of a fused run gets the decisions of its own input (the rows the previous kept), as if
    run alone, with the first shard empty of the selection and a step that drops most rows."""
    import numpy as np

    from curation.ray_engine import RayEngine
    from curation.ray_shards import NARROW, ShardStore
    from curation.rows import rows_to_table
    from curation.selection import Selection
    from curation.steps.base import StepContext
    from curation.steps.garbage import Garbage
    from curation.steps.length import Length
    from curation.steps.repetition import Repetition
    from recipe.cache import Cache

    rng = random.Random(4)
    texts = [fp._text(rng, rng.randint(1, 30)) + (" \ufffd" if i % 17 == 0 else "") for i in range(1500)]
    texts = [t if i % 11 else "\n".join([t] * 4) for i, t in enumerate(texts)]
    table = rows_to_table([{"id": f"r{i}", "source": "s", "kind": "text", "text": t, "metadata": "{}"} for i, t in enumerate(texts)])
    store = ShardStore.of(Cache(tmp_path / "cache"), "k", {}, table, shard_rows=200)
    sel = Selection(table.select([c for c in NARROW if c in table.column_names]), np.arange(200, 1500), store=store)
    steps = [Length(Length.Params(unit="words", min=8), StepContext(seed=0)),
             Repetition(Repetition.Params(field="all"), StepContext(seed=0)),
             Garbage(Garbage.Params(), StepContext(seed=0)),
             Length(Length.Params(unit="words", max=25), StepContext(seed=0))]
    engine = RayEngine()
    got = engine.decide_chain(steps, sel)
    rows = table.slice(200)
    assert len(got) == 4
    for step, d in zip(steps, got):
        want = step.decide_batch(rows)
        want.extras = step.summarise(want)
        assert np.array_equal(d.keep, want.keep) and d.reason == want.reason and d.extras == want.extras
        assert (d.score is None) == (want.score is None) and (d.score is None or np.array_equal(d.score, want.score))
        assert 0 < want.keep.sum() < len(want.keep)
        rows = rows.filter(pa.array(want.keep))
