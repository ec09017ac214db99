"""Every error before any training starts (issue: trustworthy runs §1): `recipe validate` (or, for
what needs the data or the tokenizer, the start of `recipe train`) catches each with the key path and
a fix, exit code 1 or 2, and no traceback; no stage has trained when it does."""

import json

import pytest

from tests.conftest import tiny_recipe


def _validate(cli, write_recipe, r):
    res = cli("validate", write_recipe(r))
    assert "Traceback" not in res.output
    return res.exit_code, res.output


def test_eval_on_a_source_without_verifiable_rows(cli, write_recipe):
    r = tiny_recipe()
    r["sources"]["chatty"] = {"generate": "arithmetic", "n": 10, "as_chat": True, "split": "test"}
    r["eval"]["arith_test"]["source"] = "chatty"
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "eval.arith_test.source" in out and "metric 'accuracy' scores verifiable rows" in out


@pytest.mark.parametrize("share", [0, -1, 0.0, -0.5])
def test_mixture_share_zero_or_negative(cli, write_recipe, share):
    r = tiny_recipe()
    r["mixtures"]["sft"]["arith"] = share
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "mixtures.sft.arith" in out and "greater than 0" in out


def test_empty_mixture(cli, write_recipe):
    r = tiny_recipe()
    r["mixtures"]["sft"] = {}
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "mixtures.sft: an empty mixture" in out


def test_sft_stage_on_text_rows(cli, write_recipe, tmp_path):
    r = tiny_recipe()
    r["sources"]["notes"] = {"path": str(tmp_path / "n.jsonl"), "kind": "text", "fields": {"text": "t"}}
    r["mixtures"]["sft"]["notes"] = 1.0
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "stages[0].data" in out and "holds text rows" in out and "kind: pretrain" in out


def test_pretrain_stage_on_chat_rows(cli, write_recipe):
    r = tiny_recipe()
    r["stages"][0]["kind"] = "pretrain"
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "stages[0].data" in out and "holds verifiable rows" in out


def test_missing_chat_template(cli, write_recipe, tmp_path):
    r = tiny_recipe()
    r["stages"][0]["chat_template_path"] = str(tmp_path / "nope.jinja")
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "stages[0].chat_template_path" in out and "no such file" in out


def test_function_where_a_step_class_is_expected(cli, write_recipe):
    r = tiny_recipe()
    r["selection"]["sft"] = [{"os:system": {}}]
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "selection.sft[0].os:system" in out and "not a step" in out


def test_max_length_too_small_stops_before_any_stage_trains(cli, write_recipe, tmp_path):
    r = tiny_recipe(eval={})
    r["stages"] = [{"kind": "sft", "data": "sft", "max_steps": 2, "batch_size": 4, "max_length": 48},
                   {"kind": "sft", "data": "sft", "max_steps": 2, "batch_size": 4, "max_length": 8}]
    out = tmp_path / "run"
    res = cli("train", write_recipe(r), "--out", out)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "stages[1]" in res.output and "max_length: 8 tokens leaves no room" in res.output
    assert not (out / "stages" / "0-sft" / "final").exists()  # the first stage did not train either
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["pending", "pending"]
