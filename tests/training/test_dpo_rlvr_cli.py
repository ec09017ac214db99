"""SFT -> DPO -> RLVR through the CLI on the tiny model (2-3 steps each), preference data from
hh-rlhf transcripts, and the bad inputs that must fail clearly before any stage trains."""

import json

import pyarrow.parquet as pq
import pytest

from tests.conftest import needs_shared, tiny_recipe
from curation import ledger as ledger_mod


def chained(**stage_over):
    r = tiny_recipe()
    r["stages"] = [
        {"kind": "sft", "data": "sft", "max_steps": 2, "lr": 1e-3, "batch_size": 8, "max_length": 48, "logging_steps": 1},
        {"kind": "dpo", "data": "sft", "max_steps": 2, "lr": 1e-4, "batch_size": 4, "max_length": 48, "logging_steps": 1,
         "loss": "dpo_norm", "beta": 5.0, "pairs": {"rejected": "perturb"}, **stage_over.get("dpo", {})},
        {"kind": "rlvr", "data": "sft", "max_steps": 2, "lr": 1e-5, "batch_size": 4, "num_generations": 2,
         "max_completion_length": 6, "non_stop_penalty": -10.0, "logging_steps": 1, **stage_over.get("rlvr", {})},
    ]
    r["eval"] = {"arith_test": {"source": "arith_test", "max_new_tokens": 4, "limit": 4}}
    return r


