"""In-Context Pretraining ordering (curation/steps/iclm.py): the greedy paths, the merge of short
paths, the near-duplicate skip; the order the runner applies and records (ledger, audit, card, diff);
a pretrain stage that packs in that order; and ICLM on rows that are not text."""

import json
import zlib

import numpy as np
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from curation import ledger as ledger_mod
from curation.rows import make_row, rows_to_dataset
from curation.steps.base import Decisions, StepContext, StepError
from curation.steps.iclm import (ICLM, ICLMParams, build_paths, candidate_lists, merge_short_paths, min_degree_order,
                                 prefix_similarity, write_order)
from tests.conftest import tiny_recipe


# ---------------------------------------------------------------------- the method on a hand-made graph
def test_greedy_path_takes_the_first_unvisited_neighbour_and_stops_at_max_path():
    # 0 -> 1 -> 2 -> 3 is a chain; 3's neighbours are all visited, so 4 starts a new path
    cands = [[1, 2], [2, 0], [3, 1], [2, 1], [5, 6], [4, 6], [5, 4]]
    assert build_paths(cands, max_path=10, starts=range(7)) == [[0, 1, 2, 3], [4, 5, 6]]
    # max_path cuts a path even when a neighbour is free; the next path starts at the next unvisited row
    assert build_paths(cands, max_path=2, starts=range(7)) == [[0, 1], [2, 3], [4, 5], [6]]
    # the first *unvisited* candidate, not the first one: 1's first candidate (2) is taken by then
    assert build_paths([[2], [2, 0], [1]], max_path=5, starts=[0, 1, 2]) == [[0, 2, 1]]
    # starts say where paths begin (random / min_degree start orders)
    assert build_paths(cands, max_path=10, starts=[6, 0, 1, 2, 3, 4, 5])[0] == [6, 5, 4]


def test_short_paths_merge_before_their_nearest_neighbour_in_another_path():
    cands = [[1, 2], [2, 0], [3, 1], [2, 1], [5, 6], [4, 6], [5, 2]]
    paths = [[0, 1, 2], [3], [4, 5, 6]]
    merged, counts = merge_short_paths(paths, cands, max_path=3)
    assert merged == [[0, 1, 3, 2], [4, 5, 6]]  # 3's nearest outside its path is 2: inserted before it
    assert counts == {"dissolved": 1, "unmerged_rows": 0}
    # paths are visited in creation order and a dissolved path's rows move one by one: [7, 8] is short
    # (max 3); 7 goes before 0, then 8's nearest outside (7) is already in path 0, so it goes before 7
    cands = [[1], [0], [0], [0], [3], [4], [5], [0, 8], [7, 0]]
    merged, _ = merge_short_paths([[0, 1, 2], [3, 4, 5, 6], [7, 8]], cands, max_path=3)
    assert merged == [[8, 7, 0, 1, 2], [3, 4, 5, 6]]
    # a row with no neighbour outside its path (the official code raises) tries the fallback list, else stays
    # (3 has none at all and stays; 4's first candidates are in its own path, its fallback reaches 0)
    merged, counts = merge_short_paths([[0, 1, 2], [3, 4]], [[1], [0], [0], [4], [3]], max_path=3,
                                       fallback=[[1], [0], [0], [4], [3, 0]])
    assert merged == [[4, 0, 1, 2], [3]]
    assert counts == {"dissolved": 0, "unmerged_rows": 1}


def test_neighbour_lists_skip_the_row_itself_padding_and_upsampled_copies():
    knn = np.array([[1, 0, 2, 3], [1, 0, 3, -1], [2, 3, 1, 0], [3, 2, 1, 0]])  # row 0 is not its own first hit
    assert candidate_lists(knn, 2) == [[1, 2], [0, 3], [3, 1], [2, 1]]
    # rows 0 and 1 are copies of one document (a mixture's upsampling): never each other's neighbours
    assert candidate_lists(knn, 2, same=["a", "a", "b", "c"]) == [[2, 3], [3], [3, 1], [2, 1]]


def test_min_degree_start_takes_the_least_named_row_first():
    assert min_degree_order([[1], [2], [1], [1]]) == [0, 3, 2, 1]  # 0 and 3 are named by nobody


