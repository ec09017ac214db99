"""The lm_eval metric: a local task YAML on local data (offline), through lm-eval's Python API on the
model in memory; its per-sample outputs reach the eval ledger; an unknown task names near names."""

import json

import pytest

from tests.conftest import tiny_recipe

pytest.importorskip("lm_eval")


def _task_dir(tmp_path):
    data = tmp_path / "arith.jsonl"
    data.write_text("".join(json.dumps({"question": f"{a} + {b}", "answer": str(a + b)}) + "\n"
                            for a in range(3) for b in range(3)))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_arith.yaml").write_text(f"""task: tiny_arith
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "What is {{{{question}}}}?"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
""")
    return tasks


def test_local_task_through_the_recipe(cli, write_recipe, tmp_path):
    tasks = _task_dir(tmp_path)
    r = tiny_recipe()
    r["stages"][0]["max_steps"] = 1
    r["eval"] = {"harness": {"suite": "dev", "metrics": [{"lm_eval": {
        "tasks": ["tiny_arith"], "include_path": str(tasks), "num_fewshot": 0, "limit": 5,
        "apply_chat_template": True, "fewshot_as_multiturn": False, "batch_size": 4}}]}}
    out = tmp_path / "run"
    res = cli("train", write_recipe(r), "--out", out)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "eval" / "results.json").read_text())
    m = results["evals"]["harness"]["models"]["0-sft"]["metrics"]["lm_eval"]
    assert "tiny_arith/exact_match,none" in m["values"] and 0 <= m["values"]["tiny_arith/exact_match,none"] <= 1
    assert m["extras"]["tasks"] == ["tiny_arith"] and m["n"] == 5
    import pyarrow.parquet as pq

    samples = [s for s in pq.read_table(out / "eval" / "samples.parquet").to_pylist() if s["metric"] == "lm_eval"]
    assert len(samples) == 2 * 5 and all(s["item_id"].startswith("tiny_arith:") for s in samples)
    assert all(s["score"] in (0.0, 1.0) for s in samples)


def test_unknown_task_lists_near_names(cli, write_recipe, tmp_path):
    tasks = _task_dir(tmp_path)
    r = tiny_recipe()
    r["eval"] = {"harness": {"metrics": [{"lm_eval": {"tasks": ["tiny_arithm"], "include_path": str(tasks)}}]}}
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and "eval.harness.metrics[0].lm_eval" in res.output
    assert "unknown lm-eval task(s): 'tiny_arithm'" in res.output and "tiny_arith" in res.output
