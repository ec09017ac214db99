"""Eval metrics: the estimators by hand, and every metric through `recipe train` / `recipe eval` on a
tiny model: suites, the report, the eval ledger, caching, `--stage/--suite/--model`, and bad input."""

import json
import math

import pyarrow.parquet as pq
import pytest

from tests.conftest import tiny_recipe


def test_pass_at_k_is_the_unbiased_estimator():
    from eval.metrics.pass_at_k import pass_at_k

    for n, c, k in [(5, 2, 1), (5, 2, 2), (10, 3, 4), (8, 0, 3), (8, 8, 2), (4, 1, 4)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_majority_vote_ties_go_to_the_earliest():
    from eval.metrics.maj_at_k import majority

    assert majority(["3", "4", "4", "3"]) == 0
    assert majority(["3", "4", "4"]) == 1
    assert majority([None, None]) is None and majority([None, "7"]) == 1


def _recipe(**over):
    r = tiny_recipe()
    r["stages"][0]["max_steps"] = 2
    r["sources"]["arith_unseen"] = {"generate": "arithmetic", "n": 6, "skills": ["add"], "max_operand": 9,
                                    "split": "test", "seed": 3}
    r["eval"] = {
        "arith_test": {"source": "arith_test", "suite": "dev", "max_new_tokens": 4,
                       "metrics": ["accuracy", {"pass_at_k": {"k": [1, 2], "n": 2}}, {"maj_at_k": {"k": [2], "n": 2}},
                                   "loss", "perplexity"]},
        "arith_unseen": {"source": "arith_unseen", "suite": "unseen", "max_new_tokens": 4, "metrics": ["accuracy"],
                         "fewshot": {"source": "arith", "n": 2}},
    }
    r.update(over)
    return r


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from tests.conftest import train_recipe

    return train_recipe(tmp_path_factory.mktemp("evals"), _recipe())


def test_results_report_every_eval_model_and_metric(evaluated):
    _, out, output = evaluated
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["models"] == ["base", "0-sft"] and results["suites"] == {"dev": ["arith_test"], "unseen": ["arith_unseen"]}
    dev = results["evals"]["arith_test"]["models"]["0-sft"]["metrics"]
    assert set(dev) == {"accuracy", "pass_at_k", "maj_at_k", "loss", "perplexity"}
    assert set(dev["pass_at_k"]["values"]) == {"pass@1", "pass@2"} and set(dev["maj_at_k"]["values"]) == {"maj@2"}
    assert dev["perplexity"]["values"]["perplexity"] == pytest.approx(math.exp(dev["loss"]["values"]["loss"]), rel=1e-6)
    assert dev["loss"]["higher_is_better"] is False and 0 <= dev["accuracy"]["values"]["accuracy"] <= 1
    assert dev["accuracy"]["stderr"]["accuracy"] >= 0
    base_loss = results["evals"]["arith_test"]["models"]["base"]["metrics"]["loss"]["values"]["loss"]
    assert dev["loss"]["delta"]["loss"] == pytest.approx(dev["loss"]["values"]["loss"] - base_loss)
    assert set(dev["loss"]["by_skill"]["loss"]) == {"add", "sub"} and "arith_test" in dev["loss"]["by_source"]["loss"]
    md = (out / "eval" / "results.md").read_text()
    assert md.index("suite: dev") < md.index("suite: unseen")
    assert (out / "eval" / "plots").is_dir() and results["plots"]
    assert "evaluation" in output and "Δ" in output


def test_eval_ledger_and_audit_of_an_eval_item(evaluated, cli):
    _, out, _ = evaluated
    samples = pq.read_table(out / "eval" / "samples.parquet").to_pylist()
    acc = [s for s in samples if s["eval"] == "arith_test" and s["metric"] == "accuracy"]
    assert len(acc) == 2 * 10  # 10 items x (base, 0-sft)
    assert all(s["prompt_hash"] and s["output"] is not None for s in acc)
    assert {s["metric"] for s in samples if s["loss"] is not None} == {"loss", "perplexity"}
    item = acc[0]["item_id"]
    res = cli("audit", out, item)
    assert res.exit_code == 0, res.output
    assert "eval item" in res.output and "0-sft" in res.output and "accuracy" in res.output


def test_cached_rerun_evaluates_nothing_and_selections(evaluated, cli):
    path, out, _ = evaluated
    res = cli("eval", path, "--out", out)
    assert res.exit_code == 0 and "evaluating" not in res.output and "cached" in res.output
    res = cli("eval", path, "--out", out, "--stage", "0-sft", "--suite", "unseen")
    assert res.exit_code == 0, res.output
    assert "arith_unseen@0-sft" in res.output and "arith_test@" not in res.output and "@base" not in res.output


def test_eval_a_model_by_path(evaluated, cli):
    path, out, _ = evaluated
    res = cli("eval", path, "--out", out, "--model", out / "stages" / "0-sft" / "final", "--suite", "unseen")
    assert res.exit_code == 0, res.output
    found = list((out / "eval" / "models").glob("*/results.json"))
    assert len(found) == 1 and "arith_unseen" in json.loads(found[0].read_text())["evals"]


@pytest.mark.parametrize("args,message", [
    (("--stage", "nosuch"), "--stage 'nosuch' names no model"),
    (("--suite", "nosuch"), "no eval of this recipe is in it"),
    (("--model", "/definitely/not/a/model"), "no such folder"),
])
def test_eval_bad_selections(evaluated, cli, tmp_path, args, message):
    path, out, _ = evaluated
    res = cli("eval", path, "--out", out, *args)
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("metrics,message", [
    ([{"pass_at_k": {"k": [4], "n": 2}}], "k must be in 1..n"),
    (["acuracy"], "did you mean 'accuracy'"),
    ([{"preference": {"ref": "nosuch"}}], "holds verifiable rows"),
])
def test_metric_errors_at_validate(cli, write_recipe, metrics, message):
    r = tiny_recipe()
    r["eval"]["arith_test"]["metrics"] = metrics
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "eval.arith_test" in res.output and message in res.output, res.output


def test_accuracy_on_text_rows_is_a_recipe_error(cli, write_recipe, tmp_path):
    r = tiny_recipe()
    r["sources"]["notes"] = {"path": str(tmp_path / "n.jsonl"), "kind": "text", "fields": {"text": "t"}}
    r["eval"]["notes"] = {"source": "notes", "metrics": ["accuracy", "loss"]}
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "eval.notes.source" in res.output and "metric 'accuracy' scores verifiable rows" in res.output
    assert "metric 'loss'" not in res.output  # loss takes text rows


def test_loss_masks_the_prefix(tiny_model_dir):
    """MeCo's conditional inference: the prefix is context, never a target."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curation.rows import make_row, rows_to_dataset
    from eval.metrics.loss import encode, token_losses

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = rows_to_dataset([make_row("text", "web", text="What is 3 + 4? 7")])
    ids, mask = encode(tok, rows[0], "URL: a.b\n\n", 64)
    n_prefix = len(tok("URL: a.b\n\n", add_special_tokens=False)["input_ids"])
    assert mask[:n_prefix] == [0] * n_prefix and all(mask[n_prefix:])
    plain, _ = token_losses(model, tok, rows, "", 64, 4)
    prefixed, _ = token_losses(model, tok, rows, "URL: a.b\n\n", 64, 4)
    # the same document tokens are scored; after a prefix the first one is predicted too (as MeCo trains)
    assert prefixed[0][1] == plain[0][1] + 1


def test_preference_metric_margin_is_zero_on_the_reference(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curation.rows import make_row, rows_to_dataset
    from eval.metrics.base import EvalContext
    from eval.metrics.preference import Preference, PreferenceParams
    from eval.spec import EvalSpec

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = rows_to_dataset([make_row("preference", "p", prompt=[{"role": "user", "content": f"What is {a} + 1?"}],
                                     chosen=[{"role": "assistant", "content": str(a + 1)}],
                                     rejected=[{"role": "assistant", "content": str(a + 5)}]) for a in range(4)])
    ctx = EvalContext(spec=EvalSpec(source="p", metrics=["preference"], batch_size=2), load_model=lambda name: (model, tok))
    res = Preference(PreferenceParams()).evaluate(model, tok, rows, ctx)
    assert res.values["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert 0 <= res.values["preference_accuracy"] <= 1 and res.n == 4


def test_ifeval_strict_and_loose(monkeypatch, tiny_model_dir):
    from transformers import AutoTokenizer

    from curation.rows import make_row, rows_to_dataset
    from eval.metrics import ifeval as metric_mod
    from eval.metrics.base import EvalContext
    from eval.spec import EvalSpec

    lower = {"func_name": "validate_lowercase"}
    words = {"func_name": "validate_word_constraint", "N": 3, "quantifier": "at most"}
    rows = rows_to_dataset([
        make_row("verifiable", "if", prompt=[{"role": "user", "content": "a"}], ground_truth=json.dumps([lower, words]), verifier="ifeval"),
        make_row("verifiable", "if", prompt=[{"role": "user", "content": "b"}], ground_truth=json.dumps(lower), verifier="ifeval"),
    ])
    # the first response follows "all lowercase" only loosely (without its first line)
    monkeypatch.setattr(metric_mod, "generate", lambda *a, **k: [["Sure:\nall lower here"], ["fine"]])
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    res = metric_mod.IFEval(metric_mod.IFEval.Params()).evaluate(None, tok, rows, EvalContext(spec=EvalSpec(source="if", metrics=["ifeval"])))
    assert res.values["prompt_level_strict"] == 0.5 and res.values["prompt_level_loose"] == 1.0
    assert res.values["inst_level_strict"] == pytest.approx(1 / 3) and res.values["inst_level_loose"] == 1.0