def test_near_duplicate_skip_compares_with_the_previous_written_document():
    a = "The quick brown fox jumps over the lazy dog near the river bank, then it runs home across the long field today."
    texts = [a, a + " Extra words.", "A completely different sentence about apples.", a.replace("today", "again")]
    keep, sim, prev = write_order([0, 1, 2, 3], texts, chars=100, threshold=0.85)
    assert keep.tolist() == [True, False, True, True]  # 1 repeats 0's first 100 chars; 3 follows 2, not 0
    assert prev.tolist() == [-1, 0, 0, 2] and np.isnan(sim[0]) and sim[1] > 0.85
    # only the first `chars` characters count; prefixes without any 3-gram are equal or not
    assert write_order([0, 1], ["abcdefgh-xyz", "abcdefgh-uvw"], chars=8, threshold=0.85)[0].tolist() == [True, False]
    assert prefix_similarity("ab", "ab") == 1.0 and prefix_similarity("ab", "cd") == 0.0


def test_decisions_order_must_place_each_kept_row_once():
    d = Decisions(keep=[True, False, True, True], reason=[None, "x", None, None], order=[2, 7, 0, 1], group=[0, 0, 1, 1])
    assert d.kept_indices() == [2, 3, 0] and d.order.tolist() == [2, -1, 0, 1]
    assert Decisions(keep=[True, False, True], reason=[None, "x", None]).kept_indices() == [0, 2]  # no order: input order
    with pytest.raises(ValueError, match="positions 0..2"):
        Decisions(keep=[True, True, True], order=[0, 0, 1])
    with pytest.raises(ValueError, match="order has 2 values for 3 rows"):
        Decisions(keep=[True, True, True], order=[0, 1])


# ---------------------------------------------------------------------- the step
TOPICS = ["apple", "river", "violin", "rocket"]


WORDS = "amber basalt cobalt dune ember fjord glacier harbor island jungle kelp lagoon meadow nebula orchard".split()


def _doc(topic: str, k: int) -> str:
    """A document on ``topic``, over 100 characters; documents differ from their first characters on (no near duplicates)."""
    rng = np.random.default_rng(zlib.crc32(f"{topic}:{k}".encode()))  # not hash(): salted per process
    return " ".join(rng.choice(WORDS, 14)) + f" -- note {k} on {topic}, " + " ".join([topic] * (2 + k % 3)) + "."


def _fake_embed(texts, model=None, **kw):
    """A topic's documents share one direction, plus an offset given by the first 100 characters (so a
    near copy has its original's vector): an exact neighbour graph without loading an encoder."""
    out = []
    for t in texts:
        noise = np.random.default_rng(sum(map(ord, t[:100]))).random(len(TOPICS))
        v = np.array([float(topic in t) for topic in TOPICS]) + 0.05 * noise
        out.append(v / np.linalg.norm(v))
    return np.array(out, dtype=np.float32)


def _text_rows(extra=()):
    docs = [_doc(t, k) for k in range(6) for t in TOPICS] + list(extra)
    return rows_to_dataset([make_row("text", "web", text=d) for d in docs])


def test_iclm_step_orders_related_documents_into_paths(monkeypatch, tmp_path):
    monkeypatch.setattr("curation.steps.iclm.embed", _fake_embed)
    dup = _doc("apple", 0) + " A copy."  # a near duplicate of an apple document: its first 100 chars are the same
    rows = _text_rows([dup])
    step = ICLM(ICLMParams(k=8, neighbours=3, max_path=6), StepContext(seed=0, cache_root=tmp_path))
    d = step.decide(rows)
    kept = d.kept_indices()
    topic = [next(t for t in TOPICS if t in rows[i]["text"]) for i in range(len(rows))]
    # paths of one topic each: 4 paths of 6, every document of a path about the same thing
    assert sorted(np.bincount(d.group[d.keep]).tolist()) == [6, 6, 6, 6]
    for g in set(d.group.tolist()):
        assert len({topic[i] for i in np.flatnonzero(d.group == g)}) == 1
    assert all(topic[a] == topic[b] for a, b in zip(kept, kept[1:]) if d.group[a] == d.group[b])
    # the near duplicate (or the document it copies) is skipped with a reason naming the other
    dropped = np.flatnonzero(~d.keep)
    assert len(dropped) == 1 and d.reason[dropped[0]].startswith("iclm_near_duplicate_of:")
    assert d.extras["near_duplicates_dropped"] == 1 and d.extras["n_paths"] == 4
    assert d.extras["adjacent_cosine_mean"] > d.extras["random_pair_cosine_mean"]
    section = d.extras["card_section"]
    assert section["title"].startswith("In-context pretraining") and [r["position"] for r in section["table"]] == list(range(6))