def test_sft_dpo_rlvr_chain(cli, write_recipe, tmp_path):
    out = tmp_path / "run"
    res = cli("train", write_recipe(chained(dpo={"ref": "base"})), "--out", out)
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["kind"] for s in manifest["stages"]] == ["sft", "dpo", "rlvr"]
    assert all(s["status"] == "done" for s in manifest["stages"])
    # DPO: pairs built from verifiable rows, recorded in the run's ledger; the loss is logged
    dpo_dir = out / "stages" / "1-dpo"
    pairs = [json.loads(l) for l in (dpo_dir / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen"] != p["rejected"] and p["rejected_from"] == "perturbed" for p in pairs)
    ledger = ledger_mod.read(out / "ledger").to_pylist()
    stage_records = [r for r in ledger if r["dataset"] == "stage:1-dpo" and r["step"] == "pairs"]
    assert len(stage_records) == len(pairs)
    assert {r["step"] for r in ledger if r["dataset"] == "stage:1-dpo"} == {"pairs", "exposure"}
    dpo_log = json.loads((dpo_dir / "final" / "train_log.json").read_text())
    assert any("loss" in r for r in dpo_log)
    # ... built once by the stage loop, before the job: the job trains on the prepared pairs file
    job = json.loads((dpo_dir / "job.json").read_text())
    assert job["datasets"]["train"] == str((dpo_dir / "data" / "train.parquet").resolve())
    assert pq.read_table(job["datasets"]["train"]).num_rows == len(pairs)
    assert job["models"]["ref"].endswith("cache/model/" + json.loads((out / "manifest.json").read_text())["base_model"].split("/")[-1])
    # RLVR: per-verifier reward mean and pass rate in the trainer log and in rewards.json
    rl_dir = out / "stages" / "2-rlvr"
    rewards = json.loads((rl_dir / "rewards.json").read_text())
    assert rewards["completions"] == 2 * 4  # 2 steps x batch 4
    assert set(rewards["by_verifier"]) == {"math"}
    assert 0.0 <= rewards["by_verifier"]["math"]["pass_rate"] <= 1.0
    rl_log = json.loads((rl_dir / "final" / "train_log.json").read_text())
    assert any("verifier/math/pass_rate" in r and "verifier/math/reward" in r for r in rl_log)
    # the ledger survives a second (fully cached) run with the stage records intact
    res = cli("train", write_recipe(chained(dpo={"ref": "base"})), "--out", out)
    assert res.exit_code == 0, res.output
    assert len([r for r in ledger_mod.read(out / "ledger").to_pylist()
                if r["dataset"] == "stage:1-dpo" and r["step"] == "pairs"]) == len(pairs)


def test_dpo_on_hh_rlhf_transcripts(cli, write_recipe, tmp_path):
    path = needs_shared("hh_rlhf", "harmless_base_test.jsonl.gz")
    r = tiny_recipe()
    r["sources"] = {"hh": {"path": str(path), "format": "hh_rlhf", "limit": 24},
                    "arith_test": r["sources"]["arith_test"]}
    r["mixtures"] = {"prefs": {"hh": 1.0}}
    r["selection"] = {}
    r["stages"] = [{"kind": "dpo", "data": "prefs", "max_steps": 2, "batch_size": 2, "max_length": 96,
                    "loss": "sigmoid", "beta": 0.1, "logging_steps": 1}]
    r["eval"] = {}
    out = tmp_path / "run"
    res = cli("train", write_recipe(r), "--out", out)
    assert res.exit_code == 0, res.output
    log = json.loads((out / "stages" / "0-dpo" / "final" / "train_log.json").read_text())
    assert any("loss" in x for x in log)


def _cache_entries(out):
    return sorted(p.name for p in (out / "cache").glob("*/*") if p.is_dir())


@pytest.mark.parametrize("case,match,code", [
    # the sources' declared row kinds give these away at `recipe validate` (exit 2) ...
    ("dpo_on_chat", "a dpo stage needs preference rows", 2),
    ("dpo_on_verifiable_without_pairs", "pairs: {rejected: perturb}", 2),
    ("rlvr_rows_without_verifier", "a rlvr stage trains on verifiable rows", 2),
    # ... this one only the rows themselves, at the start of `recipe train` (exit 1)
    ("rlvr_unknown_row_verifier", "unknown verifier 'nosuch'", 1),
])
def test_bad_stage_data_fails_before_training(case, match, code, cli, write_recipe, tmp_path):
    r = tiny_recipe()
    r["sources"]["chat"] = {"generate": "arithmetic", "n": 20, "skills": ["add"], "max_operand": 9, "as_chat": True}
    sft = {"kind": "sft", "data": "sft", "max_steps": 1, "batch_size": 8, "max_length": 48}
    if case == "dpo_on_chat":
        r["mixtures"]["chat"] = {"chat": 1.0}
        bad = {"kind": "dpo", "data": "chat", "max_steps": 1}
    elif case == "dpo_on_verifiable_without_pairs":
        bad = {"kind": "dpo", "data": "sft", "max_steps": 1}
    elif case == "rlvr_rows_without_verifier":
        r["mixtures"]["mixed"] = {"arith": 1.0, "chat": 1.0}
        bad = {"kind": "rlvr", "data": "mixed", "max_steps": 1, "batch_size": 4, "num_generations": 2}
    else:
        r["sources"]["odd"] = {"path": str(tmp_path / "odd.jsonl"), "kind": "verifiable",
                               "fields": {"prompt": "q", "ground_truth": "a", "verifier": "v"}}
        (tmp_path / "odd.jsonl").write_text("".join(json.dumps({"q": f"{i}+1?", "a": str(i + 1), "v": "nosuch"}) + "\n"
                                                    for i in range(4)))
        r["mixtures"]["odd"] = {"odd": 1.0}
        bad = {"kind": "rlvr", "data": "odd", "max_steps": 1, "batch_size": 4, "num_generations": 2}
    r["stages"] = [sft, bad]
    out = tmp_path / "run"
    path = write_recipe(r)
    res = cli("train", path, "--out", out)
    assert res.exit_code == code, res.output
    assert match in res.output and "Traceback" not in res.output
    assert not (out / "stages" / "0-sft" / "final").exists()  # refused before the first stage trained
    if code == 2:
        assert "stages[1].data" in res.output
        return
    cached = _cache_entries(out)
    assert cached  # curation results are kept ...
    r["stages"] = [sft]
    res = cli("curate", write_recipe(r), "--out", out)
    assert res.exit_code == 0, res.output
    assert set(cached) <= set(_cache_entries(out))  # ... and nothing cached was lost


def test_bad_rlvr_recipe_is_a_recipe_error(cli, write_recipe):
    r = tiny_recipe()
    r["stages"] = [{"kind": "rlvr", "data": "sft", "verifier": "gsm8", "reward_funcs": ["no_such_mod_abc:fn"]}]
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2, res.output
    assert "stages[0].verifier" in res.output and "did you mean 'gsm8k'" in res.output
    assert "stages[0].reward_funcs" in res.output and "cannot import reward function 'no_such_mod_abc:fn'" in res.output
    r["stages"] = [{"kind": "rlvr", "data": "sft", "batch_size": 3, "num_generations": 2}]
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "multiple of num_generations" in res.output, res.output
    r["stages"] = [{"kind": "dpo", "data": "sft", "ref": "nostage"}]
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "stages[0].ref" in res.output, res.output


@pytest.mark.parametrize("ref", ["previous", "base"])
def test_dpo_with_lora_and_either_reference(ref, cli, write_recipe, tmp_path):
    """LoRA + ref: previous uses TRL's adapter-disabled policy; any other ref loads that model."""
    r = tiny_recipe()
    r["stages"] = [{"kind": "dpo", "data": "sft", "max_steps": 1, "batch_size": 4, "max_length": 48, "ref": ref,
                    "peft": {"r": 4, "alpha": 8}, "pairs": {"rejected": "perturb"}, "logging_steps": 1}]
    r["eval"] = {}
    out = tmp_path / "run"
    res = cli("train", write_recipe(r), "--out", out)
    assert res.exit_code == 0, res.output
    assert (out / "stages" / "0-dpo" / "final" / "config.json").is_file()  # merged (merge: true)


def test_user_verifier_and_reward_function_by_dotted_path(cli, write_recipe, tmp_path):
    from tests.training import user_rewards

    user_rewards.CALLS.update(verifier=0, reward=0)
    r = chained(rlvr={"verifier": "tests.training.user_rewards:has_digit",
                      "reward_funcs": ["tests.training.user_rewards:brevity"]})
    r["stages"] = [r["stages"][0], r["stages"][2]]
    r["eval"] = {}
    out = tmp_path / "run"
    res = cli("train", write_recipe(r), "--out", out)
    assert res.exit_code == 0, res.output
    assert user_rewards.CALLS["verifier"] == 2 * 4 and user_rewards.CALLS["reward"] == 2  # per completion / per batch
    rewards = json.loads((out / "stages" / "1-rlvr" / "rewards.json").read_text())
    assert set(rewards["by_verifier"]) == {"tests.training.user_rewards:has_digit"}
    log = json.loads((out / "stages" / "1-rlvr" / "final" / "train_log.json").read_text())
    assert any("rewards/brevity/mean" in h and "rewards/verifiable_reward/mean" in h for h in log)
