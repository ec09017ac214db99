"""The verifiable reward (routing, scale, non-stop penalty, logging) and pairs from verifiable rows."""

import json

import pyarrow.parquet as pq

from curation.rows import make_row, rows_to_dataset
from recipe.schema import PairsSpec
from training.pairs import pairs_from_verifiable
from training.rewards import VerifiableReward

EOS = 2


def _c(text):
    return [{"role": "assistant", "content": text}]


def test_reward_routing_scale_and_non_stop_penalty():
    logged = []
    fn = VerifiableReward(reward=10.0, non_stop_penalty=-10.0, eos_token_ids=[EOS])
    completions = [_c("it is 7"), _c("8"), _c("x \\boxed{\\frac12}"), _c("7 7 7 7")]
    rewards = fn(prompts=[[]] * 4, completions=completions, ground_truth=["7", "7", "0.5", "7"],
                 verifier=["math", "math", "boxed", "math"],
                 completion_ids=[[5, EOS], [6, EOS], [9, EOS], [5, 5, 5, 5]],  # the last never ends
                 log_metric=lambda k, v: logged.append((k, v)), trainer_state=None)
    assert rewards == [10.0, 0.0, 10.0, -10.0]
    metrics = dict(logged)
    assert metrics["verifier/math/pass_rate"] == 2 / 3  # the non-stop completion still verified
    assert metrics["verifier/math/reward"] == 0.0        # (10 + 0 - 10) / 3
    assert metrics["verifier/boxed/pass_rate"] == 1.0
    assert metrics["verifier/non_stop_rate"] == 0.25
    s = fn.summary()
    assert s["completions"] == 4 and s["non_stop"] == 1 and s["by_verifier"]["boxed"]["reward_mean"] == 10.0


def test_reward_without_penalty_and_with_override():
    fn = VerifiableReward(reward=1.0, verifier="exact", eos_token_ids=[EOS])
    rewards = fn(prompts=[[]] * 2, completions=[_c("yes"), _c("no")], ground_truth=["yes", "yes"],
                 verifier=["math", "math"], completion_ids=[[1], [1]])
    assert rewards == [1.0, 0.0]  # no penalty configured: non-stop completions keep their score


def _verifiable(n):
    rows = [make_row("verifiable", "s", prompt=[{"role": "user", "content": f"What is {i} + 1?"}], ground_truth=str(i + 1),
                     verifier="math", metadata={"solution": f"{i} + 1 = {i + 1}\n#### {i + 1}"} if i % 2 else None)
            for i in range(n)]
    rows.append(make_row("verifiable", "s", prompt=[{"role": "user", "content": "Name a colour"}], ground_truth="red",
                         verifier="exact"))
    return rows_to_dataset(rows)


def test_perturbed_pairs_are_verified_and_recorded(tmp_path):
    rows = _verifiable(6)
    prefs = pairs_from_verifiable(rows, PairsSpec(rejected="perturb"), seed=0, stage_name="1-dpo", stage_dir=tmp_path)
    assert len(prefs) == 6 and set(prefs["kind"]) == {"preference"}
    for p in prefs:
        meta = json.loads(p["metadata"])
        truth = str(int(p["prompt"][0]["content"].split()[2]) + 1)
        assert p["chosen"][0]["content"].endswith(truth)
        assert not p["rejected"][0]["content"].endswith(truth) and meta["rejected_from"] == "perturbed"
    odd = [p for p in prefs if "####" in p["chosen"][0]["content"]]
    assert odd and all(p["rejected"][0]["content"].split("####")[0] == p["chosen"][0]["content"].split("####")[0] for p in odd)
    ledger = pq.read_table(tmp_path / "ledger.parquet").to_pylist()
    assert len(ledger) == 7 and {r["dataset"] for r in ledger} == {"stage:1-dpo"}
    dropped = [r for r in ledger if r["decision"] == "drop"]
    assert len(dropped) == 1 and dropped[0]["reason_code"] == "no_wrong_answer"


def test_sampled_pairs_use_model_failures(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = _verifiable(4).select(range(4))
    prefs = pairs_from_verifiable(rows, PairsSpec(rejected="sample", num_samples=2, max_new_tokens=4), seed=0,
                                  stage_name="d", stage_dir=tmp_path, model=model, tokenizer=tok)
    origins = [json.loads(p["metadata"])["rejected_from"] for p in prefs]
    # a random-init model answers wrongly: its samples are the rejected answers
    assert len(prefs) == 4 and origins.count("sampled") >= 3
    written = [json.loads(l) for l in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert [w["rejected_from"] for w in written] == origins