def test_iclm_on_non_text_rows_is_a_step_error():
    chat = rows_to_dataset([make_row("chat", "s", messages=[{"role": "user", "content": "hi"},
                                                             {"role": "assistant", "content": "yo"}])])
    with pytest.raises(StepError, match="iclm orders text documents.*chat: 1"):
        ICLM(ICLMParams(), StepContext()).decide(chat)


def test_iclm_on_a_mixture_of_non_text_sources_is_a_recipe_error(cli, write_recipe):
    r = tiny_recipe()
    r["selection"] = {"sft": [{"iclm": {}}]}
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "selection.sft[0].iclm" in res.output and "takes text rows" in res.output and "verifiable" in res.output


# ---------------------------------------------------------------------- the runner, ledger, audit, card, diff
def _iclm_recipe(tmp_path, **iclm) -> dict:
    docs = tmp_path / "docs.jsonl"
    texts = [_doc(t, k) for k in range(6) for t in TOPICS] + ["tiny apple"]  # the last is cut by the length step
    docs.write_text("\n".join(json.dumps({"body": t}) for t in texts) + "\n")
    r = tiny_recipe(name="iclmtest", sources={"docs": {"path": str(docs), "kind": "text", "fields": {"text": "body"}}},
                    mixtures={"web": {"docs": 1.0}},
                    selection={"web": [{"iclm": {"k": 8, "neighbours": 3, "max_path": 6, **iclm}},
                                       {"length": {"unit": "chars", "min": 20}}]},
                    stages=[{"kind": "pretrain", "data": "web", "max_steps": 1, "max_length": 64}], eval={})
    return r


