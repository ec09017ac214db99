"""A user step by dotted path: validated options, run by the runner, recorded in the ledger."""


from tests.conftest import tiny_recipe
from curation import ledger as ledger_mod

STEP = "tests.recipe.example_user_step:KeepEveryNth"


def test_user_step_runs_and_is_recorded(cli, write_recipe, tmp_path):
    r = tiny_recipe()
    r["selection"]["sft"] = [{STEP: {"n": 4}}]
    out = tmp_path / "run"
    res = cli("curate", write_recipe(r), "--out", out)
    assert res.exit_code == 0, res.output
    led = ledger_mod.read(out / "ledger").to_pandas()
    mine = led[led.step == f"0:{STEP}"]
    assert len(mine) == 200 and (mine.decision == "keep").sum() == 50
    assert set(mine[mine.decision == "drop"].reason) == {"not_nth"}


def test_user_step_options_are_checked(cli, write_recipe):
    r = tiny_recipe()
    r["selection"]["sft"] = [{STEP: {"nn": 4}}]
    res = cli("validate", write_recipe(r))
    assert res.exit_code == 2 and f"selection.sft[0].{STEP}.nn: unknown option" in res.output
