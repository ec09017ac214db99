"""Bad recipes: each gets a clear message (key path, value, suggestion, file), no traceback, non-zero exit."""


from tests.conftest import tiny_recipe


def _run_validate(cli, write_recipe, recipe, *overrides):
    path = write_recipe(recipe)
    result = cli("validate", path, *overrides)
    return result, result.output


def test_valid_recipe_validates(cli, write_recipe):
    result, out = _run_validate(cli, write_recipe, tiny_recipe())
    assert result.exit_code == 0, out
    assert "ok" in out


def test_unknown_top_level_key_suggests(cli, write_recipe):
    r = tiny_recipe()
    r["stagess"] = []
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "stagess: unknown key" in out and "did you mean 'stages'" in out
    assert "r.yaml" in out and "Traceback" not in out


def test_unknown_nested_key_has_path_and_line(cli, write_recipe):
    r = tiny_recipe()
    r["stages"][0]["lrr"] = 1e-3
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "stages[0].lrr: unknown key" in out
    assert "did you mean 'lr'" in out
    assert "r.yaml:" in out  # with a line number


def test_sft_stage_rejects_dpo_keys(cli, write_recipe):
    r = tiny_recipe()
    r["stages"][0]["beta"] = 0.1
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "stages[0].beta: unknown key" in out


def test_wrong_type(cli, write_recipe):
    r = tiny_recipe()
    r["stages"][0]["lr"] = "fast"
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "stages[0].lr" in out and "'fast'" in out


def test_missing_required_key(cli, write_recipe):
    r = tiny_recipe()
    del r["stages"][0]["data"]
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "stages[0].data: required key is missing" in out


def test_missing_model(cli, write_recipe):
    r = tiny_recipe()
    del r["model"]
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "model: required key is missing" in out


def test_unknown_stage_kind(cli, write_recipe):
    r = tiny_recipe()
    r["stages"][0]["kind"] = "sfft"
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "stages[0].kind" in out and "unknown stage kind" in out and "did you mean 'sft'" in out


def test_unknown_step_suggests(cli, write_recipe):
    r = tiny_recipe()
    r["selection"]["sft"] = [{"exact_dedupe": {}}]
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "selection.sft[0].exact_dedupe: unknown step" in out
    assert "did you mean 'exact_dedup'" in out


def test_unknown_step_option(cli, write_recipe):
    r = tiny_recipe()
    r["selection"]["sft"] = [{"length": {"maxx": 10}}]
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "selection.sft[0].length.maxx: unknown option" in out and "did you mean 'max'" in out


def test_user_step_path_that_does_not_import(cli, write_recipe):
    r = tiny_recipe()
    r["selection"]["sft"] = [{"nopkg.nomod:MyStep": {}}]
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "cannot import" in out


def test_unknown_generator_option(cli, write_recipe):
    r = tiny_recipe()
    r["sources"]["arith"]["skils"] = ["add"]
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "sources.arith.skils: unknown option" in out and "did you mean 'skills'" in out


def test_reference_to_missing_source_and_mixture(cli, write_recipe):
    r = tiny_recipe()
    r["mixtures"]["sft"] = {"arithh": 1.0}
    r["stages"][0]["data"] = "nope"
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2
    assert "mixtures.sft.arithh" in out and "stages[0].data" in out


def test_stage_from_naming_no_stage(cli, write_recipe):
    r = tiny_recipe()
    r["stages"].append({"kind": "sft", "name": "second", "data": "sft", "from": "nosuchstage", "max_steps": 1})
    result, out = _run_validate(cli, write_recipe, r)
    assert result.exit_code == 2 and "Traceback" not in out
    assert "stages[1].from" in out and "'nosuchstage' names no earlier stage" in out


def test_override_naming_no_key(cli, write_recipe):
    result, out = _run_validate(cli, write_recipe, tiny_recipe(), "stages.0.lrr=1e-3")
    assert result.exit_code == 2
    assert "stages[0].lrr: unknown key" in out
    assert "override 'stages.0.lrr=1e-3'" in out


def test_override_out_of_range_index(cli, write_recipe):
    result, out = _run_validate(cli, write_recipe, tiny_recipe(), "stages.5.lr=1e-3")
    assert result.exit_code == 2
    assert "stages.5.lr=1e-3" in out and "Traceback" not in out


def test_override_applies_and_changes_hash(write_recipe):
    from recipe.load import load_recipe

    path = write_recipe(tiny_recipe())
    a = load_recipe(path)
    b = load_recipe(path, ["stages.0.lr=2e-5", "seed=3"])
    assert b.recipe.stages[0].lr == 2e-5 and b.recipe.seed == 3
    assert a.hash != b.hash


def test_interpolation_resolves(write_recipe):
    from recipe.load import load_recipe

    r = tiny_recipe()
    r["sources"]["arith_test"]["max_operand"] = "${sources.arith.max_operand}"
    loaded = load_recipe(write_recipe(r))
    assert loaded.resolved["sources"]["arith_test"]["max_operand"] == 9


def test_missing_recipe_file(cli, tmp_path):
    result = cli("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "recipe file not found" in result.output


def test_invalid_yaml_has_line(cli, write_recipe):
    path = write_recipe("name: x\nmodel: {init: tiny\n")
    result = cli("validate", path)
    assert result.exit_code == 2 and "not valid YAML" in result.output
