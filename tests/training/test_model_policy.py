"""``model.revision`` pins every load of the base model (curation tokenizer, stages, eval) and
``model.trust_remote_code`` is passed to every load, opt-in and announced."""

import pytest

from tests.conftest import tiny_recipe


@pytest.fixture
def spy(monkeypatch):
    import transformers

    calls = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        original = cls.from_pretrained.__func__

        def wrapped(klass, path, *args, _original=original, _name=cls.__name__, **kwargs):
            calls.append((_name, str(path), kwargs.get("revision"), kwargs.get("trust_remote_code")))
            return _original(klass, path, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(wrapped))
    return calls


def test_revision_and_remote_code_reach_every_load(cli, write_recipe, tmp_path, tiny_model_dir, spy):
    r = tiny_recipe(model={"path": str(tiny_model_dir), "revision": "v1.0", "trust_remote_code": True})
    r["selection"]["sft"] = [{"length": {"unit": "tokens", "max": 64}}]  # curation loads the tokenizer too
    r["stages"][0]["max_steps"] = 1
    res = cli("train", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    assert "trust_remote_code is true" in res.output and "runs Python code" in res.output
    base = [c for c in spy if c[1] == str(tiny_model_dir)]
    kinds = {c[0] for c in base}
    assert kinds == {"AutoModelForCausalLM", "AutoTokenizer"}
    assert len(base) >= 4  # curation tokenizer, stage model + tokenizer, base eval model + tokenizer
    assert all(c[2] == "v1.0" for c in base), base
    trained = [c for c in spy if c[1] != str(tiny_model_dir)]
    assert trained and all(c[2] is None for c in trained)  # a stage output is a local dir: no revision
    assert all(c[3] is True for c in spy)


def test_remote_code_is_off_by_default(cli, write_recipe, tmp_path, tiny_model_dir, spy):
    r = tiny_recipe(model={"path": str(tiny_model_dir)})
    r["stages"][0]["max_steps"] = 1
    res = cli("train", write_recipe(r), "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    assert "trust_remote_code" not in res.output
    assert spy and all(c[3] is False for c in spy)
