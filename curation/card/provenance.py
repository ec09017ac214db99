"""Provenance facts for the card: recipe-kit version, git commit of the code, library versions.

Versions are read with ``importlib.metadata`` when the card is written; the runner writes the card
right after a run, so they are the run's versions (a card regenerated later with ``recipe card``
says when it was written).
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers", "pyarrow",
             "numpy", "scikit-learn", "sentence-transformers", "faiss-cpu", "fasttext", "matplotlib")


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str]:
    return {lib: v for lib in LIBRARIES if (v := version(lib))}


def git_commit() -> dict | None:
    """The commit of the recipe-kit checkout and whether it has uncommitted changes (None outside git)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None
