"""Evaluation metrics by name, one file each, registered in ``METRICS`` when imported.

Every module of this package (but ``base``) is a metric and is imported on first use, so adding a
metric is one file here plus its test. A metric declares the row kinds it accepts, whether higher is
better, and its options (a pydantic ``Params``); the recipe's ``eval.<name>.metrics`` entries are
validated against them at ``recipe validate``.
"""

from curation.registry import Registry


def load_builtin_metrics() -> None:
    import importlib
    import pkgutil

    import eval.metrics as package

    for m in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if m.name not in ("base",) and not m.name.startswith("_"):
            importlib.import_module(f"eval.metrics.{m.name}")


METRICS: Registry = Registry("metric", builtins=load_builtin_metrics)
