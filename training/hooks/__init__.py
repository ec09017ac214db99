"""Training-time data methods ("hooks"), one file each, registered in ``HOOKS`` when imported.

A hook is declared on a stage (``hooks: [{skill_it: {...}}]``) and acts while the stage trains, around
an unchanged TRL trainer: a transform of the stage's rows (``prepare``, in the runner's single process
before the job), a sampler (which rows the trainer sees, in what order, round by round), a loss
weighting (``compute_loss``), and trainer callbacks. ``training/hooks/base.py`` is the protocol,
``install.py`` wires hooks into a trainer, ``exposure.py`` counts what every stage consumed. Every
other module of this package is a hook, found by listing the package: adding one is one file here
plus its test.
"""

from curation.registry import Registry

_NOT_HOOKS = ("base", "install", "exposure", "samplers")


def load_builtin_hooks() -> None:
    import importlib
    import pkgutil

    import training.hooks as package

    for m in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if m.name not in _NOT_HOOKS and not m.name.startswith("_"):
            importlib.import_module(f"training.hooks.{m.name}")


HOOKS: Registry = Registry("hook", builtins=load_builtin_hooks)
