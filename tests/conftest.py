"""Shared fixtures: a tiny locally built model, recipe writing, and the CLI runner.

Nothing is downloaded: the tiny model is a random-init Llama with a tokenizer trained here.
``SHARED_DATA`` points at ../shared/data when present; tests that need it skip cleanly otherwise.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def needs_shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 0.2M-parameter Llama + BPE tokenizer trained on arithmetic text, saved as an HF dir."""
    from training.tiny_model import build_tiny_model

    texts = [f"What is {a} + {b}? {a + b}" for a in range(20) for b in range(20)] + ["Hello there, how are you?"] * 5
    out = tmp_path_factory.mktemp("tiny_model")
    return build_tiny_model(out, texts, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)


@pytest.fixture
def write_recipe(tmp_path):
    """write_recipe(dict_or_yaml_text, name='r.yaml') -> Path"""

    def _write(content, name: str = "r.yaml") -> Path:
        path = tmp_path / name
        text = yaml.safe_dump(content, sort_keys=False) if isinstance(content, dict) else textwrap.dedent(content)
        path.write_text(text)
        return path

    return _write


@pytest.fixture
def cli():
    """cli(*args) -> typer result with .exit_code and .output (stdout + stderr)."""
    from typer.testing import CliRunner

    from recipe.cli import app

    runner = CliRunner()

    def _run(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return _run


def train_recipe(tmp: Path, recipe: dict) -> tuple[Path, Path, str]:
    """Write ``recipe`` to ``tmp/r.yaml`` and run ``recipe train`` on it into ``tmp/run`` (module-scoped
    fixtures train once and share the run): (recipe path, run dir, CLI output)."""
    from typer.testing import CliRunner

    from recipe.cli import app

    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    res = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp / "run")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return path, tmp / "run", res.output


def tiny_recipe(**over) -> dict:
    """A minimal valid recipe (generated arithmetic, tiny model, a few SFT steps)."""
    recipe = {
        "name": "t",
        "seed": 0,
        "model": {"init": "tiny", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "vocab_size": 300},
        "sources": {
            "arith": {"generate": "arithmetic", "n": 200, "skills": ["add", "sub"], "max_operand": 9, "split": "train"},
            "arith_test": {"generate": "arithmetic", "n": 10, "skills": ["add", "sub"], "max_operand": 9, "split": "test"},
        },
        "mixtures": {"sft": {"arith": 1.0}},
        "selection": {"sft": [{"exact_dedup": {}}]},
        "stages": [{"kind": "sft", "data": "sft", "max_steps": 3, "lr": 1e-3, "batch_size": 8, "max_length": 48, "logging_steps": 1}],
        "eval": {"arith_test": {"source": "arith_test", "max_new_tokens": 4}},
    }
    recipe.update(over)
    return recipe
