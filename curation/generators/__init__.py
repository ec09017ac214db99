"""Built-in source generators. Each registers itself in ``GENERATORS`` by name."""

from curation.registry import Registry

GENERATORS: Registry = Registry("generator")


def load_builtin_generators() -> None:
    from curation.generators import arithmetic  # noqa: F401  (registers itself)
