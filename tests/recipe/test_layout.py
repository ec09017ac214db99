"""The architecture holds (DESIGN.md): the runner only orders phases, modules stay small, imports go
one way, and `recipe validate` loads no trainer code."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("recipe", "curation", "training", "eval")


def _modules():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_runner_only_orders_phases():
    assert len((ROOT / "recipe" / "run.py").read_text().splitlines()) < 200


def test_no_module_over_400_lines():
    big = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 420}
    assert not big, big


def test_imports_go_one_way():
    for path in _modules():
        pkg = path.relative_to(ROOT).parts[0]
        for name in _imports(path):
            top = name.split(".")[0]
            if pkg in ("curation", "training", "eval"):
                assert top != "recipe", f"{path.relative_to(ROOT)} imports {name}"
            if pkg == "curation":
                assert top != "training", f"{path.relative_to(ROOT)} imports {name}"


def test_validate_imports_no_trainer_code():
    code = ("import sys; from recipe.load import load_recipe; load_recipe('recipes/tulu3/tulu3_8b.yaml'); "
            "load_recipe('recipes/quickstart.yaml'); "
            "bad = [m for m in ('trl', 'transformers', 'torch', 'peft', 'accelerate') if m in sys.modules]; "
            "print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
