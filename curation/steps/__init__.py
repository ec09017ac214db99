"""Curation steps. Each module registers its step class in ``STEPS`` by name."""

from curation.registry import Registry

_BUILTIN = ("exact_dedup", "length", "semantic_dedup", "minhash_dedup", "decontaminate", "response_length", "repetition", "empty_turns", "garbage", "quality_classifier", "preselect", "random_subset", "paser", "iclm")


def load_builtin_steps() -> None:
    import importlib

    for name in _BUILTIN:
        importlib.import_module(f"curation.steps.{name}")


STEPS: Registry = Registry("step", builtins=load_builtin_steps)
