"""Settings mean what they say: no lax coercion changes a recipe's meaning, and every such case is
a clear error with the key path (no traceback)."""

import pytest

from tests.conftest import tiny_recipe


def _validate(cli, write_recipe, content, *overrides):
    path = write_recipe(content)
    result = cli("validate", path, *overrides)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def _rlvr_recipe(**stage):
    r = tiny_recipe()
    r["mixtures"]["rl"] = {"arith": 1.0}
    r["stages"].append({"kind": "rlvr", "data": "rl", "max_steps": 1, "batch_size": 4, "num_generations": 2, **stage})
    return r


def test_bool_is_never_a_number(cli, write_recipe):
    code, out = _validate(cli, write_recipe, _rlvr_recipe(non_stop_penalty=True))
    assert code == 2
    assert "stages[1].non_stop_penalty: expected a number, not a boolean" in out


def test_bool_is_never_a_mixture_share(cli, write_recipe):
    r = tiny_recipe()
    r["mixtures"]["sft"] = {"arith": True}
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "mixtures.sft.arith: expected" in out and "not a boolean" in out


def test_float_is_never_an_int(cli, write_recipe):
    r = tiny_recipe()
    r["stages"][0]["max_steps"] = 2.5
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "stages[0].max_steps: expected an integer, not a number with a fraction" in out
    r["stages"][0]["max_steps"] = 2.0
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "stages[0].max_steps: expected an integer" in out


def test_quoted_number_in_a_file_is_text(cli, write_recipe):
    text = write_recipe(tiny_recipe()).read_text().replace("lr: 0.001", "lr: '1e-3'")
    code, out = _validate(cli, write_recipe, text)
    assert code == 2 and "stages[0].lr: expected a number, not text; write the number without quotes" in out


def test_unquoted_exponent_is_a_number(cli, write_recipe, tmp_path):
    """YAML 1.1 (PyYAML) reads `lr: 1e-3` as the string "1e-3"; a recipe reads it as the number."""
    from recipe.load import load_recipe

    r = tiny_recipe()
    text = write_recipe(r).read_text().replace("lr: 0.001", "lr: 1e-3")
    assert "lr: 1e-3" in text
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    assert load_recipe(path).recipe.stages[0].lr == 1e-3


def test_number_where_text_is_expected(cli, write_recipe):
    r = tiny_recipe()
    r["description"] = 42
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "description: expected text, not a number; quote it to mean the text" in out


def test_plugin_options_are_strict(cli, write_recipe):
    r = tiny_recipe()
    r["selection"]["sft"] = [{"exact_dedup": {"lowercase": 1}}]
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "selection.sft[0].exact_dedup.lowercase" in out
    r = tiny_recipe()
    r["sources"]["arith"]["n"] = "200"
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and "sources.arith.n" in out


def test_override_strings_are_converted_deliberately(cli, write_recipe):
    from recipe.load import load_recipe

    path = write_recipe(tiny_recipe())
    loaded = load_recipe(path, ["stages.0.lr=2e-4", "stages.0.max_steps=5", "name=123", "description=true"])
    stage = loaded.recipe.stages[0]
    assert stage.lr == 2e-4 and stage.max_steps == 5
    assert loaded.recipe.name == "123" and loaded.recipe.description == "true"  # text keys keep the override's text
    code, out = _validate(cli, write_recipe, tiny_recipe(), "stages.0.lr=fast")
    assert code == 2 and "stages[0].lr: expected a number, not text" in out and "stages.0.lr=fast" in out
    code, out = _validate(cli, write_recipe, tiny_recipe(), "stages.0.max_steps=2.5")
    assert code == 2 and "stages[0].max_steps: expected an integer" in out


def test_duplicate_key_names_both_lines(cli, write_recipe):
    text = write_recipe(tiny_recipe()).read_text()
    text = text.replace("seed: 0\n", "seed: 0\nseed: 1\n", 1)
    code, out = _validate(cli, write_recipe, text)
    assert code == 2
    assert "duplicate key 'seed' (first on line 2, again on line 3)" in out and "r.yaml:3" in out


def test_yaml_date_is_a_key_path_error(cli, write_recipe):
    text = write_recipe(tiny_recipe()).read_text().replace("seed: 0\n", "seed: 0\ndescription: 2024-01-01\n", 1)
    code, out = _validate(cli, write_recipe, text)
    assert code == 2
    assert "description: YAML reads 2024-01-01 as a date" in out and "quote it ('2024-01-01')" in out


def test_recipe_not_utf8(cli, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: t\ndescription: caf\xe9\n".encode("latin-1"))
    result = cli("validate", path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "not UTF-8" in result.output and "line 2" in result.output


def test_env_values_stay_expressions_in_published_files(write_recipe, monkeypatch):
    from recipe.load import load_recipe

    monkeypatch.setenv("RK_SECRET_DIR", "/very/secret/place")
    r = tiny_recipe(description="${oc.env:RK_SECRET_DIR}", )
    r["stages"][0]["name"] = "${description}"
    loaded = load_recipe(write_recipe(r))
    assert loaded.recipe.description == "/very/secret/place"
    text = loaded.resolved_yaml()
    assert "/very/secret/place" not in text
    assert "${oc.env:RK_SECRET_DIR}" in text and "${description}" in text


@pytest.mark.parametrize("key,value", [("trust_remote_code", 1), ("revision", 3)])
def test_model_key_types(cli, write_recipe, key, value):
    r = tiny_recipe()
    r["model"] = {"path": "some/model", key: value}
    code, out = _validate(cli, write_recipe, r)
    assert code == 2 and f"model.{key}: expected" in out