def test_runner_applies_the_order_and_records_position_and_path(cli, write_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr("curation.steps.iclm.embed", _fake_embed)
    out = tmp_path / "run"
    res = cli("curate", write_recipe(_iclm_recipe(tmp_path)), "--out", out)
    assert res.exit_code == 0, res.output
    led = ledger_mod.read(out / "ledger").to_pandas()
    step = led[led.step == "0:iclm"]
    kept = step[step.decision == "keep"].sort_values("position")
    assert kept.position.tolist() == list(range(len(kept))) and step.group.notna().all()
    assert led[led.step != "0:iclm"].position.isna().all()  # steps that do not order record no position
    # the stage dataset holds the rows in ICLM's order; the later length step only filtered (order kept)
    dataset = pq.read_table(out / "datasets" / "web.parquet").to_pylist()
    cut = set(led[(led.step == "1:length") & (led.decision == "drop")].row_id)
    assert len(cut) == 1 and [r["id"] for r in dataset] == [i for i in kept.row_id if i not in cut]
    topics = [next(t for t in TOPICS if t in r["text"]) for r in dataset]
    assert sum(a == b for a, b in zip(topics, topics[1:])) >= len(topics) - 4  # related documents are adjacent
    # `recipe audit` shows where the row was placed and on which path
    row = kept.iloc[3]
    res = cli("audit", out, row.row_id)
    assert res.exit_code == 0 and "position" in res.output and "path" in res.output
    line = next(ln for ln in res.output.splitlines() if "0:iclm" in ln)
    assert f" {int(row.position)} " in line and f" {int(row.group)} " in line
    # the card's ICLM section: path lengths and the first path in order
    readme = (out / "card" / "README.md").read_text()
    assert "In-context pretraining order (ICLM)" in readme and "The first path of the packed data" in readme
    # `recipe diff` says when the same rows come in another order
    other = tmp_path / "other"
    assert cli("curate", write_recipe(_iclm_recipe(tmp_path, start="random", seed=3)), "--out", other).exit_code == 0
    res = cli("diff", out, other)
    assert res.exit_code == 0 and "in another order in B" in res.output


def test_a_ledger_without_position_and_group_is_still_read(tmp_path):
    old = ledger_mod.records_table("m", "0:x", 1, ["a", "b"], ["s", "s"], [True, False], reason=[None, "r"])
    old = old.drop_columns(["position", "group"])
    pq.write_table(old, tmp_path / "ledger.parquet")
    table = ledger_mod.read(tmp_path / "ledger.parquet")
    assert table.column_names == ledger_mod.SCHEMA.names and table.column("position").null_count == 2
    ledger_mod.write([old, ledger_mod.records_table("m", "1:y", 2, ["a"], ["s"], [True], position=[0], group=[4])],
                     tmp_path / "new.parquet")  # a cached step entry from before the columns, joined with a new one
    assert pq.read_table(tmp_path / "new.parquet").column("group").to_pylist() == [None, None, 4]


def test_bfd_or_unpacked_pretraining_on_an_ordered_dataset_is_refused(cli, write_recipe, tmp_path):
    path = write_recipe(_iclm_recipe(tmp_path))
    res = cli("validate", path, "stages.0.packing_strategy=bfd")
    assert res.exit_code == 2 and "regroups documents by length" in res.output
    res = cli("validate", path, "stages.0.packing=false")
    assert res.exit_code == 2 and "no two documents share a window" in res.output
    assert cli("validate", path, "stages.0.packing_strategy=bfd", "stages.0.order=shuffle").exit_code == 0


# ---------------------------------------------------------------------- the pretrain stage keeps the order
@pytest.mark.parametrize("order", ["dataset", "shuffle"])
def test_pretrain_packs_in_dataset_order(tiny_model_dir, tmp_path, order):
    from recipe.schema import PretrainStage
    from training.common import StageContext
    from training.models import load_model
    from training.stages.pretrain import build_trainer

    docs = [f"Doc {k}: " + " ".join(str(k + j) for j in range(k % 4 + 2)) for k in range(24)]
    rows = rows_to_dataset([make_row("text", "web", text=d) for d in docs])
    stage = PretrainStage(kind="pretrain", data="web", max_length=32, batch_size=4, max_steps=1, order=order)
    model, tok = load_model(str(tiny_model_dir), dtype="float32"), AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = build_trainer(StageContext(stage, model, tok, rows, tmp_path, seed=0))
    windows = trainer.train_dataset["input_ids"]
    packed = [t for w in windows for t in w]
    in_order = [t for d in docs for t in tok(d)["input_ids"] + [tok.eos_token_id]]
    assert len(windows) > 3 and sorted(len(w) for w in windows)[1:] == [32] * (len(windows) - 1)  # full but one
    if order == "dataset":  # the windows cut the documents' concatenation in dataset order: none moved
        assert packed == in_order and not trainer.args.shuffle_dataset
    else:  # random packing of the same documents (TRL's shuffle_dataset)
        assert sorted(packed) == sorted(in_order) and packed != in_order


# ---------------------------------------------------------------------- the miniature's generator
def test_related_docs_share_entities_and_pairs_need_the_context():
    from curation.generators.related_docs import RelatedDocsParams, generate

    docs = generate(RelatedDocsParams(n=30), source="d", split="train", seed=0)
    meta = [json.loads(r["metadata"]) for r in docs]
    per_person = np.bincount(np.unique([m["entity"] for m in meta], return_inverse=True)[1])
    assert len(per_person) == 30 and per_person.min() >= 3 and per_person.max() <= 5
    for r, m in zip(docs, meta):  # the name once, each stated fact once
        assert r["text"].count(m["entity"]) == 1 and 3 <= len(m["facts"]) <= 4
    pairs = generate(RelatedDocsParams(n=20, layout="pairs", separator="<|end|>"), source="p", split="test", seed=0)
    train_names = {m["entity"] for m in meta}
    for r in pairs:
        m = json.loads(r["metadata"])
        first, second = r["text"].split("<|end|>")
        assert m["entity"] == m["second_entity"] and m["entity"] not in train_names  # held-out people
        assert len(first) + len("<|end|>") == m["context_chars"] and m["entity"] in second
    control = generate(RelatedDocsParams(n=20, layout="unrelated_pairs"), source="u", split="test", seed=0)
    assert all(json.loads(r["metadata"])["second_entity"] != json.loads(r["metadata"])["entity"] for r in control)
